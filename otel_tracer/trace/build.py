"""Turn a raw event recording into the columnar ``Trace`` model, vectorised.

Per thread, every opening event raises the nesting level and every closing
event lowers it. Sorting the events by (thread, level, position) puts each
closing event right after the opening event it closes, and a call's parent is
the last opening event one level up, found by binary search.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from otel_tracer.trace import events
from otel_tracer.trace.model import (
    EXTERNAL,
    FINALIZER,
    RAISED,
    RESUMED,
    UNFINISHED,
    YIELDED,
    Calls,
    Function,
    ThreadInfo,
    Trace,
)

try:  # the optional C speedups, built by pip install when a compiler is present
    from otel_tracer.trace._speedups import build_calls, count_calls, pair_events
except ImportError:
    build_calls = count_calls = pair_events = None


class Tables(Protocol):
    """The interning tables events refer to: the recorder's Registry, or those
    read back from a spool file."""

    functions: Sequence[Function]
    threads: Sequence[tuple[Any, ...]]  # (id, native_id, name[, pid])
    strings: Sequence[str]
    arg_tuples: Sequence[tuple[int, ...]]
    exceptions: Sequence[tuple[str, str]]
    exception_slots: list[int]
    exception_lines: list[int]


def random_span_ids(count: int) -> np.ndarray:
    """``count`` random non-zero 64-bit span ids."""
    rng = np.random.default_rng(int.from_bytes(os.urandom(16), "little"))
    ids = rng.integers(1, np.iinfo(np.uint64).max, size=count, dtype=np.uint64, endpoint=True)
    return ids


def build_trace(
    raw: np.ndarray,
    registry: Tables,
    meta: dict[str, Any],
    clock_base: tuple[int, int],
    stop_time: int,
) -> Trace:
    """Build a Trace from raw events (``int64[n, 3]``), converting monotonic times
    to Unix ns with ``clock_base = (monotonic_ns, unix_ns)`` taken at the same moment."""
    calls = _pair_events(raw.reshape(-1, events.WORDS), stop_time)
    offset = clock_base[1] - clock_base[0]
    calls.start += offset
    calls.end += offset
    slot = calls.exception  # the raise event's exception slot, -1: none
    slots = np.asarray(registry.exception_slots + [-1], dtype=np.int32)
    lines = np.zeros(len(slots), dtype=np.int32)  # a slot's line may not be in yet: 0
    known = registry.exception_lines[: len(slots) - 1]
    lines[: len(known)] = known
    calls.exception = np.where(slot >= 0, slots[slot], -1).astype(np.int32)
    calls.raise_line = lines[slot]  # slot -1: the padding's 0
    finalizers = [i for i, f in enumerate(registry.functions) if f.finalizer]
    if finalizers:
        calls.flags[np.isin(calls.function, finalizers)] |= FINALIZER
    return Trace(
        meta=meta,
        functions=list(registry.functions),
        threads=[ThreadInfo(*t) for t in registry.threads],
        strings=list(registry.strings),
        arg_tuples=list(registry.arg_tuples),
        exceptions=list(registry.exceptions),
        calls=calls,
    )


def _is_opening(kind: np.ndarray) -> np.ndarray:
    return (kind == events.CALL) | (kind == events.RESUME) | (kind == events.EXTERNAL)


def opening_events(ev: np.ndarray) -> np.ndarray:
    """Positions of the opening events in ``ev`` (``int64[n, 3]``): one per call."""
    return np.flatnonzero(_is_opening(ev[:, 0] & events.KIND_MASK))


def open_at_end(ev: np.ndarray) -> np.ndarray:
    """Positions of the opening events in ``ev`` that no event of ``ev`` closes:
    the calls still running at its end, each thread's outermost first."""
    kind = ev[:, 0] & events.KIND_MASK
    opening = _is_opening(kind)
    open_positions = np.flatnonzero(opening)
    close = _link(ev, kind, opening, open_positions)[3]
    return open_positions[close < 0]


def _pair_events(ev: np.ndarray, stop_time: int) -> Calls:
    if build_calls is not None:
        return _pair_events_native(np.ascontiguousarray(ev), stop_time)
    head, time, aux = ev[:, 0], ev[:, 1], ev[:, 2]
    kind = head & events.KIND_MASK
    opening = _is_opening(kind)
    open_positions = np.flatnonzero(opening)  # call-start order
    parent, depth, end, close = _link(ev, kind, opening, open_positions)

    n_calls = len(open_positions)
    closed = close >= 0
    close_rows = close[closed]
    end = np.where(closed, end, stop_time)
    close_kind = np.zeros(n_calls, dtype=np.int64)
    close_kind[closed] = kind[close_rows]
    close_aux = np.full(n_calls, -1, dtype=np.int64)
    close_aux[closed] = aux[close_rows]
    open_kind = kind[open_positions]
    raised = close_kind == events.RAISE

    flags = np.zeros(n_calls, dtype=np.uint8)
    flags[~closed] |= UNFINISHED
    flags[raised] |= RAISED
    flags[close_kind == events.YIELD] |= YIELDED
    flags[open_kind == events.EXTERNAL] |= EXTERNAL
    flags[open_kind == events.RESUME] |= RESUMED
    return Calls(
        parent=parent,
        depth=depth,
        function=(head[open_positions] >> events.REF_SHIFT).astype(np.int32),
        thread=((head[open_positions] >> events.KIND_BITS) & events.THREAD_MASK).astype(np.int32),
        start=time[open_positions].astype(np.int64),
        end=end.astype(np.int64),
        args=np.where(open_kind == events.CALL, aux[open_positions], -1).astype(np.int32),
        value=np.where(closed & ~raised, close_aux, -1).astype(np.int32),
        exception=np.where(raised, close_aux, -1).astype(np.int32),
        flags=flags,
        span_id=random_span_ids(n_calls),
        raise_line=np.zeros(n_calls, dtype=np.int32),
        task=np.where(open_kind == events.RESUME, aux[open_positions], -1).astype(np.int32),
    )


def _pair_events_native(ev: np.ndarray, stop_time: int) -> Calls:
    """The same as ``_pair_events`` in one C pass that writes the columns
    directly: no temporary per event or call (about 65 bytes per call in all)."""
    n = count_calls(ev)
    columns = {
        name: np.empty(n, dtype=dtype)
        for name, dtype in (
            ("parent", np.int64), ("depth", np.int32), ("function", np.int32),
            ("thread", np.int32), ("start", np.int64), ("end", np.int64), ("args", np.int32),
            ("value", np.int32), ("exception", np.int32), ("flags", np.uint8),
            ("task", np.int32),
        )
    }  # fmt: skip
    build_calls(ev, stop_time, list(columns.values()))
    return Calls(**columns, span_id=random_span_ids(n), raise_line=np.zeros(n, dtype=np.int32))


Link = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _link(ev: np.ndarray, kind, opening, open_positions: np.ndarray) -> Link:
    link = _link_native if pair_events is not None else _link_numpy
    return link(ev, kind, opening, open_positions)


def _link_native(ev: np.ndarray, kind, opening, open_positions: np.ndarray) -> Link:
    """(parent, depth, end time, closing event position) per call, in one C pass."""
    n_calls = len(open_positions)
    parent = np.empty(n_calls, dtype=np.int64)
    depth = np.empty(n_calls, dtype=np.int32)
    end = np.empty(n_calls, dtype=np.int64)
    close = np.empty(n_calls, dtype=np.int64)
    pair_events(np.ascontiguousarray(ev), parent, depth, end, close)
    return parent, depth, end, close


def _link_numpy(ev: np.ndarray, kind, opening, open_positions: np.ndarray) -> Link:
    """The same as ``_link_native`` with vectorised numpy (see the module doc)."""
    thread = (ev[:, 0] >> events.KIND_BITS) & events.THREAD_MASK
    n_events = len(ev)
    n_calls = len(open_positions)

    # Nesting level per event: per-thread running sum of +1 (open) / -1 (close).
    delta = np.where(opening, 1, -1).astype(np.int64)
    by_thread = np.argsort(thread, kind="stable")
    running = np.cumsum(delta[by_thread])
    thread_sorted = thread[by_thread]
    firsts = (
        np.flatnonzero(np.r_[True, thread_sorted[1:] != thread_sorted[:-1]]) if n_events else []
    )
    base = np.zeros(n_events, dtype=np.int64)
    for first in firsts:  # subtract the running total reached before each thread's first event
        base[first:] = running[first - 1] if first else 0
    level = np.empty(n_events, dtype=np.int64)
    level[by_thread] = running - base
    level[opening] -= 1  # an opening event sits at the level of the call it opens

    depth_span = int(level.max()) + 2 if n_events else 1
    key = (thread * depth_span + level) * n_events + np.arange(n_events, dtype=np.int64)
    order = np.argsort(key, kind="stable")

    # Each closing event directly follows the opening event it closes in `order`.
    close_at = np.flatnonzero(~opening[order])
    call_of_event = np.full(n_events, -1, dtype=np.int64)
    call_of_event[open_positions] = np.arange(n_calls)
    closed = call_of_event[order[close_at - 1]]
    close = np.full(n_calls, -1, dtype=np.int64)
    close[closed] = order[close_at]
    end = np.full(n_calls, -1, dtype=np.int64)
    end[closed] = ev[order[close_at], 1]

    # Parent: the last opening event of the same thread one level up, before this one.
    open_keys = key[open_positions]
    sorted_calls = np.argsort(open_keys, kind="stable")
    found = np.searchsorted(open_keys[sorted_calls], open_keys - n_events, side="left") - 1
    call_level = level[open_positions]
    parent = np.where(call_level > 0, sorted_calls[np.maximum(found, 0)], -1)
    return parent.astype(np.int64), call_level.astype(np.int32), end, close
