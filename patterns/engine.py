"""Folding a whole trace: every call's children, and every thread's root calls.

Calls of the same shape have identical children, so each distinct child
sequence is folded once (``Folder``) and the result is shared. The groups are
then numbered as *instances* (one per place a group occurs in the trace, in
call order) and every call inside a group is annotated with the innermost
group instance that contains it, its iteration and its variant.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from otel_tracer.trace.model import Trace
from patterns.fold import Folder, FoldOptions
from patterns.groups import LocalGroup
from patterns.shapes import Shapes, compute_shapes


@dataclass
class Placed:
    """A group of a sequence, flattened: its nesting inside the sequence's groups."""

    group: LocalGroup
    shift: int  # add to the group's positions (nested groups of later iterations)
    parent: int  # index of the enclosing Placed in the same sequence, -1 at top level
    parent_iteration: int  # iteration of the enclosing group it sits in, -1 at top level


@dataclass
class Sequence:
    """One distinct child sequence and the owners (parent calls) that have it."""

    groups: list[LocalGroup]
    placed: list[Placed]
    owners: np.ndarray  # int64 parent rows; -1 - thread for a thread's roots
    steps: np.ndarray  # int64 [len(owners), length]: the step rows of each owner
    instance_ids: np.ndarray | None = None  # int64 [len(owners), len(placed)]
    _index: dict[tuple[int, int], int] | None = field(default=None, repr=False)
    _cumulative: np.ndarray | None = field(default=None, repr=False)

    def calls_between(self, shapes: Shapes, owner: int, lo: int, hi: int) -> int:
        """Calls in the subtrees of steps ``lo..hi`` of owner row ``owner`` (an index
        into ``owners``): a group's calls differ between owners when steps compare
        by function only."""
        cumulative = self.cumulative(shapes)
        return int(cumulative[owner, hi] - cumulative[owner, lo])

    def cumulative(self, shapes: Shapes) -> np.ndarray:
        """[owner, k]: calls in the subtrees of the owner's first ``k`` steps."""
        if self._cumulative is None:
            sizes = shapes.size[self.steps]
            self._cumulative = np.concatenate(
                (np.zeros((len(sizes), 1), dtype=np.int64), np.cumsum(sizes, axis=1)), axis=1
            )
        return self._cumulative

    def placed_index(self, group: LocalGroup, shift: int) -> int:
        """Index in ``placed`` of a group at a shift."""
        if self._index is None:
            self._index = {(id(p.group), p.shift): i for i, p in enumerate(self.placed)}
        return self._index[(id(group), shift)]


@dataclass
class Instances:
    """Every occurrence of a group in the trace, ordered by first call (columnar)."""

    sequence: np.ndarray  # int64 index into Folding.sequences
    placed: np.ndarray  # int64 index into that sequence's ``placed``
    owner: np.ndarray  # int64 row in that sequence's ``owners``
    parent: np.ndarray  # int64 enclosing instance, -1 for none
    first: np.ndarray  # int64 first row covered
    last: np.ndarray  # int64 last row covered
    parent_call: np.ndarray  # int64 row of the parent call, -1 for a thread's roots
    thread: np.ndarray  # int32

    def __len__(self) -> int:
        return len(self.sequence)


@dataclass
class Folding:
    """The folded view of a trace and the pattern annotations of every call."""

    trace: Trace
    options: FoldOptions
    shapes: Shapes
    sequences: list[Sequence]
    sequence_of_owner: dict[int, tuple[int, int]]  # owner -> (sequence, owner row)
    instances: Instances
    group: np.ndarray  # int32 per call (int64 past 2**31 calls): innermost instance, -1
    iteration: np.ndarray  # int32 per call (int64 past 2**31 calls): iteration of it
    variant: np.ndarray  # int32 per call: variant of that iteration
    thread_roots: list[np.ndarray] = field(default_factory=list)

    def groups_of(self, owner: int) -> tuple[list[LocalGroup], np.ndarray]:
        """Top-level groups among the children of ``owner`` (a row, or -1 - thread
        for a thread's roots) and the step rows they refer to."""
        found = self.sequence_of_owner.get(owner)
        if found is None:
            return [], self.steps_of(owner)
        sequence = self.sequences[found[0]]
        return sequence.groups, sequence.steps[found[1]]

    def steps_of(self, owner: int) -> np.ndarray:
        """Child rows of a call, or the root rows of thread ``-1 - owner``."""
        if owner < 0:
            return self.thread_roots[-1 - owner]
        return self.trace.children_of(owner)

    def instance(self, index: int) -> tuple[Placed, np.ndarray]:
        """The placed group of an instance and the step rows of its sequence."""
        sequence = self.sequences[int(self.instances.sequence[index])]
        placed = sequence.placed[int(self.instances.placed[index])]
        return placed, sequence.steps[int(self.instances.owner[index])]


class FoldingTooSlow(Exception):
    """Folding went past its deadline (``time.perf_counter()`` seconds)."""


def fold_trace(
    trace: Trace, options: FoldOptions | None = None, deadline: float | None = None
) -> Folding:
    """Fold every sequence of siblings in ``trace`` and annotate its calls;
    ``FoldingTooSlow`` once ``deadline`` has passed (checked between sequences)."""
    options = options or FoldOptions()
    folder = Folder(options)
    function = trace.calls.function.astype(np.int64)

    def fold(shapes: Shapes, owners: np.ndarray, steps: np.ndarray) -> list[LocalGroup]:
        first = steps[0]
        return folder.fold(shapes.shape[first], function[first], shapes.size[first])

    return build_folding(trace, options, fold, deadline)


# the groups of one distinct child sequence: (shapes, its owners, their step rows)
SequenceFolder = Callable[[Shapes, np.ndarray, np.ndarray], list[LocalGroup]]


def build_folding(
    trace: Trace, options: FoldOptions, fold: SequenceFolder, deadline: float | None = None
) -> Folding:
    """The folding of ``trace`` whose groups for each distinct child sequence
    (the children of calls of one shape, or a thread's roots) ``fold`` gives."""
    shapes = compute_shapes(trace)
    calls = trace.calls
    offsets, order = trace.children
    roots = order[offsets[0] : offsets[1]]
    thread_roots = [roots[calls.thread[roots] == t] for t in range(len(trace.threads))]

    owner_lists: list[tuple[np.ndarray, np.ndarray]] = []  # (owners, steps matrix)
    counts = np.diff(offsets)[1:]
    parents = np.flatnonzero(counts >= 2)
    if len(parents):
        parent_shape = shapes.shape[parents]
        by_shape = np.argsort(parent_shape, kind="stable")
        edges = np.flatnonzero(np.diff(parent_shape[by_shape])) + 1
        for members in np.split(parents[by_shape], edges):
            width = int(counts[members[0]])
            steps = order[offsets[members + 1][:, None] + np.arange(width)]
            owner_lists.append((members.astype(np.int64), steps))
    for t, rows in enumerate(thread_roots):
        if len(rows) >= 2:
            owner_lists.append((np.array([-1 - t], dtype=np.int64), rows[None, :]))

    sequences: list[Sequence] = []
    for owners, steps in owner_lists:
        if deadline is not None and time.perf_counter() > deadline:
            raise FoldingTooSlow
        groups = fold(shapes, owners, steps)
        if groups:
            sequences.append(Sequence(groups, _flatten(groups), owners, steps))
    sequence_of_owner = {
        int(owner): (s, i)
        for s, sequence in enumerate(sequences)
        for i, owner in enumerate(sequence.owners.tolist())
    }
    instances, group, iteration, variant = _annotate(trace, shapes, sequences)
    return Folding(
        trace=trace,
        options=options,
        shapes=shapes,
        sequences=sequences,
        sequence_of_owner=sequence_of_owner,
        instances=instances,
        group=group,
        iteration=iteration,
        variant=variant,
        thread_roots=thread_roots,
    )


def _flatten(groups: list[LocalGroup]) -> list[Placed]:
    """All groups of a sequence in pre-order, outer before inner."""
    placed: list[Placed] = []
    stack = [(g, 0, -1, -1) for g in reversed(groups)]
    while stack:
        group, shift, parent, parent_iteration = stack.pop()
        index = len(placed)
        placed.append(Placed(group, shift, parent, parent_iteration))
        if not any(variant.nested for variant in group.variants):
            continue
        inner = []
        for j in range(group.repetitions):
            nested, offset = group.nested_of(j)
            inner.extend((g, shift + offset, index, j) for g in nested)
        stack.extend(reversed(inner))
    return placed


def _annotate(trace: Trace, shapes: Shapes, sequences: list[Sequence]):
    """Number the instances and give every call its innermost group."""
    n = len(trace)
    small = np.int32 if n < 2**31 else np.int64
    own = np.full(n, -1, dtype=np.int64)
    own_iteration = np.full(n, -1, dtype=small)
    own_variant = np.full(n, -1, dtype=np.int32)
    columns: dict[str, list[np.ndarray]] = {k: [] for k in ("sequence", "placed", "owner", "local")}
    base = 0
    ranges: list[slice] = []  # each sequence's instances, contiguous in the columns
    spans: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # id(group) -> its steps' marks
    for s, sequence in enumerate(sequences):
        owners, steps = sequence.owners, sequence.steps
        width = steps.shape[1]
        local = np.full(width, -1, dtype=np.int64)
        local_iteration = np.full(width, -1, dtype=np.int64)
        local_variant = np.full(width, -1, dtype=np.int32)
        for index, placed in enumerate(sequence.placed):
            group = placed.group
            marks = spans.get(id(group))
            if marks is None:  # a group placed again (another iteration) reuses them
                lengths = np.diff(group.bounds)
                marks = spans[id(group)] = (
                    np.repeat(np.arange(len(lengths)), lengths),
                    np.repeat(group.variant_of, lengths),
                )
            span = slice(group.start + placed.shift, group.stop + placed.shift)
            local[span] = index
            local_iteration[span], local_variant[span] = marks
        count = len(sequence.placed)
        ids = base + np.arange(len(owners), dtype=np.int64)[:, None] * count + local[None, :]
        covered = local >= 0
        rows = steps[:, covered]
        own[rows] = ids[:, covered]
        own_iteration[rows] = local_iteration[covered]
        own_variant[rows] = local_variant[covered]
        columns["sequence"].append(np.full(len(owners) * count, s, dtype=np.int64))
        columns["placed"].append(np.tile(np.arange(count, dtype=np.int64), len(owners)))
        columns["owner"].append(np.repeat(np.arange(len(owners), dtype=np.int64), count))
        columns["local"].append(
            np.tile(np.array([p.parent for p in sequence.placed], dtype=np.int64), len(owners))
        )
        ranges.append(slice(base, base + len(owners) * count))
        base += len(owners) * count

    # in place, a level at a time: a level's own marks are read before it inherits
    group, iteration, variant = own, own_iteration, own_variant
    parent = trace.calls.parent
    for rows in shapes.levels[1:]:
        inherit = rows[group[rows] < 0]
        up = parent[inherit]
        group[inherit] = group[up]
        iteration[inherit] = iteration[up]
        variant[inherit] = variant[up]

    def joined(key: str) -> np.ndarray:
        return np.concatenate(columns[key]) if columns[key] else np.zeros(0, dtype=np.int64)

    seq, plc, own_row, local_parent = (joined(k) for k in ("sequence", "placed", "owner", "local"))
    total = len(seq)
    first = np.empty(total, dtype=np.int64)
    last = np.empty(total, dtype=np.int64)
    owner_row = np.empty(total, dtype=np.int64)
    for sequence, mask in zip(sequences, ranges, strict=True):
        placed_index, owner_index = plc[mask], own_row[mask]
        starts = np.array([p.group.start + p.shift for p in sequence.placed], dtype=np.int64)
        stops = np.array([p.group.stop + p.shift for p in sequence.placed], dtype=np.int64)
        steps = sequence.steps
        first[mask] = steps[owner_index, starts[placed_index]]
        last[mask] = shapes.last[steps[owner_index, stops[placed_index] - 1]]
        owner_row[mask] = sequence.owners[owner_index]
    instance_base = np.arange(total, dtype=np.int64) - plc  # id of placed 0 of the same owner
    parent_instance = np.where(
        local_parent >= 0,
        instance_base + local_parent,
        np.where(owner_row >= 0, group[np.maximum(owner_row, 0)], -1),
    )
    thread = np.where(
        owner_row >= 0, trace.calls.thread[np.maximum(owner_row, 0)], -1 - owner_row
    ).astype(np.int32)
    # renumber in call order (first row, outer before inner)
    ordering = np.lexsort((-(last - first), first)) if total else np.zeros(0, dtype=np.int64)
    renumber = np.empty(total, dtype=np.int64)
    renumber[ordering] = np.arange(total, dtype=np.int64)
    remap = np.append(renumber, -1)  # index -1 stays -1
    for sequence, ids in zip(sequences, ranges, strict=True):
        sequence.instance_ids = renumber[ids].reshape(len(sequence.owners), len(sequence.placed))
    instances = Instances(
        sequence=seq[ordering],
        placed=plc[ordering],
        owner=own_row[ordering],
        parent=remap[parent_instance[ordering]],
        first=first[ordering],
        last=last[ordering],
        parent_call=np.where(owner_row >= 0, owner_row, -1)[ordering],
        thread=thread[ordering],
    )
    return instances, remap.astype(small)[group], iteration, variant
