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

import _thread
import os
import select
import struct
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from otel_tracer import events
from otel_tracer.model import Function, Trace

if TYPE_CHECKING:
    from otel_tracer.recorder import Recorder

MAGIC = b"OTEL-TRACER-SPOOL 1\n"
SUFFIX = ".spool"
HEAD, TABLES, EVENTS = 1, 2, 3
_RECORD = struct.Struct("<BQ")
INTERVAL = 0.2  # seconds between two moves of the events to disk
# Not yet on Python 3.12+: there, with sys.monitoring, a run with the mover thread
# once missed the call of a signal handler; everything moves to the file at the end.
STREAMING = sys.version_info < (3, 12)


def drain(buffer: Any) -> bytes:
    """The words recorded so far, removed from the core's buffer (an ``array('q')``
    or the C core's buffer). Words appended meanwhile by other threads stay."""
    take = getattr(buffer, "take", None)
    if take is not None:
        return take()
    count = len(buffer)
    words = buffer[:count].tobytes()
    del buffer[:count]
    return words


class Spool:
    """Streams one recording into the file at ``path``."""

    def __init__(self, path: str | os.PathLike[str], meta: dict[str, Any]) -> None:
        self.path = os.fspath(path)
        self.meta = meta  # metadata known before the run (script, argv, ...)
        self._recorder: Recorder | None = None
        self._fd = -1  # the file, created at the first move that has events
        self._created = False
        self._head = b""  # MAGIC and the HEAD record
        self._kept: list[bytes] = []  # events that could not be written: kept in memory
        self._sizes = dict.fromkeys(("functions", "threads", "strings", "arg_tuples"), 0)
        self._sizes["exceptions"] = 0
        self._open_slots = 0  # exception slots below this one were filled at the last move
        self._lock = _thread.allocate_lock()  # one move at a time
        self._wake = (-1, -1)  # a pipe: a byte written to it ends the thread
        self._thread_done = _thread.allocate_lock()  # held while the thread runs

    def start(self, recorder: Recorder) -> None:
        """Start moving ``recorder``'s events to the file (created once there are
        some: a process that records nothing leaves no file)."""
        self._recorder = recorder
        # made here, not in the mover thread: an import there (the metadata needs
        # some) could hold an import lock at a fork and hang the child
        head = {"meta": {**recorder.run_meta(), **self.meta}, "clock": recorder.clock_base}
        self._head = MAGIC + _record(HEAD, orjson.dumps(head))
        if STREAMING:
            self._start_thread()

    def _start_thread(self) -> None:
        self._wake = os.pipe()
        self._thread_done.acquire()
        try:
            _thread.start_new_thread(self._run, (self._wake[0],))
        except BaseException:
            self._thread_done.release()
            raise
        _MOVING.add(self)

    def _stop_thread(self) -> None:
        """End the mover thread (the events stay in the core until the next move)."""
        _MOVING.discard(self)
        if self._wake[1] >= 0:
            os.write(self._wake[1], b"x")
            if self._thread_done.acquire(timeout=10):  # a thread that hangs is left behind
                self._thread_done.release()
            for fd in self._wake:
                os.close(fd)
            self._wake = (-1, -1)

    def _run(self, wake: int) -> None:
        try:
            while not select.select([wake], [], [], INTERVAL)[0]:
                self.move()
        finally:
            self._thread_done.release()

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
        """Stop the thread and move the last events (after the core stopped)."""
        self._stop_thread()
        if self._recorder is not None:
            self.move()
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def events(self) -> np.ndarray:
        """Every event word moved out of the core, in order (after ``close``)."""
        chunks = []
        if self._created:
            chunks.append(read_spool_records(Path(self.path).read_bytes())[2])
        chunks += [np.frombuffer(words, dtype=np.int64) for words in self._kept]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)

    def remove(self) -> None:
        """Delete the file (once the trace is written elsewhere)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _new_table_entries(self) -> dict[str, Any]:
        registry = self._recorder.registry  # type: ignore[union-attr]
        entries: dict[str, Any] = {}
        for name, seen in self._sizes.items():
            table = getattr(registry, name)
            if len(table) > seen:
                new = table[seen:]
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


_MOVING: set[Spool] = set()  # spools whose mover thread runs in this process
_PAUSED: list[Spool] = []


def _pause_movers() -> None:
    """Before a fork: no mover thread, so that the program's ``os.fork`` sees the
    threads it made itself (Python 3.12+ warns when a process with threads forks)."""
    threads = _thread_count()
    _PAUSED[:] = list(_MOVING)
    for spool in _PAUSED:
        spool._stop_thread()
    deadline = time.monotonic() + 0.05
    while threads and _thread_count() > threads - len(_PAUSED) and time.monotonic() < deadline:
        time.sleep(0.0005)  # the OS thread ends just after its function returned


def _resume_movers() -> None:
    for spool in _PAUSED:
        spool._start_thread()
    _PAUSED.clear()


def _forget_movers() -> None:
    """In a forked child: the parent's mover threads do not exist here."""
    _MOVING.clear()
    _PAUSED.clear()


def _thread_count() -> int:
    """This process's OS threads (0 when unknown)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_pause_movers, after_in_parent=_resume_movers, after_in_child=_forget_movers
    )


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
    for column, table in (
        (c.function, trace.functions),
        (c.thread, trace.threads),
        (c.args, trace.arg_tuples),
        (c.value, trace.strings),
        (c.exception, trace.exceptions),
    ):
        if len(column) and (column.max() >= len(table) or column.min() < -1):
            raise ValueError("an event refers to a table entry that is not in the file")
    if any(v >= len(trace.strings) for t in trace.arg_tuples for v in t):
        raise ValueError("an argument refers to a string that is not in the file")
