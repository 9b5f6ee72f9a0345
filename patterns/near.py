"""Near-repeats: grow exact groups over neighbouring iterations that differ a little.

A loop whose iterations differ now and then (an ``if`` branch taken on some
iterations, an extra call every 100th step, a shorter last batch) folds into
runs of identical iterations separated by odd ones. Starting from each such run
(its first iteration is the template), ``merge_near`` absorbs the neighbours
that look like further iterations:

* an adjacent group whose iteration is similar to the template;
* the units between groups, cut into iterations where the template's first
  step (its *anchor*) recurs, each piece similar to the template;
* a few extra units right after an iteration (an insertion at the end of the
  loop body), when the iteration stays similar.

*Similar* means an edit distance (insertions, deletions, substitutions of
steps, compared by function) of at most ``budget(len(template))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_TEMPLATE = 64  # longer loop bodies only fold as exact repeats


def budget(length: int) -> int:
    """Edits tolerated in an iteration of a template of ``length`` steps."""
    return max(1, round(length / 3))


def _distance(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    """Edit distance of ``a`` and ``b``, or ``limit + 1`` when it is larger."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    if a == b:
        return 0
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return min(previous[-1], limit + 1)


def _prefix_distances(template: Sequence[int], piece: Sequence[int]) -> list[int]:
    """Item j: the edit distance of ``template`` and ``piece[:j]``, for every j."""
    previous = list(range(len(piece) + 1))  # row i: distance(template[:i], piece[:j])
    for i, step in enumerate(template, 1):
        current = [i]
        for j, key in enumerate(piece, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (key != step))
            )
        previous = current
    return previous


try:  # the same functions in C
    from otel_tracer.trace._speedups import edit_distance as distance
    from otel_tracer.trace._speedups import find_anchor as _find_anchor_c
    from otel_tracer.trace._speedups import grow_seed as _grow_seed_c
    from otel_tracer.trace._speedups import prefix_distances
except ImportError:  # not built
    distance, prefix_distances = _distance, _prefix_distances
    _find_anchor_c = _grow_seed_c = None


def similar(a: Sequence[int], b: Sequence[int], limit: int) -> bool:
    """Edit distance of ``a`` and ``b`` is at most ``limit``."""
    return distance(a, b, limit) <= limit


def grow(
    keys: np.ndarray, seeds: list[list[int]], memo: dict[tuple, list[int]] | None = None
) -> list[list[int]]:
    """Near-repeat candidates grown from each seed (iteration bounds over the int64
    ``keys``), largest seeds first; a seed inside a region already grown from one
    with the same iteration, or a rotation of it (the same loop seen from another
    step), is skipped. ``memo`` keeps each seed's growth by the keys' content."""
    listed = keys.tolist()
    content = keys.tobytes() if memo is not None else b""
    grown: list[list[int]] = []
    covered: dict[tuple[int, ...], bytearray] = {}  # 1: inside a region grown
    for seed in sorted(seeds, key=lambda b: (b[0] - b[-1], b[0])):
        if seed[1] - seed[0] > MAX_TEMPLATE:
            continue
        kind = tuple(sorted(listed[seed[0] : seed[1]]))
        regions = covered.get(kind)
        if regions is not None and regions.find(0, seed[0], seed[-1]) < 0:
            continue
        if memo is None:
            bounds = _grow_seed(keys, listed, seed)
        else:
            key = (content, *seed)
            known = memo.get(key)
            if known is None:
                known = memo[key] = _grow_seed(keys, listed, seed)
            bounds = list(known)
        if bounds != seed:
            grown.append(bounds)
            if regions is None:
                regions = covered[kind] = bytearray(len(keys) + 1)
            regions[bounds[0] : bounds[-1]] = b"\x01" * (bounds[-1] - bounds[0])
    return grown


def _grow_seed(keys: np.ndarray, listed: list[int], seed: list[int]) -> list[int]:
    """``merge_near(listed, [seed])[0]``, in C when built (``keys``: the same keys)."""
    if _grow_seed_c is not None:
        return _grow_seed_c(keys, seed)
    return merge_near(listed, [seed])[0]


def merge_near(keys: Sequence[int], groups: list[list[int]]) -> list[list[int]]:
    """Grow groups (iteration bounds over ``keys``, sorted, disjoint) into
    near-repeat groups; groups that end up adjacent and alike are joined."""
    merged: list[list[int]] = []
    floor = 0
    i = 0
    while i < len(groups):
        bounds = list(groups[i])
        template = tuple(keys[bounds[0] : bounds[1]])
        limit = budget(len(template))
        anchor = _anchor(template)
        _extend_left(keys, bounds, template, limit, anchor, floor)
        i += 1
        while True:
            ceiling = groups[i][0] if i < len(groups) else len(keys)
            reached, unconfirmed = _extend_right(keys, bounds, template, limit, anchor, ceiling)
            following = groups[i] if reached and i < len(groups) else None
            if following is None or not similar(
                tuple(keys[following[0] : following[1]]), template, limit
            ):
                if unconfirmed is not None:  # an insertion after the loop's last iteration
                    bounds[-1] = unconfirmed
                break
            bounds.extend(following[1:])
            i += 1
        merged.append(bounds)
        floor = bounds[-1]
    return merged


def _anchor(template: tuple[int, ...]) -> tuple[int, ...]:
    """The shortest prefix of the template that occurs in it only at the start."""
    for size in range(1, len(template) + 1):
        prefix = template[:size]
        if not any(template[i : i + size] == prefix for i in range(1, len(template) - size + 1)):
            return prefix
    return template


def _find_anchor_python(
    keys: Sequence[int], anchor: tuple[int, ...], lo: int, hi: int, step: int = 1
) -> int | None:
    """First position p in [lo, hi) (last one when ``step`` is -1) where ``anchor``
    starts; None if there is none."""
    size = len(anchor)
    first = anchor[0]
    positions = range(lo, hi) if step > 0 else range(hi - 1, lo - 1, -1)
    for p in positions:
        if keys[p] == first and tuple(keys[p : p + size]) == anchor:
            return p
    return None


_find_anchor = _find_anchor_c or _find_anchor_python


def _extend_right(
    keys, bounds: list[int], template, limit, anchor, ceiling: int
) -> tuple[bool, int | None]:
    """Absorb iterations after ``bounds`` up to ``ceiling``. Returns whether all of
    ``[bounds[-1], ceiling)`` was absorbed and, when the last thing absorbed was
    units appended to the last iteration (kept only if another iteration
    follows), the end that iteration had before."""
    pos = bounds[-1]
    window = len(template) + limit
    begin = _find_anchor(keys, anchor, pos, min(ceiling, pos + limit + 1))
    if begin is None:
        if ceiling - pos > limit:
            return False, None
        begin = ceiling
    unconfirmed = None
    if begin > pos:  # units between the last iteration and the next anchor
        if not similar(tuple(keys[bounds[-2] : begin]), template, limit):
            return False, None
        bounds[-1], unconfirmed = begin, pos
    while begin < ceiling:
        end = _find_anchor(keys, anchor, begin + 1, min(ceiling, begin + window + 1))
        if end is not None and similar(tuple(keys[begin:end]), template, limit):
            bounds.append(end)
            begin, unconfirmed = end, None
            continue
        size = _best_prefix(keys, begin, min(ceiling - begin, window), template, limit)
        if size:
            bounds.append(begin + size)
        elif unconfirmed is not None:
            bounds[-1] = unconfirmed
        return False, None
    return True, unconfirmed


def _best_prefix(keys, begin: int, longest: int, template, limit: int) -> int:
    """Length of the prefix of ``keys[begin:]`` closest to the template (ties: the
    length nearest the template's), or 0 when none is similar enough."""
    previous = prefix_distances(template, keys[begin : begin + longest])
    best = min((d, abs(size - len(template)), size) for size, d in enumerate(previous) if size)
    return best[2] if best[0] <= limit else 0


def _extend_left(keys, bounds: list[int], template, limit, anchor, floor: int) -> None:
    """Absorb whole iterations before ``bounds``, down to ``floor``."""
    window = len(template) + limit
    starts: list[int] = []
    first = bounds[0]
    while True:
        begin = _find_anchor(keys, anchor, max(floor, first - window), first, -1)
        if begin is None or not similar(tuple(keys[begin:first]), template, limit):
            break
        starts.append(begin)
        first = begin
    bounds[:0] = starts[::-1]
