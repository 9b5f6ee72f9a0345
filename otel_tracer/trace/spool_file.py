"""The spool file: what the recording streams to disk while the program runs
(written by otel_tracer/stream/spool.py), and reading it back, which is how
``otel_tracer.load`` opens what a killed run left behind.

Layout: ``MAGIC``, then records ``kind (1 byte) | size (8 bytes, little
endian) | payload``: one HEAD (JSON metadata and clock base), then pairs of
TABLES (JSON: the entries added since the previous one) and EVENTS (the raw
int64 words). A record cut short by a kill is ignored by the reader.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

import orjson

from otel_tracer.trace import events
from otel_tracer.trace.tables import Function

if TYPE_CHECKING:
    import mmap

    import numpy as np

    from otel_tracer.trace.model import Trace

MAGIC = b"OTEL-TRACER-SPOOL 1\n"
SUFFIX = ".spool"
HEAD, TABLES, EVENTS = 1, 2, 3
RECORD = struct.Struct("<BQ")


def record(kind: int, payload: bytes) -> bytes:
    """One record of ``kind`` around ``payload``."""
    return RECORD.pack(kind, len(payload)) + payload


def function_fields(function: Function) -> list[Any]:
    """A function as the JSON list a TABLES record holds."""
    return [
        function.name,
        function.qualname,
        function.module,
        function.file,
        function.line,
        function.external,
        list(function.argnames),
        function.finalizer,
    ]


class SpooledTables:
    """The tables of a spool file, shaped like the Registry ``build_trace`` reads."""

    def __init__(self) -> None:
        self.functions: list[Function] = []
        self.threads: list[tuple[int, int, str, int]] = []
        self.strings: list[str] = []
        self.arg_tuples: list[tuple[int, ...]] = []
        self.exceptions: list[tuple[str, str]] = []
        self.exception_slots: list[int] = []
        self.exception_lines: list[int] = []

    def add(self, entries: dict[str, Any]) -> None:
        self.functions += [
            Function(*f[:6], tuple(f[6]), bool(f[7]) if len(f) > 7 else False)
            for f in entries.get("functions", [])
        ]
        self.threads += [tuple(t) for t in entries.get("threads", [])]
        self.strings += entries.get("strings", [])
        self.arg_tuples += [tuple(a) for a in entries.get("arg_tuples", [])]
        self.exceptions += [tuple(e) for e in entries.get("exceptions", [])]
        if "slots" in entries:
            start, values = entries["slots"]
            self.exception_slots[start:] = values
        if "slot_lines" in entries:
            start, values = entries["slot_lines"]
            self.exception_lines[start:] = values


def read_spool_records(data: bytes | mmap.mmap) -> tuple[dict, SpooledTables, np.ndarray]:
    """The head, the tables and the event words of every complete record of the
    spool file ``data`` (its bytes, or the file mapped into memory). The words
    are copied once, into one array: nothing else keeps ``data``."""
    import numpy as np  # reading only: the writer (streaming) needs no numpy

    data = memoryview(data).cast("B")  # slices of it copy nothing
    if bytes(data[: len(MAGIC)]) != MAGIC:
        raise ValueError("not a spool file")
    position, head, tables, chunks = len(MAGIC), None, SpooledTables(), []
    pending: dict[str, Any] | None = None
    while position + RECORD.size <= len(data):
        kind, size = RECORD.unpack_from(data, position)
        start, position = position + RECORD.size, position + RECORD.size + size
        if position > len(data):
            break  # cut short by a kill
        payload = data[start:position]
        if kind == HEAD:
            head = orjson.loads(payload)
        elif kind == TABLES:
            pending = orjson.loads(payload)
        elif kind == EVENTS and pending is not None:
            tables.add(pending)  # tables count only with the events they came with
            chunks.append(np.frombuffer(payload, dtype=np.int64))
            pending = None
        else:
            raise ValueError(f"unknown record kind {kind} at byte {start - RECORD.size}")
    if head is None:
        raise ValueError("the spool file has no header")
    words = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
    return head, tables, words[: len(words) // events.WORDS * events.WORDS]


def load_spool(data: bytes) -> Trace:
    """The trace a spool file (``data``) holds: what a killed run streamed
    before it died. Raises ValueError (and others) when the file is damaged."""
    from otel_tracer.trace.build import build_trace

    head, tables, words = read_spool_records(data)
    times = words.reshape(-1, events.WORDS)[:, 1]
    clock_base = tuple(head["clock"])
    stop_time = int(times.max()) if len(times) else clock_base[0]
    meta = dict(head["meta"])
    meta["duration_ns"] = stop_time - clock_base[0]
    meta["truncated"] = True
    trace = build_trace(words, tables, meta, clock_base, stop_time)
    trace.meta["call_count"] = len(trace)
    _check_references(trace)
    return trace


def _check_references(trace: Trace) -> None:
    """Every call's function, thread, arguments and value exist."""
    c = trace.calls
    for column, table, lowest in (  # -1: no arguments, value or exception
        (c.function, trace.functions, 0),
        (c.thread, trace.threads, 0),
        (c.args, trace.arg_tuples, -1),
        (c.value, trace.strings, -1),
        (c.exception, trace.exceptions, -1),
        (c.task, trace.strings, -1),
    ):
        if len(column) and (column.max() >= len(table) or column.min() < lowest):
            raise ValueError("an event refers to a table entry that is not in the file")
    if any(not -1 <= v < len(trace.strings) for t in trace.arg_tuples for v in t):
        raise ValueError("an argument refers to a string that is not in the file")
