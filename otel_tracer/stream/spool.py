"""Streaming a recording to disk while the program runs (the file's layout and
its reader are in otel_tracer/trace/spool_file.py).

Every ``interval`` seconds a background thread moves the events the core
recorded so far into the spool file, with the table entries (functions,
strings, ...) they refer to, so the recording's memory stays bounded however
long the run. At the end the trace is built from the spool. When the process
is killed (SIGKILL, the OOM killer, a power cut), the spool stays: loading it
(``otel_tracer.load``, so every command) gives the calls streamed so far, with
the calls still open marked unfinished and ``metadata.truncated`` set.

Each record is one unbuffered append; a record cut short by a kill is ignored
by the reader.
"""

from __future__ import annotations

import copy
import errno
import mmap
import os
import sys
from typing import TYPE_CHECKING, Any

from otel_tracer.stream.mover import Mover, Recording, drain
from otel_tracer.trace.spool_file import (
    EVENTS,
    HEAD,
    MAGIC,
    RECORD,
    TABLES,
    SpooledTables,
    function_fields,
    read_spool_records,
    record,
)
from otel_tracer.trace.utf8 import json_bytes

if TYPE_CHECKING:
    import numpy as np

FORGET_AT = 1 << 18  # strings and argument tuples kept in memory before streamed ones go


class Spool(Mover):
    """Streams one recording into the file at ``path``."""

    def __init__(self, path: str | os.PathLike[str], meta: dict[str, Any]) -> None:
        super().__init__()
        self.path = os.fspath(path)
        self.meta = meta  # metadata known before the run (script, argv, ...)
        self._fd = -1  # the file, created at the first move that has events
        self._identity = (0, 0)  # its (st_dev, st_ino): the descriptor is checked against it
        self._created = False
        self._reopened = False  # the program took the descriptor: said once
        self._head = b""  # MAGIC and the HEAD record
        self._kept: list[bytes] = []  # events that could not be written: kept in memory
        self._sizes = dict.fromkeys(("functions", "threads", "strings", "arg_tuples"), 0)
        self._sizes["exceptions"] = 0
        self._open_slots = 0  # exception slots below this one were filled at the last move
        self._slot_lines = 0  # the lines of the exception slots below this one are written
        self._read: tuple[dict, SpooledTables, np.ndarray] | None = None

    def start(self, recorder: Recording) -> None:
        """Start moving ``recorder``'s events to the file (created once there are
        some: a process that records nothing leaves no file)."""
        # made here, not in the mover thread: an import there (the metadata needs
        # some) could hold an import lock at a fork and hang the child
        head = {"meta": {**recorder.run_meta(), **self.meta}, "clock": recorder.clock_base}
        self._head = MAGIC + record(HEAD, json_bytes(head))
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
                elif not self._owned():
                    self._reopen()
            except OSError as error:
                self._keep_in_memory(error, b"")  # the events stay in the core's buffer
                return
            words = drain(buffer)
            head = record(TABLES, json_bytes(self._new_table_entries()))
            try:
                _write_all(self._fd, head + RECORD.pack(EVENTS, len(words)), words)
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
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        os.fchmod(self._fd, 0o600)  # an older file of that name kept its mode
        info = os.fstat(self._fd)
        self._identity = (info.st_dev, info.st_ino)
        self._created = True
        _write_all(self._fd, self._head)

    def _owned(self) -> bool:
        """Whether the descriptor is still this file's: a program that closes
        every descriptor (``os.closerange``) and opens its own files gets its
        number, and writing to it would write into the program's file."""
        try:
            info = os.fstat(self._fd)
        except OSError:
            return False
        return (info.st_dev, info.st_ino) == self._identity

    def _reopen(self) -> None:
        """Open the file again by its path (never closing the descriptor, now
        the program's), after saying so once; raises OSError when the file is
        no longer there."""
        self._fd = -1
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != self._identity:
            os.close(fd)
            raise OSError(errno.ENOENT, "the file was removed or replaced")
        self._fd = fd
        if not self._reopened:
            self._reopened = True
            print(
                f"otel-tracer: warning: the program closed or reused the descriptor of "
                f"{self.path}; the recording goes on in that file, opened again",
                file=sys.stderr,
            )

    def on_disk(self) -> bool:
        """Whether the file holds the whole recording so far (what a message
        that says the recording is kept there needs)."""
        try:
            info = os.stat(self.path)
        except OSError:
            return False
        return self._created and not self._kept and (info.st_dev, info.st_ino) == self._identity

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
            if self._fd >= 0 and self._owned():
                if not self.on_disk():  # the program removed the file: read it back now
                    self._read = read_spool_records(_mapped(self._fd))
                os.close(self._fd)
            self._fd = -1

    def events(self) -> np.ndarray:
        """Every event word, read back from the file; handed over, not kept here
        (at 10^8 calls they take 4.8 GB): a second call gives only the events
        the file could not take."""
        import numpy as np  # at the end: streaming itself needs no numpy

        chunks = []
        if self._created:
            head, tables, words = self._file()
            self._read = (head, tables, words[:0])
            chunks.append(words)
        chunks += [np.frombuffer(words, dtype=np.int64) for words in self._kept]
        if len(chunks) == 1:
            return chunks[0]  # no copy: at 10^8 calls the words take 4.8 GB
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
            with open(self.path, "rb") as file:
                self._read = read_spool_records(_mapped(file.fileno()))
        return self._read

    def remove(self) -> None:
        """Delete the file, if the file at its path is still this spool's."""
        try:
            info = os.stat(self.path)
            if (info.st_dev, info.st_ino) == self._identity:
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
                    new = [function_fields(f) for f in new]
                entries[name] = new
                self._sizes[name] = seen + len(new)
        slots = registry.exception_slots
        if len(slots) > self._open_slots:
            entries["slots"] = [self._open_slots, slots[self._open_slots :]]
            filled = self._open_slots
            while filled < len(slots) and slots[filled] >= 0:
                filled += 1
            self._open_slots = filled
        lines = registry.exception_lines
        if len(lines) > self._slot_lines:
            entries["slot_lines"] = [self._slot_lines, lines[self._slot_lines :]]
            self._slot_lines += len(entries["slot_lines"][1])
        return entries


def _mapped(fd: int) -> mmap.mmap | bytes:
    """The whole file open at ``fd``, mapped into memory (read from the page
    cache as it is used, never copied whole), or its bytes when it cannot be
    mapped (empty, or on a file system that does not map files)."""
    size = os.fstat(fd).st_size
    if size:
        try:
            return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            pass
    chunks, offset = [], 0
    while offset < size:
        chunk = os.pread(fd, min(size - offset, 1 << 26), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, *pieces: bytes) -> None:
    """Append ``pieces`` (without joining them in memory)."""
    views = [memoryview(piece) for piece in pieces]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views.pop(0))
        if views:
            views[0] = views[0][written:]
