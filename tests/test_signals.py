"""Killed runs keep their trace: SIGTERM while the program runs writes every
output, then the process still dies of SIGTERM, as it would untraced."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
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
        ("otel_tracer.run.runner.Terminated", "SIGTERM"),
        None,
        ("otel_tracer.run.runner.Terminated", "SIGTERM"),
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
        while True:  # no call: on 3.12+ a handler run right after a C call is
            pass  # run inside the sys.monitoring callback, unrecorded (README)
    """
    proc = start(tmp_path, "-o", "t.json", program=program)
    time.sleep(0.1)  # in the loop, past the write of "ready"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 7 and out == "cleaning up\n"
    trace = otel_tracer.load(tmp_path / "t.json")
    assert trace.meta["exit_code"] == 7
    assert any(trace.function_of(r).name == "bye" for r in range(len(trace)))


MISSED = """
    import multiprocessing
    import signal
    import sys
    import threading
    import time

    def step(i):
        return i * 2

    def wait_for_sigterm():
        for i in range(5):
            step(i)
        lock = threading.Lock()
        lock.acquire()

        def take_sigterm():  # in this thread: the main thread is not woken
            time.sleep(0.3)
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
            time.sleep(600)
            lock.release()

        threading.Thread(target=take_sigterm, daemon=True).start()
        lock.acquire()
        print("not killed", flush=True)

    if __name__ == "__main__":
        if sys.argv[1:] == ["child"]:
            child = multiprocessing.get_context("spawn").Process(target=wait_for_sigterm)
            child.start()
            child.join()
            print("child exit code", child.exitcode, flush=True)
        else:
            print("waiting", flush=True)
            wait_for_sigterm()
"""


@pytest.mark.parametrize("where", ["tracer", "child"])
def test_sigterm_whose_handler_would_wait_is_sent_again(tmp_path, where):
    """SIGTERM taken while the main thread blocks in a lock (here: by another
    thread; in a Pool worker: just before ``sem_wait``) kills the process at
    once untraced. The tracer's Python handler would only run when the lock is
    released (10 minutes later), so the tracer sends SIGTERM to the main thread
    again until its handler has run."""
    write_files(tmp_path, {"prog.py": MISSED})
    args = ["child"] if where == "child" else []
    env = dict(os.environ, PYTHONPATH=str(REPO))
    untraced = subprocess.run(
        [sys.executable, "prog.py", *args], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    traced = subprocess.run(
        [sys.executable, "-m", "cli.main", "-q", "-o", "t.json", "prog.py", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert (traced.stdout, traced.stderr) == (untraced.stdout, untraced.stderr)
    assert traced.returncode == untraced.returncode
    assert untraced.returncode == (0 if where == "child" else -signal.SIGTERM)
    trace = otel_tracer.load(tmp_path / "t.json")
    steps = [r for r in range(len(trace)) if trace.function_of(r).name == "step"]
    assert len(steps) == 5
    waiting = next(r for r in range(len(trace)) if trace.function_of(r).name == "wait_for_sigterm")
    exception = "otel_tracer.run.runner.Terminated" if where == "tracer" else None
    assert (trace.exception_of(waiting) or (None,))[0] == exception
