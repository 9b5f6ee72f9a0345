"""Annotating a trace with its pattern groups: the ``patterns`` section of the
JSON trace and the ``pattern`` mark of every call (docs/trace-format.md)."""

from __future__ import annotations

from typing import Any

import numpy as np

from otel_tracer.trace.model import PatternColumns, Trace
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
    by_layout: dict[tuple[int, int], list[int]] = {}
    for index, key in enumerate(zip(columns["sequence"], columns["placed"], strict=True)):
        by_layout.setdefault(key, []).append(index)
    groups: list[dict[str, Any]] = [{}] * len(columns["sequence"])
    for key, indices in by_layout.items():  # the instances of one layout at once
        layouts[key] = _Layout(folding, *key)
        for index, entry in zip(indices, layouts[key].entries(columns, indices), strict=True):
            groups[index] = entry
    for group in groups:
        if group["parent"] is not None:
            groups[group["parent"] - 1]["groups"].append(group["id"])
    return {
        "options": {"match": folding.options.match, "near": folding.options.near},
        "statistics": statistics(folding),
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

    def entries(self, instances: dict[str, list[int]], indices: list[int]) -> list[dict[str, Any]]:
        """The group entries of instances ``indices`` of this layout (``instances``:
        the instance columns), their calls gathered for all of them at once."""
        owners = np.asarray([instances["owner"][i] for i in indices], dtype=np.int64)
        sequence = self.sequence
        cumulative = sequence.cumulative(self.shapes)[owners]
        calls_of = (sequence.steps[owners[:, None], self.positions[None, :]] + 1).tolist()
        nested_of = (sequence.instance_ids[owners[:, None], self.nested[None, :]] + 1).tolist()
        per_variant_of = np.stack(
            [cumulative[:, hi] - cumulative[:, lo] for lo, hi in self.ranges], axis=1
        ).tolist()
        totals = (cumulative[:, self.span[1]] - cumulative[:, self.span[0]]).tolist()
        group = self.group
        shapes = [
            (iterations, entries, variant.steps)
            for (iterations, entries), variant in zip(self.variants, group.variants, strict=True)
        ]
        out = []
        for k, index in enumerate(indices):
            calls, nested, per_variant = calls_of[k], nested_of[k], per_variant_of[k]
            variants = [
                {
                    "iterations": iterations,
                    "calls": calls_in_variant,
                    "steps": steps,
                    "entries": [
                        {"call": calls[i]} if kind == "call" else {"group": nested[i]}
                        for kind, i in entries
                    ],
                }
                for (iterations, entries, steps), calls_in_variant in zip(
                    shapes, per_variant, strict=True
                )
            ]
            parent = instances["parent"][index]
            parent_call = instances["parent_call"][index]
            out.append(
                {
                    "id": index + 1,
                    "parent": parent + 1 if parent >= 0 else None,
                    "parent_call": parent_call + 1 if parent_call >= 0 else None,
                    "thread": instances["thread"][index],
                    "first": instances["first"][index] + 1,
                    "last": instances["last"][index] + 1,
                    "repetitions": group.repetitions,
                    "calls_per_repetition": per_variant[0],
                    "total_calls": totals[k],
                    "near": group.near,
                    "iterations": calls[: group.repetitions],
                    "template": variants[0]["entries"],
                    "variants": variants,
                    "groups": [],
                }
            )
        return out


def statistics(folding: Folding) -> dict[str, Any]:
    """Counts of the folding: groups, calls covered, rows folded vs unfolded, and
    the largest groups (most calls; the first in call order among equals)."""
    n = len(folding.trace)
    instances = folding.instances
    rows = count_rows(folding)
    totals = instance_totals(folding)
    largest = np.lexsort((np.arange(len(totals)), -totals))[:LARGEST].tolist()
    return {
        "groups": len(instances),
        "top_level_groups": int(np.count_nonzero(instances.parent < 0)),
        "calls": n,
        "calls_in_groups": int(np.count_nonzero(folding.group >= 0)),
        "rows_unfolded": n,
        "rows_folded": rows,
        "compression": round(n / rows, 2) if rows else 1.0,
        "largest": [_largest_entry(folding, index, int(totals[index])) for index in largest],
    }


def instance_totals(folding: Folding) -> np.ndarray:
    """Calls covered by each group instance (its steps and everything below them)."""
    totals = np.zeros(len(folding.instances), dtype=np.int64)
    for sequence in folding.sequences:
        cumulative = sequence.cumulative(folding.shapes)
        starts = [p.group.start + p.shift for p in sequence.placed]
        stops = [p.group.stop + p.shift for p in sequence.placed]
        totals[sequence.instance_ids] = cumulative[:, stops] - cumulative[:, starts]
    return totals


def _largest_entry(folding: Folding, index: int, total: int) -> dict[str, int]:
    sequence = folding.sequences[int(folding.instances.sequence[index])]
    placed = sequence.placed[int(folding.instances.placed[index])]
    group, shift = placed.group, placed.shift
    first = group.variants[0].representative
    per_repetition = sequence.calls_between(
        folding.shapes,
        int(folding.instances.owner[index]),
        int(group.bounds[first]) + shift,
        int(group.bounds[first + 1]) + shift,
    )
    return {
        "id": index + 1,
        "repetitions": group.repetitions,
        "calls_per_repetition": per_repetition,
        "total_calls": total,
        "first": int(folding.instances.first[index]) + 1,
    }
