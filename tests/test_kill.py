"""A hard kill (SIGKILL, the OOM killer) during a run: the recording streamed so
far stays in TRACE.<pid>.spool, every command loads it as a truncated trace,
and no file is ever left half-written under a trace's final name."""

from __future__ import annotations

import io
import os
import signal
import time

import pytest
from conftest import run_python, start_traced_group, write_files

import otel_tracer
from exporters.otlp_json import otlp_json_lines
from exporters.outputs import render_text
from exporters.viewer.data import build_data
from exporters.viewer.site import fold_for_viewer
from otel_tracer.stream.mover import INTERVAL
from otel_tracer.trace.format import TraceFormatError
from otel_tracer.trace.model import UNFINISHED

PROGRAM = """
    import multiprocessing as mp
    import sys
    import time


    def step(i):
        time.sleep(0.001)
        return i


    def loop(n):
        for i in range(n):
            if i == 20:
                print("ready", flush=True)
            step(i)


    if __name__ == "__main__":
        if sys.argv[1:] == ["workers"]:
            pool = mp.get_context("fork").Pool(2)
            pool.map_async(loop, [10**6, 10**6])
        loop(10**6)
"""


def killed_run(tmp_path, *args: str) -> int:
    """Trace the program, SIGKILL its whole process group once it has been
    streaming for a while; returns the tracer's pid."""
    write_files(tmp_path, {"prog.py": PROGRAM})
    proc = start_traced_group(tmp_path, *args)
    time.sleep(4 * INTERVAL)  # a few moves to disk
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return proc.pid


def test_a_killed_run_leaves_a_loadable_truncated_trace(tmp_path):
    pid = killed_run(tmp_path)
    spool = f"trace.{pid}.spool"
    assert sorted(os.listdir(tmp_path)) == ["prog.py", spool]  # no trace.json, no temp file

    trace = otel_tracer.load(tmp_path / spool)
    assert trace.meta["truncated"] is True and trace.meta["pid"] == pid
    steps = [r for r in range(len(trace)) if trace.function_of(r).qualname == "step"]
    assert len(steps) >= 20
    loops = [r for r in range(len(trace)) if trace.function_of(r).qualname == "loop"]
    assert len(loops) == 1 and trace.calls.flags[loops[0]] & UNFINISHED

    shown = run_python(["-m", "patterns", spool], tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr.startswith(f"patterns: warning: {spool} is truncated")
    assert len(shown.stderr.splitlines()) == 2  # the warning, then the summary line
    assert "repetitions" in shown.stdout

    converted = run_python(["-m", "exporters", spool, "--to", "json", "-o", "t.json"], tmp_path)
    assert converted.returncode == 0, converted.stderr
    recovered = otel_tracer.load(tmp_path / "t.json")
    assert len(recovered) == len(trace) and recovered.meta["truncated"] is True


def test_a_killed_multi_process_run_is_recovered_by_merging_its_spools(tmp_path):
    pid = killed_run(tmp_path, "workers")
    spools = sorted(name for name in os.listdir(tmp_path) if name.endswith(".spool"))
    assert f"trace.{pid}.spool" in spools and len(spools) == 3  # the program and 2 workers
    merged = run_python(["-m", "exporters", "merge", *spools, "-o", "all.json"], tmp_path)
    assert merged.returncode == 0, merged.stderr
    assert len(merged.stderr.splitlines()) == 4  # a truncation warning per spool, the summary
    trace = otel_tracer.load(tmp_path / "all.json")
    processes = trace.meta["processes"]
    assert [p["pid"] for p in processes][0] == pid and len(processes) == 3
    for process in processes:
        steps = [
            r
            for r in range(len(trace))
            if trace.function_of(r).qualname == "step"
            and trace.threads[int(trace.calls.thread[r])].pid == process["pid"]
        ]
        assert steps, f"no calls of process {process['pid']}"


@pytest.fixture(scope="module")
def spool_bytes(tmp_path_factory) -> bytes:
    tmp_path = tmp_path_factory.mktemp("spool")
    pid = killed_run(tmp_path)
    return (tmp_path / f"trace.{pid}.spool").read_bytes()


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.3, 0.5, 0.77, 0.999])
def test_a_spool_cut_anywhere_loads_what_it_holds(tmp_path, spool_bytes, fraction):
    cut = tmp_path / "cut.spool"
    cut.write_bytes(spool_bytes[: max(1, int(len(spool_bytes) * fraction))])
    try:
        trace = otel_tracer.load(cut)
    except TraceFormatError as error:  # cut inside the header: nothing to recover
        assert str(error).startswith(f"{cut}: ") and len(str(error).splitlines()) == 1
        assert fraction < 0.05
    else:
        assert trace.meta["truncated"] is True


@pytest.mark.parametrize("offset", [0.2, 0.5, 0.9])
def test_a_corrupted_spool_gives_one_line(tmp_path, spool_bytes, offset):
    damaged = bytearray(spool_bytes)
    position = int(len(damaged) * offset)
    damaged[position : position + 64] = b"\xff" * 64
    path = tmp_path / "bad.spool"
    path.write_bytes(bytes(damaged))
    for command in (["-m", "patterns"], ["-m", "exporters.viewer", "-o", "v.html"]):
        result = run_python([*command, str(path)], tmp_path)
        assert result.returncode in (0, 2)
        assert "Traceback" not in result.stderr
        if result.returncode == 2:
            assert len(result.stderr.splitlines()) == 1, result.stderr


def test_a_spool_damaged_anywhere_loads_or_is_refused(tmp_path, spool_bytes):
    """64 bytes overwritten at every 1% of the file: the loader refuses the file
    (TraceFormatError) or what it loads can be viewed, folded and exported."""
    for percent in range(1, 100):
        damaged = bytearray(spool_bytes)
        position = len(damaged) * percent // 100
        damaged[position : position + 64] = b"\xff" * 64
        path = tmp_path / f"bad{percent}.spool"
        path.write_bytes(bytes(damaged))
        try:
            trace = otel_tracer.load(path)
        except TraceFormatError:
            continue
        folding = fold_for_viewer(trace)
        build_data(trace, folding)
        render_text(trace, folding, io.StringIO())
        b"".join(otlp_json_lines(trace))


ENDINGS = """
    import os
    import sys
    import threading


    def f(i):
        return i


    def boom():
        f(1)
        raise RuntimeError("in thread")


    thread = threading.Thread(target=boom)
    thread.start()
    thread.join()
    print("main continues", f(2), flush=True)
    if sys.argv[1:] == ["os-exit"]:
        os._exit(5)
"""


@pytest.mark.parametrize("ending", ["normal", "os-exit"])
def test_thread_exceptions_and_os_exit(tmp_path, ending):
    write_files(tmp_path, {"prog.py": ENDINGS})
    plain = run_python(["prog.py", ending], tmp_path)
    traced = run_python(["-m", "cli.main", "-q", "-o", "t.json", "prog.py", ending], tmp_path)
    assert (traced.returncode, traced.stdout) == (plain.returncode, plain.stdout)
    assert traced.stderr.startswith(plain.stderr)  # the thread's traceback, as Python prints it
    if ending == "normal":
        assert traced.stderr == plain.stderr
        trace = otel_tracer.load(tmp_path / "t.json")
    else:  # os._exit skips every exit path: the whole recording is in the spool
        (spool,) = [name for name in os.listdir(tmp_path) if name.endswith(".spool")]
        assert traced.stderr[len(plain.stderr) :] == (
            f"otel-tracer: warning: the program called os._exit(5): no trace was written; "
            f"the recording is in {tmp_path / spool}\n"
        )
        trace = otel_tracer.load(tmp_path / spool)
    (boom,) = [r for r in range(len(trace)) if trace.function_of(r).qualname == "boom"]
    assert trace.exception_of(boom) == ("RuntimeError", "in thread")
    assert [trace.value_of(r) for r in range(len(trace)) if trace.function_of(r).name == "f"] == [
        "1",
        "2",
    ]
