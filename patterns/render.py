"""The grouped view: the call tree with repeated sequences folded into boxes.

```
🔄 Repeating Pattern: 6x repetitions of 6 calls (calls #22388-#22423, total: 36 calls)
  📋 Pattern template (repeated 6 times):
    ├── scaled_dot_product_attention [packed_attention_monkey_patch.py:14]
    ├── get [expert_context.py:25]
    └── 🔄 Nested Pattern: 2x repetitions of 2 calls
        ├── forward [train_lens.py:88]
        └── layer_name [base.py:21]
```

Calls outside groups are shown as in the plain tree (``#id``, arguments, value,
duration). A group shows its template once: the steps of one iteration, by name,
with what they call folded the same way. Near-repeat groups also list their
other variants, as differences from the template (``+`` extra step, ``-``
missing step, ``~`` same function with different calls below).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import TextIO

import numpy as np

from otel_tracer.trace.text import printable
from otel_tracer.trace.tree import call_label, duration_text, indent, more_below, write_lines
from patterns.engine import Folding
from patterns.groups import LocalGroup

BRANCH, LAST, PIPE, SPACE = "├── ", "└── ", "│   ", "    "
MAX_LISTED_ITERATIONS = 8


def _flatten(lines: Iterator) -> Iterator[str]:
    """Lines of a tree of generators: the view's methods yield either a line or a
    generator of further lines, so deep call trees cost no Python recursion."""
    stack = [lines]
    while stack:
        try:
            item = next(stack[-1])
        except StopIteration:
            stack.pop()
            continue
        if isinstance(item, str):
            yield item
        else:
            stack.append(item)


class _View:
    """Renders one folding; ``depth`` limits how deep below the roots calls are shown.
    Its methods yield lines, or generators of lines (see ``_flatten``)."""

    def __init__(self, folding: Folding, depth: int | None) -> None:
        self.folding = folding
        self.trace = folding.trace
        self.depth = depth

    # -- sequences -------------------------------------------------------------------------

    def sequence(
        self,
        owner: int,
        prefix: str,
        branches: bool,
        template: bool,
        level: int,
    ) -> Iterator[str]:
        """The children of ``owner`` (or a thread's roots), folded."""
        groups, steps = self.folding.groups_of(owner)
        yield self.items(steps, groups, 0, 0, len(steps), prefix, branches, template, level)

    def items(
        self,
        steps: np.ndarray,
        groups: list[LocalGroup],
        shift: int,
        lo: int,
        hi: int,
        prefix: str,
        branches: bool,
        template: bool,
        level: int,
    ) -> Iterator[str]:
        """Steps ``lo..hi`` of a sequence, with ``groups`` (positions + ``shift``) folded."""
        entries = entries_of(groups, shift, lo, hi)
        for i, (kind, value) in enumerate(entries):
            last = i == len(entries) - 1
            line_prefix = prefix + ((LAST if last else BRANCH) if branches else "")
            inner = indent(prefix, (SPACE if last else PIPE) if branches else "")
            if kind == "step":
                yield self.step(int(steps[value]), line_prefix, inner, template, level)
            else:
                group, group_shift = value
                yield self.group(steps, group, group_shift, line_prefix, inner, template, level)

    def step(self, row: int, line_prefix: str, inner: str, template: bool, level: int):
        """One call and what it calls."""
        if template:
            yield line_prefix + call_label(self.trace, row, with_args=False)
        else:
            calls = self.trace.calls
            duration = duration_text(int(calls.end[row] - calls.start[row]))
            yield f"{line_prefix}#{row + 1} {call_label(self.trace, row)}  ({duration})"
        below = int(self.folding.shapes.size[row]) - 1
        if not below:
            return
        if self.depth is not None and level + 1 >= self.depth:
            yield f"{inner}└── {more_below(below)}"
            return
        yield self.sequence(row, inner, True, template, level + 1)

    # -- groups ----------------------------------------------------------------------------

    def group(self, steps, group: LocalGroup, shift: int, line_prefix, inner, template, level):
        """A group: its header, its template and its other variants."""
        template_variant = group.variants[0]
        per_repetition = self._calls(steps, group, shift, 0)
        count = f"{group.repetitions}x repetitions of {_calls(per_repetition)}"
        if len(group.variants) > 1:
            count += f" ({len(group.variants)} variants)"
        if template:
            yield f"{line_prefix}🔄 Nested Pattern: {count}"
            body_prefix, label_prefix = inner, None
        else:
            first = int(steps[group.start + shift]) + 1
            last = int(self.folding.shapes.last[steps[group.stop + shift - 1]]) + 1
            total = self._span_calls(steps, group.start + shift, group.stop + shift)
            yield (
                f"{line_prefix}🔄 Repeating Pattern: {count} "
                f"(calls #{first}-#{last}, total: {_calls(total)})"
            )
            label_prefix, body_prefix = indent(inner, "  "), indent(inner, "    ")
        if label_prefix is not None:
            times = len(template_variant.iterations)
            yield f"{label_prefix}📋 Pattern template (repeated {times} time{'s' * (times != 1)}):"
        yield self.iteration(steps, group, shift, 0, body_prefix, level)
        for v in range(1, len(group.variants)):
            yield self.variant(steps, group, shift, v, label_prefix or inner, level)

    def iteration(self, steps, group: LocalGroup, shift: int, v: int, prefix: str, level: int):
        """The steps of the representative iteration of variant ``v``."""
        variant = group.variants[v]
        j = variant.representative
        lo, hi = int(group.bounds[j]) + shift, int(group.bounds[j + 1]) + shift
        yield self.items(steps, variant.nested, shift, lo, hi, prefix, True, True, level)

    def variant(self, steps, group: LocalGroup, shift: int, v: int, prefix: str, level: int):
        """A non-template variant, as its differences from the template."""
        variant = group.variants[v]
        listed = _iteration_list(variant.iterations)
        yield (
            f"{prefix}🔀 Variant {v + 1}: {len(variant.iterations)} "
            f"iteration{'s' * (len(variant.iterations) != 1)} ({listed}), "
            f"{_calls(self._calls(steps, group, shift, v))} each:"
        )
        yield self.diff_lines(self.differences(steps, group, shift, v), indent(prefix, "  "), level)

    def _span_calls(self, steps, lo: int, hi: int) -> int:
        """Calls in the subtrees of steps ``lo..hi``."""
        return int(self.folding.shapes.size[steps[lo:hi]].sum())

    def _calls(self, steps, group: LocalGroup, shift: int, v: int) -> int:
        """Calls in the shown iteration of variant ``v``."""
        j = group.variants[v].representative
        return self._span_calls(
            steps, int(group.bounds[j]) + shift, int(group.bounds[j + 1]) + shift
        )

    def differences(self, steps, group: LocalGroup, shift: int, v: int) -> list[tuple]:
        """The differences of variant ``v``'s iteration from the template's."""
        base = self.iteration_entries(steps, group, shift, 0)
        return _diff(base, self.iteration_entries(steps, group, shift, v))

    def child_differences(self, base_row: int, other_row: int) -> list[tuple]:
        """The differences between the (folded) children of two calls."""
        return _diff(self._children_entries(base_row), self._children_entries(other_row))

    def diff_lines(self, lines: list[tuple], prefix: str, level: int):
        """Difference lines: ``+`` an extra entry (shown whole), ``-`` a missing one,
        ``~`` a call of the same function whose own calls differ (shown as their
        differences, recursively)."""
        for i, (mark, entry, base) in enumerate(lines):
            last = i == len(lines) - 1
            line_prefix = prefix + (LAST if last else BRANCH) + mark
            inner = indent(prefix, (SPACE if last else PIPE) + "  ")
            _, _, kind, value, steps = entry
            if mark == "- ":
                yield line_prefix + self._entry_name(entry)
            elif kind == "group":
                yield self.group(steps, *value, line_prefix, inner, True, level)
            elif mark == "+ ":
                yield self.step(int(steps[value]), line_prefix, inner, True, level)
            else:
                row = int(steps[value])
                yield line_prefix + call_label(self.trace, row, with_args=False)
                if self.depth is not None and level + 1 >= self.depth:
                    yield f"{inner}└── … differences below (--depth)"
                else:
                    base_row = int(base[4][base[3]])
                    yield self.diff_lines(self.child_differences(base_row, row), inner, level + 1)

    def _entry_name(self, entry: tuple) -> str:
        _, _, kind, value, steps = entry
        if kind == "step":
            return call_label(self.trace, int(steps[value]), with_args=False)
        group, shift = value
        count = _calls(self._calls(steps, group, shift, 0))
        return f"🔄 Nested Pattern: {group.repetitions}x repetitions of {count}"

    def iteration_entries(self, steps, group: LocalGroup, shift: int, v: int) -> list[tuple]:
        """Keyed entries (see ``_keyed``) of variant ``v``'s representative iteration."""
        variant = group.variants[v]
        j = variant.representative
        lo, hi = int(group.bounds[j]) + shift, int(group.bounds[j + 1]) + shift
        return self._keyed(steps, entries_of(variant.nested, shift, lo, hi))

    def _children_entries(self, row: int) -> list[tuple]:
        groups, steps = self.folding.groups_of(row)
        return self._keyed(steps, entries_of(groups, 0, 0, len(steps)))

    def _keyed(self, steps, entries) -> list[tuple]:
        """(loose key, exact key, kind, value, steps) of each entry: entries compare
        equal by function (loose) and by structure (exact)."""
        shapes, function = self.folding.shapes, self.trace.calls.function
        out = []
        for kind, value in entries:
            if kind == "step":
                row = int(steps[value])
                out.append((("f", int(function[row])), int(shapes.shape[row]), kind, value, steps))
            else:
                nested, nested_shift = value
                first = nested.variants[0].representative
                a = int(nested.bounds[first]) + nested_shift
                b = int(nested.bounds[first + 1]) + nested_shift
                loose = ("g", tuple(int(function[steps[x]]) for x in range(a, b)))
                span = steps[nested.start + nested_shift : nested.stop + nested_shift]
                relative = nested.bounds - nested.bounds[0]
                exact = (relative.tobytes(), shapes.shape[span].tobytes())
                out.append((loose, exact, kind, value, steps))
        return out


def _diff(base: list[tuple], other: list[tuple]) -> list[tuple]:
    """(mark, entry, base entry) of each difference, entries aligned by function:
    ``+ `` extra, ``- `` missing (the entry is the base's), ``~ `` same function
    with different calls below."""
    loose_base, loose_other = [e[0] for e in base], [e[0] for e in other]
    if loose_base == loose_other:  # the same functions: only calls below differ
        return [("~ ", b, a) for a, b in zip(base, other, strict=True) if a[1] != b[1]]
    matcher = difflib.SequenceMatcher(None, loose_base, loose_other, autojunk=False)
    lines: list[tuple] = []
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            for a, b in zip(range(a0, a1), range(b0, b1), strict=True):
                if base[a][1] != other[b][1]:
                    lines.append(("~ ", other[b], base[a]))
        else:
            lines.extend(("- ", base[a], None) for a in range(a0, a1))
            lines.extend(("+ ", other[b], None) for b in range(b0, b1))
    return lines


def entries_of(groups: list[LocalGroup], shift: int, lo: int, hi: int) -> list[tuple[str, object]]:
    """The items of positions ``lo..hi``: ("step", position) or ("group", (group, shift))."""
    entries: list[tuple[str, object]] = []
    pos = lo
    for group in groups:
        start, stop = group.start + shift, group.stop + shift
        if stop <= lo or start >= hi:
            continue
        entries.extend(("step", p) for p in range(pos, start))
        entries.append(("group", (group, shift)))
        pos = stop
    entries.extend(("step", p) for p in range(pos, hi))
    return entries


def _calls(count: int) -> str:
    return f"{count} call{'s' * (count != 1)}"


def _iteration_list(iterations: np.ndarray) -> str:
    """``0-8, 10, 12-15`` (0-based iteration numbers), shortened when long."""
    values = iterations.tolist()
    ranges: list[str] = []
    start = prev = values[0]
    for value in [*values[1:], None]:
        if value is not None and value == prev + 1:
            prev = value
            continue
        ranges.append(str(start) if start == prev else f"{start}-{prev}")
        if value is not None:
            start = prev = value
    if len(ranges) > MAX_LISTED_ITERATIONS:
        hidden = len(ranges) - MAX_LISTED_ITERATIONS
        ranges = [*ranges[:MAX_LISTED_ITERATIONS], f"… {hidden} more"]
    return (
        "iteration " + ", ".join(ranges) if len(values) == 1 else "iterations " + ", ".join(ranges)
    )


class _RowCounter:
    """Rows of the grouped view, counted without formatting them: the rows below
    a call depend only on its shape, so they are counted once per shape, deepest
    shapes first."""

    def __init__(self, folding: Folding) -> None:
        self.folding = folding
        self.view = _View(folding, None)
        self.shape = folding.shapes.shape
        self.size = folding.shapes.size
        self.memo: dict[tuple, int] = {}  # groups, and differences between two shapes' calls
        shapes = int(self.shape.max()) + 1 if len(self.shape) else 0
        # [template, shape]: rows below the calls of a shape, -1 until counted
        self.counted = np.full((2, shapes), -1, dtype=np.int64)
        self.has_groups = np.zeros(shapes, dtype=bool)  # children folded into groups
        owners = [s.owners[s.owners >= 0] for s in folding.sequences]
        if owners:
            self.has_groups[self.shape[np.concatenate(owners)]] = True

    def total(self) -> int:
        """Rows of the whole view, thread headers excluded. The rows below each
        shape are counted deepest first (so no count recurses deeper than one
        level), for the way they are shown: inside a group's template or not,
        which is whether the call is inside a group."""
        shapes = self.folding.shapes
        grouped = (self.folding.group >= 0).astype(np.int64)
        for rows in reversed(shapes.levels):
            parents = rows[self.size[rows] > 1]
            self._count_plain(parents)
            parents = parents[self.counted[grouped[parents], self.shape[parents]] < 0]
            pairs = self.shape[parents].astype(np.int64) * 2 + grouped[parents]
            _, first = np.unique(pairs, return_index=True)
            for row in parents[first].tolist():
                self.sequence(row, bool(grouped[row]))
        return sum(
            self.sequence(-1 - t, False)
            for t, roots in enumerate(self.folding.thread_roots)
            if len(roots)
        )

    def _count_plain(self, parents: np.ndarray) -> None:
        """Count at once the rows below the calls of ``parents`` (one level) whose
        children are not folded into groups: one row per child, plus the rows
        below it, counted already (deeper), for each way of showing them."""
        shape = self.shape[parents]
        plain = ~self.has_groups[shape] & (self.counted[:, shape] < 0).any(axis=0)
        shapes, first = np.unique(shape[plain], return_index=True)
        owners = parents[plain][first]
        if not len(owners):
            return
        offsets, order = self.folding.trace.children
        starts, counts = offsets[owners + 1], offsets[owners + 2] - offsets[owners + 1]
        segment = np.cumsum(counts) - counts  # where each owner's children begin
        kids = order[np.repeat(starts - segment, counts) + np.arange(int(counts.sum()))]
        kid_shape, big = self.shape[kids], self.size[kids] > 1
        for template in (0, 1):
            below = np.where(big, self.counted[template, kid_shape], 0)
            ready = np.minimum.reduceat(below, segment) >= 0
            ready &= self.counted[template, shapes] < 0
            sums = np.add.reduceat(below + 1, segment)
            self.counted[template, shapes[ready]] = sums[ready]

    def sequence(self, owner: int, template: bool) -> int:
        if owner >= 0:
            counted = int(self.counted[int(template), self.shape[owner]])
            if counted >= 0:
                return counted
        groups, steps = self.folding.groups_of(owner)
        rows = self.items(steps, groups, 0, 0, len(steps), template)
        if owner >= 0:
            self.counted[int(template), self.shape[owner]] = rows
        return rows

    def items(self, steps, groups, shift: int, lo: int, hi: int, template: bool) -> int:
        rows = 0
        for kind, value in entries_of(groups, shift, lo, hi):
            if kind == "step":
                rows += self.step(int(steps[value]), template)
            else:
                rows += self.group(steps, *value, template)
        return rows

    def step(self, row: int, template: bool) -> int:
        return 1 + (self.sequence(row, template) if self.size[row] > 1 else 0)

    def group(self, steps, group: LocalGroup, shift: int, template: bool) -> int:
        """Rows of a group: they depend only on its iterations, their variants and
        the shapes of its steps (which decide the groups nested in them), so they
        are counted once per such content."""
        span = steps[group.start + shift : group.stop + shift]
        key = (
            "group",
            template,
            (group.bounds - group.bounds[0]).tobytes(),
            group.variant_of.tobytes(),
            self.shape[span].tobytes(),
        )
        rows = self.memo.get(key)
        if rows is None:
            rows = self.memo[key] = self._group(steps, group, shift, template)
        return rows

    def _group(self, steps, group: LocalGroup, shift: int, template: bool) -> int:
        rows = 1 if template else 2  # header (and the template label)
        variant = group.variants[0]
        j = variant.representative
        lo, hi = int(group.bounds[j]) + shift, int(group.bounds[j + 1]) + shift
        rows += self.items(steps, variant.nested, shift, lo, hi, True)
        if len(group.variants) > 1:
            base = self.view.iteration_entries(steps, group, shift, 0)
            for v in range(1, len(group.variants)):
                other = self.view.iteration_entries(steps, group, shift, v)
                rows += 1 + self.diff(_diff(base, other))
        return rows

    def diff(self, lines: list[tuple]) -> int:
        rows = 0
        for mark, (_, _, kind, value, steps), base in lines:
            if mark == "- ":
                rows += 1
            elif kind == "group":
                rows += self.group(steps, *value, True)
            elif mark == "+ ":
                rows += self.step(int(steps[value]), True)
            else:
                rows += 1 + self.child_diff(int(base[4][base[3]]), int(steps[value]))
        return rows

    def child_diff(self, base_row: int, row: int) -> int:
        """Rows of the differences below two calls of the same function: they
        depend only on the two calls' shapes, so they are counted once per pair."""
        key = ("diff", int(self.shape[base_row]), int(self.shape[row]))
        if key not in self.memo:
            self.memo[key] = self.diff(self.view.child_differences(base_row, row))
        return self.memo[key]


def count_rows(folding: Folding) -> int:
    """Rows of the grouped view of the whole trace, thread headers excluded."""
    return _RowCounter(folding).total()


def grouped_lines(
    folding: Folding, depth: int | None = None, threads: list[int] | None = None
) -> Iterator[str]:
    """Lines of the grouped view, thread by thread."""
    view = _View(folding, depth)
    trace = folding.trace
    for t, roots in enumerate(folding.thread_roots):
        if not len(roots) or (threads is not None and t not in threads):
            continue
        yield f"Thread {printable(trace.thread_label(t))}"
        yield from _flatten(view.sequence(-1 - t, "", False, False, 0))


def render_grouped(
    folding: Folding,
    out: TextIO,
    max_rows: int | None = None,
    depth: int | None = None,
    threads: list[int] | None = None,
) -> None:
    """Write the grouped view to ``out``; at most ``max_rows`` lines when given."""
    if not len(folding.trace):
        out.write("(no calls recorded in scope)\n")
        return
    write_lines(grouped_lines(folding, depth, threads), out, max_rows)
