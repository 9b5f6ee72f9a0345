"""Ctrl-C around the traced program: during the tracer's start-up it waits for
the program's first line (otel_tracer/run/interrupts.py), so the program is
interrupted as untraced and no traceback shows the tracer; a second Ctrl-C
while the trace is being built keeps the recording and says where."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CORES, REPO, write_files

PROGRAM = """
    import time

    def work():
        time.sleep(0.4)

    work()
    print("done")
"""
# Python's own start-up interrupted, before any of the command's code runs:
# while initialising, or importing runpy for ``-m`` (pymain_run_module).
PYTHON_START_UP_INTERRUPTED = re.compile(
    r"Fatal Python error: init_|^Could not import runpy module", re.M
)
TRIES = int(os.environ.get("OTEL_TRACER_INTERRUPT_TRIES", "20"))
# Run before cli/main.py holds Ctrl-C: the interpreter's start-up and the first
# few milliseconds of the command (importing the module that holds it).
START_FILES = {"cli/__init__.py", "otel_tracer/__init__.py", "otel_tracer/version.py"}
START_FILES |= {"otel_tracer/run/__init__.py", "otel_tracer/run/interrupts.py"}
HOLD_LINE = next(
    number
    for number, line in enumerate((REPO / "cli/main.py").read_text().splitlines(), 1)
    if line.strip() == "interrupts.hold()"
)


def before_the_hold(err: str) -> bool:
    """Whether the traceback in ``err`` ended before the command held Ctrl-C."""
    frames = re.findall(r'File "([^"]+)", line (\d+)', err)
    ours = [(os.path.relpath(path, REPO), int(line)) for path, line in frames if path[0] == "/"]
    ours = [(path, line) for path, line in ours if not path.startswith("..")]
    return bool(ours) and all(
        path in START_FILES or (path == "cli/main.py" and line <= HOLD_LINE) for path, line in ours
    )


def traced(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "-q", *args, "-o", "trace.json", "prog.py"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_ctrl_c_during_start_up_interrupts_the_program_not_the_tracer(
    tmp_path: Path, core: str
) -> None:
    write_files(tmp_path, {"prog.py": PROGRAM})
    rng = random.Random(1)
    for attempt in range(TRIES):
        proc = traced(tmp_path, "--core", core)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        context = f"try {attempt}: exit {proc.returncode}\n{err}"
        if PYTHON_START_UP_INTERRUPTED.search(err) or before_the_hold(err):
            continue  # Python's own start-up was interrupted, as it would be untraced
        # killed by SIGINT, as Python ends after an uncaught KeyboardInterrupt (or
        # done, when the signal came after the program's end on a slow machine)
        assert proc.returncode in (-signal.SIGINT, 0), context
        assert "otel_tracer" not in err and "cli/main.py" not in err, context
        if proc.returncode == -signal.SIGINT and err and "interrupted while writing" not in err:
            # (no output at all: killed before Python installed its SIGINT handler)
            assert "KeyboardInterrupt" in err, context


def test_a_second_ctrl_c_while_building_keeps_the_recording(tmp_path: Path) -> None:
    """The program prints, then is interrupted; the trace takes a while to build
    (many calls), and a second Ctrl-C comes meanwhile."""
    write_files(
        tmp_path,
        {
            "prog.py": """
                import sys

                def f(i):
                    return i

                for i in range(300_000):
                    f(i)
                print("ready", flush=True)
                sys.stdin.readline()
            """
        },
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "-q", "-o", "trace.json", "prog.py"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)  # ends the program: the tracer starts building
    time.sleep(0.15)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if "interrupted while writing" not in err:
        pytest.skip("the trace was written before the second Ctrl-C (fast machine)")
    assert proc.returncode == -signal.SIGINT
    spool = next(tmp_path.glob("trace.*.spool"))
    assert f"the recording is kept in {spool}" in err
    assert "otel_tracer/" not in err.replace(str(spool), "")
    assert not (tmp_path / "trace.json").exists()
    converted = subprocess.run(
        [sys.executable, "-m", "exporters", str(spool), "--to", "json", "-o", "t.json"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
    )
    assert converted.returncode == 0, converted.stderr
    import otel_tracer

    assert len(otel_tracer.load(tmp_path / "t.json")) >= 300_000


INTERRUPTED_IN_A_HOOK = """
    import os
    import signal
    import threading
    import time


    def f(value):
        return value


    def interrupt():
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)


    threading.Thread(target=interrupt).start()
    i = 0
    while True:  # most of the time is spent in the tracer's hooks
        f({"n": i, "s": str(i)})
        f(float(i))
        i += 1
"""


@pytest.mark.parametrize("core", CORES)
def test_a_ctrl_c_that_lands_in_a_hook_shows_only_the_programs_frames(
    tmp_path: Path, core: str
) -> None:
    """The KeyboardInterrupt a hook's Python code was running when it came
    reaches the program without the tracer's frames in its traceback (before:
    registry.py frames in about half the runs)."""
    write_files(tmp_path, {"prog.py": INTERRUPTED_IN_A_HOOK})
    for _ in range(4):
        proc = traced(tmp_path, "--core", core)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGINT, err
        assert err.startswith("Traceback (most recent call last):\n"), err
        assert err.rstrip().endswith("KeyboardInterrupt"), err
        frames = re.findall(r'File "([^"]+)"', err)
        assert frames and all(path.endswith("prog.py") for path in frames), err
