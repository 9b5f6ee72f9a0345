"""The tracer's SIGTERM handlers, with SIGTERM sent again to a main thread
that missed its handler (``_sigretry.c`` says when that happens).

Where ``_sigretry`` is built (Linux), the handler is hidden from the program:
it is the Python handler of ``RELAY``, a real-time signal, and a C handler in
front of SIGTERM passes SIGTERM on to it, so ``signal.getsignal(SIGTERM)`` (and
what ``signal.signal`` returns) stay ``SIG_DFL``, as untraced. Elsewhere it is
SIGTERM's own Python handler.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType

try:
    from otel_tracer.run import _sigretry
except ImportError:  # not built (not Linux, no compiler): SIGTERM is handled once
    _sigretry = None

Handler = Callable[[int, FrameType | None], object]
RELAY = signal.SIGRTMAX - 1 if hasattr(signal, "SIGRTMAX") else None


def install(handler: Handler) -> None:
    """Make ``handler`` run (in the main thread) on SIGTERM, with SIGTERM sent
    again until ``handler`` calls ``handled()``; hidden from the program where
    possible (see the module's docstring)."""
    if _sigretry is not None and RELAY is not None:
        signal.signal(RELAY, handler)
        try:
            _sigretry.relay(signal.SIGTERM, RELAY)
            return
        except (OSError, ValueError):  # no timer to be had: SIGTERM's own handler
            signal.signal(RELAY, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, handler)
    if _sigretry is not None:
        try:
            _sigretry.arm(signal.SIGTERM)
        except (OSError, ValueError):  # no timer to be had: handled once, as before
            pass


def uninstall(handler: Handler) -> None:
    """SIGTERM's default action again, unless the program installed its own
    handler meanwhile (which then stays)."""
    if _sigretry is not None and RELAY is not None and signal.getsignal(RELAY) is handler:
        _sigretry.release(signal.SIGTERM)
        signal.signal(RELAY, signal.SIG_DFL)
    if signal.getsignal(signal.SIGTERM) is handler:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def handled() -> None:
    """Called first by a handler given to ``install``: stop sending SIGTERM again."""
    if _sigretry is not None:
        _sigretry.acknowledge()
