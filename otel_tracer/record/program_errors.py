"""Exceptions that come out of the tool's own Python code but are the program's.

A program's signal handler runs wherever the interpreter next checks for
signals, which may be inside one of the cores' Python-level calls (a new string
or code object registered). What it raises (a ``Timeout`` of a SIGALRM-based
timeout, a ``KeyboardInterrupt``) is the program's, and the program must get it
as untraced: without the tool's frames in its traceback.
"""

from __future__ import annotations

import os
import signal
from types import CodeType, TracebackType

from otel_tracer.record.scope import tool_dirs

_TOOL_DIRS = tuple(d + os.sep for d in tool_dirs())


def program_exception(error: BaseException) -> BaseException | None:
    """``error`` raised by a core's Python-level call, made the program's (the
    tool's frames unlinked from its traceback) when the program should get it:
    anything but an ``Exception``, or an ``Exception`` that a signal handler of
    the program raised. None: the tool's own failure, which the core forgets."""
    if isinstance(error, Exception) and not from_signal_handler(error):
        return None
    drop_tool_frames(error)
    return error


def drop_tool_frames(error: BaseException | None) -> None:
    """Unlink this tool's frames from the tracebacks of ``error`` and of the
    exceptions it was raised from or during."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        kept = [tb for tb in _entries(error.__traceback__) if not _is_tool(tb.tb_frame.f_code)]
        for tb, after in zip(kept, [*kept[1:], None], strict=True):
            tb.tb_next = after
        error.__traceback__ = kept[0] if kept else None
        drop_tool_frames(error.__cause__)
        error = error.__context__


def from_signal_handler(error: BaseException) -> bool:
    """Whether a frame of ``error``'s traceback runs a Python signal handler
    the program installed: the program's exception, wherever the handler ran
    (at any instruction, or in ``repr()``/``str()``, which run pending handlers)."""
    handlers = {_code_of(signal.getsignal(signum)) for signum in signal.valid_signals()}
    handlers.discard(None)
    return any(
        tb.tb_frame.f_code in handlers and not _is_tool(tb.tb_frame.f_code)
        for tb in _entries(error.__traceback__)
    )


def _code_of(handler: object) -> CodeType | None:
    function = getattr(handler, "__func__", handler)  # a bound method's function
    code = getattr(function, "__code__", None)
    if code is None and callable(handler) and not isinstance(handler, type):
        call = type(handler).__dict__.get("__call__")  # a callable object's class
        code = getattr(call, "__code__", None)
    return code if isinstance(code, CodeType) else None


def _is_tool(code: CodeType) -> bool:
    return code.co_filename.startswith(_TOOL_DIRS)


def _entries(tb: TracebackType | None) -> list[TracebackType]:
    entries = []
    while tb is not None:
        entries.append(tb)
        tb = tb.tb_next
    return entries
