"""Merging the traces of the processes of one run into one trace.

Each process keeps its own threads (``ThreadInfo.pid``), so its calls stay one
tree per thread and every process is a separate root. The tables (functions,
strings, argument tuples, exceptions) are merged without duplicates and the
calls are put in start order, each process's calls keeping their order. The
process that started the others (its root span is no other's parent span) gives
the metadata; ``metadata.processes`` describes every process.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from otel_tracer.trace.build import random_span_ids
from otel_tracer.trace.model import Calls, Trace


class MergeError(ValueError):
    """Traces that cannot be one trace (different runs)."""


def process_entry(trace: Trace) -> dict[str, Any]:
    """The ``metadata.processes`` entry of a one-process trace."""
    meta = trace.meta
    return {
        "pid": int(meta.get("pid", 0)),
        "parent_pid": int(meta.get("parent_pid", 0)),
        "argv": list(meta.get("argv") or []),
        "exit_code": meta.get("exit_code"),
        "start_time_unix_nano": int(meta.get("start_time_unix_nano", 0)),
        "duration_ns": int(meta.get("duration_ns", 0)),
        "call_count": len(trace),
        "dropped_calls": int(meta.get("dropped_calls", 0)),
        "discarded_calls": int(meta.get("discarded_calls", 0)),
        "root_span_id": meta.get("root_span_id") or meta["trace_id"][:16],
        "parent_span_id": meta.get("parent_span_id"),
        "service_instance_id": meta.get("service_instance_id"),
        "executable": meta.get("executable"),
    }


def processes_of(trace: Trace) -> list[dict[str, Any]]:
    """Every process of a trace, the one that started the others first."""
    return trace.meta.get("processes") or [process_entry(trace)]


def merge_traces(traces: list[Trace]) -> Trace:
    """One trace of the processes of ``traces`` (each one process, or already
    merged); raises MergeError when they belong to different runs."""
    if not traces:
        raise MergeError("nothing to merge")
    trace_ids = {t.meta["trace_id"] for t in traces}
    if len(trace_ids) > 1:
        raise MergeError(f"the traces are of different runs (trace ids {', '.join(trace_ids)})")
    ordered = _starter_first(traces)
    tables = _Tables()
    pieces = [tables.add(t) for t in ordered]
    calls = _concatenate(pieces)
    processes = [p for t in ordered for p in processes_of(t)]
    main = ordered[0]
    meta = dict(main.meta)
    meta["processes"] = processes
    meta["call_count"] = len(calls)
    for key in ("dropped_calls", "discarded_calls"):
        meta[key] = sum(int(p.get(key, 0)) for p in processes)
    return Trace(
        meta=meta,
        functions=tables.functions,
        threads=tables.threads,
        strings=tables.strings,
        arg_tuples=tables.arg_tuples,
        exceptions=tables.exceptions,
        calls=calls,
        extra=dict(main.extra),
    )


def _starter_first(traces: list[Trace]) -> list[Trace]:
    """The traces with the one whose root span is no other's parent first, then
    by start time."""
    roots = {p["root_span_id"] for t in traces for p in processes_of(t)}

    def key(trace: Trace) -> tuple[bool, int]:
        parent = trace.meta.get("parent_span_id")
        return (parent in roots, int(trace.meta.get("start_time_unix_nano", 0)))

    return sorted(traces, key=key)


class _Tables:
    """The merged lookup tables, and each trace's calls re-indexed into them."""

    def __init__(self) -> None:
        self.functions: list = []
        self.threads: list = []
        self.strings: list[str] = []
        self.arg_tuples: list[tuple[int, ...]] = []
        self.exceptions: list[tuple[str, str]] = []
        self._ids: dict[str, dict[Any, int]] = {
            "functions": {},
            "strings": {},
            "arg_tuples": {},
            "exceptions": {},
        }

    def _index(self, table: str, items: list) -> np.ndarray:
        """Positions in the merged table ``table`` of ``items``, added as needed."""
        ids, merged = self._ids[table], getattr(self, table)
        positions = np.empty(len(items) + 1, dtype=np.int64)
        for i, item in enumerate(items):
            index = ids.get(item)
            if index is None:
                index = ids[item] = len(merged)
                merged.append(item)
            positions[i] = index
        positions[-1] = -1  # -1 (none) stays -1
        return positions

    def add(self, trace: Trace) -> Calls:
        """``trace``'s calls with indices into the merged tables."""
        pid = int(trace.meta.get("pid", 0))
        functions = self._index("functions", trace.functions)
        strings = self._index("strings", trace.strings)
        tuples = [tuple(int(strings[v]) if v >= 0 else -1 for v in t) for t in trace.arg_tuples]
        arg_tuples = self._index("arg_tuples", tuples)
        exceptions = self._index("exceptions", trace.exceptions)
        first_thread = len(self.threads)
        self.threads.extend(
            t if t.pid else type(t)(t.id, t.native_id, t.name, pid) for t in trace.threads
        )
        c = trace.calls
        return Calls(
            parent=c.parent.copy(),
            depth=c.depth,
            function=functions[c.function].astype(np.int32),
            thread=(c.thread + first_thread).astype(np.int32),
            start=c.start,
            end=c.end,
            args=arg_tuples[c.args].astype(np.int32),
            value=strings[c.value].astype(np.int32),
            exception=exceptions[c.exception].astype(np.int32),
            flags=c.flags,
            span_id=c.span_id,
            raise_line=c.raise_line,
            task=strings[c.task].astype(np.int32),
        )


def _concatenate(pieces: list[Calls]) -> Calls:
    """The calls of every piece in one table in start order, parents re-linked."""
    offsets = np.cumsum([0] + [len(p) for p in pieces])
    for piece, offset in zip(pieces, offsets, strict=False):
        piece.parent = np.where(piece.parent >= 0, piece.parent + offset, -1)
    columns = {
        name: np.concatenate([getattr(p, name) for p in pieces])
        for name in Calls.__dataclass_fields__
    }
    order = np.argsort(columns["start"], kind="stable")
    row_of = np.empty(len(order), dtype=np.int64)
    row_of[order] = np.arange(len(order))
    merged = {name: column[order] for name, column in columns.items()}
    parent = merged["parent"]
    merged["parent"] = np.where(parent >= 0, row_of[np.maximum(parent, 0)], -1)
    merged["span_id"] = _distinct(merged["span_id"])
    return Calls(**merged)


def _distinct(span_ids: np.ndarray) -> np.ndarray:
    """``span_ids`` with any id that repeats another process's replaced."""
    _, first = np.unique(span_ids, return_index=True)
    if len(first) == len(span_ids):
        return span_ids
    repeated = np.setdiff1d(np.arange(len(span_ids)), first)
    span_ids = span_ids.copy()
    span_ids[repeated] = random_span_ids(len(repeated))
    return _distinct(span_ids)
