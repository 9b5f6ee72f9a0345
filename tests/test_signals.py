"""Killed runs keep their trace: SIGTERM while the program runs writes every
output, then the process still dies of SIGTERM, as it would untraced."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from conftest import REPO, write_files

import otel_tracer

PROGRAM = """
    import threading
    import time

    def step(i):
        time.sleep(0.001)
        return i

    def loop(n, announce=False):
        for i in range(n):
            if announce and i == 3:
                print("ready", flush=True)  # inside the loop, so SIGTERM lands in it
            step(i)

    threading.Thread(target=loop, args=(10**6,), daemon=True).start()
    threading.Thread(target=loop, args=(10**6,), name="busy").start()  # never joined
    loop(5)
    loop(10**6, announce=True)
"""


def start(tmp_path, *args: str, program: str = PROGRAM) -> subprocess.Popen[str]:
    """The program (traced when ``args`` are given), once it printed ``ready``."""
    write_files(tmp_path, {"prog.py": program})
    command = ["-m", "cli.main", "-q", "prog.py", *args] if args else ["prog.py"]
    proc = subprocess.Popen(
        [sys.executable, *command],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_sigterm_writes_every_output_then_dies_of_sigterm(tmp_path):
    untraced = start(tmp_path)
    untraced.send_signal(signal.SIGTERM)
    untraced_out, untraced_err = untraced.communicate(timeout=60)
    proc = start(tmp_path, "-o", "t.json", "-o", "t.pftrace", "-o", "t.otlp.json")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == untraced.returncode == -signal.SIGTERM
    assert (out, err) == (untraced_out, untraced_err) == ("", "")
    trace = otel_tracer.load(tmp_path / "t.json")
    assert trace.meta["exit_code"] == 128 + signal.SIGTERM
    assert trace.meta["uncaught_exception"] is None
    threads = {t.name: i for i, t in enumerate(trace.threads)}
    assert {"MainThread", "busy"} <= set(threads) and len(threads) == 3
    for index in threads.values():  # every thread's calls are there
        assert (trace.calls.thread == index).sum() > 3
    main = [
        row
        for row in range(len(trace))
        if trace.calls.thread[row] == threads["MainThread"]
        and trace.function_of(row).name in ("loop", "<module>")
    ]
    # <module>, then loop(5), then the loop that was running when SIGTERM came
    assert [trace.exception_of(r) for r in main] == [
        ("otel_tracer.runner.Terminated", "SIGTERM"),
        None,
        ("otel_tracer.runner.Terminated", "SIGTERM"),
    ]
    assert (tmp_path / "t.pftrace").stat().st_size > 0
    assert (tmp_path / "t.otlp.json").stat().st_size > 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_program_handling_sigterm_keeps_its_handler(tmp_path):
    program = """
        import signal
        import sys
        import time

        def bye(signum, frame):
            print("cleaning up", flush=True)
            sys.exit(7)

        signal.signal(signal.SIGTERM, bye)
        print("ready", flush=True)
        while True:
            time.sleep(0.01)
    """
    proc = start(tmp_path, "-o", "t.json", program=program)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 7 and out == "cleaning up\n"
    trace = otel_tracer.load(tmp_path / "t.json")
    assert trace.meta["exit_code"] == 7
    assert any(trace.function_of(r).name == "bye" for r in range(len(trace)))
