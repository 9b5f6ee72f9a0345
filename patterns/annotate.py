"""Annotating a trace with its pattern groups: the ``patterns`` section of the
JSON trace and the ``pattern`` mark of every call (docs/trace-format.md)."""

from __future__ import annotations

from typing import Any

import numpy as np

from otel_tracer.model import PatternColumns, Trace
from patterns.engine import Folding, fold_trace
from patterns.fold import FoldOptions
from patterns.render import count_rows, entries_of

LARGEST = 5


def annotate(trace: Trace, options: FoldOptions | None = None) -> Folding:
    """Fold ``trace`` and attach the annotations to it (``trace.patterns``)."""
    folding = fold_trace(trace, options)
    trace.patterns = PatternColumns(
        group=folding.group,
        iteration=folding.iteration,
        variant=folding.variant,
        section=section(folding),
    )
    return folding


def section(folding: Folding) -> dict[str, Any]:
    """The ``patterns`` section: options, statistics and every group instance."""
    groups = [_group_entry(folding, i) for i in range(len(folding.instances))]
    for group in groups:
        if group["parent"] is not None:
            groups[group["parent"] - 1]["groups"].append(group["id"])
    return {
        "options": {"match": folding.options.match, "near": folding.options.near},
        "statistics": statistics(folding, groups),
        "groups": groups,
    }


def _group_entry(folding: Folding, index: int) -> dict[str, Any]:
    instances = folding.instances
    placed, steps = folding.instance(index)
    sequence = folding.sequences[int(instances.sequence[index])]
    owner = int(instances.owner[index])
    group, shift = placed.group, placed.shift
    first_calls = steps[group.bounds[:-1] + shift] + 1
    variants = []
    for variant in group.variants:
        j = variant.representative
        lo, hi = int(group.bounds[j]) + shift, int(group.bounds[j + 1]) + shift
        entries = []
        for kind, value in entries_of(variant.nested, shift, lo, hi):
            if kind == "step":
                entries.append({"call": int(steps[value]) + 1})
            else:
                nested, nested_shift = value
                nested_id = sequence.instance_ids[
                    owner, sequence.placed_index(nested, nested_shift)
                ]
                entries.append({"group": int(nested_id) + 1})
        variants.append(
            {
                "iterations": variant.iterations.tolist(),
                "calls": variant.calls,
                "steps": variant.steps,
                "entries": entries,
            }
        )
    parent = int(instances.parent[index])
    parent_call = int(instances.parent_call[index])
    return {
        "id": index + 1,
        "parent": parent + 1 if parent >= 0 else None,
        "parent_call": parent_call + 1 if parent_call >= 0 else None,
        "thread": int(instances.thread[index]),
        "first": int(instances.first[index]) + 1,
        "last": int(instances.last[index]) + 1,
        "repetitions": group.repetitions,
        "calls_per_repetition": group.variants[0].calls,
        "total_calls": group.total_calls,
        "near": group.near,
        "iterations": first_calls.tolist(),
        "template": variants[0]["entries"],
        "variants": variants,
        "groups": [],
    }


def statistics(folding: Folding, groups: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts of the folding: groups, calls covered, rows folded vs unfolded."""
    n = len(folding.trace)
    rows = count_rows(folding)
    largest = sorted(groups, key=lambda g: (-g["total_calls"], g["id"]))[:LARGEST]
    return {
        "groups": len(groups),
        "top_level_groups": sum(1 for g in groups if g["parent"] is None),
        "calls": n,
        "calls_in_groups": int(np.count_nonzero(folding.group >= 0)),
        "rows_unfolded": n,
        "rows_folded": rows,
        "compression": round(n / rows, 2) if rows else 1.0,
        "largest": [
            {k: g[k] for k in ("id", "repetitions", "calls_per_repetition", "total_calls", "first")}
            for g in largest
        ],
    }
