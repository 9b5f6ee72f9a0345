"""Writing the trace while the program's daemon threads stay frozen.

Untraced, the program's daemon threads stop for good when the interpreter
exits after the main thread. Traced, the main thread then builds and writes the
trace, and they would go on running (and printing) meanwhile. So when some are
alive, the trace is written by a forked child of the process, which holds only
the main thread, while the process itself waits for it holding the GIL (a
``waitpid`` through ``ctypes.PyDLL``, which does not release it): no daemon
thread runs again, and the process then ends at once with the program's status.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from typing import TextIO

_exit = os._exit  # the real one, whatever following put in its place


def daemon_threads_alive() -> bool:
    """Whether a daemon thread other than this one still runs (and a fork can
    freeze it: POSIX)."""
    current = threading.current_thread()
    return hasattr(os, "fork") and any(
        t.daemon and t.is_alive() and t is not current for t in threading.enumerate()
    )


def finish_then_exit(finish: Callable[[], None], exit_code: int, die_of: int | None) -> None:
    """Run ``finish`` in a forked child while this process waits holding the
    GIL, then end this process: killed by ``die_of`` when given, else with
    ``exit_code``. Never returns."""
    _flush()
    libc = ctypes.PyDLL(None, use_errno=True)  # calls keep the GIL
    sys.setswitchinterval(100.0)  # nor is it handed over before the wait
    with warnings.catch_warnings():  # 3.12+ warns of a fork with threads: we know
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        code = 0
        try:
            sys.stdout, sys.stderr = _fresh(sys.stdout), _fresh(sys.stderr)
            finish()
        except BaseException:  # as an uncaught exception would: shown, status 1
            sys.excepthook(*sys.exc_info())
            code = 1
        finally:
            _flush()
        _exit(code)
    status = ctypes.c_int()  # the parent: wait, GIL held
    while libc.waitpid(pid, ctypes.byref(status), 0) == -1:
        if ctypes.get_errno() != errno.EINTR:
            break
    if os.WIFSIGNALED(status.value):  # a Ctrl-C while writing: the child said so
        die_of = os.WTERMSIG(status.value)
    if die_of is not None:
        signal.signal(die_of, signal.SIG_DFL)
        os.kill(os.getpid(), die_of)
    _exit(exit_code)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # closed or gone: nothing to flush
            stream.flush()


def _fresh(stream: TextIO) -> TextIO:
    """A new text stream on ``stream``'s descriptor: a daemon thread may have
    held the old one's lock at the fork, and no thread would release it here."""
    try:
        return open(  # noqa: SIM115 - the process ends with it
            stream.fileno(),
            "w",
            encoding=stream.encoding,
            errors=stream.errors,
            closefd=False,
            buffering=1 if stream.line_buffering else -1,
        )
    except (AttributeError, OSError, ValueError):
        return stream
