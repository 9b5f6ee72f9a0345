"""Blocking the program's signals while the tool starts threads.

A thread takes its signal mask from the thread that starts it. A process-wide
signal (SIGALRM, SIGTERM, SIGINT, SIGUSR1, ...) that the kernel hands to one of
the tool's threads, or to numpy's BLAS threads, does not interrupt a blocking
call of the program's main thread (a ``multiprocessing`` worker waiting in
``SimpleQueue.get`` waits for ever, a ``time.sleep`` a SIGALRM should cut short
sleeps on). Threads started with these signals blocked never take them, as an
untraced program has no such threads.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

# Faults a thread raises itself: never blocked.
_SYNCHRONOUS = {"SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGABRT", "SIGSYS"}


@contextmanager
def program_signals_blocked() -> Iterator[None]:
    """Every signal a program may handle blocked in this thread meanwhile: the
    threads started here never take one."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    asynchronous = {s for s in signal.valid_signals() if getattr(s, "name", "") not in _SYNCHRONOUS}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, asynchronous)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
