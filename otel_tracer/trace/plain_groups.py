"""Pattern groups as the tracer writes them (``patterns.groups``, docs/trace-format.md),
gathered into columns so that loading checks 10^5 groups with a few numpy
comparisons instead of a loop per group and per entry."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

GROUP_KEYS = (
    "id",
    "parent",
    "parent_call",
    "thread",
    "first",
    "last",
    "repetitions",
    "calls_per_repetition",
    "total_calls",
    "near",
    "iterations",
    "template",
    "variants",
    "groups",
)
VARIANT_KEYS = frozenset(("iterations", "calls", "steps", "entries"))
_GROUP_KEY_SET = frozenset(GROUP_KEYS)
_COUNTS = ("id", "thread", "first", "last", "repetitions", "calls_per_repetition", "total_calls")


class _NotPlain(Exception):
    """A value that is not what the tracer writes there."""


def _ints(values: list[Any]) -> np.ndarray:
    """``values`` as int64, all of them JSON integers within int64 (no bools)."""
    if not set(map(type, values)) <= {int}:
        raise _NotPlain
    try:
        return np.array(values, dtype=np.int64)
    except OverflowError:
        raise _NotPlain from None


def _lists(values: list[Any]) -> list[list[Any]]:
    if not set(map(type, values)) <= {list}:
        raise _NotPlain
    return values


def _entries(entries: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """The call ids and the group ids of ``{"call": id}`` / ``{"group": id}`` entries."""
    if not (set(map(type, entries)) <= {dict} and set(map(len, entries)) <= {1}):
        raise _NotPlain
    calls = [e["call"] for e in entries if "call" in e]
    groups = [e["group"] for e in entries if "group" in e]
    if len(calls) + len(groups) != len(entries):
        raise _NotPlain
    return _ints(calls), _ints(groups)


def _within(values: np.ndarray, low: int, high: int | np.ndarray) -> bool:
    return bool(np.all((values >= low) & (values <= high)))


@dataclass
class PlainGroups:
    """Every member of every group, as flat int64 columns; only built for groups
    with exactly the tracer's keys and types, so their nesting depth is fixed."""

    count: dict[str, np.ndarray]  # per group, for each of _COUNTS
    parents: np.ndarray  # the groups' non-null parents
    parent_calls: np.ndarray  # the groups' non-null parent calls
    iterations: np.ndarray  # every group's iteration calls, group after group
    iteration_counts: np.ndarray  # per group
    variant_counts: np.ndarray  # per group
    variant_iterations: np.ndarray  # every variant's iteration indices
    variant_owner: np.ndarray  # the group (0-based) of each of those
    entry_calls: np.ndarray  # call ids of template and variant entries
    entry_groups: np.ndarray  # group ids of template and variant entries
    nested: np.ndarray  # the ``groups`` members

    @classmethod
    def of(cls, groups: list[Any]) -> PlainGroups | None:
        """The columns of ``groups``, or None when any group is not as the tracer
        writes it (then ``checks`` looks at each group for the precise message)."""
        try:
            return cls._gather(groups)
        except _NotPlain:
            return None

    @classmethod
    def _gather(cls, groups: list[Any]) -> PlainGroups:
        if not all(type(g) is dict and g.keys() == _GROUP_KEY_SET for g in groups):
            raise _NotPlain
        if not all(type(g["near"]) is bool for g in groups):
            raise _NotPlain
        count = {key: _ints([g[key] for g in groups]) for key in _COUNTS}
        iterations = _lists([g["iterations"] for g in groups])
        variants = _lists([g["variants"] for g in groups])
        flat_variants = list(chain.from_iterable(variants))
        if not all(type(v) is dict and v.keys() == VARIANT_KEYS for v in flat_variants):
            raise _NotPlain
        _ints([v["calls"] for v in flat_variants] + [v["steps"] for v in flat_variants])
        variant_iterations = _lists([v["iterations"] for v in flat_variants])
        entry_lists = _lists(
            [g["template"] for g in groups] + [v["entries"] for v in flat_variants]
        )
        entry_calls, entry_groups = _entries(list(chain.from_iterable(entry_lists)))
        variant_counts = np.array([len(v) for v in variants], dtype=np.int64)
        per_variant = np.array([len(v) for v in variant_iterations], dtype=np.int64)
        return cls(
            count=count,
            parents=_ints([g["parent"] for g in groups if g["parent"] is not None]),
            parent_calls=_ints([g["parent_call"] for g in groups if g["parent_call"] is not None]),
            iterations=_ints(list(chain.from_iterable(iterations))),
            iteration_counts=np.array([len(i) for i in iterations], dtype=np.int64),
            variant_counts=variant_counts,
            variant_iterations=_ints(list(chain.from_iterable(variant_iterations))),
            variant_owner=np.repeat(
                np.repeat(np.arange(len(groups), dtype=np.int64), variant_counts), per_variant
            ),
            entry_calls=entry_calls,
            entry_groups=entry_groups,
            nested=_ints(list(chain.from_iterable(_lists([g["groups"] for g in groups])))),
        )

    def fit(self, n: int, threads: int) -> bool:
        """Whether every reference stays inside a trace of ``n`` calls and ``threads``
        threads, with the same rules as ``checks._check_group``."""
        c = self.count
        total = len(c["id"])
        repetitions = c["repetitions"]
        if not (
            np.array_equal(c["id"], np.arange(1, total + 1))
            and _within(repetitions, 1, 2**63 - 1)
            and _within(c["calls_per_repetition"], 0, 2**63 - 1)
            and _within(c["total_calls"], 0, 2**63 - 1)
            and _within(c["thread"], 0, threads - 1)
            and _within(self.parents, 1, total)
            and _within(self.parent_calls, 1, n)
            and _within(c["first"], 1, n)
            and _within(c["last"], c["first"], n)
            and np.array_equal(self.iteration_counts, repetitions)
            and _within(self.iterations, 1, n)
            and _within(self.entry_calls, 1, n)
            and _within(self.entry_groups, 1, total)
            and _within(self.nested, 1, total)
            and bool(np.all(self.variant_counts >= 1))
        ):
            return False
        starts = np.cumsum(self.iteration_counts) - self.iteration_counts
        ordered = np.diff(self.iterations) >= 0
        ordered[starts[1:] - 1] = True  # a group's first iteration follows the last group's
        return (
            bool(np.all(ordered))
            and np.array_equal(self.iterations[starts], c["first"])
            and _within(self.variant_iterations, 0, repetitions[self.variant_owner] - 1)
        )
