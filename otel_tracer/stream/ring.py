"""Keeping only the last N calls of a recording (``--ring-buffer N``).

The mover thread takes the events out of the core every ``INTERVAL`` seconds
and keeps those of the last ``size`` calls (by start). The older events are let
go, all but the opening events of the calls still running where the kept ones
begin: their ancestors, carried so that the kept calls keep their place in the
hierarchy. Memory holds ``size`` calls, the events recorded since the last
move, and the carried ancestors.
"""

from __future__ import annotations

import numpy as np

from otel_tracer.stream.mover import Mover, drain
from otel_tracer.trace import events
from otel_tracer.trace.build import open_at_end, opening_events

PIECE = 1 << 16  # events let go at a time


class Ring(Mover):
    """Keeps the last ``size`` calls of one recording in memory."""

    def __init__(self, size: int) -> None:
        super().__init__()
        if size < 1:
            raise ValueError("a ring buffer holds at least one call")
        self.size = size
        self.discarded = 0  # calls that ended before the last ``size`` and were let go
        empty = np.zeros((0, events.WORDS), dtype=np.int64)
        self._carried = empty  # opening events of the running calls let go, in order
        self._kept = empty  # the events of the last ``size`` calls (and after)

    def move(self) -> None:
        """Take the new events; let go of every call but the last ``size``, and
        of their ancestors."""
        assert self._recorder is not None
        with self._lock:
            words = drain(self._recorder.core.events)
            if not words:
                return
            chunk = np.frombuffer(words, dtype=np.int64).reshape(-1, events.WORDS)
            starts = opening_events(chunk)
            if len(starts) >= self.size:  # the new events hold the last calls
                self._let_go(self._kept)
                self._let_go(chunk[: starts[-self.size]])
                self._kept = chunk[starts[-self.size] :].copy()  # not a view of all of it
                return
            kept_starts = opening_events(self._kept)
            keep = self.size - len(starts)  # calls kept from before
            if len(kept_starts) > keep:
                cut = kept_starts[-keep] if keep else len(self._kept)
                self._let_go(self._kept[:cut])
                self._kept = self._kept[cut:]
            self._kept = np.concatenate([self._kept, chunk])

    def _let_go(self, head: np.ndarray) -> None:
        """Discard the events ``head`` (the oldest kept) but for the opening
        events of the calls still running at its end; a piece at a time, so that
        the arrays made meanwhile stay small."""
        for first in range(0, len(head), PIECE):
            joined = np.concatenate([self._carried, head[first : first + PIECE]])
            running = open_at_end(joined)
            self.discarded += len(opening_events(joined)) - len(running)
            self._carried = joined[running]

    def events(self) -> np.ndarray:
        """The last ``size`` calls' events, after their ancestors' opening events
        (after ``close``)."""
        with self._lock:
            return np.concatenate([self._carried, self._kept]).ravel()
