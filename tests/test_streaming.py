"""Streaming to the spool keeps the recorder's memory bounded: past
``spool.FORGET_AT`` strings and argument tuples, the ones already in the file
are let go of, and the trace is the same as one recorded in memory."""

from __future__ import annotations

import sys

from conftest import write_files

import otel_tracer
from otel_tracer.record.options import RecordOptions
from otel_tracer.record.recorder import Recorder
from otel_tracer.record.scope import Scope
from otel_tracer.stream import spool
from otel_tracer.stream.spool import Spool

WORK = """
    def leaf(i, name):
        return f"{name}-{i}"


    def step(i):
        return leaf(i + 5000, "a") + leaf(i % 7, "b")  # ints past the C cores' array cache


    def epoch(e, n):
        return [step(e * n + i) for i in range(n)]
"""


def signature(trace: otel_tracer.Trace, row: int) -> tuple:
    return (
        trace.function_of(row).qualname,
        tuple(sorted(trace.args_of(row).items())),
        trace.value_of(row),
        int(trace.calls.depth[row]),
        int(trace.calls.parent[row]),
    )


def record(tmp_path, core: str, streamed: bool) -> tuple[otel_tracer.Trace, list[int]]:
    """Five epochs of 200 steps, each with new argument values; the spool (when
    ``streamed``) moves after each epoch. Returns the trace and the number of
    strings and argument tuples in memory before each move."""
    write_files(tmp_path, {"work.py": WORK})
    mover = Spool(tmp_path / "run.spool", {}) if streamed else None
    recorder = Recorder(Scope([str(tmp_path)]), RecordOptions(), core, None, mover)
    sizes = []
    sys.path.insert(0, str(tmp_path))
    try:
        import work

        recorder.start()
        for e in range(5):
            work.epoch(e, 200)
            if mover is not None:
                sizes.append(len(recorder.registry.strings) + len(recorder.registry.arg_tuples))
                mover.move()
        recorder.stop()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("work", None)
    return recorder.build(), sizes


def test_streamed_tables_are_let_go_of_and_the_trace_is_the_same(tmp_path, core, monkeypatch):
    monkeypatch.setattr(spool, "FORGET_AT", 300)
    in_memory, _ = record(tmp_path / "memory", core, streamed=False)
    streamed, sizes = record(tmp_path / "streamed", core, streamed=True)
    # each epoch interns 600 new strings and 400 argument tuples: past 300, the
    # memory holds only what was interned since the last move
    assert len(in_memory.strings) > 3000 and len(in_memory.arg_tuples) > 2000
    assert max(sizes) < 1300
    assert len(streamed) == len(in_memory) > 3000
    assert [signature(streamed, r) for r in range(len(streamed))] == [
        signature(in_memory, r) for r in range(len(in_memory))
    ]
    # the spool file alone holds the same trace (what a killed run leaves)
    from_file = otel_tracer.load(tmp_path / "streamed" / "run.spool")
    assert [signature(from_file, r) for r in range(len(from_file))] == [
        signature(in_memory, r) for r in range(len(in_memory))
    ]


def test_below_the_limit_the_tables_stay(tmp_path, core, monkeypatch):
    monkeypatch.setattr(spool, "FORGET_AT", 10**9)
    streamed, sizes = record(tmp_path, core, streamed=True)
    assert sizes == sorted(sizes)  # they only grow
    assert sizes[-1] == len(streamed.strings) + len(streamed.arg_tuples)


def test_the_spool_is_mapped_or_else_read(tmp_path, monkeypatch):
    """The final build maps the spool (never a copy of the whole file in memory);
    where the file system cannot map it, it reads it instead."""
    import mmap

    path = tmp_path / "file"
    path.write_bytes(b"spool bytes" * 1000)
    with open(path, "rb") as file:
        mapped = spool._mapped(file.fileno())
        assert isinstance(mapped, mmap.mmap) and mapped[:] == path.read_bytes()

        def refuse(*args, **kwargs):
            raise OSError("no mmap here")

        monkeypatch.setattr(spool.mmap, "mmap", refuse)
        assert spool._mapped(file.fileno()) == path.read_bytes()
