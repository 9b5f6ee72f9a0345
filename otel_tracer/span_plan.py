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
    processes, thread_roots = _process_spans(trace, root_id)
    parents = _parent_ids(trace, thread_roots)
    if not fold_patterns or trace.patterns is None or not trace.patterns.section["groups"]:
        rows = np.arange(len(trace), dtype=np.int64)
        plan = SpanPlan(root_id, rows, parents, total_calls=len(trace))
    else:
        plan = _FoldedPlan(trace, root_id, parents, thread_roots).plan()
    if processes:
        firsts = np.searchsorted(plan.rows, [first for first, _ in processes])
        spans = [replace(s, before=int(b)) for (_, s), b in zip(processes, firsts, strict=True)]
        plan.groups = sorted(spans + plan.groups, key=lambda group: group.before)
    return plan


def _parent_ids(trace: Trace, thread_roots: np.ndarray) -> np.ndarray:
    parent = trace.calls.parent
    ids = trace.calls.span_id[np.maximum(parent, 0)].astype(np.uint64)
    roots = parent < 0
    ids[roots] = thread_roots[trace.calls.thread[roots]]
    return ids


def _process_spans(trace: Trace, root_id: int) -> tuple[list[tuple[int, GroupSpan]], np.ndarray]:
    """A span for each process but the first of a merged trace (with the row of
    its first call), under the span of the process that started it; and the
    parent span id of each thread's top-level calls."""
    thread_roots = np.full(len(trace.threads), root_id, dtype=np.uint64)
    processes = trace.meta.get("processes") or []
    if len(processes) < 2:
        return [], thread_roots
    known = {p["root_span_id"] for p in processes}
    pids = np.array([t.pid for t in trace.threads], dtype=np.int64)
    thread_of_call = pids[trace.calls.thread] if len(trace) else pids[:0]
    spans = []
    for process in processes[1:]:
        span_id = int(process["root_span_id"], 16)
        parent = process["parent_span_id"]
        thread_roots[pids == process["pid"]] = np.uint64(span_id)
        rows = np.flatnonzero(thread_of_call == process["pid"])
        start = int(process["start_time_unix_nano"])
        end = start + int(process["duration_ns"])
        if len(rows):
            start = min(start, int(trace.calls.start[rows[0]]))
            end = max(end, int(trace.calls.end[rows].max()))
        span = GroupSpan(
            span_id=span_id,
            parent_id=int(parent, 16) if parent in known else root_id,
            name=process_name(process),
            start=start,
            end=end,
            attributes=_process_attributes(process),
            before=0,
        )
        spans.append((int(rows[0]) if len(rows) else len(trace), span))
    return spans, thread_roots


def process_name(process: dict[str, Any]) -> str:
    """``process 4242 train.py``: the pid and the program's file name."""
    program = os.path.basename(process["argv"][0]) if process["argv"] else ""
    return f"process {process['pid']} {program}".rstrip()


def _process_attributes(process: dict[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "process.pid": process["pid"],
        "process.parent_pid": process["parent_pid"],
        "process.command_args": list(process["argv"]),
        "otel_tracer.process": True,
        "otel_tracer.calls": process["call_count"],
    }
    if process["exit_code"] is not None:
        attributes["process.exit.code"] = process["exit_code"]
    return attributes


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
            "otel_tracer.pattern_group": True,
        }
        if group["parent"] is not None:
            attributes["pattern.parent_id"] = group["parent"]
        return attributes
