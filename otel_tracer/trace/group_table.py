"""Pattern group instances as trace format 3 writes them (docs/trace-format.md):
the *layouts* that every instance of one folded group shares, and one row of six
integers per instance. An instance's calls are found through its layout's
sibling offsets from its first call, so a group entry (format 2's object, with
every call id spelled out) is only built when it is asked for."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cached_property
from itertools import chain
from typing import Any

import numpy as np

from otel_tracer.trace.model import bucket_rows

GROUP_FIELDS = ("layout", "parent", "parent_call", "thread", "first", "last")
LAYOUT_KEYS = frozenset(
    ("repetitions", "calls_per_repetition", "total_calls", "near", "iterations", "variants")
)
VARIANT_KEYS = frozenset(("iterations", "calls", "steps", "entries"))
LAYOUT, PARENT, PARENT_CALL, THREAD, FIRST, LAST = range(len(GROUP_FIELDS))
# Groups nest inside groups of the same siblings about as deep as the log of their
# number (each level repeats at least twice, its iterations within a third of each
# other's steps): 128 levels would take more than 10^15 siblings.
MAX_OWN_DEPTH = 128


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _is_count(value: Any) -> bool:
    return type(value) is int and 0 <= value < 2**63


class GroupTable(Sequence):
    """Every group instance of a trace: ``table[i]`` is the entry of group id
    ``i + 1`` as format 2 wrote it (a dict, built once on first use);
    ``head(i)`` its scalar members only, without building it."""

    def __init__(
        self,
        layouts: list[dict[str, Any]],
        rows: np.ndarray,
        parent: np.ndarray,
        thread: np.ndarray,
        threads: int,
    ) -> None:
        self.layouts = layouts
        self.rows = rows  # int64 [groups, 6]: GROUP_FIELDS, ids 1-based, 0 for none
        self._parent = parent  # of every call, -1 for a root
        self._thread = thread  # of every call
        self._threads = threads
        self._built: list[dict[str, Any] | None] = [None] * len(rows)
        self._heads: list[dict[str, Any] | None] = [None] * len(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("group index out of range")
        if self._built[index] is None:
            self._build(np.array([index], dtype=np.int64))
        return self._built[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        missing = [i for i, entry in enumerate(self._built) if entry is None]
        if missing:  # all at once: a few numpy operations per layout
            self._build(np.asarray(missing, dtype=np.int64))
        return iter(self._built)  # type: ignore[arg-type]

    def document(self) -> dict[str, Any]:
        """The ``layouts`` and ``groups`` members of the ``patterns`` section."""
        return {"layouts": self.layouts, "groups": self.rows}

    def head(self, index: int) -> dict[str, Any]:
        """The scalar members of group ``index`` (0-based): ids, calls and counts
        (built once; not to be changed)."""
        head = self._heads[index]
        if head is None:
            head = self._heads[index] = self._head(index, self.rows[index].tolist())
        return head

    def _head(self, index: int, row: list[int]) -> dict[str, Any]:
        layout, parent, parent_call, thread, first, last = row
        shape = self.layouts[layout]
        return {
            "id": index + 1,
            "parent": parent or None,
            "parent_call": parent_call or None,
            "thread": thread,
            "first": first,
            "last": last,
            "repetitions": shape["repetitions"],
            "calls_per_repetition": shape["calls_per_repetition"],
            "total_calls": shape["total_calls"],
            "near": shape["near"],
        }

    @cached_property
    def repetitions(self) -> np.ndarray:
        """Each instance's repetitions (int64)."""
        counts = np.array([s["repetitions"] for s in self.layouts], dtype=np.int64)
        return counts[self.rows[:, LAYOUT]] if len(self.rows) else counts[:0]

    @cached_property
    def variant_counts(self) -> np.ndarray:
        """Each instance's number of variants (int64)."""
        counts = np.array([len(s["variants"]) for s in self.layouts], dtype=np.int64)
        return counts[self.rows[:, LAYOUT]] if len(self.rows) else counts[:0]

    # -- building entries ----------------------------------------------------------------

    @cached_property
    def siblings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(order, slot, end)``: the calls grouped into sibling lists (each
        thread's roots, then each call's children, in start order), each call's
        position in ``order`` and the end of its list there (kept once asked
        for: 24 bytes per call)."""
        return self._sibling_lists()

    def _sibling_lists(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n, threads = len(self._parent), self._threads
        key = np.where(self._parent >= 0, self._parent + threads, self._thread)
        offsets, order = bucket_rows(key.astype(np.int64), n + threads)
        slot = np.empty(n, dtype=np.int64)
        slot[order] = np.arange(n, dtype=np.int64)
        return order, slot, offsets[key + 1]

    @cached_property
    def _nested(self) -> tuple[list[list[int]], dict[tuple[int, int], int]]:
        """The ids of each instance's children (instances whose parent it is), and
        the id of each instance by (parent id, first call)."""
        offsets, order = bucket_rows(self.rows[:, PARENT], len(self.rows) + 1)
        ids, bounds = (order + 1).tolist(), offsets.tolist()
        children = [ids[lo:hi] for lo, hi in zip(bounds[1:-1], bounds[2:], strict=True)]
        keys = zip(self.rows[:, PARENT].tolist(), self.rows[:, FIRST].tolist(), strict=True)
        return children, {key: i + 1 for i, key in enumerate(keys)}

    def _build(self, indices: np.ndarray) -> None:
        """Build the entries of groups ``indices`` (0-based), a layout at a time."""
        order, slot, _ = self.siblings
        children, by_first = self._nested
        layout_of = self.rows[indices, LAYOUT]
        by_layout = np.argsort(layout_of, kind="stable")
        edges = np.flatnonzero(np.diff(layout_of[by_layout])) + 1
        for members in np.split(indices[by_layout], edges):
            shape = self.layouts[int(self.rows[members[0], LAYOUT])]
            repetitions = shape["repetitions"]
            kinds = [[next(iter(e)) for e in v["entries"]] for v in shape["variants"]]
            offsets = np.array(
                shape["iterations"]
                + [next(iter(e.values())) for v in shape["variants"] for e in v["entries"]],
                dtype=np.int64,
            )
            base = slot[self.rows[members, FIRST] - 1]
            calls = (order[base[:, None] + offsets[None, :]] + 1).tolist()
            for index, row, found in zip(
                members.tolist(), self.rows[members].tolist(), calls, strict=True
            ):
                entry = dict(self.head(index)) if self._heads[index] else self._head(index, row)
                at = repetitions
                variants = []
                for variant, kind in zip(shape["variants"], kinds, strict=True):
                    entries = [
                        {"call": c} if k == "call" else {"group": by_first[index + 1, c]}
                        for k, c in zip(kind, found[at : at + len(kind)], strict=True)
                    ]
                    at += len(kind)
                    variants.append(
                        {
                            "iterations": variant["iterations"],
                            "calls": variant["calls"],
                            "steps": variant["steps"],
                            "entries": entries,
                        }
                    )
                entry["iterations"] = found[:repetitions]
                entry["template"] = variants[0]["entries"]
                entry["variants"] = variants
                entry["groups"] = children[index]
                self._built[index] = entry

    # -- reading a file ------------------------------------------------------------------

    @classmethod
    def load(
        cls, section: dict[str, Any], parent: np.ndarray, thread: np.ndarray, threads: int
    ) -> GroupTable:
        """The table of a format 3 ``patterns`` section, checked against the calls
        (``parent``: 0-based, -1 for a root); ``ValueError`` names what is wrong."""
        layouts = section.get("layouts")
        _expect(isinstance(layouts, list), "patterns.layouts must be a list")
        offsets = [_checked_layout(layout, i) for i, layout in enumerate(layouts)]
        rows = _rows(section.get("groups"))
        table = cls(layouts, rows, parent, thread, threads)
        table._check(offsets)
        return table

    def _check(self, offsets: list[tuple[int, list[int]]]) -> None:
        """Every reference of every row stays inside the trace: its calls are
        siblings after its first call, its nested groups are its children."""
        rows, n, count = self.rows, len(self._parent), len(self.rows)
        if not count:
            return
        layout, parent, parent_call, thread, first, last = rows.T
        ids = np.arange(1, count + 1, dtype=np.int64)
        where = "a pattern group's"
        _expect(_all((layout < len(self.layouts)) & (parent < ids)), f"{where} layout or parent")
        _expect(_all(thread < self._threads), f"{where} thread does not exist")
        _expect(
            _all((first >= 1) & (first <= last) & (last <= n) & (parent_call < first)),
            f"{where} calls are not in the trace",
        )
        below = first - 1
        _expect(
            _all((self._parent[below] == parent_call - 1) & (self._thread[below] == thread)),
            f"{where} first call is not a child of its parent call",
        )
        order, slot, end = self._sibling_lists()  # not kept: most readers never need it
        reach = np.array([o[0] for o in offsets], dtype=np.int64)[layout]
        _expect(_all(slot[below] + reach < end[below]), f"{where} steps run past its siblings")
        _expect(_own_depth(rows) <= MAX_OWN_DEPTH, f"{where} loops nest over {MAX_OWN_DEPTH} deep")
        known = np.sort(parent * (n + 1) + first)  # (parent id, first call) of every instance
        for index, (_, nested) in enumerate(offsets):
            members = np.flatnonzero(layout == index) if nested else ()
            if not len(members):
                continue
            starts = order[slot[below[members]][:, None] + np.asarray(nested)[None, :]] + 1
            wanted = (members[:, None] + 1) * (n + 1) + starts
            found = known[np.minimum(np.searchsorted(known, wanted), count - 1)]
            _expect(_all(found == wanted), f"{where} nested group is not one of its groups")


def nested_among_siblings(rows: np.ndarray) -> np.ndarray:
    """Per instance row: whether its parent group folds the same siblings (a loop
    inside a loop's iterations, not a loop inside a call below it)."""
    parent = rows[:, PARENT]
    up = np.maximum(parent - 1, 0)
    own = (parent > 0) & (rows[up, PARENT_CALL] == rows[:, PARENT_CALL])
    return own & (rows[up, THREAD] == rows[:, THREAD])


def _own_depth(rows: np.ndarray) -> int:
    """How deep groups nest inside groups of the same siblings (a loop in a loop
    in a loop): pointer jumping, ``log2(MAX_OWN_DEPTH) + 1`` rounds; a chain still
    open after them counts as deeper than the limit."""
    own = nested_among_siblings(rows)
    above = np.where(own, rows[:, PARENT] - 1, -1)
    depth = own.astype(np.int64)
    for _ in range(MAX_OWN_DEPTH.bit_length()):
        linked = above >= 0
        at = above[linked]
        depth[linked] += depth[at]
        above[linked] = above[at]
    if np.any(above >= 0):
        return MAX_OWN_DEPTH + 1
    return int(depth.max()) if len(depth) else 0


def _all(condition: np.ndarray) -> bool:
    return bool(np.all(condition))


def section_document(section: dict[str, Any]) -> dict[str, Any]:
    """A ``patterns`` section whose groups are a ``GroupTable`` as the file has
    it: ``layouts`` and ``groups`` rows (a numpy array, for orjson's
    ``OPT_SERIALIZE_NUMPY``)."""
    rest = {key: value for key, value in section.items() if key != "groups"}
    return {**rest, **section["groups"].document()}


def _checked_layout(layout: Any, index: int) -> tuple[int, list[int]]:
    """Check one layout; its farthest sibling offset and its nested-group offsets."""
    where = f"pattern layout {index}"
    _expect(type(layout) is dict and layout.keys() == LAYOUT_KEYS, f"{where}: not a layout")
    _expect(type(layout["near"]) is bool, f"{where}: near must be true/false")
    for key in ("repetitions", "calls_per_repetition", "total_calls"):
        _expect(_is_count(layout[key]), f"{where}: {key} must be an integer")
    repetitions = layout["repetitions"]
    _expect(repetitions >= 1, f"{where}: repetitions must be at least 1")
    iterations = layout["iterations"]
    _expect(
        type(iterations) is list
        and len(iterations) == repetitions
        and all(_is_count(o) for o in iterations)
        and iterations[0] == 0
        and iterations == sorted(iterations),
        f"{where}: iterations must be offsets in order from 0",
    )
    variants = layout["variants"]
    _expect(type(variants) is list and len(variants) >= 1, f"{where}: variants")
    calls, groups = [], []
    for variant in variants:
        _expect(type(variant) is dict and variant.keys() == VARIANT_KEYS, f"{where}: a variant")
        its = variant["iterations"]
        _expect(
            type(its) is list and all(type(v) is int and 0 <= v < repetitions for v in its),
            f"{where}: variant iterations",
        )
        counts = (variant["calls"], variant["steps"])
        _expect(all(map(_is_count, counts)), f"{where}: variant counts")
        entries = variant["entries"]
        _expect(type(entries) is list, f"{where}: variant entries")
        for e in entries:
            _expect(type(e) is dict and len(e) == 1, f"{where}: an entry")
            ((kind, offset),) = e.items()
            _expect(kind in ("call", "group") and _is_count(offset), f"{where}: an entry")
            (calls if kind == "call" else groups).append(offset)
    return max(chain(iterations, calls, groups)), sorted(set(groups))


def _rows(groups: Any) -> np.ndarray:
    """``patterns.groups`` as int64 [groups, 6]."""
    _expect(isinstance(groups, list), "patterns.groups must be a list")
    _expect(
        all(type(row) is list and len(row) == len(GROUP_FIELDS) for row in groups)
        and set(map(type, chain.from_iterable(groups))) <= {int},
        f"a pattern group must be a list of {len(GROUP_FIELDS)} integers",
    )
    try:
        rows = np.array(groups, dtype=np.int64).reshape(-1, len(GROUP_FIELDS))
    except OverflowError:
        raise ValueError("a pattern group's integers are out of range") from None
    _expect(bool(np.all(rows >= 0)), "a pattern group's integers must not be negative")
    return rows
