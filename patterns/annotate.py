"""Annotating a trace with its pattern groups: the ``patterns`` section of the
JSON trace and the ``pattern`` mark of every call (docs/trace-format.md)."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from otel_tracer.trace.group_table import GroupTable
from otel_tracer.trace.model import PatternColumns, Trace
from patterns.engine import Folding, Placed, Sequence, fold_trace
from patterns.fold import FoldOptions
from patterns.render import count_rows, entries_of

LARGEST = 5
LARGEST_KEYS = ("id", "repetitions", "calls_per_repetition", "total_calls", "first")


def annotate(
    trace: Trace, options: FoldOptions | None = None, deadline: float | None = None
) -> Folding:
    """Fold ``trace`` and attach the annotations to it (``trace.patterns``); by
    default with the options it was folded with before, if any. ``deadline``: see
    ``fold_trace``."""
    if options is None and trace.patterns is not None:
        options = saved_options(trace.patterns.section.get("options"))
    folding = fold_trace(trace, options, deadline)
    trace.patterns = PatternColumns(
        group=folding.group,
        iteration=folding.iteration,
        variant=folding.variant,
        section=section(folding),
    )
    return folding


def saved_options(saved: Any) -> FoldOptions:
    """The options of a ``patterns`` section (``section["options"]``), or the
    defaults where they are not valid."""
    defaults = FoldOptions()
    if not isinstance(saved, dict):
        return defaults
    match = saved.get("match")
    near = saved.get("near")
    return FoldOptions(
        match=match if match in ("structure", "function") else defaults.match,
        near=near if isinstance(near, bool) else defaults.near,
    )


def section(folding: Folding) -> dict[str, Any]:
    """The ``patterns`` section: options, statistics and every group instance, as
    rows that share one layout per folded group (docs/trace-format.md)."""
    layouts: list[dict[str, Any]] = []
    index_of: dict[bytes, int] = {}  # equal layouts are written once
    placed_layout: list[int] = []  # layout of each placed group, sequence after sequence
    for sequence in folding.sequences:
        for placed in sequence.placed:
            layout = _layout(folding, sequence, placed)
            key = orjson.dumps(layout)
            if key not in index_of:
                index_of[key] = len(layouts)
                layouts.append(layout)
            placed_layout.append(index_of[key])
    instances = folding.instances
    base = np.cumsum([0] + [len(s.placed) for s in folding.sequences], dtype=np.int64)
    rows = np.column_stack(
        (
            np.asarray(placed_layout, dtype=np.int64)[base[instances.sequence] + instances.placed],
            instances.parent + 1,
            instances.parent_call + 1,
            instances.thread,
            instances.first + 1,
            instances.last + 1,
        )
    ).astype(np.int64)
    trace = folding.trace
    table = GroupTable(layouts, rows, trace.calls.parent, trace.calls.thread, len(trace.threads))
    return {
        "options": {"match": folding.options.match, "near": folding.options.near},
        "statistics": statistics(folding),
        "groups": table,
    }


def _layout(folding: Folding, sequence: Sequence, placed: Placed) -> dict[str, Any]:
    """What every instance of one placed group shares: its counts, and its
    iterations and entries as sibling offsets from the group's first step (the
    calls below a sequence's steps are alike for all its owners)."""
    group, shift = placed.group, placed.shift
    origin = group.start + shift
    cumulative = sequence.cumulative(folding.shapes)[0]
    variants = []
    for variant in group.variants:
        j = variant.representative
        lo, hi = int(group.bounds[j]) + shift, int(group.bounds[j + 1]) + shift
        entries = [
            {"call": value - origin}
            if kind == "step"
            else {"group": value[0].start + value[1] - origin}
            for kind, value in entries_of(variant.nested, shift, lo, hi)
        ]
        variants.append(
            {
                "iterations": variant.iterations.tolist(),
                "calls": int(cumulative[hi] - cumulative[lo]),
                "steps": variant.steps,
                "entries": entries,
            }
        )
    return {
        "repetitions": group.repetitions,
        "calls_per_repetition": variants[0]["calls"],
        "total_calls": int(cumulative[group.stop + shift] - cumulative[origin]),
        "near": group.near,
        "iterations": (group.bounds[:-1] - group.start).tolist(),
        "variants": variants,
    }


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
