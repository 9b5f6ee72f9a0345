"""End to end: real programs run under ``python -m cli.main``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, call_objects, run_python, run_tracer, write_files

import otel_tracer


def names(trace: otel_tracer.Trace) -> list[str]:
    return [trace.function_of(i).qualname for i in range(len(trace))]


def tree(trace: otel_tracer.Trace) -> list[tuple[str, str | None]]:
    """(call, parent call) qualname pairs in call order."""
    rows = []
    for i in range(len(trace)):
        parent = int(trace.calls.parent[i])
        rows.append(
            (
                trace.function_of(i).qualname,
                trace.function_of(parent).qualname if parent >= 0 else None,
            )
        )
    return rows


ARGV_PROGRAM = """
    import sys
    print(repr(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    ("command", "script_args", "outputs"),
    [
        (["prog.py", "arg1", "arg2", "--script-flag"], ["arg1", "arg2", "--script-flag"], []),
        (["prog.py", "--config", "c.yaml", "-o", "t.json"], ["--config", "c.yaml"], ["t.json"]),
        (["prog.py", "-o", "r.json", "--scope", ".", "arg1", "arg2"], ["arg1", "arg2"], ["r.json"]),
        (["-q", "-o", "t.json", "prog.py", "x"], ["x"], ["t.json"]),
        (["prog.py", "a", "--", "-o", "x"], ["a", "-o", "x"], []),
    ],
)
def test_arguments_reach_the_script(tmp_path, command, script_args, outputs):
    write_files(tmp_path, {"prog.py": ARGV_PROGRAM})
    result = run_tracer(command, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == repr(script_args)
    for out in outputs:
        trace = otel_tracer.load(tmp_path / out)
        assert trace.meta["argv"][1:] == script_args


def test_script_sees_python_environment(tmp_path):
    write_files(
        tmp_path,
        {
            "app/prog.py": """
                import sys, os
                import helper
                here = os.path.dirname(__file__)
                print(__name__, os.path.basename(__file__), sys.path[0] == here)
                print(helper.VALUE, sys.argv[0])
                print(sys.stdin.read().strip())
            """,
            "app/helper.py": "VALUE = 'helper-ok'\n",
        },
    )
    traced = run_tracer(["-q", "app/prog.py"], tmp_path, input="from stdin\n")
    plain = run_python(["app/prog.py"], tmp_path, input="from stdin\n")
    assert traced.returncode == plain.returncode == 0
    program_lines = traced.stdout.splitlines()[:3]
    assert program_lines == plain.stdout.splitlines()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("import sys; sys.exit(3)", 3),
        ("import sys; sys.exit(0)", 0),
        ("import sys; sys.exit('fatal: message')", 1),
        ("raise ValueError('boom')", 1),
        ("raise KeyboardInterrupt", -signal.SIGINT),
    ],
)
def test_exit_status_and_output_match_untraced(tmp_path, body, code):
    write_files(tmp_path, {"prog.py": f"def main():\n    print('out')\n    {body}\nmain()\n"})
    traced = run_tracer(["-q", "prog.py", "-o", "t.json"], tmp_path)
    plain = run_python(["prog.py"], tmp_path)
    assert plain.returncode == code
    assert traced.returncode == code
    assert traced.stdout == plain.stdout
    assert traced.stderr == plain.stderr  # Python's own traceback, none of our frames
    trace = otel_tracer.load(tmp_path / "t.json")
    assert trace.meta["exit_code"] == (130 if code < 0 else code)
    assert names(trace)[:2] == ["<module>", "main"]


def test_uncaught_exception_is_recorded_on_every_frame(tmp_path):
    write_files(
        tmp_path,
        {
            "prog.py": """
                def inner(x):
                    raise ValueError(f"bad {x}")
                def outer():
                    return inner(7)
                outer()
            """
        },
    )
    result = run_tracer(["-q", "prog.py", "-o", "t.json"], tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().endswith("ValueError: bad 7")
    trace = otel_tracer.load(tmp_path / "t.json")
    assert [trace.exception_of(i) for i in range(3)] == [("ValueError", "bad 7")] * 3
    assert trace.meta["uncaught_exception"] == {"type": "ValueError", "message": "bad 7"}


def test_sigint_during_run_writes_trace_and_dies_of_sigint(tmp_path):
    write_files(
        tmp_path,
        {
            "prog.py": """
                import time
                def wait():
                    print("ready", flush=True)
                    time.sleep(60)
                wait()
            """
        },
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "-q", "prog.py", "-o", "t.json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGINT
    assert "KeyboardInterrupt" in err
    trace = otel_tracer.load(tmp_path / "t.json")
    assert trace.meta["exit_code"] == 130
    assert trace.exception_of(1)[0] == "KeyboardInterrupt"


def test_scope_default_is_script_directory(tmp_path):
    write_files(
        tmp_path,
        {
            "proj/main.py": "import lib.util\nlib.util.work()\n",
            "proj/lib/__init__.py": "",
            "proj/lib/util.py": "def work():\n    return sorted([2, 1])\n",
            "other/outside.py": "def nope():\n    pass\n",
        },
    )
    result = run_tracer(["proj/main.py", "-o", "t.json"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"scope: {(tmp_path / 'proj').resolve()}" in result.stderr
    trace = otel_tracer.load(tmp_path / "t.json")
    assert trace.meta["scope"] == [str((tmp_path / "proj").resolve())]
    assert "work" in names(trace)


@pytest.mark.parametrize(
    ("script", "expected_scope"),
    [
        ("mttl/experiments/train.py", "mttl"),
        ("mttl/mttl/experiments/train.py", "mttl"),
        ("code/mttl/train.py", "code/mttl"),
    ],
)
def test_scope_mttl_rule(tmp_path, script, expected_scope):
    write_files(tmp_path, {script: "print('hi')\n"})
    result = run_tracer([script, "-o", "t.json"], tmp_path)
    assert result.returncode == 0, result.stderr
    trace = otel_tracer.load(tmp_path / "t.json")
    assert trace.meta["scope"] == [str((tmp_path / expected_scope).resolve())]


def test_explicit_scope_wins_and_is_repeatable(tmp_path):
    write_files(
        tmp_path,
        {
            "mttl/run.py": "import a, b\na.f(); b.g()\n",
            "pkg_a/a.py": "def f():\n    return 1\n",
            "pkg_b/b.py": "def g():\n    return 2\n",
        },
    )
    cmd = ["--scope", "pkg_a", "mttl/run.py", "--scope", "pkg_b", "-o", "t.json"]
    result = run_tracer(
        cmd, tmp_path, env={"PYTHONPATH": f"{REPO}:{tmp_path / 'pkg_a'}:{tmp_path / 'pkg_b'}"}
    )
    assert result.returncode == 0, result.stderr
    trace = otel_tracer.load(tmp_path / "t.json")
    assert sorted(trace.meta["scope"]) == sorted(
        str((tmp_path / p).resolve()) for p in ("pkg_a", "pkg_b")
    )
    assert names(trace) == ["<module>", "<module>", "f", "g"]


def test_virtualenv_under_scope_is_not_traced(tmp_path):
    site = tmp_path / "proj/.venv/lib/python3.11/site-packages"
    write_files(
        tmp_path,
        {
            "proj/main.py": """
                import sys
                sys.path.insert(0, sys.argv[1])
                import vlib
                vlib.api()
            """,
            "proj/.venv/lib/python3.11/site-packages/vlib.py": """
                def api():
                    return _inner()
                def _inner():
                    return 1
            """,
        },
    )
    result = run_tracer(["proj/main.py", str(site), "-o", "t.json"], tmp_path)
    assert result.returncode == 0, result.stderr
    trace = otel_tracer.load(tmp_path / "t.json")
    api = [i for i in range(len(trace)) if trace.function_of(i).qualname == "api"]
    assert len(api) == 1 and trace.function_of(api[0]).external
    assert "_inner" not in names(trace)
    # Named explicitly, a directory inside site-packages is in scope.
    result = run_tracer(
        ["--scope", str(site), "proj/main.py", str(site), "-o", "t2.json"], tmp_path
    )
    assert names(otel_tracer.load(tmp_path / "t2.json")) == ["<module>", "api", "_inner"]


def test_symlinked_scope_is_resolved(tmp_path):
    write_files(tmp_path, {"real/prog.py": "def f():\n    pass\nf()\n"})
    (tmp_path / "link").symlink_to(tmp_path / "real")
    result = run_tracer(["link/prog.py", "--scope", "link", "-o", "t.json"], tmp_path)
    assert result.returncode == 0, result.stderr
    trace = otel_tracer.load(tmp_path / "t.json")
    assert names(trace) == ["<module>", "f"]
    assert trace.meta["scope"] == [str((tmp_path / "real").resolve())]


CALLBACKS = """
    import json
    def key(v):
        return -v
    def default(o):
        return str(o)
    def helper():
        return 1
    def main():
        sorted([3, 1, 2], key=key)
        json.dumps({"a": object()}, default=default)
        len([1])
        helper()
    main()
"""


def test_external_calls_and_callbacks(tmp_path, core):
    write_files(tmp_path, {"prog.py": CALLBACKS})
    result = run_tracer(["-q", "--core", core, "prog.py", "-o", "t.json"], tmp_path)
    assert result.returncode == 0, result.stderr
    trace = otel_tracer.load(tmp_path / "t.json")
    rows = tree(trace)
    assert ("sorted", "main") in rows
    assert rows.count(("key", "sorted")) == 3
    assert ("dumps", "main") in rows
    assert ("default", "dumps") in rows
    assert ("helper", "main") in rows
    assert "len" not in names(trace)  # trivial builtins are left out by default
    external = {
        trace.function_of(i).qualname for i in range(len(trace)) if trace.function_of(i).external
    }
    assert external == {"sorted", "dumps"}


def test_no_external_calls_attach_callbacks_to_scope(tmp_path, core):
    write_files(tmp_path, {"prog.py": CALLBACKS})
    result = run_tracer(
        ["-q", "--core", core, "prog.py", "--no-external-calls", "-o", "t.json"], tmp_path
    )
    assert result.returncode == 0, result.stderr
    trace = otel_tracer.load(tmp_path / "t.json")
    assert tree(trace) == [
        ("<module>", None),
        ("main", "<module>"),
        ("key", "main"),
        ("key", "main"),
        ("key", "main"),
        ("default", "main"),
        ("helper", "main"),
    ]
    assert trace.meta["external_calls"] is False


def test_include_builtins(tmp_path):
    write_files(tmp_path, {"prog.py": CALLBACKS})
    result = run_tracer(["-q", "prog.py", "--include-builtins", "-o", "t.json"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "len" in names(otel_tracer.load(tmp_path / "t.json"))


def test_threads_are_separate_roots(tmp_path, core):
    write_files(
        tmp_path,
        {
            "prog.py": """
                import threading
                def work(n):
                    return n * 2
                threads = [threading.Thread(target=work, args=(i,), name=f"w{i}") for i in range(3)]
                for t in threads: t.start()
                for t in threads: t.join()
            """
        },
    )
    result = run_tracer(["-q", "--core", core, "prog.py", "-o", "t.json"], tmp_path)
    assert result.returncode == 0, result.stderr
    trace = otel_tracer.load(tmp_path / "t.json")
    work = [i for i in range(len(trace)) if trace.function_of(i).qualname == "work"]
    assert len(work) == 3
    assert all(trace.calls.parent[i] == -1 for i in work)
    thread_names = sorted(trace.threads[trace.calls.thread[i]].name for i in work)
    assert thread_names == ["w0", "w1", "w2"]
    assert sorted(trace.args_of(i)["n"] for i in work) == ["0", "1", "2"]


def test_non_daemon_threads_finish_inside_the_trace(tmp_path):
    write_files(
        tmp_path,
        {
            "prog.py": """
                import threading, time
                def late():
                    time.sleep(0.3)
                    return "done"
                threading.Thread(target=late).start()
            """
        },
    )
    result = run_tracer(["-q", "prog.py", "-o", "t.json"], tmp_path)
    assert result.returncode == 0, result.stderr
    trace = otel_tracer.load(tmp_path / "t.json")
    late = names(trace).index("late")
    assert trace.value_of(late) == "'done'"
    assert not trace.calls.flags[late] & otel_tracer.trace.model.UNFINISHED


def test_generators_and_coroutines(tmp_path, core):
    write_files(
        tmp_path,
        {
            "prog.py": """
                import asyncio
                def gen(n):
                    for i in range(n):
                        yield i
                async def child(x):
                    await asyncio.sleep(0)
                    return x + 1
                async def main():
                    return await child(1)
                list(gen(2))
                asyncio.run(main())
            """
        },
    )
    result = run_tracer(["-q", "--core", core, "prog.py", "-o", "t.json"], tmp_path)
    assert result.returncode == 0, result.stderr
    trace = otel_tracer.load(tmp_path / "t.json")
    doc = json.loads((tmp_path / "t.json").read_text())
    calls = call_objects(doc)
    gens = [c for c in calls if doc["functions"][c["function"]]["qualname"] == "gen"]
    assert [c.get("resumed", False) for c in gens] == [False, True, True]
    assert [c.get("yielded", False) for c in gens] == [True, True, False]
    assert gens[0]["args"] == {"n": "2"} and [c.get("return") for c in gens] == ["0", "1", "None"]
    childs = [c for c in calls if doc["functions"][c["function"]]["qualname"] == "child"]
    assert len(childs) == 2 and childs[1]["resumed"] and childs[1]["return"] == "2"
    assert "main" in names(trace)


def test_module_shadowing_imports_the_programs_own_modules(tmp_path):
    files = {
        "proj/prog.py": """
            import cli, patterns, exporters, otel_tracer
            print(cli.WHO, patterns.WHO, exporters.WHO, otel_tracer.WHO)
        """
    }
    for name in ("cli", "patterns", "exporters", "otel_tracer"):
        files[f"proj/{name}/__init__.py"] = f"WHO = 'mine-{name}'\n"
    write_files(tmp_path, files)
    result = run_tracer(["-q", "proj/prog.py", "-o", "t.json"], tmp_path)
    assert result.returncode == 0, result.stderr
    expected = ["mine-cli", "mine-patterns", "mine-exporters", "mine-otel_tracer"]
    assert result.stdout.split() == expected
    assert otel_tracer.load(tmp_path / "t.json").meta["exit_code"] == 0


def test_run_module_with_dash_m(tmp_path):
    write_files(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/tool.py": """
                import sys
                def run():
                    print(sys.argv[1:])
                if __name__ == '__main__':
                    run()
            """,
        },
    )
    result = run_tracer(["-q", "-o", "t.json", "-m", "pkg.tool", "a", "-o", "b", "-q"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "['a', '-o', 'b', '-q']"  # all the module's
    trace = otel_tracer.load(tmp_path / "t.json")
    assert "run" in names(trace)
    assert trace.meta["scope"] == [str((tmp_path / "pkg").resolve())]
    assert trace.meta["module"] == "pkg.tool"


def test_installed_module_without_scope_warns(tmp_path):
    """-m pytest: the default scope (site-packages/pytest) holds only its
    ``__main__``, pytest's code is in ``_pytest``: said so, with the way out."""
    result = run_tracer(["-q", "-o", "t.json", "-m", "pytest", "--version"], tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("otel-tracer")]
    assert len(lines) == 1, result.stderr
    assert "calls recorded: -m pytest runs an installed module" in lines[0]
    assert "pass --scope" in lines[0]
    # a module of the program's own, or one whose code is in the scope: no warning
    (tmp_path / "in.json").write_text('{"a": 1}')
    for args in (["-m", "json.tool", "in.json"], ["--scope", str(tmp_path), "-m", "pytest", "-h"]):
        result = run_tracer(["-q", "-o", "t.json", *args], tmp_path)
        assert "otel-tracer" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.py"], "script not found: missing.py"),
        (["prog.py", "--scope", "nowhere"], "--scope nowhere: no such directory"),
        (["prog.py", "-o", "no/such/dir/t.json"], "does not exist"),
        (["prog.py", "--format", "xml", "-o", "t.json"], "unknown --format 'xml'"),
        (["prog.py", "-o", "t.weird"], "cannot tell the output format"),
        (["--bogus", "prog.py"], "unknown option: --bogus"),
        (["prog.py", "--max-calls", "0"], "--max-calls"),
        (["--max-calls", str(2**64), "prog.py"], "--max-calls needs an integer <= "),
        (["--max-depth", str(2**100), "prog.py"], "--max-depth needs an integer <= "),
        (["--ring-buffer", str(2**63), "prog.py"], "--ring-buffer needs an integer <= "),
        (["-m", "no_such_module_xyz"], "no_such_module_xyz"),
        ([], "missing script"),
        (["."], "not a file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    write_files(tmp_path, {"prog.py": "open('ran', 'w').write('x')\n"})
    result = run_tracer(args, tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("otel-tracer: error:")
    assert not (tmp_path / "ran").exists()  # failed before running the script


@pytest.mark.skipif(os.geteuid() == 0, reason="root may read any file")
def test_unreadable_script(tmp_path):
    write_files(tmp_path, {"prog.py": "pass\n"})
    (tmp_path / "prog.py").chmod(0)
    result = run_tracer(["prog.py"], tmp_path)
    assert result.returncode == 2 and "script is not readable: prog.py" in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_output_directory_not_writable(tmp_path):
    write_files(tmp_path, {"prog.py": "pass\n"})
    (tmp_path / "ro").mkdir(mode=0o555)
    result = run_tracer(["prog.py", "-o", "ro/t.json"], tmp_path)
    assert result.returncode == 2 and "is not writable" in result.stderr


@pytest.mark.parametrize(
    ("denied", "args", "message"),
    [
        ("prog.py", ["prog.py"], "script is not readable: prog.py"),
        ("ro", ["prog.py", "-o", "ro/t.json"], "is not writable"),
    ],
)
def test_permission_checks_without_root(tmp_path, monkeypatch, capsys, denied, args, message):
    """The same checks in-process, with os.access answering as for a normal user
    (CI runs as root, for whom every file is readable and writable)."""
    from cli import main as cli_main

    write_files(tmp_path, {"prog.py": "pass\n"})
    (tmp_path / "ro").mkdir()
    monkeypatch.chdir(tmp_path)
    real_access = os.access
    monkeypatch.setattr(
        cli_main.os, "access", lambda p, m: False if Path(p).name == denied else real_access(p, m)
    )
    assert cli_main.main(args) == 2
    assert message in capsys.readouterr().err


def test_outputs_stdout_gzip_and_text(tmp_path):
    write_files(tmp_path, {"prog.py": "def f(x):\n    return x\nf(1)\n"})
    result = run_tracer(["-q", "prog.py", "-o", "-"], tmp_path)
    doc = json.loads(result.stdout)
    assert doc["format"] == "otel-tracer-trace" and len(doc["calls"]) == 2
    result = run_tracer(["-q", "prog.py", "-o", "t.json.gz", "-o", "t.txt"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "t.json.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert names(otel_tracer.load(tmp_path / "t.json.gz")) == ["<module>", "f"]
    assert "f [prog.py:1] (x=1) -> 1" in (tmp_path / "t.txt").read_text()


def test_grouped_view_printed_without_output(tmp_path):
    write_files(tmp_path, {"prog.py": "import json\ndef f(x):\n    return json.dumps(x)\nf([1])\n"})
    result = run_tracer(["prog.py"], tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Thread MainThread")
    assert lines[1].startswith("#1 <module> [prog.py:1]")
    assert "└── #2 f [prog.py:2] (x=list(len=1)[1]) -> '[1]'" in lines[2]
    assert "#3 json.dumps [external]" in lines[3]


def test_plain_tree_with_no_patterns(tmp_path):
    write_files(tmp_path, {"prog.py": "def f(x):\n    return x\nfor i in range(5):\n    f(1)\n"})
    result = run_tracer(["prog.py", "--no-patterns", "-o", "t.json", "-o", "-"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "patterns" not in json.loads((tmp_path / "t.json").read_text())
    result = run_tracer(["--no-patterns", "prog.py"], tmp_path)
    lines = result.stdout.splitlines()
    assert "└── #1 <module> [prog.py:1]" in lines[1]
    assert sum("f [prog.py:1] (x=1) -> 1" in line for line in lines) == 5
    assert "Repeating Pattern" not in result.stdout


def test_limits_depth_calls_and_args(tmp_path, core):
    write_files(
        tmp_path,
        {
            "prog.py": """
                def rec(n):
                    return rec(n - 1) if n else 0
                for _ in range(5):
                    rec(4)
            """
        },
    )
    run_tracer(["-q", "--core", core, "prog.py", "--max-depth", "3", "-o", "d.json"], tmp_path)
    depth = otel_tracer.load(tmp_path / "d.json")
    assert int(depth.calls.depth.max()) == 2 and len(depth) == 1 + 5 * 2
    run_tracer(["-q", "--core", core, "prog.py", "--max-calls", "7", "-o", "c.json"], tmp_path)
    limited = otel_tracer.load(tmp_path / "c.json")
    assert len(limited) == 7
    assert limited.meta["dropped_calls"] == 1 + 5 * 5 - 7
    run_tracer(["-q", "--core", core, "prog.py", "--no-args", "-o", "n.json"], tmp_path)
    doc = json.loads((tmp_path / "n.json").read_text())
    assert not any("args" in c or "return" in c for c in call_objects(doc))
    assert doc["metadata"]["args_captured"] is False


def test_max_calls_is_reported_on_stderr(tmp_path):
    write_files(tmp_path, {"prog.py": "def f():\n    pass\nfor _ in range(10):\n    f()\n"})
    result = run_tracer(["prog.py", "--max-calls", "3", "-o", "t.json"], tmp_path)
    assert "3 calls recorded, 8 dropped" in result.stderr


def test_write_is_atomic_and_existing_trace_survives_a_kill(tmp_path):
    write_files(
        tmp_path,
        {
            "prog.py": "import time\nprint('ready', flush=True)\ntime.sleep(60)\n",
            "quick.py": "pass\n",
        },
    )
    (tmp_path / "t.json").write_text("previous trace")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "-q", "prog.py", "-o", "t.json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.0)  # the recording so far reaches the spool (every 0.2 s)
    proc.kill()
    proc.wait(timeout=30)
    assert (tmp_path / "t.json").read_text() == "previous trace"
    result = run_tracer(["-q", "quick.py", "-o", "t.json"], tmp_path)
    assert result.returncode == 0
    assert otel_tracer.load(tmp_path / "t.json").meta["exit_code"] == 0
    spool = f"t.{proc.pid}.spool"  # what the killed run had streamed (test_kill.py)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prog.py", "quick.py", spool, "t.json"]
    assert otel_tracer.load(tmp_path / spool).meta["truncated"] is True


def test_forked_children_do_not_touch_the_parents_trace(tmp_path, core):
    write_files(
        tmp_path,
        {
            "prog.py": """
                import os, multiprocessing
                def square(x):
                    return x * x
                def main():
                    pid = os.fork()
                    if pid == 0:
                        square(1)
                        print("child done", flush=True)
                        return "child"
                    os.waitpid(pid, 0)
                    ctx = multiprocessing.get_context("fork")
                    with ctx.Pool(2) as pool:
                        print(pool.map(square, range(4)), flush=True)
                    return "parent"
                main()
            """
        },
    )
    result = run_tracer(["-q", "--core", core, "prog.py", "-o", "t.json"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "child done" in result.stdout and "[0, 1, 4, 9]" in result.stdout
    trace = otel_tracer.load(tmp_path / "t.json")
    assert trace.meta["pid"] != 0
    mains = [i for i in range(len(trace)) if trace.function_of(i).qualname == "main"]
    assert [trace.value_of(i) for i in mains] == ["'parent'"]
    time.sleep(0.1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prog.py", "t.json"]


def test_stdout_of_the_program_is_unchanged(tmp_path):
    write_files(
        tmp_path,
        {"prog.py": "import sys\nfor i in range(3):\n    print(i)\nsys.stderr.write('err\\n')\n"},
    )
    traced = run_tracer(["-q", "prog.py", "-o", "t.json"], tmp_path)
    plain = run_python(["prog.py"], tmp_path)
    assert (traced.stdout, traced.stderr, traced.returncode) == (plain.stdout, plain.stderr, 0)


def test_console_script_and_python_dash_m_otel_tracer(tmp_path):
    write_files(tmp_path, {"prog.py": "pass\n"})
    result = run_python(["-m", "otel_tracer", "-q", "prog.py", "-o", "t.json"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert otel_tracer.load(tmp_path / "t.json").meta["exit_code"] == 0


def test_signal_handlers_raising_during_recording_keep_the_tree_sound(tmp_path, core):
    """A SIGALRM handler raising every 0.5 ms also lands inside the recording
    hook: the program must behave as untraced and the trace stay sound."""
    # The handler raises only while `armed` is set, which happens inside the try
    # alone, with no loop before it is unset: on 3.13 a loop's closing jump, where
    # handlers run, is outside the try it ends. So no Tick escapes, traced or not.
    write_files(
        tmp_path,
        {
            "prog.py": """
                import signal
                class Tick(Exception):
                    pass
                armed = False
                def on_alarm(signum, frame):
                    global armed
                    if armed:
                        armed = False
                        raise Tick()
                def leaf(i):
                    return i + 1
                def work(i):
                    return leaf(i) + leaf(i)
                def main():
                    global armed
                    signal.signal(signal.SIGALRM, on_alarm)
                    signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
                    done = ticks = 0
                    while done < 20000 or not ticks:
                        try:
                            armed = True
                            work(done)
                            armed = False
                        except Tick:
                            ticks += 1
                        else:
                            done += 1
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    print("ticks", ticks > 0)
                main()
            """
        },
    )
    result = run_tracer(["-q", "--core", core, "prog.py", "-o", "t.json"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ticks True"
    trace = otel_tracer.load(tmp_path / "t.json")
    if core == "python":
        # A Python-level hook cannot stop a handler from raising inside it; CPython
        # then removes the hook. The program must still run unchanged (checked
        # above) and the trace stay loadable; the C core must also keep the tree.
        return
    parents = {"main": {"<module>"}, "work": {"main"}, "leaf": {"work"}, "on_alarm": None}
    counts: dict[str, int] = {}
    for name, parent in tree(trace):
        counts[name] = counts.get(name, 0) + 1
        if parents.get(name) is not None:
            assert parent in parents[name], (name, parent)
    assert counts["work"] >= 20000
    assert counts["leaf"] >= 2 * 20000 - counts.get("on_alarm", 0)


def test_a_folding_failure_still_writes_the_trace(tmp_path, monkeypatch, capsys):
    import importlib

    from cli import main as cli_main

    annotate_module = importlib.import_module("patterns.annotate")  # the module, not the function

    write_files(tmp_path, {"prog.py": "def f():\n    return 1\nf()\nf()\nf()\n"})

    def broken(trace, options=None, deadline=None):
        raise RuntimeError("boom")

    monkeypatch.setattr(annotate_module, "annotate", broken)
    out = tmp_path / "t.json"
    assert cli_main.main(["-q", "--core", "python", str(tmp_path / "prog.py"), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "pattern folding failed (RuntimeError: boom)" in err
    assert len(otel_tracer.load(out)) == 4  # <module> and 3 calls of f
    assert "patterns" not in json.loads(out.read_text())
