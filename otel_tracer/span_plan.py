"""Which calls become spans, under which parents: every call (the default), or,
with ``--fold-patterns``, one representative repetition per pattern group under
a group span that carries the counts, so that backends which choke on huge
traces still open a million-call training run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from otel_tracer.model import EXTERNAL, Trace

MAX_LABEL_STEPS = 6
MAX_LABEL_LENGTH = 80


@dataclass(frozen=True)
class GroupSpan:
    """A pattern group instance exported as one span over its kept repetition."""

    span_id: int
    parent_id: int
    name: str
    start: int
    end: int
    attributes: dict[str, Any]
    before: int  # index into SpanPlan.rows of the first call inside the group


@dataclass
class SpanPlan:
    """The spans of an export: the root, ``rows`` of the trace with their parents,
    and the group spans (only when folded)."""

    root_id: int
    rows: np.ndarray  # int64 trace rows, in start order
    parent_ids: np.ndarray  # uint64 parent span id of each row in ``rows``
    groups: list[GroupSpan] = field(default_factory=list)  # in ``before`` order
    total_calls: int = 0  # calls in the trace

    @property
    def omitted(self) -> int:
        """Calls left out because they repeat a kept repetition."""
        return int(self.total_calls - len(self.rows))

    def __len__(self) -> int:
        """The number of spans, the root included."""
        return 1 + len(self.rows) + len(self.groups)


def root_span_id(trace: Trace) -> int:
    """A span id for the run's root span, derived from the trace id and distinct
    from every call's span id."""
    candidate = int(trace.meta["trace_id"][:16], 16) or 1
    while np.any(trace.calls.span_id == np.uint64(candidate)):
        candidate = (candidate * 6364136223846793005 + 1) % 2**64 or 1
    return candidate


def span_plan(trace: Trace, fold_patterns: bool = False) -> SpanPlan:
    """Every call under its parent call (the root span for top-level calls); with
    ``fold_patterns`` and an annotated trace, only the first repetition of each
    pattern group, under a group span."""
    root_id = root_span_id(trace)
    parents = _parent_ids(trace, root_id)
    if not fold_patterns or trace.patterns is None or not trace.patterns.section["groups"]:
        rows = np.arange(len(trace), dtype=np.int64)
        return SpanPlan(root_id, rows, parents, total_calls=len(trace))
    return _FoldedPlan(trace, root_id, parents).plan()


def _parent_ids(trace: Trace, root_id: int) -> np.ndarray:
    parent = trace.calls.parent
    ids = trace.calls.span_id[np.maximum(parent, 0)].astype(np.uint64)
    ids[parent < 0] = np.uint64(root_id)
    return ids


def group_label(trace: Trace, group: dict[str, Any], groups: list[dict[str, Any]]) -> str:
    """``6x Layer.forward/layer_name``: the repetitions, then the template's steps
    (a nested group in parentheses, ``(4x a/b)``), at most ``MAX_LABEL_STEPS``
    steps and ``MAX_LABEL_LENGTH`` characters."""
    steps = []
    for entry in group["template"][:MAX_LABEL_STEPS]:
        if "call" in entry:
            steps.append(span_name(trace, entry["call"] - 1))
        else:
            steps.append(f"({group_label(trace, groups[entry['group'] - 1], groups)})")
    if len(group["template"]) > MAX_LABEL_STEPS:
        steps.append("...")
    label = f"{group['repetitions']}x {'/'.join(steps)}"
    return label if len(label) <= MAX_LABEL_LENGTH else label[: MAX_LABEL_LENGTH - 3] + "..."


def span_name(trace: Trace, row: int) -> str:
    """``qualname`` for calls in scope, ``module.qualname`` for external ones."""
    function = trace.function_of(row)
    if trace.calls.flags[row] & EXTERNAL and function.module:
        return f"{function.module}.{function.qualname}"
    return function.qualname


class _FoldedPlan:
    """Builds the folded plan: drops repetitions 2..R of every group (with all
    they call), adds a span per remaining group instance and re-parents the
    kept repetition's calls under it."""

    def __init__(self, trace: Trace, root_id: int, parents: np.ndarray) -> None:
        self.trace = trace
        self.root_id = root_id
        self.parents = parents.copy()
        self.groups: list[dict[str, Any]] = trace.patterns.section["groups"]  # type: ignore[union-attr]
        self.used = {int(x) for x in trace.calls.span_id.tolist()} | {root_id}
        self.random = random.Random(trace.meta["trace_id"])

    def _siblings(self, group: dict[str, Any]) -> np.ndarray:
        """The calls a group covers at its own level, in order."""
        parent_call = group["parent_call"]
        rows = self.trace.children_of(parent_call - 1 if parent_call else -1)
        if parent_call is None:
            rows = rows[self.trace.calls.thread[rows] == group["thread"]]
        return rows[(rows >= group["first"] - 1) & (rows <= group["last"] - 1)]

    def _dropped(self) -> np.ndarray:
        """Calls in a repetition after the first of any group, and all below them."""
        calls = self.trace.calls
        drop = np.zeros(len(calls), dtype=bool)
        for group in self.groups:
            if group["repetitions"] > 1:
                siblings = self._siblings(group)
                drop[siblings[siblings >= group["iterations"][1] - 1]] = True
        for rows in self.trace.levels[1:]:
            drop[rows] |= drop[calls.parent[rows]]
        return drop

    def _new_id(self) -> int:
        while True:
            candidate = self.random.getrandbits(64)
            if candidate and candidate not in self.used:
                self.used.add(candidate)
                return candidate

    def plan(self) -> SpanPlan:
        trace, calls = self.trace, self.trace.calls
        drop = self._dropped()
        sizes = trace.subtree_sizes
        kept_groups = sorted(
            (g for g in self.groups if not drop[g["first"] - 1]), key=self._nesting
        )
        ids: dict[int, int] = {}
        spans: list[tuple[int, GroupSpan]] = []
        for group in kept_groups:
            span_id = ids[group["id"]] = self._new_id()
            outer = self.groups[group["parent"] - 1] if group["parent"] else None
            if outer is not None and outer["parent_call"] == group["parent_call"]:
                parent_id = ids[outer["id"]]
            elif group["parent_call"]:
                parent_id = int(calls.span_id[group["parent_call"] - 1])
            else:
                parent_id = self.root_id
            siblings = self._siblings(group)
            kept = siblings[~drop[siblings]]
            self.parents[kept] = np.uint64(span_id)
            first = group["first"] - 1
            spans.append(
                (
                    first,
                    GroupSpan(
                        span_id=span_id,
                        parent_id=parent_id,
                        name=group_label(trace, group, self.groups),
                        start=int(calls.start[first]),
                        end=int(calls.end[kept].max()),
                        attributes=self._attributes(group, int(sizes[kept].sum())),
                        before=0,
                    ),
                )
            )
        rows = np.flatnonzero(~drop).astype(np.int64)
        positions = np.searchsorted(rows, [first for first, _ in spans])
        groups = [
            replace(span, before=int(position))
            for (_, span), position in zip(spans, positions, strict=True)
        ]
        groups.sort(key=lambda group: group.before)  # call order; stable: outer groups first
        return SpanPlan(self.root_id, rows, self.parents[rows], groups, total_calls=len(trace))

    def _nesting(self, group: dict[str, Any]) -> tuple[int, int]:
        """Outer groups before the groups inside them, then in call order."""
        depth, parent = 0, group["parent"]
        while parent is not None:
            depth += 1
            parent = self.groups[parent - 1]["parent"]
        return depth, group["first"]

    @staticmethod
    def _attributes(group: dict[str, Any], shown: int) -> dict[str, Any]:
        total = group["total_calls"]
        attributes = {
            "pattern.id": group["id"],
            "pattern.repetitions": group["repetitions"],
            "pattern.calls_per_repetition": group["calls_per_repetition"],
            "pattern.total_calls": total,
            "pattern.omitted_calls": total - shown,
            "pattern.variants": len(group["variants"]),
            "otel_tracer.pattern_group": True,
        }
        if group["parent"] is not None:
            attributes["pattern.parent_id"] = group["parent"]
        return attributes
