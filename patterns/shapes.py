"""Per-call structure: subtree sizes and the structural key of every call.

Two calls have the same *shape* (structural key) when they ran the same function
and their children, in order, have the same shapes: the same subtree, ignoring
arguments and timing. Shapes are computed bottom-up, one depth level at a time,
with two independent 64-bit polynomial hashes of the child sequence (so a false
match needs both to collide), then renumbered densely.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from otel_tracer.trace.model import Trace, bucket_rows

try:
    from otel_tracer.trace._speedups import subtree_hashes
except ImportError:  # not built: the numpy passes below give the same result
    subtree_hashes = None

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)
_SEEDS = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F)
_BASES = (0x100000001B3, 0xFF51AFD7ED558CCD)


@dataclass
class Shapes:
    """Structure columns of a trace, one entry per call row."""

    size: np.ndarray  # calls in the subtree, the call included
    last: np.ndarray  # the last row (in start order) inside the subtree
    shape: np.ndarray  # dense structural key
    levels: list[np.ndarray]  # rows at each depth, depth 0 first

    # int32 columns while the trace has fewer than 2**31 calls, else int64


def _mix(x: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 finaliser, elementwise (uint64, wrapping)."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(seed)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _powers(base: int, count: int) -> np.ndarray:
    """base**j mod 2**64 for j < count."""
    out = np.empty(max(count, 1), dtype=np.uint64)
    out[0] = 1
    step = np.uint64(base)
    filled = 1
    with np.errstate(over="ignore"):
        while filled < count:  # doubling: powers[f:2f] = powers[:f] * base**f
            chunk = min(filled, count - filled)
            out[filled : filled + chunk] = out[:chunk] * step
            step = step * step
            filled += chunk
    return out


def depth_levels(trace: Trace) -> list[np.ndarray]:
    """Rows grouped by depth (each group in start order), depth 0 first."""
    depth = trace.calls.depth
    if not len(depth):
        return []
    bounds, order = bucket_rows(depth, int(depth.max()) + 1)
    order = order.astype(_index_type(len(depth)))
    return [order[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


def _index_type(n: int) -> type:
    return np.int32 if n < 2**31 else np.int64


def compute_shapes(trace: Trace) -> Shapes:
    """Subtree sizes, last rows and structural keys."""
    calls = trace.calls
    n = len(calls)
    index = _index_type(n)
    if subtree_hashes is not None:  # the C speedups: two passes over the rows
        size = np.empty(n, dtype=index)
        last = np.empty(n, dtype=index)
        hashes = [np.empty(n, dtype=np.uint64) for _ in _SEEDS]
        parent = np.ascontiguousarray(calls.parent, dtype=np.int64)
        function = np.ascontiguousarray(calls.function, dtype=np.int32)
        subtree_hashes(parent, function, _SEEDS, _BASES, size, last, *hashes)
        return Shapes(size, last, _dense_ids(*hashes).astype(index), depth_levels(trace))
    parent = calls.parent
    offsets, order = trace.children
    position = np.empty(n, dtype=index)  # of each call among its siblings
    counts = np.diff(offsets)
    position[order] = np.arange(n, dtype=index) - np.repeat(offsets[:-1], counts)
    levels = depth_levels(trace)
    size = np.ones(n, dtype=index)
    last = np.arange(n, dtype=index)
    child_count = counts[1:] if n else counts
    kinds = int(calls.function.max()) + 1 if n else 1  # hash per function, then gather
    hashes = [_mix(np.arange(kinds, dtype=np.uint64), seed)[calls.function] for seed in _SEEDS]
    powers = [_powers(base, int(position.max()) + 1 if n else 1) for base in _BASES]
    sequence = [np.zeros(n, dtype=np.uint64) for _ in _SEEDS]
    with np.errstate(over="ignore"):
        for rows in reversed(levels):
            for h, seq, seed in zip(hashes, sequence, _SEEDS, strict=True):
                h[rows] = _mix(h[rows] ^ _mix(seq[rows], seed), seed + 1)
                h[rows] ^= _mix(child_count[rows].astype(np.uint64), seed + 2)
            children = rows[parent[rows] >= 0]
            if not len(children):
                continue
            up = parent[children]
            np.add.at(size, up, size[children])
            np.maximum.at(last, up, last[children])
            for h, seq, pw in zip(hashes, sequence, powers, strict=True):
                np.add.at(seq, up, h[children] * pw[position[children]])
    del sequence, position
    return Shapes(size, last, _dense_ids(*hashes).astype(index), levels)


def _dense_ids(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Dense ids of the (first, second) hash pairs; the fast path numbers by
    ``first`` alone when no two pairs share it with different ``second``."""
    keys = np.unique(first)
    ids = np.searchsorted(keys, first)
    seen = np.zeros(len(keys), dtype=np.uint64)
    seen[ids] = second
    if np.array_equal(seen[ids], second):
        return ids.astype(np.int64)
    _, ids = np.unique(np.stack((first, second), axis=1), axis=0, return_inverse=True)
    return ids.reshape(-1).astype(np.int64)
