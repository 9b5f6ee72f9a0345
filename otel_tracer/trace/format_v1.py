"""Reading version 1 of the JSON trace (one object per call), which traces written
before version 2 use: a call object per row, ``depth`` and ``end`` written out,
arguments as ``{name: summary}``. Kept so old traces still open; writing is
version 3 only (otel_tracer/trace/save.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from otel_tracer.trace.checks import (
    check_pattern_marks,
    check_patterns,
    check_tree,
    checked_head,
    expect,
    group_counts,
)
from otel_tracer.trace.model import (
    EXTERNAL,
    RAISED,
    RESUMED,
    UNFINISHED,
    YIELDED,
    Calls,
    PatternColumns,
    Trace,
)

UNKNOWN_EXCEPTION = ("<unknown>", "")
FLAG_KEYS = (
    (EXTERNAL, "external"),
    (RESUMED, "resumed"),
    (YIELDED, "yielded"),
    (UNFINISHED, "unfinished"),
)


def from_v1_document(doc: dict[str, Any]) -> Trace:
    """A Trace from a parsed version 1 document (ValueError and the like when malformed)."""
    functions, threads = checked_head(doc)
    expect(isinstance(doc.get("calls"), list), "calls must be a list")
    calls = doc["calls"]
    n = len(calls)
    if [c["id"] for c in calls] != list(range(1, n + 1)):
        raise ValueError("call ids must be 1..n in call order")
    strings: list[str] = []
    string_ids: dict[str, int] = {}
    arg_tuples: list[tuple[int, ...]] = []
    arg_ids: dict[tuple[int, ...], int] = {}
    exceptions: list[tuple[str, str]] = []
    exc_ids: dict[tuple[str, str], int] = {}

    def intern(text: str) -> int:
        index = string_ids.get(text)
        if index is None:
            expect(isinstance(text, str), f"argument and return values must be strings: {text!r}")
            index = string_ids[text] = len(strings)
            strings.append(text)
        return index

    def column(key: str, dtype: type) -> np.ndarray:
        return np.array([c[key] for c in calls], dtype=dtype)

    function = column("function", np.int32)
    expect(bool(np.all((function >= 0) & (function < len(functions)))), "unknown function")
    args = np.full(n, -1, dtype=np.int32)
    value = np.full(n, -1, dtype=np.int32)
    exception = np.full(n, -1, dtype=np.int32)
    flags = np.zeros(n, dtype=np.uint8)
    for i, call in enumerate(calls):
        if "args" in call:
            shown = call["args"]
            names = functions[function[i]].argnames
            key = tuple(intern(shown[a]) if a in shown else -1 for a in names)
            args[i] = arg_ids.setdefault(key, len(arg_tuples))
            if args[i] == len(arg_tuples):
                arg_tuples.append(key)
        if "return" in call:
            value[i] = intern(call["return"])
        if "exception" in call:
            flags[i] |= RAISED
            info = (call["exception"]["type"], call["exception"]["message"])
            expect(
                isinstance(info[0], str) and isinstance(info[1], str),
                f"call {i + 1}: exception type and message must be strings",
            )
            if info != UNKNOWN_EXCEPTION:
                exception[i] = exc_ids.setdefault(info, len(exceptions))
                if exception[i] == len(exceptions):
                    exceptions.append(info)
        for bit, name in FLAG_KEYS:
            if name in call and call[name]:
                flags[i] |= bit
    known = {"format", "version", "metadata", "functions", "threads", "calls", "patterns"}
    trace = Trace(
        meta=dict(doc["metadata"]),
        functions=functions,
        threads=threads,
        strings=strings,
        arg_tuples=arg_tuples,
        exceptions=exceptions,
        calls=Calls(
            parent=np.array([(c["parent"] or 0) - 1 for c in calls], dtype=np.int64),
            depth=column("depth", np.int32),
            function=function,
            thread=column("thread", np.int32),
            start=column("start", np.int64),
            end=column("end", np.int64),
            args=args,
            value=value,
            exception=exception,
            flags=flags,
            span_id=np.array([int(c["span_id"], 16) for c in calls], dtype=np.uint64),
            raise_line=np.zeros(len(calls), dtype=np.int32),
            task=np.full(len(calls), -1, dtype=np.int32),
        ),
        extra={k: v for k, v in doc.items() if k not in known},
        patterns=_pattern_columns(doc, calls, len(threads)),
    )
    c = trace.calls
    check_tree(c.parent, c.depth, c.thread, len(threads), c.span_id)
    return trace


def _pattern_columns(
    doc: dict[str, Any], calls: list[dict[str, Any]], threads: int
) -> PatternColumns | None:
    """The pattern annotations of an annotated trace, None for a plain one."""
    section = doc.get("patterns")
    if section is None:
        return None
    check_patterns(section, len(calls), threads)
    groups = section["groups"]
    n = len(calls)
    group = np.full(n, -1, dtype=np.int64)
    iteration = np.full(n, -1, dtype=np.int64)
    variant = np.full(n, -1, dtype=np.int32)
    for i, call in enumerate(calls):
        mark = call.get("pattern")
        if mark is not None:
            if not 1 <= mark["id"] <= len(groups):
                raise ValueError(f"call {i + 1}: pattern id {mark['id']} is not in patterns")
            group[i], iteration[i], variant[i] = mark["id"] - 1, mark["iteration"], mark["variant"]
    check_pattern_marks(group, iteration, variant, *group_counts(groups))
    return PatternColumns(group, iteration, variant, section)
