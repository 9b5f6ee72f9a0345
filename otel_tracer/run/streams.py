"""The tracer's own output, whatever the program did to ``sys.stdout`` and
``sys.stderr``: status lines, warnings and the text view go to the streams the
tracer started with, not to the objects the program put in their place (its
log file), and a program that closed or dropped them (``sys.stderr.close()``,
``sys.stderr = None``) costs no trace: they then go to the process's file
descriptor 1 or 2 if it is still open, else nowhere."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from otel_tracer.trace.collection import collection_paused

_original: tuple[TextIO | None, TextIO | None] | None = None


def remember() -> None:
    """Note the streams as they are before the program starts."""
    global _original
    _original = (sys.stdout, sys.stderr)


@contextmanager
def tool_streams() -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` as the tracer started with, for its own
    output after the program ended; the program's are put back after."""
    programs = sys.stdout, sys.stderr
    originals = _original or programs
    sys.stdout = _usable(originals[0], 1)
    sys.stderr = _usable(originals[1], 2)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            if stream not in (*originals, *programs):
                _flush_quietly(stream)
        sys.stdout, sys.stderr = programs


def _usable(stream: TextIO | None, fd: int) -> TextIO:
    """``stream`` if it can still be written, else a stream on ``fd``, else a sink."""
    if stream is not None and not getattr(stream, "closed", True):
        return stream
    try:
        os.fstat(fd)
        return open(fd, "w", closefd=False, errors="backslashreplace")  # noqa: SIM115
    except OSError:
        return io.StringIO()


def _flush_quietly(stream: TextIO) -> None:
    try:
        stream.flush()
    except (OSError, ValueError):
        pass


def out_of_memory(command: str) -> int:
    """Say in one line that ``command`` ran out of memory (a trace too large for
    this machine); its files are written whole or not at all. Exit status 1."""
    print(
        f"{command}: error: not enough memory for this trace (no file was half-written)",
        file=sys.stderr,
    )
    return 1


def trace_command(command: str, body: Callable[[list[str] | None], int], argv) -> int:
    """``body(argv)``, the main of a command that reads a trace, with the garbage
    collector paused (``collection_paused``); running out of memory is one line
    and exit status 1 (``out_of_memory``)."""
    try:
        with collection_paused():
            return body(argv)
    except MemoryError:
        return out_of_memory(command)


def reader_gone() -> None:
    """The reader of stdout has gone (the view piped into ``head``): the rest of
    the output goes nowhere, so that no ``BrokenPipeError`` comes at exit either
    (as the Python documentation of SIGPIPE recommends)."""
    try:
        fd = sys.stdout.fileno() if sys.stdout is not None else 1
    except (OSError, ValueError):
        fd = 1
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
