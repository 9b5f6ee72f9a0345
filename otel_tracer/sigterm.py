"""The tracer's SIGTERM handlers, with SIGTERM sent again to a main thread
that missed its handler (``_sigretry.c`` says when that happens)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType

try:
    from otel_tracer import _sigretry
except ImportError:  # not built (not Linux, no compiler): SIGTERM is handled once
    _sigretry = None

Handler = Callable[[int, FrameType | None], object]


def install(handler: Handler) -> signal.Handlers | Handler | None:
    """``signal.signal(SIGTERM, handler)`` in the main thread, with SIGTERM sent
    again until ``handler`` calls ``handled()``. Returns the previous handler."""
    previous = signal.signal(signal.SIGTERM, handler)
    if _sigretry is not None:
        try:
            _sigretry.arm(signal.SIGTERM)
        except (OSError, ValueError):  # no timer to be had: handled once, as before
            pass
    return previous


def handled() -> None:
    """Called first by a handler given to ``install``: stop sending SIGTERM again."""
    if _sigretry is not None:
        _sigretry.acknowledge()
