"""``--ring-buffer N``: only the last N calls are kept, with the calls they ran in,
and the older ones are let go while the program runs."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import run_tracer, write_files

import otel_tracer
from otel_tracer.stream import ring
from otel_tracer.stream.mover import INTERVAL
from otel_tracer.stream.ring import Ring

WORK = """
    import time


    def leaf(i):
        return i * 2


    def step(i):
        return leaf(i) + leaf(i + 1)


    def epoch(e, n, pause):
        total = sum(step(i) for i in range(n))
        if pause:
            time.sleep(pause)
        return total


    def train(epochs, n, pause=0.0):
        return [epoch(e, n, pause) for e in range(epochs)]
"""


def signature(trace: otel_tracer.Trace, row: int) -> tuple:
    """What a call is, whichever recording it is in."""
    calls = trace.calls
    return (
        trace.function_of(row).qualname,
        tuple(sorted(trace.args_of(row).items())),
        trace.value_of(row),
        int(calls.depth[row]),
    )


def ancestors(trace: otel_tracer.Trace, row: int) -> list[int]:
    """The rows of the calls ``row`` ran in, outermost first."""
    found = []
    parent = int(trace.calls.parent[row])
    while parent >= 0:
        found.append(parent)
        parent = int(trace.calls.parent[parent])
    return found[::-1]


def record(tmp_path, core: str, ring: int | None, pause: float = 0.0, epochs: int = 6):
    write_files(tmp_path, {"work.py": WORK})
    sys.path.insert(0, str(tmp_path))
    try:
        import work

        with otel_tracer.Tracer(scope=[tmp_path], core=core, ring_buffer=ring) as tracer:
            work.train(epochs, 300, pause)
            discarded_while_running = tracer.recorder.ring.discarded if ring else 0
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("work", None)
    return tracer.trace, discarded_while_running


@pytest.mark.parametrize("piece", [ring.PIECE, 7])  # events let go at a time
@pytest.mark.parametrize("size", [1, 7, 1000, 5000])
def test_keeps_the_last_calls_with_their_ancestors(tmp_path, core, size, piece, monkeypatch):
    monkeypatch.setattr(ring, "PIECE", piece)
    full, _ = record(tmp_path, core, None)
    kept, _ = record(tmp_path, core, size)
    last = list(range(len(full) - size, len(full)))
    expected = [signature(full, r) for r in ancestors(full, last[0]) + last]
    assert [signature(kept, r) for r in range(len(kept))] == expected
    assert kept.meta["ring_buffer"] == size
    assert kept.meta["discarded_calls"] == len(full) - len(kept)
    assert kept.meta["call_count"] == len(kept)
    # every kept call has the parent it had in the full recording
    assert all(kept.calls.parent[r] < r for r in range(len(kept)))


def test_a_ring_larger_than_the_run_keeps_everything(tmp_path, core):
    full, _ = record(tmp_path, core, None)
    kept, _ = record(tmp_path, core, len(full) + 1)
    assert [signature(kept, r) for r in range(len(kept))] == [
        signature(full, r) for r in range(len(full))
    ]
    assert kept.meta["discarded_calls"] == 0


def test_older_calls_are_let_go_while_the_program_runs(tmp_path, core):
    """Pauses between epochs let the mover run: calls are discarded before the
    recording ends, so memory holds about the ring's size, not the whole run."""
    kept, discarded_while_running = record(tmp_path, core, 500, pause=2 * INTERVAL, epochs=5)
    assert discarded_while_running > 0
    assert kept.meta["discarded_calls"] >= discarded_while_running
    assert len(kept) - 500 <= 6  # their ancestors: train, <listcomp>, epoch, sum, <genexpr>, step


def test_ring_keeps_threads_apart():
    """Chunks of two threads' interleaved events: each thread's running calls
    are carried over, and closing events match their own thread's calls."""
    from otel_tracer.trace import events

    def ev(kind, thread, ref=0, t=0):
        return [events.head(kind, thread, ref), t, -1]

    class Buffer:  # a core's buffer, holding one chunk
        def __init__(self, chunk: list[list[int]]) -> None:
            self.chunk = chunk

        def take(self) -> bytes:
            return np.asarray(self.chunk, dtype=np.int64).tobytes()

    ring = Ring(2)
    ring._recorder = SimpleNamespace(core=SimpleNamespace(events=None))
    chunks = [
        [ev(events.CALL, 0, 1), ev(events.CALL, 1, 2), ev(events.CALL, 0, 3)],
        [ev(events.RETURN, 0), ev(events.CALL, 1, 4), ev(events.RETURN, 1)],
        [ev(events.CALL, 0, 5), ev(events.RETURN, 0), ev(events.CALL, 0, 6)],
    ]
    for chunk in chunks:
        ring._recorder.core.events = Buffer(chunk)
        ring.move()
    kept = ring.events().reshape(-1, events.WORDS)
    refs = [(int(h) & events.KIND_MASK, int(h) >> events.REF_SHIFT) for h in kept[:, 0]]
    # carried: thread 0's call 1 and thread 1's call 2 (still running); then the
    # last two calls (5 and 6) with the events after the first of them
    assert refs == [
        (events.CALL, 1),
        (events.CALL, 2),
        (events.CALL, 5),
        (events.RETURN, 0),
        (events.CALL, 6),
    ]
    assert ring.discarded == 2  # calls 3 and 4


THREADED = """
    import threading
    import time
    from work import train

    threads = [threading.Thread(target=train, args=(4, 200, 0.1)) for _ in range(2)]
    for t in threads:
        t.start()
    train(4, 200, 0.1)
    for t in threads:
        t.join()
    print("done")
"""


def test_cli_ring_buffer(tmp_path):
    write_files(tmp_path, {"work.py": WORK, "prog.py": THREADED})
    result = run_tracer(
        ["prog.py", "--ring-buffer", "300", "-o", "t.json", "-o", "t.txt"], tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    assert "older calls discarded (--ring-buffer)" in result.stderr
    meta = json.loads((tmp_path / "t.json").read_text())["metadata"]
    assert meta["ring_buffer"] == 300 and meta["discarded_calls"] > 0
    trace = otel_tracer.load(tmp_path / "t.json")
    # and the calls they ran in: at most 7 per thread (<module> or Thread.run, train,
    # <listcomp>, epoch, sum, <genexpr>, step)
    assert 300 <= len(trace) <= 300 + 3 * 7
    assert len(trace) + meta["discarded_calls"] > 3 * 4 * 200 * 3  # step, leaf and resumptions
    text = (tmp_path / "t.txt").read_text()
    assert text.startswith("(ring buffer: the last 300 calls of each process")
    assert not list(tmp_path.glob("*.spool"))  # nothing streamed to disk


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_cli_refuses_a_bad_size(tmp_path, value):
    write_files(tmp_path, {"prog.py": "print('ran')\n"})
    result = run_tracer(["prog.py", "--ring-buffer", value], tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[0] == (
        f"otel-tracer: error: option --ring-buffer needs an integer >= 1, got '{value}'"
    )


def test_followed_processes_keep_their_own_ring(tmp_path):
    write_files(
        tmp_path,
        {
            "work.py": WORK,
            "prog.py": """
                import multiprocessing as mp
                from work import train

                if __name__ == "__main__":
                    with mp.get_context("spawn").Pool(1) as pool:
                        pool.apply(train, (3, 100))
                    train(3, 100)
            """,
        },
    )
    result = run_tracer(["prog.py", "--ring-buffer", "50", "-q", "-o", "t.json"], tmp_path)
    assert result.returncode == 0, result.stderr
    trace = otel_tracer.load(tmp_path / "t.json")
    processes = trace.meta["processes"]
    assert len(processes) == 2
    assert all(p["discarded_calls"] > 0 for p in processes)
    assert trace.meta["discarded_calls"] == sum(p["discarded_calls"] for p in processes)
    per_pid = {p["pid"]: 0 for p in processes}
    for row in range(len(trace)):
        per_pid[trace.threads[int(trace.calls.thread[row])].pid] += 1
    assert all(50 <= count <= 60 for count in per_pid.values()), per_pid
