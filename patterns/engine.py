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
    layout = _Layout(sequences)
    for chunk in layout.chunks():  # every step of every owner, in bounded pieces
        seq, owner, column = layout.positions(chunk)
        index = layout.local_offset[seq] + column
        local = layout.local[index]
        covered = np.flatnonzero(local >= 0)
        rows = layout.step_rows(chunk)[covered]
        seq, owner, index, local = seq[covered], owner[covered], index[covered], local[covered]
        own[rows] = layout.instance_base[seq] + owner * layout.count[seq] + local
        own_iteration[rows] = layout.local_iteration[index]
        own_variant[rows] = layout.local_variant[index]

    # instances, sequence after sequence, owner after owner, placed after placed
    seq = np.repeat(np.arange(len(sequences), dtype=np.int64), layout.n_owners * layout.count)
    within = np.arange(len(seq), dtype=np.int64) - layout.instance_base[seq]
    plc = within % layout.count[seq]
    own_row = within // layout.count[seq]
    placed_at = layout.placed_offset[seq] + plc
    local_parent = layout.placed_parent[placed_at]
    step_base = layout.step_offset[seq] + own_row * layout.width[seq]
    first = layout.steps[step_base + layout.placed_start[placed_at]]
    last = shapes.last[layout.steps[step_base + layout.placed_stop[placed_at] - 1]]
    owner_row = layout.owners[layout.owner_offset[seq] + own_row]
    ends = layout.instance_base + layout.n_owners * layout.count
    ranges = [
        slice(b, e) for b, e in zip(layout.instance_base.tolist(), ends.tolist(), strict=True)
    ]

    # in place, a level at a time: a level's own marks are read before it inherits
    # (a trace without groups has none to pass down)
    group, iteration, variant = own, own_iteration, own_variant
    parent = trace.calls.parent
    for rows in shapes.levels[1:] if sequences else ():
        inherit = rows[group[rows] < 0]
        up = parent[inherit]
        group[inherit] = group[up]
        iteration[inherit] = iteration[up]
        variant[inherit] = variant[up]

    total = len(seq)
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


CHUNK = 1 << 20  # steps annotated at a time: bounded temporaries on any trace


class _Layout:
    """Every sequence's owners, step rows and placed groups, concatenated, with
    each sequence's offsets: ``_annotate``'s numpy passes over all of them."""

    def __init__(self, sequences: list[Sequence]) -> None:
        self.n_owners = np.array([len(s.owners) for s in sequences], dtype=np.int64)
        self.width = np.array([s.steps.shape[1] for s in sequences], dtype=np.int64)
        self.count = np.array([len(s.placed) for s in sequences], dtype=np.int64)
        self.instance_base = _starts(self.n_owners * self.count)
        self.step_offset = _starts(self.n_owners * self.width)
        self.owner_offset = _starts(self.n_owners)
        self.local_offset = _starts(self.width)
        self.placed_offset = _starts(self.count)
        self.steps = _joined([s.steps.ravel() for s in sequences])
        self.owners = _joined([s.owners for s in sequences])
        placed = [p for s in sequences for p in s.placed]
        self.placed_start = np.array([p.group.start + p.shift for p in placed], dtype=np.int64)
        self.placed_stop = np.array([p.group.stop + p.shift for p in placed], dtype=np.int64)
        self.placed_parent = np.array([p.parent for p in placed], dtype=np.int64)
        # per sequence position: the innermost placed group there, its iteration and variant
        total = int(self.width.sum())
        self.local = np.full(total, -1, dtype=np.int64)
        self.local_iteration = np.full(total, -1, dtype=np.int64)
        self.local_variant = np.full(total, -1, dtype=np.int32)
        marks: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # id(group) -> its steps' marks
        for sequence, offset in zip(sequences, self.local_offset.tolist(), strict=True):
            for index, placed_group in enumerate(sequence.placed):  # outer before inner
                group = placed_group.group
                known = marks.get(id(group))
                if known is None:  # a group placed again (another iteration) reuses them
                    lengths = np.diff(group.bounds)
                    known = marks[id(group)] = (
                        np.repeat(np.arange(len(lengths)), lengths),
                        np.repeat(group.variant_of, lengths),
                    )
                span = slice(
                    offset + group.start + placed_group.shift,
                    offset + group.stop + placed_group.shift,
                )
                self.local[span] = index
                self.local_iteration[span], self.local_variant[span] = known

    def chunks(self) -> list[tuple[int, int]]:
        """Ranges of the concatenated steps, at most CHUNK long."""
        return [(lo, min(lo + CHUNK, len(self.steps))) for lo in range(0, len(self.steps), CHUNK)]

    def positions(self, chunk: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sequence, owner, position in the sequence) of each step of ``chunk``."""
        flat = np.arange(*chunk, dtype=np.int64)
        seq = np.searchsorted(self.step_offset, flat, side="right") - 1
        within = flat - self.step_offset[seq]
        width = self.width[seq]
        return seq, within // width, within % width

    def step_rows(self, chunk: tuple[int, int]) -> np.ndarray:
        """The rows of the steps of ``chunk``."""
        return self.steps[chunk[0] : chunk[1]]


def _starts(sizes: np.ndarray) -> np.ndarray:
    """Where each of consecutive pieces of these sizes starts."""
    return (np.cumsum(sizes) - sizes).astype(np.int64)


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays).astype(np.int64) if arrays else np.zeros(0, dtype=np.int64)
