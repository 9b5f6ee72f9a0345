"""The tracer never damages the user's files and never says data is kept where
it is not: a program that closes every descriptor and opens its own files, a
full disk, an unwritable -o, a relative -o after the program changed directory,
a followed child killed by SIGKILL, temporary directories. Real programs,
compared with their untraced run."""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import subprocess
import sys

import pytest
from conftest import CORES, run_python, run_tracer, write_files

import otel_tracer

CLOSERANGE = """
    import os
    import time


    def work(i):
        return i


    def main():
        for i in range(50):
            work(i)
        time.sleep(0.5)  # the tracer's spool and its mover exist by now
        os.closerange(3, 1024)  # as a daemon does
        fds = [os.open(f"own{i}.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC) for i in range(8)]
        for i in range(200):
            work(i)
        time.sleep(0.7)  # a few moves of the recording meanwhile
        for i, fd in enumerate(fds):
            os.write(fd, f"file {i}\\n".encode())
            os.close(fd)
        print("done")


    main()
"""


def files_of(directory) -> dict[str, bytes]:
    return {
        name: (directory / name).read_bytes()
        for name in sorted(os.listdir(directory))
        if name.startswith("own")
    }


@pytest.mark.parametrize("core", CORES)
def test_a_program_that_closes_every_descriptor_keeps_its_files(tmp_path, core):
    untraced_dir, traced_dir = tmp_path / "untraced", tmp_path / "traced"
    for directory in (untraced_dir, traced_dir):
        write_files(directory, {"prog.py": CLOSERANGE})
    untraced = run_python(["prog.py"], untraced_dir)
    traced = run_tracer(["--core", core, "-o", "trace.json", "prog.py"], traced_dir)
    assert traced.returncode == untraced.returncode == 0, traced.stderr
    assert traced.stdout == untraced.stdout == "done\n"
    assert files_of(traced_dir) == files_of(untraced_dir)  # nothing of the tracer's in them
    assert "Errno 9" not in traced.stderr and "Traceback" not in traced.stderr
    said = [line for line in traced.stderr.splitlines() if "descriptor" in line]
    assert len(said) == 1 and "opened again" in said[0], traced.stderr
    trace = otel_tracer.load(traced_dir / "trace.json")
    works = [r for r in range(len(trace)) if trace.function_of(r).name == "work"]
    assert len(works) == 250
    assert not [name for name in os.listdir(traced_dir) if name.endswith(".spool")]


MANY_CALLS = """
    def step(i, text):
        return i


    for i in range(30000):
        step(i, "value-%d" % i)
    print("done")
"""


def claims_are_true(stderr: str, calls: int) -> list[str]:
    """Every place a line says the recording or trace is kept: it exists and
    holds all ``calls`` calls of ``step``. Returns the places."""
    places = re.findall(r"(?:is kept in|recording is in) (\S+)", stderr)
    for place in places:
        assert os.path.exists(place), f"{place} claimed but absent:\n{stderr}"
        trace = otel_tracer.load(place)
        steps = sum(trace.function_of(r).name == "step" for r in range(len(trace)))
        assert steps == calls, f"{place} holds {steps} of {calls} calls:\n{stderr}"
    return places


@contextlib.contextmanager
def full_filesystem(directory):
    """A 256 KiB tmpfs at ``directory`` (root only); skips where it cannot be made."""
    directory.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(directory)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def test_a_full_disk_never_claims_what_it_did_not_keep(tmp_path):
    write_files(tmp_path, {"prog.py": MANY_CALLS})
    untraced = run_python(["prog.py"], tmp_path)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    with full_filesystem(tmp_path / "full"):
        traced = run_tracer(
            ["-o", "full/trace.json", "prog.py"], tmp_path, env={"TMPDIR": str(tmpdir)}
        )
        assert traced.returncode == untraced.returncode == 0, traced.stderr
        assert traced.stdout == untraced.stdout
        assert "No space left on device" in traced.stderr, traced.stderr
        assert claims_are_true(traced.stderr, 30000), traced.stderr  # the rescued copy
        assert "Traceback" not in traced.stderr


def test_an_unwritable_output_never_claims_what_it_did_not_keep(tmp_path):
    write_files(tmp_path, {"prog.py": MANY_CALLS})
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    traced = run_tracer(["-o", "/proc/x.json", "prog.py"], tmp_path, env={"TMPDIR": str(tmpdir)})
    assert traced.stdout == "done\n"
    if traced.returncode == 2:  # refused before the run where /proc is seen as unwritable
        assert traced.stderr.count("\n") == 1, traced.stderr
        return
    assert traced.returncode == 0, traced.stderr
    assert "cannot write /proc/x.json" in traced.stderr
    assert claims_are_true(traced.stderr, 30000), traced.stderr
    assert "Traceback" not in traced.stderr


CHDIR = """
    import os


    def work(i):
        return i


    os.makedirs("sub", exist_ok=True)
    os.chdir("sub")
    with open("out.txt", "w") as out:
        out.write(str(sum(work(i) for i in range(5))))
"""


def test_a_relative_output_is_where_the_command_ran(tmp_path):
    untraced_dir, traced_dir = tmp_path / "untraced", tmp_path / "traced"
    for directory in (untraced_dir, traced_dir):
        write_files(directory, {"prog.py": CHDIR})
    untraced = run_python(["prog.py"], untraced_dir)
    traced = run_tracer(["-o", "trace.json", "-o", "trace.txt", "prog.py"], traced_dir)
    assert traced.returncode == untraced.returncode == 0, traced.stderr
    assert sorted(os.listdir(traced_dir / "sub")) == sorted(os.listdir(untraced_dir / "sub"))
    assert (traced_dir / "sub/out.txt").read_text() == (untraced_dir / "sub/out.txt").read_text()
    assert sorted(os.listdir(traced_dir)) == ["prog.py", "sub", "trace.json", "trace.txt"]
    assert "trace written to trace.json " in traced.stderr
    assert len(otel_tracer.load(traced_dir / "trace.json")) >= 6


KILLED_CHILD = """
    import os
    import signal
    import subprocess
    import sys
    import time


    def child_work(i):
        return i


    def parent_work():
        return 1


    if sys.argv[1:] == ["child"]:
        for i in range(20):
            child_work(i)
        time.sleep(0.6)  # streamed to its spool by now
        os.kill(os.getpid(), signal.SIGKILL)
    else:
        parent_work()
        code = subprocess.run([sys.executable, "prog.py", "child"]).returncode
        print("child ended with", code)
"""


@pytest.mark.parametrize("output", ["trace.json", None])
def test_a_killed_child_is_merged_and_nothing_is_left_behind(tmp_path, output):
    write_files(tmp_path, {"prog.py": KILLED_CHILD})
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    untraced = run_python(["prog.py"], tmp_path)
    args = ["-o", output] if output else []
    traced = run_tracer([*args, "prog.py"], tmp_path, env={"TMPDIR": str(tmpdir)})
    assert traced.returncode == untraced.returncode == 0, traced.stderr
    assert untraced.stdout == "child ended with -9\n"
    assert traced.stdout.startswith(untraced.stdout)
    said = [line for line in traced.stderr.splitlines() if "without writing its trace" in line]
    assert len(said) == 1, traced.stderr
    assert os.listdir(tmpdir) == []  # the temporary directory is gone
    assert sorted(os.listdir(tmp_path)) == sorted(["prog.py", "tmp", *args[1:]])
    if output:
        trace = otel_tracer.load(tmp_path / output)
        assert len(trace.meta["processes"]) == 2
        names = {trace.function_of(r).name for r in range(len(trace))}
        assert {"child_work", "parent_work"} <= names
    else:
        assert "child_work" in traced.stdout


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the monitoring core exists here")
def test_an_unavailable_core_leaves_no_temporary_directory(tmp_path):
    write_files(tmp_path, {"prog.py": "print(1)\n"})
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    result = run_tracer(["--core", "monitoring", "prog.py"], tmp_path, env={"TMPDIR": str(tmpdir)})
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert os.listdir(tmpdir) == []


REMOVES_ITS_DIRECTORY = """
    import glob
    import os
    import time


    def work(i):
        return i


    for i in range(100):
        work(i)
    time.sleep(0.6)  # streamed by now
    for name in glob.glob("*.spool"):  # a program that cleans its directory
        os.remove(name)
    with open("trace.4194305.spool", "w") as own:  # and its own file of that name
        own.write("mine")
    for i in range(100):
        work(i)
"""


def test_a_program_that_removes_the_spool_loses_no_call(tmp_path):
    write_files(tmp_path, {"prog.py": REMOVES_ITS_DIRECTORY})
    traced = run_tracer(["-q", "-o", "trace.json", "prog.py"], tmp_path)
    assert traced.returncode == 0 and traced.stderr == "", traced.stderr
    trace = otel_tracer.load(tmp_path / "trace.json")
    assert sum(trace.function_of(r).name == "work" for r in range(len(trace))) == 200
    assert (tmp_path / "trace.4194305.spool").read_text() == "mine"


OUT_OF_MEMORY = """
import sys

from otel_tracer.record.recorder import Recorder


def build(self, **meta):
    raise MemoryError  # as numpy does when a 10^8-call trace does not fit in memory


Recorder.build = build
from cli.main import main

sys.argv = ["otel-tracer", "-o", "trace.json", "prog.py"]
sys.exit(main())
"""


def test_running_out_of_memory_while_building_keeps_the_recording(tmp_path):
    """Building the trace of a very long run can need more memory than there is:
    one line says so and where the recording is (it converts), no traceback,
    and the run keeps the program's exit status."""
    write_files(tmp_path, {"prog.py": MANY_CALLS, "oom.py": OUT_OF_MEMORY})
    traced = run_python(["oom.py"], tmp_path)
    assert traced.returncode == 0 and traced.stdout == "done\n", traced.stderr
    assert "error: not enough memory to build the trace" in traced.stderr
    assert "Traceback" not in traced.stderr
    assert claims_are_true(traced.stderr, 30000)  # the spool, read back whole
    assert not (tmp_path / "trace.json").exists()


@pytest.mark.parametrize(
    ("module", "arguments"),
    [
        ("exporters.convert", ["t.json", "--to", "json", "-o", "out.json"]),
        ("exporters.merge_cli", ["t.json", "t.json", "-o", "merged.json"]),
        ("exporters.viewer.cli", ["t.json", "-o", "page.html"]),
        ("patterns.cli", ["t.json", "--stats"]),
    ],
)
def test_a_command_out_of_memory_says_so_in_one_line(
    tmp_path, monkeypatch, capsys, module, arguments
):
    """Reading a trace too large for the machine's memory: one line, exit 1."""
    command = importlib.import_module(module)

    def load(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(command, "load_noting_truncation", load)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.json").write_text("{}")
    assert command.main(arguments) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "error: not enough memory" in error, error
