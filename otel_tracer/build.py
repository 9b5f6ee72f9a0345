"""Turn a raw event recording into the columnar ``Trace`` model, vectorised.

Per thread, every opening event raises the nesting level and every closing
event lowers it. Sorting the events by (thread, level, position) puts each
closing event right after the opening event it closes, and a call's parent is
the last opening event one level up, found by binary search.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from otel_tracer import events
from otel_tracer.model import (
    EXTERNAL,
    RAISED,
    RESUMED,
    UNFINISHED,
    YIELDED,
    Calls,
    ThreadInfo,
    Trace,
)
from otel_tracer.registry import Registry


def random_span_ids(count: int) -> np.ndarray:
    """``count`` random non-zero 64-bit span ids."""
    rng = np.random.default_rng(int.from_bytes(os.urandom(16), "little"))
    ids = rng.integers(1, np.iinfo(np.uint64).max, size=count, dtype=np.uint64, endpoint=True)
    return ids


def build_trace(
    raw: np.ndarray,
    registry: Registry,
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
    slots = np.asarray(registry.exception_slots + [-1], dtype=np.int32)
    calls.exception = np.where(calls.exception >= 0, slots[calls.exception], -1).astype(np.int32)
    return Trace(
        meta=meta,
        functions=list(registry.functions),
        threads=[ThreadInfo(*t) for t in registry.threads],
        strings=list(registry.strings),
        arg_tuples=list(registry.arg_tuples),
        exceptions=list(registry.exceptions),
        calls=calls,
    )


def _pair_events(ev: np.ndarray, stop_time: int) -> Calls:
    head, time, aux = ev[:, 0], ev[:, 1], ev[:, 2]
    kind = head & events.KIND_MASK
    thread = (head >> events.KIND_BITS) & events.THREAD_MASK
    ref = head >> events.REF_SHIFT
    opening = (kind == events.CALL) | (kind == events.RESUME) | (kind == events.EXTERNAL)
    n_events = len(ev)

    # Nesting level per event: per-thread running sum of +1 (open) / -1 (close).
    delta = np.where(opening, 1, -1).astype(np.int64)
    by_thread = np.argsort(thread, kind="stable")
    running = np.cumsum(delta[by_thread])
    thread_sorted = thread[by_thread]
    starts = (
        np.flatnonzero(np.r_[True, thread_sorted[1:] != thread_sorted[:-1]]) if n_events else []
    )
    base = np.zeros(n_events, dtype=np.int64)
    for s in starts:  # subtract the running total reached before each thread's first event
        base[s:] = running[s - 1] if s else 0
    level = np.empty(n_events, dtype=np.int64)
    level[by_thread] = running - base
    level[opening] -= 1  # an opening event sits at the level of the call it opens

    depth_span = int(level.max()) + 2 if n_events else 1
    position = np.arange(n_events, dtype=np.int64)
    key = (thread * depth_span + level) * n_events + position
    order = np.argsort(key, kind="stable")

    # Each close directly follows its open in `order`.
    sorted_open = opening[order]
    close_at = np.flatnonzero(~sorted_open)
    open_rows = order[close_at - 1]
    close_rows = order[close_at]

    open_positions = np.flatnonzero(opening)  # call-start order
    n_calls = len(open_positions)
    call_of_event = np.full(n_events, -1, dtype=np.int64)
    call_of_event[open_positions] = np.arange(n_calls)

    end = np.full(n_calls, stop_time, dtype=np.int64)
    value = np.full(n_calls, -1, dtype=np.int32)
    exception = np.full(n_calls, -1, dtype=np.int32)
    flags = np.full(n_calls, UNFINISHED, dtype=np.uint8)
    closed = call_of_event[open_rows]
    end[closed] = time[close_rows]
    close_kind = kind[close_rows]
    flags[closed] = 0
    flags[closed[close_kind == events.RAISE]] |= RAISED
    flags[closed[close_kind == events.YIELD]] |= YIELDED
    is_value = close_kind != events.RAISE
    value[closed[is_value]] = aux[close_rows[is_value]]
    exception[closed[~is_value]] = aux[close_rows[~is_value]]

    open_kind = kind[open_positions]
    flags[open_kind == events.EXTERNAL] |= EXTERNAL
    flags[open_kind == events.RESUME] |= RESUMED

    # Parent: the last opening event of the same thread one level up, before this one.
    open_keys = key[open_positions]
    sorted_keys_idx = np.argsort(open_keys, kind="stable")
    sorted_keys = open_keys[sorted_keys_idx]
    call_level = level[open_positions]
    query = open_keys - n_events  # same thread, level - 1, same position
    found = np.searchsorted(sorted_keys, query, side="left") - 1
    parent = np.where(call_level > 0, sorted_keys_idx[np.maximum(found, 0)], -1)

    return Calls(
        parent=parent.astype(np.int64),
        depth=call_level.astype(np.int32),
        function=ref[open_positions].astype(np.int32),
        thread=thread[open_positions].astype(np.int32),
        start=time[open_positions].astype(np.int64),
        end=end,
        args=np.where(open_kind == events.CALL, aux[open_positions], -1).astype(np.int32),
        value=value,
        exception=exception,
        flags=flags,
        span_id=random_span_ids(n_calls),
    )
