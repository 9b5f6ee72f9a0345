"""The tracer's own imports never pass through the program's import machinery:
it imports what building and writing the trace need only after the program
ended, with the import system put back as it was before the program started
(otel_tracer/run/imports.py). A program that logs every import from a
``sys.meta_path`` finder and sandboxes ``builtins.__import__`` prints and does
exactly what it does untraced, and the trace is written, in the tracer's
process and in a followed child process."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import run_python, run_tracer, write_files

import otel_tracer

HOOKS = """
    import builtins
    import sys


    class ImportLogger:
        def find_spec(self, name, path=None, target=None):
            print("import", name, flush=True)
            return None


    sys.meta_path.insert(0, ImportLogger())
    _real_import = builtins.__import__


    def sandbox(name, globals=None, locals=None, fromlist=(), level=0):
        if name.split(".")[0] not in ALLOWED and name not in sys.modules:
            raise ImportError(f"sandbox: import of {name} refused")
        return _real_import(name, globals, locals, fromlist, level)


    builtins.__import__ = sandbox
"""

PROGRAM = (
    """
    import subprocess

    ALLOWED = {"colorsys"}
"""
    + HOOKS
    + """
    import colorsys


    def shade(i):
        return colorsys.rgb_to_hsv(i / 10, 0.5, 0.25)


    print([round(shade(i)[0], 3) for i in range(3)])
    subprocess.run([sys.executable, "child.py"], check=True)
    """
)

CHILD = (
    """
    ALLOWED = {"colorsys"}
"""
    + HOOKS
    + """
    import colorsys


    def child_work():
        return colorsys.hls_to_rgb(0.5, 0.5, 0.5)


    print("child", child_work())
    """
)


def test_import_hooks_and_sandboxes_see_none_of_the_tracers_imports(
    tmp_path: Path, core: str
) -> None:
    write_files(tmp_path, {"prog.py": PROGRAM, "child.py": CHILD})
    untraced = run_python(["prog.py"], tmp_path)
    assert untraced.returncode == 0, untraced.stderr
    traced = run_tracer(["-q", "--core", core, "-o", "trace.json", "prog.py"], tmp_path)
    assert traced.returncode == 0, traced.stderr
    assert traced.stdout == untraced.stdout
    assert traced.stderr == untraced.stderr == ""
    trace = otel_tracer.load(tmp_path / "trace.json")
    names = {trace.functions[f].qualname for f in trace.calls.function.tolist()}
    assert {"shade", "child_work"} <= names


def test_a_python_started_process_imports_no_numpy_before_the_program(tmp_path: Path) -> None:
    """What recording needs is imported before the program's first line; numpy,
    the exporters and the folding come after it (start-up cost)."""
    write_files(
        tmp_path,
        {
            "prog.py": """
                import sys
                heavy = ("numpy", "patterns", "exporters.perfetto", "opentelemetry")
                print(sorted(m for m in sys.modules if m.split(".")[0] in heavy))
            """
        },
    )
    traced = run_tracer(["-q", "-o", "trace.json", "prog.py"], tmp_path)
    assert traced.returncode == 0, traced.stderr
    assert traced.stdout.strip() == "[]"
    assert sys.modules  # (the test process itself may hold anything)


CLOSING = {
    "closed": "sys.stderr.close()\nsys.stdout.close()",
    "dropped": "sys.stderr = None\nsys.stdout = None",
    "replaced": "sys.stderr = open('own.log', 'w')\nsys.stdout = sys.stderr",
}


@pytest.mark.parametrize("how", sorted(CLOSING))
def test_a_program_that_closes_its_streams_still_gets_its_trace(tmp_path: Path, how: str) -> None:
    """Status lines go to the streams the tracer started with (or fd 2), never
    to the program's replacement, and never crash the tracer."""
    program = f"import sys\n\ndef work():\n    return 1\n\nwork()\n{CLOSING[how]}\n"
    write_files(tmp_path, {"prog.py": program, "child.py": program})
    untraced = run_python(["prog.py"], tmp_path)
    (tmp_path / "own.log").unlink(missing_ok=True)
    traced = run_tracer(["-o", "trace.json", "prog.py"], tmp_path)
    assert traced.returncode == untraced.returncode == 0, traced.stderr
    assert "calls recorded" in traced.stderr
    assert "Traceback" not in traced.stderr and "lost sys" not in traced.stderr
    if how == "replaced":
        assert (tmp_path / "own.log").read_text() == ""  # nothing of ours in the program's file
    assert "work" in {f.qualname for f in otel_tracer.load(tmp_path / "trace.json").functions}
    # the text view, with no -o, goes to the tracer's stdout
    text = run_tracer(["prog.py"], tmp_path)
    assert text.returncode == 0 and "work" in text.stdout, text.stderr


def test_the_api_tracer_records_without_numpy(tmp_path) -> None:
    """``otel_tracer.Tracer`` imports numpy (about 15 MB) only to build the trace
    after the block: while the program runs, recording holds only its events."""
    script = """
        import sys
        import otel_tracer

        def work(n):
            return n + 1

        tracer = otel_tracer.Tracer(scope=[__file__])
        with tracer:
            work(1)
            print("during", "numpy" in sys.modules)
        print("after", "numpy" in sys.modules, len(tracer.trace))
    """
    write_files(tmp_path, {"prog.py": script})
    result = run_python(["prog.py"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["during", "False", "after", "True", "1"]
