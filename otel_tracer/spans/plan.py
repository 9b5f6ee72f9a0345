"""Which calls become spans, under which parents: every call (the default), or,
with ``--fold-patterns``, one representative repetition per pattern group under
a group span that carries the counts, so that backends which choke on huge
traces still open a million-call training run.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from otel_tracer.trace.model import EXTERNAL, Trace

NAMESPACE = "otel_tracer"  # the project's attribute namespace (semantic conventions:
# "Attribute Naming", names not defined by the conventions go under a namespace)
PATTERN_PREFIX = f"{NAMESPACE}."
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
    and the group spans (only when folded). A run of several processes is split
    into ``parts``, one plan per process, each under its own root span and
    exported with its own Resource."""

    root_id: int
    rows: np.ndarray  # int64 trace rows, in start order
    parent_ids: np.ndarray  # uint64 parent span id of each row in ``rows``
    groups: list[GroupSpan] = field(default_factory=list)  # in ``before`` order
    total_calls: int = 0  # calls in the trace
    process: dict[str, Any] | None = None  # metadata.processes entry; None: the first
    root_parent: int | None = None  # the parent of the root span (another process's)
    process_rows: np.ndarray | None = None  # every call of the process; None: all calls
    split: list[SpanPlan] = field(default_factory=list)

    @property
    def parts(self) -> list[SpanPlan]:
        """One plan per process, the first process first (``[self]`` for one)."""
        return self.split or [self]

    @property
    def omitted(self) -> int:
        """Calls left out because they repeat a kept repetition."""
        return int(self.total_calls - len(self.rows))

    def __len__(self) -> int:
        """The number of spans, one root per process included."""
        return len(self.parts) + len(self.rows) + len(self.groups)


def root_span_id(trace: Trace) -> int:
    """The span id of the run's root span: the recorded one (``root_span_id``),
    or for older traces one derived from the trace id; distinct from every call's."""
    candidate = int(trace.meta.get("root_span_id") or trace.meta["trace_id"][:16], 16) or 1
    while np.any(trace.calls.span_id == np.uint64(candidate)):
        candidate = (candidate * 6364136223846793005 + 1) % 2**64 or 1
    return candidate


def span_plan(trace: Trace, fold_patterns: bool = False) -> SpanPlan:
    """Every call under its parent call (the root span for top-level calls); with
    ``fold_patterns`` and an annotated trace, only the first repetition of each
    pattern group, under a group span."""
    root_id = root_span_id(trace)
    thread_part, thread_roots = _thread_roots(trace, root_id)
    parents = _parent_ids(trace, thread_roots)
    if not fold_patterns or trace.patterns is None or not trace.patterns.section["groups"]:
        rows = np.arange(len(trace), dtype=np.int64)
        plan = SpanPlan(root_id, rows, parents, total_calls=len(trace))
    else:
        plan = _FoldedPlan(trace, root_id, parents, thread_roots).plan()
    if len(trace.meta.get("processes") or []) > 1:
        plan.split = _split(trace, plan, thread_part)
    return plan


def _parent_ids(trace: Trace, thread_roots: np.ndarray) -> np.ndarray:
    parent = trace.calls.parent
    ids = trace.calls.span_id[np.maximum(parent, 0)].astype(np.uint64)
    roots = parent < 0
    ids[roots] = thread_roots[trace.calls.thread[roots]]
    return ids


def _thread_roots(trace: Trace, root_id: int) -> tuple[np.ndarray, np.ndarray]:
    """For each thread, the index of its process in ``metadata.processes`` (0 for
    the first process and threads of no listed process) and the span id its
    top-level calls hang under: the root span of its process."""
    part = np.zeros(len(trace.threads), dtype=np.int64)
    roots = np.full(len(trace.threads), root_id, dtype=np.uint64)
    processes = trace.meta.get("processes") or []
    pids = np.array([t.pid for t in trace.threads], dtype=np.int64)
    for i, process in enumerate(processes[1:], 1):
        mine = pids == process["pid"]
        part[mine] = i
        roots[mine] = np.uint64(int(process["root_span_id"], 16))
    return part, roots


def _split(trace: Trace, plan: SpanPlan, thread_part: np.ndarray) -> list[SpanPlan]:
    """``plan`` cut into one plan per process: its calls, its group spans, and a
    root span under the span of the process that started it."""
    processes = trace.meta["processes"]
    known = {p["root_span_id"] for p in processes}
    call_part = thread_part[trace.calls.thread] if len(trace) else thread_part[:0]
    row_part = call_part[plan.rows]
    parts = []
    for i, process in enumerate(processes):
        mine = row_part == i
        before = np.concatenate([[0], np.cumsum(mine)])
        groups = [
            replace(group, before=int(before[group.before]))
            for group in plan.groups
            if group.before < len(mine) and mine[group.before]
        ]
        rows = plan.rows[mine]
        calls = np.flatnonzero(call_part == i)
        part = SpanPlan(plan.root_id, rows, plan.parent_ids[mine], groups, len(calls))
        part.process_rows = calls
        if i:
            parent = process["parent_span_id"]
            part.root_id = int(process["root_span_id"], 16)
            part.root_parent = int(parent, 16) if parent in known else plan.root_id
            part.process = process
        parts.append(part)
    return parts


def program_name(argv: list[str]) -> str:
    """The low-cardinality name of a program: ``train.py`` for ``/x/train.py
    --lr 3``, ``pkg.mod`` for ``-m pkg.mod``."""
    first = str(argv[0]) if argv else ""
    if first.startswith("-m "):
        return first[3:]
    return os.path.basename(first) or "python"


def pattern_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """The trace's ``pattern.*`` annotations as span attributes, in the project's
    namespace (``otel_tracer.pattern.id``)."""
    return {PATTERN_PREFIX + key: value for key, value in attributes.items()}


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

    def __init__(
        self, trace: Trace, root_id: int, parents: np.ndarray, thread_roots: np.ndarray
    ) -> None:
        self.trace = trace
        self.root_id = root_id
        self.thread_roots = thread_roots
        self.parents = parents.copy()
        self.groups: list[dict[str, Any]] = trace.patterns.section["groups"]  # type: ignore[union-attr]
        self.used = {int(x) for x in trace.calls.span_id.tolist()} | {root_id}
        self.used |= {int(x) for x in thread_roots.tolist()}
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
                parent_id = int(self.thread_roots[group["thread"]])
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
                        end=int(calls.end[kept].max()) if len(kept) else int(calls.end[first]),
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
            "pattern.group": True,
        }
        if group["parent"] is not None:
            attributes["pattern.parent_id"] = group["parent"]
        return pattern_attributes(attributes)
