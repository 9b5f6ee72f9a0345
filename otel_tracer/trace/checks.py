"""Checks that a parsed JSON trace document is one every output can use: types,
ranges and references (a call's parent, function, thread; pattern groups' calls),
so a corrupted or hand-edited file gives one clear ``ValueError`` at load time
instead of a failure deep inside an exporter."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from otel_tracer.trace.group_table import GroupTable
from otel_tracer.trace.plain_groups import GROUP_KEYS, PlainGroups
from otel_tracer.trace.tables import Function, ThreadInfo

HEX_TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")
HEX_SPAN_ID = re.compile(r"[0-9a-fA-F]{16}")
INT64 = (-(2**63), 2**63 - 1)
# metadata fields the outputs read, and the types they must have when present
METADATA_TYPES: dict[str, tuple[type, ...]] = {
    "pid": (int,),
    "start_time_unix_nano": (int,),
    "duration_ns": (int,),
    "exit_code": (int, type(None)),
    "dropped_calls": (int,),
    "discarded_calls": (int,),
    "ring_buffer": (int, type(None)),
    "argv": (list,),
    "script": (str, type(None)),
    "module": (str, type(None)),
    "executable": (str, type(None)),
    "python_version": (str,),
    "python_implementation": (str,),
    "tool_version": (str,),
    "uncaught_exception": (dict, type(None)),
    "root_span_id": (str,),
    "parent_span_id": (str, type(None)),
    "processes": (list,),
}
# the fields of each ``metadata.processes`` entry (a merged multi-process trace)
PROCESS_TYPES: dict[str, tuple[type, ...]] = {
    "pid": (int,),
    "parent_pid": (int,),
    "argv": (list,),
    "exit_code": (int, type(None)),
    "start_time_unix_nano": (int,),
    "duration_ns": (int,),
    "call_count": (int,),
    "root_span_id": (str,),
    "parent_span_id": (str, type(None)),
}


def expect(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition``."""
    if not condition:
        raise ValueError(message)


def is_int(value: Any) -> bool:
    """A JSON integer within int64 (not a bool)."""
    return type(value) is int and INT64[0] <= value <= INT64[1]


def check_metadata(meta: Any) -> None:
    expect(isinstance(meta, dict), "metadata must be an object")
    trace_id = meta.get("trace_id")
    expect(
        isinstance(trace_id, str) and bool(HEX_TRACE_ID.fullmatch(trace_id)),
        "metadata.trace_id must be 32 hex digits",
    )
    expect(int(trace_id, 16) != 0, "metadata.trace_id must not be zero")
    check_fields(meta, METADATA_TYPES, "metadata")
    for i, process in enumerate(meta.get("processes") or []):
        expect(isinstance(process, dict), f"metadata.processes[{i}] must be an object")
        check_fields(process, PROCESS_TYPES, f"metadata.processes[{i}]")
        expect("pid" in process and "root_span_id" in process, f"metadata.processes[{i}]: pid")
    uncaught = meta.get("uncaught_exception")
    if uncaught is not None:
        expect(
            isinstance(uncaught.get("type"), str) and isinstance(uncaught.get("message"), str),
            "metadata.uncaught_exception needs a type and a message",
        )


def check_fields(record: dict[str, Any], types: dict[str, tuple[type, ...]], where: str) -> None:
    """The fields of ``record`` named in ``types`` have those types when present;
    span ids are 16 hex digits, not zero."""
    for key, allowed in types.items():
        if key in record:
            value = record[key]
            expect(
                isinstance(value, allowed) and (not isinstance(value, int) or is_int(value)),
                f"{where}.{key} has the wrong type",
            )
    expect(all(isinstance(a, str) for a in record.get("argv") or []), f"{where}.argv: strings")
    for key in ("root_span_id", "parent_span_id"):
        value = record.get(key)
        if value is not None:
            expect(
                bool(HEX_SPAN_ID.fullmatch(value)) and int(value, 16) != 0,
                f"{where}.{key} must be 16 hex digits, not zero",
            )


def check_functions(functions: Any) -> None:
    expect(isinstance(functions, list), "functions must be a list")
    for i, f in enumerate(functions):
        expect(isinstance(f, dict), f"function {i} must be an object")
        for key in ("name", "qualname", "module", "file"):
            expect(isinstance(f.get(key), str), f"function {i}: {key} must be a string")
        expect(is_int(f.get("line")), f"function {i}: line must be an integer")
        expect(isinstance(f.get("external"), bool), f"function {i}: external must be true/false")
        names = f.get("argnames", [])
        expect(
            isinstance(names, list) and all(isinstance(n, str) for n in names),
            f"function {i}: argnames must be a list of strings",
        )


def check_threads(threads: Any) -> None:
    expect(isinstance(threads, list), "threads must be a list")
    for i, t in enumerate(threads):
        expect(isinstance(t, dict), f"thread {i} must be an object")
        expect(is_int(t.get("id")) and is_int(t.get("native_id")), f"thread {i}: ids")
        expect(isinstance(t.get("name"), str), f"thread {i}: name must be a string")
        expect(is_int(t.get("pid", 0)), f"thread {i}: pid must be an integer")


def check_tree(
    parent: np.ndarray, depth: np.ndarray, thread: np.ndarray, threads: int, span_id: np.ndarray
) -> None:
    """The call tree: parents before children on the same thread, depths that
    follow the parents, threads that exist, distinct span ids."""
    n = len(parent)
    rows = np.arange(n)
    expect(bool(np.all((parent >= -1) & (parent < rows))), "a call's parent must come before it")
    expect(bool(np.all((thread >= 0) & (thread < threads))), "a call's thread does not exist")
    has_parent = parent >= 0
    up = parent[has_parent]
    expect(bool(np.all(depth[~has_parent] == 0)), "a call without a parent must have depth 0")
    expect(bool(np.all(depth[has_parent] == depth[up] + 1)), "depths must follow the parents")
    expect(bool(np.all(thread[has_parent] == thread[up])), "a call and its parent: one thread")
    expect(bool(np.all(span_id != 0)), "span ids must not be zero")
    ordered = np.sort(span_id)  # faster than np.unique's hashing for 64-bit ids
    expect(not np.any(ordered[1:] == ordered[:-1]), "span ids must be distinct")


def check_patterns(section: Any, n: int, threads: int, plain: PlainGroups | None = None) -> None:
    """The ``patterns`` section: groups whose references stay inside the trace.

    Groups as the tracer writes them are checked column by column (``plain``, the
    columns of ``section["groups"]`` when the caller has them); any other groups, or
    plain ones that fail, one by one, for the precise message."""
    expect(isinstance(section, dict), "patterns must be an object")
    groups = section.get("groups")
    expect(isinstance(groups, list), "patterns.groups must be a list")
    expect(isinstance(section.get("options"), dict), "patterns.options must be an object")
    expect(isinstance(section.get("statistics"), dict), "patterns.statistics must be an object")
    plain = plain or PlainGroups.of(groups)
    if plain is not None and plain.fit(n, threads):
        return
    for i, group in enumerate(groups):
        _check_group(group, i, groups, n, threads)


def _calls(values: Any, n: int) -> bool:
    return isinstance(values, list) and all(is_int(v) and 1 <= v <= n for v in values)


def _entries(entries: Any, n: int, groups: int) -> bool:
    return isinstance(entries, list) and all(
        isinstance(e, dict)
        and len(e) == 1
        and (
            ("call" in e and is_int(e["call"]) and 1 <= e["call"] <= n)
            or ("group" in e and is_int(e["group"]) and 1 <= e["group"] <= groups)
        )
        for e in entries
    )


def _check_group(group: Any, i: int, groups: list[Any], n: int, threads: int) -> None:
    where = f"pattern group {i + 1}"
    expect(isinstance(group, dict), f"{where} must be an object")
    missing = [key for key in GROUP_KEYS if key not in group]
    expect(not missing, f"{where}: missing {', '.join(missing)}")
    expect(group["id"] == i + 1, f"{where}: ids must be 1..n in order")
    expect(isinstance(group["near"], bool), f"{where}: near must be true/false")
    for key in ("repetitions", "calls_per_repetition", "total_calls", "thread"):
        expect(is_int(group.get(key)) and group[key] >= 0, f"{where}: {key} must be an integer")
    expect(group["repetitions"] >= 1, f"{where}: repetitions must be at least 1")
    expect(group["thread"] < threads, f"{where}: thread does not exist")
    parent = group.get("parent")
    expect(parent is None or (is_int(parent) and 1 <= parent <= len(groups)), f"{where}: parent")
    parent_call = group.get("parent_call")
    expect(parent_call is None or _calls([parent_call], n), f"{where}: parent_call")
    expect(_calls([group.get("first"), group.get("last")], n), f"{where}: first/last calls")
    expect(group["first"] <= group["last"], f"{where}: first after last")
    iterations = group.get("iterations")
    expect(
        _calls(iterations, n) and len(iterations) == group["repetitions"],
        f"{where}: iterations must list one call per repetition",
    )
    expect(
        iterations == sorted(iterations) and group["first"] == iterations[0] <= group["last"],
        f"{where}: iterations must be in order from the first call",
    )
    expect(_entries(group.get("template"), n, len(groups)), f"{where}: template entries")
    variants = group.get("variants")
    expect(isinstance(variants, list) and len(variants) >= 1, f"{where}: variants")
    for variant in variants:
        expect(isinstance(variant, dict), f"{where}: a variant must be an object")
        its = variant.get("iterations")
        expect(
            isinstance(its, list) and all(is_int(v) and 0 <= v < group["repetitions"] for v in its),
            f"{where}: variant iterations",
        )
        expect(_entries(variant.get("entries"), n, len(groups)), f"{where}: variant entries")
    nested = group["groups"]
    expect(
        isinstance(nested, list) and all(is_int(g) and 1 <= g <= len(groups) for g in nested),
        f"{where}: nested groups",
    )


def group_counts(groups: Any) -> tuple[np.ndarray, np.ndarray]:
    """Each group's repetitions and number of variants (a ``GroupTable``, or a
    list of checked group objects)."""
    if isinstance(groups, GroupTable):
        return groups.repetitions, groups.variant_counts
    repetitions = np.array([g["repetitions"] for g in groups], dtype=np.int64)
    return repetitions, np.array([len(g["variants"]) for g in groups], dtype=np.int64)


def check_pattern_marks(
    group: np.ndarray,
    iteration: np.ndarray,
    variant: np.ndarray,
    repetitions: np.ndarray,
    variants: np.ndarray,
) -> None:
    """Each call's pattern mark names an iteration and a variant of its group
    (``repetitions`` and ``variants``: the counts of each group)."""
    marked = group >= 0
    its, var, owner = iteration[marked], variant[marked], group[marked]
    expect(bool(np.all((its >= 0) & (its < repetitions[owner]))), "a call's pattern iteration")
    expect(bool(np.all((var >= 0) & (var < variants[owner]))), "a call's pattern variant")


def checked_head(doc: dict[str, Any]) -> tuple[list[Function], list[ThreadInfo]]:
    """The functions and threads of a document (either version), after checking
    its metadata, functions and threads."""
    check_metadata(doc.get("metadata"))
    check_functions(doc.get("functions"))
    check_threads(doc.get("threads"))
    functions = [
        Function(
            f["name"],
            f["qualname"],
            f["module"],
            f["file"],
            int(f["line"]),
            bool(f["external"]),
            tuple(f.get("argnames", ())),
        )
        for f in doc["functions"]
    ]
    pid = doc["metadata"].get("pid", 0)
    threads = [
        ThreadInfo(int(t["id"]), int(t["native_id"]), t["name"], int(t.get("pid", pid)))
        for t in doc["threads"]
    ]
    return functions, threads
