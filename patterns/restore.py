"""The folding a trace was saved with, rebuilt from its pattern groups (trace
format 3) instead of folding the trace again: the grouped view and the viewer of
a saved trace then cost a load, not a fold.

Every instance of a group in the file gives its layout and its place among its
siblings, so the groups of each distinct child sequence are read off the first
call that has it. What is rebuilt is checked: sane bounds and variants, and the
same pattern mark on every call as the file has. A file that fails gets folded
again, as before."""

from __future__ import annotations

from typing import Any

import numpy as np

from otel_tracer.trace.group_table import (
    FIRST,
    LAYOUT,
    PARENT,
    PARENT_CALL,
    THREAD,
    GroupTable,
    nested_among_siblings,
)
from otel_tracer.trace.model import Trace
from patterns.engine import Folding, build_folding, fold_trace
from patterns.fold import FoldOptions
from patterns.groups import LocalGroup, Variant
from patterns.shapes import Shapes


class _Unsound(Exception):
    """Saved groups that do not describe a folding of this trace."""


def saved_or_folded(trace: Trace, options: FoldOptions) -> Folding:
    """The folding saved in ``trace`` with ``options``, else ``trace`` folded."""
    return restored_folding(trace, options) or fold_trace(trace, options)


def saved_groups(trace: Trace, options: FoldOptions) -> GroupTable | None:
    """The groups ``trace`` holds when it was saved as format 3 and folded with
    ``options`` (else None: another version, other options, or none)."""
    if trace.patterns is None:
        return None
    section = trace.patterns.section
    table = section["groups"]
    same = section["options"] == {"match": options.match, "near": options.near}
    return table if same and isinstance(table, GroupTable) else None


def restored_folding(trace: Trace, options: FoldOptions) -> Folding | None:
    """The folding ``trace`` was annotated with, when it was saved as format 3
    with ``options`` and its groups check out; else None."""
    table = saved_groups(trace, options)
    if table is None:
        return None
    try:
        folding = build_folding(trace, options, _Restorer(table, len(trace)).groups)
    except (_Unsound, IndexError, KeyError, ValueError, RecursionError):
        return None
    saved = trace.patterns
    same = (
        np.array_equal(folding.group, saved.group)
        and np.array_equal(folding.iteration, saved.iteration)
        and np.array_equal(folding.variant, saved.variant)
        and len(folding.instances) == len(table)
    )
    return folding if same else None


class _Restorer:
    """Local groups from the saved instances, a sequence's owner at a time."""

    def __init__(self, table: GroupTable, calls: int) -> None:
        self.table = table
        rows = table.rows
        parent = rows[:, PARENT]
        own = nested_among_siblings(rows)
        owner = np.where(rows[:, PARENT_CALL] > 0, rows[:, PARENT_CALL] - 1, -1 - rows[:, THREAD])
        top = np.flatnonzero(~own)
        by_owner = np.argsort(owner[top], kind="stable")
        self.top_owner = owner[top][by_owner]  # owner (a row, or -1 - thread), sorted
        self.top_index = top[by_owner]  # the instances at the top of its sequence, in order
        self.key = calls + 1  # an instance by (parent id, first call): parent * key + first
        nested = np.flatnonzero(own)
        keys = parent[nested] * self.key + rows[nested, FIRST]
        self.by_first = dict(zip(keys.tolist(), nested.tolist(), strict=True))
        self.layout = rows[:, LAYOUT].tolist()
        self.first = rows[:, FIRST].tolist()

    def groups(self, shapes: Shapes, owners: np.ndarray, steps: np.ndarray) -> list[LocalGroup]:
        """The top-level groups of the sequence whose first owner is ``owners[0]``."""
        ids = (steps[0] + 1).tolist()
        position = {call: p for p, call in enumerate(ids)}
        lo = int(np.searchsorted(self.top_owner, owners[0], "left"))
        hi = int(np.searchsorted(self.top_owner, owners[0], "right"))
        groups = [self._group(i, ids, position) for i in self.top_index[lo:hi].tolist()]
        _check_order(groups, len(ids))
        return groups

    def _group(self, index: int, ids: list[int], position: dict[int, int]) -> LocalGroup:
        """The local group of instance ``index`` in a sequence of calls ``ids``
        (``position``: where each of them is)."""
        layout: dict[str, Any] = self.table.layouts[self.layout[index]]
        start = position[self.first[index]]
        repetitions = layout["repetitions"]
        variant_of = [-1] * repetitions
        variants = []
        for v, saved in enumerate(layout["variants"]):
            iterations = saved["iterations"]
            if not iterations or iterations != sorted(set(iterations)) or saved["steps"] < 1:
                raise _Unsound
            for j in iterations:
                if variant_of[j] >= 0:
                    raise _Unsound
                variant_of[j] = v
            nested = []
            for entry in saved["entries"]:
                if "group" in entry:
                    at = start + entry["group"]
                    found = self.by_first[(index + 1) * self.key + ids[at]]
                    nested.append(self._group(found, ids, position))
            ordered = np.asarray(iterations, dtype=np.int64)
            variants.append(Variant(ordered, nested, saved["steps"], saved["calls"]))
        bounds = [start + offset for offset in layout["iterations"]]
        bounds.append(bounds[-1] + variants[variant_of[-1]].steps)
        for j, v in enumerate(variant_of):  # every iteration: one variant, its steps
            if v < 0 or bounds[j + 1] - bounds[j] != variants[v].steps:
                raise _Unsound
        if bounds[-1] > len(ids):
            raise _Unsound
        for variant in variants:
            j = variant.representative
            _check_order(variant.nested, bounds[j + 1], bounds[j])
        return LocalGroup(
            np.asarray(bounds, dtype=np.int64),
            np.asarray(variant_of, dtype=np.int32),
            variants,
            layout["near"],
        )


def _check_order(groups: list[LocalGroup], stop: int, start: int = 0) -> None:
    """Groups in order, apart, inside ``start..stop``."""
    for group in groups:
        if group.start < start or group.stop > stop:
            raise _Unsound
        start = group.stop
