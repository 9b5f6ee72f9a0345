"""Ctrl-C and SIGTERM while the tracer starts wait for the program.

Untraced, a Ctrl-C that comes while Python starts interrupts the program (a
``KeyboardInterrupt`` in its first line, exit by SIGINT). Traced, it would
otherwise hit the tracer's own start-up: a traceback of the tracer's frames,
or a C extension interrupted half-initialised. So the command line holds these
signals from its first import, and ``release`` lets them through once
recording has started, right before the program's first line.
"""

from __future__ import annotations

import signal

_HELD = {signal.SIGINT, signal.SIGTERM}
_mask: set[signal.Signals] | None = None  # the mask to restore, while held


def hold() -> None:
    """Hold Ctrl-C and SIGTERM (pending, not lost) until ``release``."""
    global _mask
    if _mask is None and hasattr(signal, "pthread_sigmask"):
        _mask = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)


def release() -> None:
    """Let held signals through; one that came meanwhile is delivered now."""
    global _mask
    if _mask is not None:
        mask, _mask = _mask, None
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
