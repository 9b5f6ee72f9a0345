"""Folding one sequence of sibling steps into nested pattern groups.

The sequence is a list of *units*: at first one per step, each with an exact
key (its shape: function and subtree), a loose key (its function) and a weight
(calls in its subtree). Each pass finds tandem repeats among the units, picks
the set that saves the most calls from view (``tandem.select``), optionally
grows them into near-repeats (``near.merge_near``), folds the inside of every
distinct iteration (loops within the loop body), and replaces each group by
one unit; passes repeat until nothing more folds, so loops within loops come
out nested to any depth.

Matching rules (``FoldOptions``):

* ``match="structure"`` (default): two steps are the same when they ran the same
  function and their subtrees have the same shape. A group's iterations are
  identical, unless near-repeats are on, in which case they may also differ
  (each distinct iteration is a variant).
* ``match="function"``: two steps are the same when they ran the same function;
  iterations of a group may differ below the steps. Iterations are variants of
  each other when their steps' functions or nested loops differ.
* ``near=False`` (``--exact``): no near-repeat growing, and every repetition
  has the same steps (with ``match="function"``: the same functions, nested
  loops with the same counts).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from patterns.groups import LocalGroup, Variant
from patterns.near import grow
from patterns.tandem import Candidate, find_runs, select

try:  # _iteration_variants' loop in C
    from otel_tracer.trace._speedups import iteration_variants as _variants_c
except ImportError:  # not built
    _variants_c = None

GROUP_KEY_BASE = 1 << 40  # keys of group units; step keys are smaller
SAVED_MAX_UNITS = 256  # templates longer than this are scored as if nothing folds inside
MEMO_ENTRIES = 1 << 14  # entries of each memo of a Folder (a few MB on real traces)
K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class FoldOptions:
    """How steps are compared."""

    match: str = "structure"  # or "function"
    near: bool = True


@dataclass
class Units:
    """The sequence being folded: step and group units, in order."""

    exact: np.ndarray  # int64
    loose: np.ndarray  # int64
    weight: np.ndarray  # int64: calls covered
    start: np.ndarray  # int64: first step position covered
    stop: np.ndarray  # int64: position after the last step covered
    node: list[LocalGroup | None]
    layout: np.ndarray  # int64: function of a step; for a group, its steps' functions and nesting
    functions: np.ndarray  # int64: the function of every step of the whole sequence (shared)

    def __len__(self) -> int:
        return len(self.exact)

    def part(self, lo: int, hi: int) -> Units:
        return Units(
            self.exact[lo:hi],
            self.loose[lo:hi],
            self.weight[lo:hi],
            self.start[lo:hi],
            self.stop[lo:hi],
            self.node[lo:hi],
            self.layout[lo:hi],
            self.functions,
        )

    def step_functions(self, lo: int, hi: int) -> np.ndarray:
        """Functions of the steps covered by units ``lo..hi``."""
        return self.functions[self.start[lo] : self.stop[hi - 1]]


class Memo(dict[K, V]):
    """A cache that forgets everything once it holds MEMO_ENTRIES entries: a trace
    of millions of distinct sequences cannot grow it without bound."""

    def __setitem__(self, key: K, value: V) -> None:
        if len(self) >= MEMO_ENTRIES:
            self.clear()
        super().__setitem__(key, value)


class Folder:
    """Folds sequences of steps; keeps the keys it made for groups, so groups of
    the same content get the same key across sequences."""

    def __init__(self, options: FoldOptions | None = None) -> None:
        self.options = options or FoldOptions()
        self._keys: dict[tuple, int] = {}
        # memos by content (folding a part depends only on its units' keys and sizes)
        self._known_runs: Memo[bytes, list[Candidate]] = Memo()
        self._known_growth: Memo[tuple, list[int]] = Memo()
        self._differences: Memo[tuple[bytes, ...], int] = Memo()
        # content -> (groups, rows saved, position of the first step) of a fold
        self._folded: Memo[tuple[bytes, bytes, bytes], tuple[list[LocalGroup], int, int]] = Memo()

    def fold(self, exact: np.ndarray, loose: np.ndarray, weight: np.ndarray) -> list[LocalGroup]:
        """Top-level groups of a sequence of steps, nested groups inside them."""
        n = len(exact)
        if n < 2 or (n <= SAVED_MAX_UNITS and len(set(loose.tolist())) == n):
            return []  # no function runs twice: nothing repeats, nearly or not
        positions = np.arange(n, dtype=np.int64)
        loose = np.asarray(loose, dtype=np.int64)
        units = Units(
            np.asarray(exact, dtype=np.int64),
            loose,
            np.asarray(weight, dtype=np.int64),
            positions,
            positions + 1,
            [None] * n,
            loose,
            loose,
        )
        return self._fold(units)[0]

    def _key(self, key: tuple) -> int:
        return self._keys.setdefault(key, GROUP_KEY_BASE + len(self._keys))

    def _fold(self, units: Units) -> tuple[list[LocalGroup], int]:
        """Fold ``units`` pass after pass: the top-level groups, and how many rows
        folding saves."""
        saved = 0
        while len(units) >= 2:
            groups, gain = self._find(units)
            if not groups:
                break
            saved += gain
            units = self._replace(units, groups)
        return [node for node in units.node if node is not None], saved

    def _fold_part(self, units: Units) -> tuple[list[LocalGroup], int]:
        """``_fold`` of a part of a sequence, memoised by content: folding depends
        only on the units' keys and sizes, so an equal part elsewhere (the same
        loop body in another iteration or another sequence) gets the same groups,
        shifted to its own positions (parts longer than SAVED_MAX_UNITS, rarely
        alike, are not kept)."""
        if len(units) > SAVED_MAX_UNITS:
            return self._fold(units)
        content = (
            units.exact.tobytes(),
            units.loose.tobytes(),
            (units.stop - units.start).tobytes(),
        )
        start = int(units.start[0])
        known = self._folded.get(content)
        if known is None:
            groups, saved = self._fold(units)
            self._folded[content] = (groups, saved, start)
            return groups, saved
        groups, saved, first = known
        return [_shifted(group, start - first) for group in groups], saved

    def _saved(self, units: Units) -> int:
        """Rows that folding saves inside ``units``; 0 for sequences longer than
        SAVED_MAX_UNITS, which are not worth folding to score a candidate."""
        if len(units) > SAVED_MAX_UNITS:
            return 0
        return self._fold_part(units)[1]

    def _runs(self, keys: np.ndarray) -> list[Candidate]:
        """``find_runs(keys)``, memoised for short sequences (many are alike)."""
        if len(keys) > SAVED_MAX_UNITS:
            return find_runs(keys)
        content = keys.tobytes()
        runs = self._known_runs.get(content)
        if runs is None:
            runs = self._known_runs[content] = find_runs(keys)
        return runs

    def _grow(self, loose: np.ndarray, seeds: list[list[int]]) -> list[list[int]]:
        """``near.grow``, each seed's growth memoised for short sequences."""
        memo = self._known_growth if len(loose) <= SAVED_MAX_UNITS else None
        return grow(loose, seeds, memo)

    def _find(self, units: Units) -> tuple[list[list[int]], int]:
        """Iteration bounds (unit indices) of the groups of one pass, and the rows
        they save."""
        by_function = self.options.match == "function"
        if by_function:  # --exact: steps must match, nested loops included
            runs = self._runs(units.loose if self.options.near else units.layout)
        else:
            runs = self._runs(units.exact)
            if self.options.near:
                runs = runs + self._runs(units.loose)
        if not runs:
            return [], 0
        candidates = [list(range(s, s + p * r + 1, p)) for s, p, r in runs]
        if self.options.near:
            candidates += self._grow(units.loose, candidates)
        cumulative = np.concatenate(([0], np.cumsum(units.weight)))
        signature = self._signature(units)

        def weight(lo: int, hi: int) -> int:
            return int(cumulative[hi] - cumulative[lo])

        scores: dict[tuple[int, int, int], tuple[int, int, int]] = {}

        def score(bounds: list[int]) -> tuple[int, int, int]:
            key = (bounds[0], bounds[-1], len(bounds))
            if key not in scores:
                scores[key] = evaluate(bounds)
            return scores[key]

        def evaluate(bounds: list[int]) -> tuple[int, int, int]:
            """(rows saved, calls covered, variants): rows saved is calls covered
            minus the rows to show the folded template and the other variants'
            differences."""
            firsts = _iteration_variants(signature, bounds)[1]
            covered = weight(bounds[0], bounds[-1])
            if len(firsts) > max(4, (len(bounds) - 1) // 4):
                return 0, covered, len(firsts)
            lo, hi = bounds[firsts[0]], bounds[firsts[0] + 1]
            shown = weight(lo, hi) + 1 - self._saved(units.part(lo, hi))
            for j in firsts[1:]:
                shown += self._difference(units, signature, (lo, hi), (bounds[j], bounds[j + 1]))
            return covered - shown, covered, len(firsts)

        return select(_uncovered(candidates, len(units), score), len(units), score)

    def _difference(
        self, units: Units, signature: np.ndarray, template: tuple[int, int], other: tuple[int, int]
    ) -> int:
        """``_difference``, memoised by the content of the two iterations (the same
        variants recur in sequences that differ elsewhere)."""
        (a, b), (c, d) = template, other
        content = (
            units.loose[a:b].tobytes(),
            units.loose[c:d].tobytes(),
            signature[a:b].tobytes(),
            signature[c:d].tobytes(),
            units.weight[c:d].tobytes(),
        )
        rows = self._differences.get(content)
        if rows is None:
            rows = self._differences[content] = _difference(units, signature, template, other)
        return rows

    def _signature(self, units: Units) -> np.ndarray:
        """What must be equal for two iterations to be the same variant: the units'
        exact keys, or (``match="function"``) the functions of their steps and how
        they nest in groups, so that iterations of one variant share nested groups."""
        if self.options.match == "function":
            return np.stack((units.layout, units.stop - units.start), axis=1)
        return units.exact

    def _replace(self, units: Units, groups: list[list[int]]) -> Units:
        """The next pass's units: each group becomes one unit."""
        keep = np.ones(len(units), dtype=bool)
        exact, loose, weight = units.exact.copy(), units.loose.copy(), units.weight.copy()
        stop, node, layout = units.stop.copy(), list(units.node), units.layout.copy()
        for bounds in groups:
            lo, hi = bounds[0], bounds[-1]
            group = self._group(units, bounds)
            first = units.part(bounds[0], bounds[1])
            if len(group.variants) == 1 and not group.near:
                content = ("G", first.exact.tobytes(), group.repetitions)
            else:
                relative = np.asarray(bounds, dtype=np.int64) - lo
                content = ("G", units.exact[lo:hi].tobytes(), relative.tobytes())
            exact[lo] = self._key(content)
            loose[lo] = self._key(("g", first.loose.tobytes()))
            relative = (np.asarray(bounds, dtype=np.int64) - lo).tobytes()
            layout[lo] = self._key(("L", units.layout[lo:hi].tobytes(), relative))
            weight[lo] = int(units.weight[lo:hi].sum())
            stop[lo] = units.stop[hi - 1]
            node[lo] = group
            keep[lo + 1 : hi] = False
        index = np.flatnonzero(keep)
        return Units(
            exact[index],
            loose[index],
            weight[index],
            units.start[index],
            stop[index],
            [node[i] for i in index.tolist()],
            layout[index],
            units.functions,
        )

    def _group(self, units: Units, bounds: list[int]) -> LocalGroup:
        variant_of, firsts = _iteration_variants(self._signature(units), bounds)
        template = units.step_functions(bounds[firsts[0]], bounds[firsts[0] + 1])
        near = any(
            not np.array_equal(units.step_functions(bounds[j], bounds[j + 1]), template)
            for j in firsts
        )
        variants = []
        for v, first in enumerate(firsts):
            lo, hi = bounds[first], bounds[first + 1]
            variants.append(
                Variant(
                    iterations=np.flatnonzero(variant_of == v).astype(np.int64),
                    nested=self._fold_part(units.part(lo, hi))[0],
                    steps=int(units.stop[hi - 1] - units.start[lo]),
                    calls=int(units.weight[lo:hi].sum()),
                )
            )
        starts = units.start[np.asarray(bounds[:-1])]
        return LocalGroup(
            bounds=np.append(starts, units.stop[bounds[-1] - 1]).astype(np.int64),
            variant_of=variant_of,
            variants=variants,
            near=near,
        )


def _shifted(group: LocalGroup, shift: int) -> LocalGroup:
    """A copy of ``group`` (nested groups included) moved by ``shift`` steps."""
    if shift == 0:
        return group
    variants = [
        Variant(
            iterations=variant.iterations,
            nested=[_shifted(inner, shift) for inner in variant.nested],
            steps=variant.steps,
            calls=variant.calls,
        )
        for variant in group.variants
    ]
    return LocalGroup(group.bounds + shift, group.variant_of, variants, group.near)


def _uncovered(candidates: list[list[int]], length: int, score) -> list[list[int]]:
    """The candidates, without duplicates and without those lying entirely inside
    longer candidates that fold (these are found again inside the templates, or
    in the next pass)."""
    unique = {(b[0], b[-1], len(b)): b for b in candidates}.values()
    covered = bytearray(length + 1)  # 1: inside a candidate that folds
    kept = []
    for bounds in sorted(unique, key=lambda b: (b[0] - b[-1], b[1] - b[0])):
        lo, hi = bounds[0], bounds[-1]
        if covered.find(0, lo, hi) < 0:
            continue
        kept.append(bounds)
        if score(bounds)[0] > 0:
            covered[lo:hi] = b"\x01" * (hi - lo)
    return kept


def _difference(
    units: Units, signature: np.ndarray, template: tuple[int, int], other: tuple[int, int]
) -> int:
    """Rows to show a variant as its differences from the template, as the view
    does: a header; steps aligned by function, a step that differs below (``~``)
    or is extra (``+``) with everything below it, one row per missing step."""
    a, b = (
        units.loose[template[0] : template[1]].tolist(),
        units.loose[other[0] : other[1]].tolist(),
    )
    same = _keys(signature, *template), _keys(signature, *other)
    weights = units.weight[other[0] : other[1]].tolist()
    rows = 1
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            rows += sum(
                weights[j]
                for i, j in zip(range(a0, a1), range(b0, b1), strict=True)
                if same[0][i] != same[1][j]
            )
        else:
            rows += (a1 - a0) + sum(weights[b0:b1])
    return rows


def _keys(signature: np.ndarray, lo: int, hi: int) -> list:
    """Hashable signature keys of units ``lo..hi``."""
    part = signature[lo:hi].tolist()
    return [tuple(k) for k in part] if signature.ndim == 2 else part


def _iteration_variants(signature: np.ndarray, bounds: list[int]) -> tuple[np.ndarray, list[int]]:
    """Variant index of every iteration (0 = most iterations, ties: first seen) and
    the first iteration of each variant, in variant order, from the iterations'
    bytes (no numpy call per step)."""
    reps = len(bounds) - 1
    first, last, period = bounds[0], bounds[-1], bounds[1] - bounds[0]
    data = signature[first:last].tobytes()
    row = len(data) // (last - first)  # bytes per unit
    shifted = period * row
    if bounds == list(range(first, last + 1, period)) and data[shifted:] == data[:-shifted]:
        return np.zeros(reps, dtype=np.int32), [0]
    if _variants_c is not None:
        variant_of, firsts = _variants_c(data, row, bounds)
        return np.frombuffer(variant_of, dtype=np.int32), firsts
    return _iteration_variants_py(data, row, bounds)


def _iteration_variants_py(
    data: bytes, row: int, bounds: list[int]
) -> tuple[np.ndarray, list[int]]:
    """``_iteration_variants`` after its shortcut, in Python (the C one's reference)."""
    reps, first = len(bounds) - 1, bounds[0]
    seen: dict[bytes, int] = {}
    raw: list[int] = []
    first_of: list[int] = []  # the first iteration of each variant, as first seen
    for j in range(reps):
        key = data[(bounds[j] - first) * row : (bounds[j + 1] - first) * row]
        v = seen.get(key)
        if v is None:
            v = seen[key] = len(first_of)
            first_of.append(j)
        raw.append(v)
    counts = [0] * len(seen)
    for v in raw:
        counts[v] += 1
    order = sorted(range(len(counts)), key=lambda v: (-counts[v], v))
    rank = [0] * len(counts)
    for position, v in enumerate(order):
        rank[v] = position
    return np.array([rank[v] for v in raw], dtype=np.int32), [first_of[v] for v in order]
