"""Streaming a recording to disk while the program runs, and reading back what
a killed run left behind.

Every ``interval`` seconds a background thread moves the events the core
recorded so far into the spool file, with the table entries (functions,
strings, ...) they refer to, so the recording's memory stays bounded however
long the run. At the end the trace is built from the spool. When the process
is killed (SIGKILL, the OOM killer, a power cut), the spool stays: loading it
(``otel_tracer.load``, so every command) gives the calls streamed so far, with
the calls still open marked unfinished and ``metadata.truncated`` set.

File layout: ``MAGIC``, then records ``kind (1 byte) | size (8 bytes, little
endian) | payload``: one HEAD (JSON metadata and clock base), then pairs of
TABLES (JSON: the entries added since the previous one) and EVENTS (the raw
int64 words). Each record is one unbuffered append; a record cut short by a
kill is ignored by the reader.
"""

from __future__ import annotations

import copy
import os
import struct
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from otel_tracer import events
from otel_tracer.model import Function, Trace
from otel_tracer.mover import Mover, drain

if TYPE_CHECKING:
    from otel_tracer.recorder import Recorder

MAGIC = b"OTEL-TRACER-SPOOL 1\n"
SUFFIX = ".spool"
HEAD, TABLES, EVENTS = 1, 2, 3
_RECORD = struct.Struct("<BQ")
FORGET_AT = 1 << 18  # strings and argument tuples kept in memory before streamed ones go


class Spool(Mover):
    """Streams one recording into the file at ``path``."""

    def __init__(self, path: str | os.PathLike[str], meta: dict[str, Any]) -> None:
        super().__init__()
        self.path = os.fspath(path)
        self.meta = meta  # metadata known before the run (script, argv, ...)
        self._fd = -1  # the file, created at the first move that has events
        self._created = False
        self._head = b""  # MAGIC and the HEAD record
        self._kept: list[bytes] = []  # events that could not be written: kept in memory
        self._sizes = dict.fromkeys(("functions", "threads", "strings", "arg_tuples"), 0)
        self._sizes["exceptions"] = 0
        self._open_slots = 0  # exception slots below this one were filled at the last move
        self._read: tuple[dict, SpooledTables, np.ndarray] | None = None

    def start(self, recorder: Recorder) -> None:
        """Start moving ``recorder``'s events to the file (created once there are
        some: a process that records nothing leaves no file)."""
        # made here, not in the mover thread: an import there (the metadata needs
        # some) could hold an import lock at a fork and hang the child
        head = {"meta": {**recorder.run_meta(), **self.meta}, "clock": recorder.clock_base}
        self._head = MAGIC + _record(HEAD, orjson.dumps(head))
        super().start(recorder)

    def move(self) -> None:
        """Append the events recorded since the last move, after the table
        entries they refer to. Events that cannot be written stay in memory."""
        assert self._recorder is not None
        with self._lock:
            buffer = self._recorder.core.events
            if not len(buffer) or self._kept:
                return  # nothing new, or the disk already failed: keep recording in memory
            try:
                if self._fd < 0:
                    self._create()
            except OSError as error:
                self._keep_in_memory(error, b"")  # the events stay in the core's buffer
                return
            words = drain(buffer)
            head = _record(TABLES, orjson.dumps(self._new_table_entries()))
            try:
                _write_all(self._fd, head + _RECORD.pack(EVENTS, len(words)), words)
            except OSError as error:
                self._keep_in_memory(error, words)
                return
            self._forget_streamed_entries()

    def _forget_streamed_entries(self) -> None:
        """Past FORGET_AT strings and argument tuples in memory, let go of those
        in the file: always-new argument values (a step counter) then cost no
        memory beyond FORGET_AT, however long the run."""
        registry = self._recorder.registry  # type: ignore[union-attr]
        if len(registry.strings) + len(registry.arg_tuples) > FORGET_AT:
            core = self._recorder.core  # type: ignore[union-attr]
            registry.forget(self._sizes["strings"], self._sizes["arg_tuples"], core)

    def _create(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        self._created = True
        _write_all(self._fd, self._head)

    def _keep_in_memory(self, error: OSError, words: bytes) -> None:
        """The file cannot be written (disk full?): what is not in it stays in memory."""
        self._kept.append(words)
        print(
            f"otel-tracer: warning: cannot stream the recording to {self.path} "
            f"({error.strerror or error}); keeping it in memory",
            file=sys.stderr,
        )

    def close(self) -> None:
        super().close()
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def events(self) -> np.ndarray:
        chunks = []
        if self._created:
            chunks.append(self._file()[2])
        chunks += [np.frombuffer(words, dtype=np.int64) for words in self._kept]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)

    def tables(self) -> Any:
        """The registry, with the strings and argument tuples it let go of
        (``forget``) read back from the file."""
        registry = self._recorder.registry  # type: ignore[union-attr]
        if not registry.strings_base and not registry.args_base:
            return registry
        spooled = self._file()[1]
        whole = copy.copy(registry)
        whole.strings = spooled.strings[: registry.strings_base] + registry.strings
        whole.arg_tuples = spooled.arg_tuples[: registry.args_base] + registry.arg_tuples
        return whole

    def _file(self) -> tuple[dict, SpooledTables, np.ndarray]:
        """The file's records (read once, after ``close``)."""
        if self._read is None:
            self._read = read_spool_records(Path(self.path).read_bytes())
        return self._read

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _new_table_entries(self) -> dict[str, Any]:
        registry = self._recorder.registry  # type: ignore[union-attr]
        entries: dict[str, Any] = {}
        bases = {"strings": registry.strings_base, "arg_tuples": registry.args_base}
        for name, seen in self._sizes.items():
            table = getattr(registry, name)
            base = bases.get(name, 0)
            if base + len(table) > seen:
                new = table[seen - base :]
                if name == "functions":
                    new = [_function_fields(f) for f in new]
                entries[name] = new
                self._sizes[name] = seen + len(new)
        slots = registry.exception_slots
        if len(slots) > self._open_slots:
            entries["slots"] = [self._open_slots, slots[self._open_slots :]]
            filled = self._open_slots
            while filled < len(slots) and slots[filled] >= 0:
                filled += 1
            self._open_slots = filled
        return entries


def _write_all(fd: int, *pieces: bytes) -> None:
    """Append ``pieces`` (without joining them in memory)."""
    views = [memoryview(piece) for piece in pieces]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views.pop(0))
        if views:
            views[0] = views[0][written:]


def _record(kind: int, payload: bytes) -> bytes:
    return _RECORD.pack(kind, len(payload)) + payload


def _function_fields(function: Function) -> list[Any]:
    return [
        function.name,
        function.qualname,
        function.module,
        function.file,
        function.line,
        function.external,
        list(function.argnames),
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

    def add(self, entries: dict[str, Any]) -> None:
        self.functions += [Function(*f[:6], tuple(f[6])) for f in entries.get("functions", [])]
        self.threads += [tuple(t) for t in entries.get("threads", [])]
        self.strings += entries.get("strings", [])
        self.arg_tuples += [tuple(a) for a in entries.get("arg_tuples", [])]
        self.exceptions += [tuple(e) for e in entries.get("exceptions", [])]
        if "slots" in entries:
            start, values = entries["slots"]
            self.exception_slots[start:] = values


def read_spool_records(data: bytes) -> tuple[dict, SpooledTables, np.ndarray]:
    """The head, the tables and the event words of every complete record of the
    spool file ``data``."""
    if not data.startswith(MAGIC):
        raise ValueError("not a spool file")
    position, head, tables, chunks = len(MAGIC), None, SpooledTables(), []
    pending: dict[str, Any] | None = None
    while position + _RECORD.size <= len(data):
        kind, size = _RECORD.unpack_from(data, position)
        start, position = position + _RECORD.size, position + _RECORD.size + size
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
            raise ValueError(f"unknown record kind {kind} at byte {start - _RECORD.size}")
    if head is None:
        raise ValueError("the spool file has no header")
    words = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
    return head, tables, words[: len(words) // events.WORDS * events.WORDS]


def load_spool(data: bytes) -> Trace:
    """The trace a spool file (``data``) holds: what a killed run streamed
    before it died. Raises ValueError (and others) when the file is damaged."""
    from otel_tracer.build import build_trace

    head, tables, words = read_spool_records(data)
    times = words.reshape(-1, events.WORDS)[:, 1]
    clock_base = tuple(head["clock"])
    stop_time = int(times.max()) if len(times) else clock_base[0]
    meta = dict(head["meta"])
    meta["duration_ns"] = stop_time - clock_base[0]
    meta["truncated"] = True
    trace = build_trace(words, tables, meta, clock_base, stop_time)  # type: ignore[arg-type]
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
    ):
        if len(column) and (column.max() >= len(table) or column.min() < lowest):
            raise ValueError("an event refers to a table entry that is not in the file")
    if any(not -1 <= v < len(trace.strings) for t in trace.arg_tuples for v in t):
        raise ValueError("an argument refers to a string that is not in the file")
