"""The background thread that takes a recording's events out of the core while
the program runs, so that the recording's memory stays bounded: into a file
(``spool.Spool``) or into a ring of the last calls (``ring.Ring``).

The thread is a bare ``_thread`` thread: invisible to ``threading.enumerate()``
and never recorded. It is stopped before each fork of the process, so that the
program's ``os.fork`` sees only the threads it made itself (Python 3.12+ warns
when a process with threads forks), and started again after it in the parent.
From 3.13 Python looks for threads after the fork handlers have run in the
parent: there ``os.fork`` and ``os.forkpty`` start the threads again once they
return (``_fork_then_resume``).
"""

from __future__ import annotations

import _thread
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Protocol

from otel_tracer.trace.signal_masks import program_signals_blocked

if TYPE_CHECKING:
    import numpy as np

INTERVAL = 0.2  # seconds between two moves


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


class Recording(Protocol):
    """What a mover takes events from: a recorder (otel_tracer/record/recorder.py).
    Declared here so that this layer never imports the one above it."""

    core: Any  # ``events``: the buffer the mover drains; ``forget`` (the C core)
    registry: Any  # the interning tables the events refer to

    @property
    def clock_base(self) -> tuple[int, int]: ...

    def run_meta(self) -> dict[str, Any]: ...


class Mover:
    """Moves a recording's events out of its core every ``INTERVAL`` seconds, in
    a thread of its own, once ``start_thread`` is called. Subclasses say where to
    (``move``) and give every moved event back at the end (``events``)."""

    def __init__(self) -> None:
        self._recorder: Recording | None = None
        self._lock = _thread.allocate_lock()  # one move at a time
        # released to end the thread: a lock, not a pipe, so that a program that
        # closes every descriptor (os.closerange) cannot take it from the thread
        self._stop = _thread.allocate_lock()
        self._thread_done = _thread.allocate_lock()  # held while the thread runs

    def start(self, recorder: Recording) -> None:
        """Start taking ``recorder``'s events, in the thread."""
        self._recorder = recorder
        self.start_thread()

    def move(self) -> None:
        """Take the events recorded since the last move."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop the thread and take the last events (after the core stopped)."""
        self.stop_thread()
        if self._recorder is not None:
            self.move()

    def events(self) -> np.ndarray:
        """Every event word moved out of the core, in order (after ``close``)."""
        raise NotImplementedError

    def tables(self) -> Any:
        """The tables the moved events refer to (after ``close``)."""
        assert self._recorder is not None
        return self._recorder.registry

    def remove(self) -> None:
        """Delete what the mover left on disk, once the trace is written."""

    def start_thread(self) -> None:
        """Start the thread, and wait until it runs: a thread that first took the
        GIL later, when the program releases it (a write, a sleep), would make a
        signal that comes meanwhile wait for the GIL; on Python 3.12+ its handler
        would then run inside the sys.monitoring callback that follows the call,
        where the handler's calls are not recorded."""
        self._stop.acquire(blocking=False)
        self._thread_done.acquire()
        running = _thread.allocate_lock()  # released by the thread once it runs
        running.acquire()
        try:
            with program_signals_blocked():  # the thread inherits the mask
                _thread.start_new_thread(self._run, (running,))
        except BaseException:
            self._thread_done.release()
            raise
        _MOVING.add(self)
        running.acquire()

    def stop_thread(self) -> None:
        """End the thread (the events stay in the core until the next move)."""
        _MOVING.discard(self)
        if self._stop.locked():
            self._stop.release()
            if self._thread_done.acquire(timeout=10):  # a thread that hangs is left behind
                self._thread_done.release()

    def _run(self, running: _thread.LockType) -> None:
        running.release()
        try:
            while not self._stop.acquire(timeout=INTERVAL):
                self.move()
            self._stop.release()
        finally:
            self._thread_done.release()


_MOVING: set[Mover] = set()  # movers whose thread runs in this process
_PAUSED: list[Mover] = []


def _pause_movers() -> None:
    """Before a fork: no mover thread (see the module's doc)."""
    threads = _thread_count()
    _PAUSED[:] = list(_MOVING)
    for mover in _PAUSED:
        mover.stop_thread()
    deadline = time.monotonic() + 0.05
    while threads and _thread_count() > threads - len(_PAUSED) and time.monotonic() < deadline:
        time.sleep(0.0005)  # the OS thread ends just after its function returned


_FORKING_IN_WRAPPER = False  # os.fork of _fork_then_resume runs: it resumes the movers


def _resume_movers() -> None:
    if _FORKING_IN_WRAPPER:
        return
    for mover in _PAUSED:
        mover.start_thread()
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


def _fork_then_resume(fork: Any) -> Any:
    """``fork`` (``os.fork``, ``os.forkpty``) that starts the movers again after
    Python counted the threads of the parent (3.13+: after the fork handlers)."""

    def forked(*args: Any) -> Any:
        global _FORKING_IN_WRAPPER
        _FORKING_IN_WRAPPER = True
        try:
            return fork(*args)
        finally:
            _FORKING_IN_WRAPPER = False
            _resume_movers()  # in a child, nothing to resume

    forked.__name__ = fork.__name__
    forked.__qualname__ = fork.__qualname__
    forked.__doc__ = fork.__doc__
    forked.__module__ = fork.__module__
    return forked


if sys.version_info >= (3, 13):
    for _name in ("fork", "forkpty"):
        if hasattr(os, _name):
            setattr(os, _name, _fork_then_resume(getattr(os, _name)))
