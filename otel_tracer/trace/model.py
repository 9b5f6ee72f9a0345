"""The trace model: one columnar table of calls plus the tables it refers to.

Every output (JSON, the tree view, later OTLP/Perfetto/HTML) is produced from a
``Trace``, and ``otel_tracer.load`` gives one back from a saved file.
Call ``i`` (0-based row) is the call the user sees as ``#i+1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

try:
    from otel_tracer.trace._speedups import bucket_order
except ImportError:  # not built: numpy's stable argsort gives the same order
    bucket_order = None

from otel_tracer.trace.tables import (  # noqa: F401 (the model's own names too)
    EXTERNAL,
    FINALIZER,
    RAISED,
    RESUMED,
    UNFINISHED,
    YIELDED,
    Function,
    ThreadInfo,
)


def bucket_rows(keys: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, rows)``: the rows sorted by key (each in ``0..buckets-1``), in
    row order within a key (int64), and where each key's rows start (int64,
    ``buckets + 1`` entries, the last one ``len(keys)``)."""
    keys = np.ascontiguousarray(keys)
    if bucket_order is not None and keys.dtype in (np.int32, np.int64):
        offsets = np.empty(buckets + 1, dtype=np.int64)
        order = np.empty(len(keys), dtype=np.int64)
        bucket_order(keys, offsets, order)  # a counting sort, one pass
        return offsets, order
    order = np.argsort(keys, kind="stable").astype(np.int64, copy=False)
    counts = np.bincount(keys, minlength=buckets)
    return np.concatenate(([0], np.cumsum(counts))).astype(np.int64), order


@dataclass
class Calls:
    """Columns of the call table, one row per call in call-start order."""

    parent: np.ndarray  # int64 row of the parent call, -1 for a root
    depth: np.ndarray  # int32
    function: np.ndarray  # int32 index into Trace.functions
    thread: np.ndarray  # int32 index into Trace.threads
    start: np.ndarray  # int64 Unix ns
    end: np.ndarray  # int64 Unix ns
    args: np.ndarray  # int32 index into Trace.arg_tuples, -1 when not captured
    value: np.ndarray  # int32 string index of the return/yield value, -1 when none
    exception: np.ndarray  # int32 index into Trace.exceptions, -1 when none/unknown
    flags: np.ndarray  # uint8 bit set of EXTERNAL, RESUMED, RAISED, YIELDED, UNFINISHED, FINALIZER
    span_id: np.ndarray  # uint64, never 0
    raise_line: np.ndarray  # int32 line the call's frame was at when an exception ended it, 0: none
    task: np.ndarray  # int32 string index of a coroutine resumption's asyncio task, -1: none

    def __len__(self) -> int:
        return len(self.parent)


@dataclass
class PatternColumns:
    """Pattern annotations (``patterns/``): the innermost pattern group instance that
    contains each call, the repetition and the variant, plus the ``patterns``
    section of the JSON trace (docs/trace-format.md)."""

    group: np.ndarray  # int per call: 0-based index into section["groups"], -1 when none
    iteration: np.ndarray  # int per call: 0-based repetition of that group, -1 when none
    variant: np.ndarray  # int32 per call: 0-based variant of that repetition, -1 when none
    section: dict[str, Any]  # "options", "statistics", "groups" (a GroupTable, or a
    # list of format 2's group objects for a trace read from an older file)

    def attributes_of(self, row: int) -> dict[str, int]:
        """The ``pattern.*`` attributes of a call (empty when it is in no group)."""
        index = int(self.group[row])
        if index < 0:
            return {}
        groups = self.section["groups"]
        group = groups.head(index) if hasattr(groups, "head") else groups[index]
        attributes = {"pattern.id": group["id"]}
        if group["parent"] is not None:
            attributes["pattern.parent_id"] = group["parent"]
        attributes["pattern.repetitions"] = group["repetitions"]
        attributes["pattern.calls_per_repetition"] = group["calls_per_repetition"]
        attributes["pattern.iteration"] = int(self.iteration[row])
        attributes["pattern.variant"] = int(self.variant[row])
        return attributes


@dataclass
class Trace:
    """A recorded run: metadata, calls and their lookup tables."""

    meta: dict[str, Any]
    functions: list[Function]
    threads: list[ThreadInfo]
    strings: list[str]
    arg_tuples: list[tuple[int, ...]]
    exceptions: list[tuple[str, str]]
    calls: Calls
    extra: dict[str, Any] = field(default_factory=dict)
    patterns: PatternColumns | None = None

    def __len__(self) -> int:
        return len(self.calls)

    def args_of(self, row: int) -> dict[str, str]:
        """Argument summaries of a call, name -> summary."""
        index = int(self.calls.args[row])
        if index < 0:
            return {}
        names = self.functions[int(self.calls.function[row])].argnames
        values = self.arg_tuples[index]
        return {n: self.strings[v] for n, v in zip(names, values, strict=False) if v >= 0}

    def value_of(self, row: int) -> str | None:
        """Summary of the value a call returned (or yielded), if captured."""
        index = int(self.calls.value[row])
        return self.strings[index] if index >= 0 else None

    def task_of(self, row: int) -> str | None:
        """The name of the asyncio task a coroutine's resumption ran in, if known."""
        index = int(self.calls.task[row])
        return self.strings[index] if index >= 0 else None

    def exception_of(self, row: int) -> tuple[str, str] | None:
        """(type, message) of the exception that ended a call; ``("<unknown>", "")``
        when the call raised but the exception could not be observed."""
        if not self.calls.flags[row] & RAISED:
            return None
        index = int(self.calls.exception[row])
        return self.exceptions[index] if index >= 0 else ("<unknown>", "")

    def thread_label(self, index: int) -> str:
        """``MainThread (id 8812)``; in a trace of several processes also the
        process: ``MainThread (id 8812) in process 4242 (worker.py)``."""
        info = self.threads[index]
        label = f"{info.name} (id {info.native_id})"
        processes = self.meta.get("processes") or []
        if len(processes) < 2:
            return label
        pid = info.pid or self.meta.get("pid")
        argv = next((p["argv"] for p in processes if p["pid"] == pid), [])
        program = f" ({argv[0].rsplit('/', 1)[-1]})" if argv else ""
        return f"{label} in process {pid}{program}"

    def function_of(self, row: int) -> Function:
        """The function a call ran."""
        return self.functions[int(self.calls.function[row])]

    @cached_property
    def children(self) -> tuple[np.ndarray, np.ndarray]:
        """Child rows of every call as CSR arrays ``(offsets, rows)``: the children
        of row ``i`` are ``rows[offsets[i + 1] : offsets[i + 2]]`` and the roots
        (parent -1) are ``rows[offsets[0] : offsets[1]]``, all in start order."""
        return bucket_rows(self.calls.parent + 1, len(self.calls) + 1)  # roots: bucket 0

    @cached_property
    def levels(self) -> list[np.ndarray]:
        """The rows at each depth, shallowest first (a call is one deeper than its parent)."""
        depth = self.calls.depth
        if not len(depth):
            return []
        bounds, order = bucket_rows(depth, int(depth.max()) + 1)
        return [order[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]

    @cached_property
    def subtree_sizes(self) -> np.ndarray:
        """Each call's number of calls in its subtree, itself included (int64)."""
        sizes = np.ones(len(self.calls), dtype=np.int64)
        for rows in reversed(self.levels[1:]):  # deepest first
            np.add.at(sizes, self.calls.parent[rows], sizes[rows])
        return sizes

    def children_of(self, row: int) -> np.ndarray:
        """Child rows of ``row`` (``-1`` for the roots), in start order."""
        offsets, order = self.children
        return order[offsets[row + 1] : offsets[row + 2]]
