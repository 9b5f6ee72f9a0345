"""Tandem repeats in a sequence of keys: a block of ``period`` consecutive keys
repeated ``reps`` >= 2 times in a row.

``find_runs`` lists the maximal periodic runs with a primitive period (a block
that is not itself a repeat of a shorter block); ``select`` picks a
non-overlapping set of candidates (any runs of iterations, tandem or not)
greedily, best score first, trimming a candidate that overlaps already chosen
ones to its free iterations.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

import numpy as np

SMALL_PERIODS = 16  # always tried; longer periods only where keys recur at that distance
MAX_PERIOD = 4096
MAX_LONG_PERIODS = 64
_NUMPY_FROM = 48  # sequences at least this long are scanned with numpy

Candidate = tuple[int, int, int]  # (start, period, reps)

try:  # _find_runs_small in C
    from otel_tracer.trace._speedups import find_runs_small as _find_runs_small_c
except ImportError:  # not built
    _find_runs_small_c = None


def find_runs(keys: np.ndarray, max_period: int = MAX_PERIOD) -> list[Candidate]:
    """Maximal runs ``keys[s : s + period * reps]`` with period-``period`` repetition,
    ``reps`` >= 2, ``period`` primitive. Overlapping runs of different periods are
    all returned."""
    n = len(keys)
    if n < 2:
        return []
    if n < _NUMPY_FROM:
        if _find_runs_small_c is not None:
            return _find_runs_small_c(np.ascontiguousarray(keys, dtype=np.int64), max_period)
        return _find_runs_small(keys.tolist(), max_period)
    runs: list[Candidate] = []
    matches: dict[int, np.ndarray] = {}  # d -> prefix counts of keys[i] == keys[i + d]

    def repeats(starts: np.ndarray, period: int, d: int) -> np.ndarray:
        """Which blocks ``keys[s : s + period]`` repeat with period ``d``."""
        if d <= SMALL_PERIODS:  # shared by many periods: prefix counts, kept
            if d not in matches:
                matches[d] = np.concatenate(([0], np.cumsum(keys[d:] == keys[:-d])))
            counts = matches[d]
            return counts[starts + period - d] - counts[starts] == period - d
        return np.array(
            [np.array_equal(keys[s + d : s + period], keys[s : s + period - d]) for s in starts],
            dtype=bool,
        )

    for period in _periods(keys, max_period):
        eq = np.empty(n - period + 2, dtype=np.int8)
        eq[0] = eq[-1] = 0
        eq[1:-1] = keys[period:] == keys[:-period]
        edges = np.diff(eq)
        starts = np.flatnonzero(edges == 1)
        lengths = np.flatnonzero(edges == -1) - starts
        keep = lengths >= period
        starts, lengths = starts[keep], lengths[keep]
        for d in range(1, period // 2 + 1):  # drop blocks that repeat a shorter block
            if period % d == 0 and len(starts):
                shorter = repeats(starts, period, d)
                starts, lengths = starts[~shorter], lengths[~shorter]
        reps = (lengths + period) // period
        runs.extend(zip(starts.tolist(), [period] * len(starts), reps.tolist(), strict=True))
    return runs


def _periods(keys: np.ndarray, max_period: int) -> list[int]:
    """Periods worth scanning: the small ones, plus distances at which keys recur often."""
    n = len(keys)
    limit = min(max_period, n // 2)
    periods = set(range(1, min(SMALL_PERIODS, limit) + 1))
    if limit > SMALL_PERIODS:
        order = np.argsort(keys, kind="stable")
        same = keys[order[1:]] == keys[order[:-1]]
        gaps = (order[1:] - order[:-1])[same]
        gaps = gaps[(gaps > SMALL_PERIODS) & (gaps <= limit)]
        if len(gaps):
            values, counts = np.unique(gaps, return_counts=True)
            frequent = values[counts >= 2]
            best = frequent[np.argsort(-counts[counts >= 2], kind="stable")]
            periods.update(best[:MAX_LONG_PERIODS].tolist())
    return sorted(periods)


def _primitive(keys: list, start: int, period: int) -> bool:
    """True when ``keys[start : start + period]`` is not a repeat of a shorter block."""
    block = keys[start : start + period]
    return not any(
        period % d == 0 and block[d:] == block[: period - d] for d in range(1, period // 2 + 1)
    )


def _find_runs_small(keys: list, max_period: int) -> list[Candidate]:
    n = len(keys)
    runs: list[Candidate] = []
    for period in range(1, min(max_period, n // 2) + 1):
        i = 0
        while i + period < n:
            if keys[i] != keys[i + period]:
                i += 1
                continue
            j = i
            while j + period < n and keys[j] == keys[j + period]:
                j += 1
            if j - i >= period and _primitive(keys, i, period):
                runs.append((i, period, (j - i + period) // period))
            i = j + 1
    return runs


def select(
    candidates: list[list[int]],
    length: int,
    score: Callable[[list[int]], tuple[int, int, int]],
) -> tuple[list[list[int]], int]:
    """Non-overlapping candidates (iteration bounds: iteration j is
    ``[bounds[j], bounds[j+1])``) and the sum of their values, chosen best first.
    ``score(bounds)`` gives (value, covered, variants); a candidate counts when its
    value is positive; ties go to more covered, then fewer variants, then a shorter
    first iteration, then the earlier start. A candidate that overlaps chosen ones
    is trimmed to its maximal runs of >= 2 free iterations, which compete again."""
    heap = []

    def push(bounds: list[int]) -> None:
        value, covered, variants = score(bounds)
        if value > 0:
            key = (-value, -covered, variants, bounds[1] - bounds[0], bounds[0])
            heapq.heappush(heap, (*key, bounds))

    for bounds in candidates:
        push(bounds)
    taken = bytearray(length + 1)  # 1: inside a chosen candidate
    chosen: list[list[int]] = []
    total = 0
    while heap:
        value, _, _, _, start, bounds = heapq.heappop(heap)
        if taken.find(1, start, bounds[-1]) < 0:
            taken[start : bounds[-1]] = b"\x01" * (bounds[-1] - start)
            chosen.append(bounds)
            total -= value
            continue
        for part in _free_parts(taken, bounds):
            push(part)
    chosen.sort()
    return chosen, total


def _free_parts(taken: bytearray, bounds: list[int]) -> list[list[int]]:
    """Maximal runs of >= 2 consecutive iterations that are still free."""
    edges = np.asarray(bounds, dtype=np.int64)
    flags = np.frombuffer(taken, dtype=np.uint8, count=bounds[-1])
    busy = np.maximum.reduceat(flags, edges[:-1]).astype(bool)
    flags = np.concatenate(([True], busy, [True]))
    starts = np.flatnonzero(flags[:-1] & ~flags[1:])  # first free iteration of a run
    stops = np.flatnonzero(~flags[:-1] & flags[1:])  # one past its last
    return [
        bounds[a : b + 1]
        for a, b in zip(starts.tolist(), stops.tolist(), strict=True)
        if b - a >= 2
    ]
