"""Loading the documented JSON trace (docs/trace-format.md) back into a Trace."""

from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from otel_tracer.model import (
    EXTERNAL,
    RAISED,
    RESUMED,
    UNFINISHED,
    YIELDED,
    Calls,
    Function,
    PatternColumns,
    ThreadInfo,
    Trace,
)
from otel_tracer.spool import MAGIC as SPOOL_MAGIC
from otel_tracer.spool import load_spool
from otel_tracer.trace_checks import (
    check_functions,
    check_metadata,
    check_pattern_marks,
    check_patterns,
    check_threads,
    check_tree,
    expect,
)

FORMAT = "otel-tracer-trace"
VERSION = 1
UNKNOWN_EXCEPTION = ("<unknown>", "")
FLAG_KEYS = (
    (EXTERNAL, "external"),
    (RESUMED, "resumed"),
    (YIELDED, "yielded"),
    (UNFINISHED, "unfinished"),
)


class TraceFormatError(Exception):
    """A file that is not a readable trace of a supported version."""


def load(path: str | os.PathLike[str]) -> Trace:
    """Load a JSON trace (plain or gzipped). Raises TraceFormatError on bad input."""
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise TraceFormatError(f"cannot read {path}: {error.strerror or error}") from None
    if raw.startswith(SPOOL_MAGIC):
        return _from_spool(raw, str(path))
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise TraceFormatError(f"{path}: corrupt gzip data ({error})") from None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise TraceFormatError(f"{path}: not valid JSON ({error})") from None
    return from_document(doc, str(path))


def _from_spool(raw: bytes, name: str) -> Trace:
    """The calls a killed run streamed to its spool file (``metadata.truncated``)."""
    try:
        return load_spool(raw)
    except Exception as error:
        raise TraceFormatError(
            f"{name}: damaged spool file ({type(error).__name__}: {error})"
        ) from None


def load_noting_truncation(path: str | os.PathLike[str], label: str) -> Trace:
    """``load``, with a warning line on stderr (``label: warning: ...``) when the
    file is what a killed run left: a truncated trace."""
    trace = load(path)
    if trace.meta.get("truncated"):
        print(
            f"{label}: warning: {path} is truncated: the run ended before its trace was "
            f"written; {len(trace)} calls recovered, those still open then marked unfinished",
            file=sys.stderr,
        )
    return trace


def from_document(doc: Any, name: str = "trace") -> Trace:
    """Build a Trace from a parsed JSON document."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise TraceFormatError(f"{name}: not an otel-tracer trace (no format: {FORMAT!r})")
    if doc.get("version") != VERSION:
        raise TraceFormatError(
            f"{name}: trace format version {doc.get('version')!r} is not supported "
            f"(this otel-tracer reads version {VERSION})"
        )
    try:
        return _from_valid_document(doc)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as error:
        raise TraceFormatError(
            f"{name}: malformed trace ({type(error).__name__}: {error})"
        ) from None


def _from_valid_document(doc: dict[str, Any]) -> Trace:
    check_metadata(doc.get("metadata"))
    check_functions(doc.get("functions"))
    check_threads(doc.get("threads"))
    expect(isinstance(doc.get("calls"), list), "calls must be a list")
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
    check_pattern_marks(group, iteration, variant, groups)
    return PatternColumns(group, iteration, variant, section)
