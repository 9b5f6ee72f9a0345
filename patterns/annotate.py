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
    layouts: dict[tuple[int, int], _Layout] = {}
    columns = {
        name: getattr(folding.instances, name).tolist()
        for name in (
            "sequence",
            "placed",
            "owner",
            "parent",
            "parent_call",
            "thread",
            "first",
            "last",
        )
    }
    groups = []
    for index, key in enumerate(zip(columns["sequence"], columns["placed"], strict=True)):
        if key not in layouts:
            layouts[key] = _Layout(folding, *key)
        groups.append(layouts[key].entry(columns, index))
    for group in groups:
        if group["parent"] is not None:
            groups[group["parent"] - 1]["groups"].append(group["id"])
    return {
        "options": {"match": folding.options.match, "near": folding.options.near},
        "statistics": statistics(folding, groups),
        "groups": groups,
    }


class _Layout:
    """What every instance of one placed group shares: sibling positions of its
    iteration starts and template entries, and the nested groups they name."""

    def __init__(self, folding: Folding, sequence_index: int, placed_index: int) -> None:
        sequence = folding.sequences[sequence_index]
        placed = sequence.placed[placed_index]
        group, shift = placed.group, placed.shift
        self.group = group
        self.span = (group.start + shift, group.stop + shift)
        self.ranges = [
            (
                int(group.bounds[v.representative]) + shift,
                int(group.bounds[v.representative + 1]) + shift,
            )
            for v in group.variants
        ]
        self.shapes = folding.shapes
        positions = (group.bounds[:-1] + shift).tolist()
        nested_placed: list[int] = []
        self.variants: list[tuple[list[int], list[tuple[str, int]]]] = []
        for variant in group.variants:
            j = variant.representative
            lo, hi = int(group.bounds[j]) + shift, int(group.bounds[j + 1]) + shift
            entries = []
            for kind, value in entries_of(variant.nested, shift, lo, hi):
                if kind == "step":
                    entries.append(("call", len(positions)))
                    positions.append(value)
                else:
                    entries.append(("group", len(nested_placed)))
                    nested_placed.append(sequence.placed_index(*value))
            self.variants.append((variant.iterations.tolist(), entries))
        self.positions = np.asarray(positions, dtype=np.int64)
        self.nested = np.asarray(nested_placed, dtype=np.int64)
        self.sequence = sequence

    def entry(self, instances: dict[str, list[int]], index: int) -> dict[str, Any]:
        """The group entry of instance ``index`` (``instances``: the instance columns)."""
        owner = instances["owner"][index]
        calls = (self.sequence.steps[owner, self.positions] + 1).tolist()
        nested = (self.sequence.instance_ids[owner, self.nested] + 1).tolist()
        group = self.group
        per_variant = [self.sequence.calls_between(self.shapes, owner, *r) for r in self.ranges]
        variants = [
            {
                "iterations": iterations,
                "calls": calls_in_variant,
                "steps": variant.steps,
                "entries": [
                    {"call": calls[i]} if kind == "call" else {"group": nested[i]}
                    for kind, i in entries
                ],
            }
            for (iterations, entries), variant, calls_in_variant in zip(
                self.variants, group.variants, per_variant, strict=True
            )
        ]
        parent = instances["parent"][index]
        parent_call = instances["parent_call"][index]
        return {
            "id": index + 1,
            "parent": parent + 1 if parent >= 0 else None,
            "parent_call": parent_call + 1 if parent_call >= 0 else None,
            "thread": instances["thread"][index],
            "first": instances["first"][index] + 1,
            "last": instances["last"][index] + 1,
            "repetitions": group.repetitions,
            "calls_per_repetition": per_variant[0],
            "total_calls": self.sequence.calls_between(self.shapes, owner, *self.span),
            "near": group.near,
            "iterations": calls[: group.repetitions],
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
