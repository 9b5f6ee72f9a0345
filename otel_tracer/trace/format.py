"""Loading the documented JSON trace (docs/trace-format.md) back into a Trace.

Versions 2 and 3 store each call as a row of integers (``CALL_FIELDS``); 3 writes
the pattern groups as shared layouts and rows (``group_table``), 2 as one object
per group (checked as columns by ``plain_groups`` when they are as written). With the C
speedups built, ``load`` finds the ``calls`` array in the file's bytes, decodes
it straight into the model's numpy columns (``decode_calls``) and parses only the
rest of the document with orjson; without them, or for a document already
parsed (``from_document``), the rows are read in Python, with the same result
and the same checks. Version 1 files (one object per call) are read by
``format_v1``.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from otel_tracer.trace.checks import (
    HEX_SPAN_ID,
    check_pattern_marks,
    check_patterns,
    check_tree,
    checked_head,
    expect,
    group_counts,
    is_int,
)
from otel_tracer.trace.format_v1 import from_v1_document
from otel_tracer.trace.group_table import GroupTable
from otel_tracer.trace.model import (
    EXTERNAL,
    FINALIZER,
    RAISED,
    RESUMED,
    UNFINISHED,
    YIELDED,
    Calls,
    PatternColumns,
    Trace,
)
from otel_tracer.trace.plain_groups import PlainGroups
from otel_tracer.trace.spool_file import MAGIC as SPOOL_MAGIC
from otel_tracer.trace.spool_file import load_spool
from otel_tracer.trace.text import printable

try:  # the optional C speedups, built by pip install when a compiler is present
    from otel_tracer.trace._speedups import call_depths, decode_calls, find_member
except ImportError:
    call_depths = decode_calls = find_member = None

FORMAT = "otel-tracer-trace"
MAX_INFLATION = 50  # a .json.gz may inflate to 50 times its size ...
INFLATION_FLOOR = 64 << 20  # ... or to 64 MiB, whichever is more
MAX_NESTING = 64  # lists and dicts in metadata; orjson writes up to 255, reads up to 1024
VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
# The members of a call row, in order; the first REQUIRED are always there, the
# others may be left off the end of a row and then have their DEFAULTS.
CALL_FIELDS = (
    "parent",  # id of the calling call, 0 for a root
    "function",  # index into functions
    "thread",  # index into threads
    "start",  # ns after start_base
    "duration",  # ns (end - start)
    "span_id",  # 16 hex digits
    "args",  # index into arguments, -1: not captured
    "return",  # index into strings, -1: none
    "flags",  # bit set of FLAGS
    "exception",  # index into exceptions, -1: none (or unknown when the flags say raised)
    "pattern",  # id of the innermost pattern group, 0: none
    "iteration",  # 0-based iteration of that group
    "variant",  # 0-based variant of that iteration
)
REQUIRED = 6
DEFAULTS = (0, 0, 0, 0, 0, 0, -1, -1, 0, -1, 0, 0, 0)
# the dtype each member is decoded into (the model's; the span id's int64 is its 64 bits)
DTYPES = tuple(
    np.dtype(t)
    for t in ("i8", "i4", "i4", "i8", "i8", "i8", "i4", "i4", "u1", "i4", "i8", "i8", "i4")
)
FLAGS = {"external": EXTERNAL, "resumed": RESUMED, "raised": RAISED, "yielded": YIELDED,
         "unfinished": UNFINISHED, "finalizer": FINALIZER}  # fmt: skip
ALL_FLAGS = EXTERNAL | RESUMED | RAISED | YIELDED | UNFINISHED | FINALIZER
UNKNOWN_EXCEPTION = ("<unknown>", "")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# the top-level keys the loader reads; any other is kept in Trace.extra
KNOWN_KEYS = frozenset(
    {"format", "version", "metadata", "functions", "threads", "calls", "patterns", "strings",
     "arguments", "exceptions", "start_base", "call_fields", "raise_lines", "tasks"}
)  # fmt: skip


class TraceFormatError(Exception):
    """A file that is not a readable trace of a supported version."""


def load(path: str | os.PathLike[str]) -> Trace:
    """Load a JSON trace (plain or gzipped). Raises TraceFormatError on bad input."""
    raw = _read(path)
    if raw.startswith(SPOOL_MAGIC):
        return _from_spool(raw, str(path))
    build = _prepare(raw, str(path))
    del raw  # the calls are decoded: the file's bytes go before the trace is built
    return build()


def _read(path: str | os.PathLike[str]) -> bytes:
    """The file's bytes, gunzipped when they are gzip data."""
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise TraceFormatError(f"cannot read {path}: {error.strerror or error}") from None
    if raw[:2] == b"\x1f\x8b":
        raw = _inflate(raw, str(path))
    return raw


def from_bytes(raw: bytes, name: str = "trace") -> Trace:
    """A Trace from the bytes of a JSON trace document."""
    return _prepare(raw, name)()


def _prepare(raw: bytes, name: str) -> Callable[[], Trace]:
    """What building the trace of ``raw`` needs from it (the parsed document, the
    decoded call columns), as the call that builds it: ``raw`` is no longer used."""
    start = find_member(raw, "calls") if find_member is not None else None
    if start is None or raw[start : start + 1] != b"[":
        doc = _parse(raw, name)  # no speedups, or an odd document
        return lambda: from_document(doc, name)
    try:
        columns, end = _decode_native(raw, start)
    except ValueError as error:  # a version 1 file, or a malformed one: parse it all
        columns, end = error, None
    if end is None or b'"calls"' in raw[end:]:  # a second calls member: orjson's rules
        whole = _parse(raw, name)
        return lambda: from_document(whole, name)
    head = _parse(b"".join((raw[:start], b"[]", raw[end:])), name)
    _check_header(head, name)
    return lambda: _build(head, name, lambda: columns)


def _parse(raw: bytes, name: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise TraceFormatError(f"{name}: not valid JSON ({error})") from None


def _inflate(raw: bytes, name: str) -> bytearray:
    """Gunzip ``raw``, refusing (after a bounded read) what inflates past
    ``MAX_INFLATION`` times its size and ``INFLATION_FLOOR`` bytes: a gzip bomb,
    not a trace (a gzipped trace is 5-10 times smaller than its JSON)."""
    limit = max(INFLATION_FLOOR, MAX_INFLATION * len(raw))
    inflated = bytearray()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
            while piece := stream.read(1 << 24):
                inflated += piece
                if len(inflated) > limit:
                    raise TraceFormatError(
                        f"{name}: refused: the gzip data inflates past {limit} bytes, over "
                        f"{MAX_INFLATION} times its {len(raw)} bytes (a gzip bomb, not a trace)"
                    )
    except (OSError, EOFError, zlib.error) as error:
        raise TraceFormatError(f"{name}: corrupt gzip data ({error})") from None
    return inflated


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
            printable(
                f"{label}: warning: {path} is truncated: the run ended before its trace was "
                f"written; {len(trace)} calls recovered, those still open then marked unfinished"
            ),
            file=sys.stderr,
        )
    return trace


def _check_header(doc: Any, name: str) -> None:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise TraceFormatError(f"{name}: not an otel-tracer trace (no format: {FORMAT!r})")
    version = doc.get("version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise TraceFormatError(
            f"{name}: trace format version {version!r} is not supported "
            f"(this otel-tracer reads versions {', '.join(map(str, READABLE_VERSIONS))})"
        )


def from_document(doc: Any, name: str = "trace") -> Trace:
    """Build a Trace from a parsed JSON document (either version)."""
    _check_header(doc, name)
    if doc["version"] == 1:
        return _build(doc, name, None)
    return _build(doc, name, lambda: _decode_rows(doc.get("calls")))


def _build(doc: dict[str, Any], name: str, decode) -> Trace:
    """The trace of a document whose header is checked; ``decode()`` gives the call
    columns of a version 2 or 3 document (None: a version 1 document)."""
    plain = _plain_groups(doc) if decode is not None and doc["version"] == 2 else None
    skip = [doc["patterns"]["groups"]] if plain is not None or _group_rows(doc) else []
    if decode is not None:  # arguments: lists of integers, else rejected by _tables
        skip.append(doc.get("arguments"))
    deepest = _nesting(doc, MAX_NESTING, skip)
    if deepest > MAX_NESTING:
        raise TraceFormatError(
            f"{name}: malformed trace (values nested over {MAX_NESTING} levels deep)"
        )
    try:
        if decode is None:
            return from_v1_document(doc)
        return _from_v2(doc, decode, plain)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as error:
        raise TraceFormatError(
            f"{name}: malformed trace ({type(error).__name__}: {error})"
        ) from None


def _group_rows(doc: dict[str, Any]) -> bool:
    """Whether the document is version 3 with a list of group rows (checked by
    ``GroupTable.load``, which rejects anything nested in them)."""
    section = doc.get("patterns")
    return (
        doc["version"] == 3
        and isinstance(section, dict)
        and isinstance(section.get("groups"), list)
    )


def _plain_groups(doc: dict[str, Any]) -> PlainGroups | None:
    """The columns of the document's pattern groups when they are as the tracer
    writes them (their depth is then known), else None."""
    section = doc.get("patterns")
    if not isinstance(section, dict) or not isinstance(section.get("groups"), list):
        return None
    return PlainGroups.of(section["groups"])


def _nesting(doc: dict[str, Any], limit: int, skip: list[Any]) -> int:
    """How deep lists and dicts nest in ``doc`` outside its calls (whose values
    are checked to be strings) and the values in ``skip`` (whose checks reject
    deeper nesting), counting up to just past ``limit``."""
    deepest = 0
    skipped = {id(value) for value in skip}
    stack = [(v, 1) for k, v in doc.items() if k != "calls"]
    while stack and deepest <= limit:
        value, depth = stack.pop()
        if isinstance(value, dict | list) and id(value) not in skipped:
            deepest = max(deepest, depth)
            items = value.values() if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items if isinstance(item, dict | list))
    return deepest


# ---- versions 2 and 3 --------------------------------------------------------------


def _decode_native(raw: bytes, start: int) -> tuple[list[np.ndarray], int]:
    """The call rows of the array at ``raw[start]``, one column per member (DTYPES),
    in C, and where the array ends."""
    shortest = 29  # bytes of the shortest row: [0,0,0,0,0,"0123456789abcdef"],
    capacity = (len(raw) - start) // shortest + 1
    for guess in (_row_count_hint(raw, start), capacity):
        columns = [np.empty(min(guess, capacity), dtype=dtype) for dtype in DTYPES]
        decoded = decode_calls(raw, start, columns)
        if decoded is not None:
            n, end = decoded
            return [column[:n] for column in columns], end
    raise ValueError("calls: more rows than fit")  # not reached: capacity is an upper bound


def _row_count_hint(raw: bytes, start: int) -> int:
    """``metadata.call_count`` when it comes before the calls (the writer puts it
    there), else 0; it only sizes the first try of the decoder."""
    at = raw.rfind(b'"call_count":', 0, start)
    digits = raw[at + 13 : at + 33].split(b",")[0].split(b"}")[0].strip()
    return int(digits) + 1 if at >= 0 and digits.isdigit() else 0


def _decode_rows(rows: Any) -> list[np.ndarray]:
    """The same as ``_decode_native`` from the parsed rows (the pure-Python path)."""
    expect(isinstance(rows, list), "calls must be a list")
    width = len(CALL_FIELDS)
    table = []
    for i, row in enumerate(rows):
        expect(isinstance(row, list), f"call {i + 1}: must be a list (a row of the call's members)")
        expect(REQUIRED <= len(row) <= width, f"call {i + 1}: too few or too many members")
        span = row[REQUIRED - 1]
        expect(
            isinstance(span, str) and bool(HEX_SPAN_ID.fullmatch(span)),
            f"call {i + 1}: span_id must be a string of 16 hex digits",
        )
        values = [*row[: REQUIRED - 1], *row[REQUIRED:]]
        expect(all(map(is_int, values)), f"call {i + 1}: row members must be integers (int64)")
        span_id = int(span, 16)
        table.append(
            [*row[: REQUIRED - 1], span_id - (span_id >> 63 << 64), *row[REQUIRED:],
             *DEFAULTS[len(row) :]]
        )  # fmt: skip
    matrix = np.array(table, dtype=np.int64).reshape(len(rows), width)
    columns = []
    for member, dtype in enumerate(DTYPES):
        column = matrix[:, member]
        if dtype.itemsize < 8:
            limits = np.iinfo(dtype)
            _within(column, int(limits.min), int(limits.max), "a row member is out of range")
        columns.append(column.astype(dtype))
    return columns


def _within(column: np.ndarray, low: int, high: int, what: str) -> None:
    """Every value of ``column`` in ``low..high`` (both included)."""
    expect(not len(column) or (int(column.min()) >= low and int(column.max()) <= high), what)


def _from_v2(doc: dict[str, Any], decode, plain: PlainGroups | None) -> Trace:
    functions, threads = checked_head(doc)
    strings, arg_tuples, exceptions = _tables(doc)
    base = doc.get("start_base", 0)
    expect(is_int(base), "start_base must be an integer")
    section = doc.get("patterns")
    columns = decode()
    (parent, function, thread, start, duration, span_id, args, value, flags, exception,
     group, iteration, variant) = columns  # fmt: skip
    n = len(parent)
    parent -= 1
    expect(
        bool(np.all((parent >= -1) & (parent < np.arange(n, dtype=np.int64)))),
        "a call's parent must come before it",
    )
    _within(function, 0, len(functions) - 1, "a call's function does not exist")
    _within(thread, 0, len(threads) - 1, "a call's thread does not exist")
    _within(args, -1, len(arg_tuples) - 1, "a call's args are not in arguments")
    _within(value, -1, len(strings) - 1, "a call's return value is not in strings")
    _within(flags, 0, ALL_FLAGS, "a call's flags are not a bit set of the documented flags")
    _within(exception, -1, len(exceptions) - 1, "a call's exception is not in exceptions")
    raised = (flags & RAISED) != 0
    expect(bool(np.all(raised | (exception < 0))), "an exception on a call that did not raise")
    if section is not None and doc["version"] == 3:
        expect(isinstance(section, dict), "patterns must be an object")
        expect(isinstance(section.get("options"), dict), "patterns.options must be an object")
        expect(isinstance(section.get("statistics"), dict), "patterns.statistics must be an object")
        section = dict(section)
        section["groups"] = GroupTable.load(section, parent, thread, len(threads))
        del section["layouts"]
    elif section is not None:
        check_patterns(section, n, len(threads), plain)
    groups = section["groups"] if section is not None else []
    _within(group, 0, len(groups), "a call's pattern group is not in patterns")
    if n:
        low, high = INT64_MIN - min(base, 0), INT64_MAX - max(base, 0)
        _within(start, low, high, "a call's start is out of range")
    start += base  # in place: the column becomes the start in Unix ns
    end = duration  # likewise: duration + start, once it is known to fit
    expect(
        not np.any((duration > 0) & (start > INT64_MAX - duration))
        and not np.any((duration < 0) & (start < INT64_MIN - duration)),
        "a call's end is out of range",
    )
    end += start
    calls = Calls(
        parent=parent,
        depth=_depths(parent),
        function=function,
        thread=thread,
        start=start,
        end=end,
        args=args,
        value=value,
        exception=exception,
        flags=flags,
        span_id=span_id.view(np.uint64),
        raise_line=_raise_lines(doc.get("raise_lines", []), flags),
        task=_tasks(doc.get("tasks", []), flags, len(strings)),
    )
    patterns = None
    if section is not None:
        marked = group > 0
        group_col = np.where(marked, group - 1, -1)
        iteration_col = np.where(marked, iteration, -1)
        variant_col = np.where(marked, variant, -1).astype(np.int32)
        check_pattern_marks(group_col, iteration_col, variant_col, *group_counts(groups))
        small = np.int32 if n < 2**31 else np.int64  # as folding makes them, once checked
        patterns = PatternColumns(
            group_col.astype(small), iteration_col.astype(small), variant_col, section
        )
    else:
        expect(not np.any(group), "pattern marks without a patterns section")
    trace = Trace(
        meta=dict(doc["metadata"]),
        functions=functions,
        threads=threads,
        strings=strings,
        arg_tuples=arg_tuples,
        exceptions=exceptions,
        calls=calls,
        extra={k: v for k, v in doc.items() if k not in KNOWN_KEYS},
        patterns=patterns,
    )
    check_tree(calls.parent, calls.depth, calls.thread, len(threads), calls.span_id)
    return trace


def _tables(doc: dict[str, Any]) -> tuple[list[str], list[tuple[int, ...]], list[tuple[str, str]]]:
    """``strings``, ``arguments`` and ``exceptions``, checked."""
    strings = doc.get("strings", [])
    expect(
        isinstance(strings, list) and all(isinstance(s, str) for s in strings),
        "strings must be a list of strings",
    )
    arguments = doc.get("arguments", [])
    expect(isinstance(arguments, list), "arguments must be a list")
    top = len(strings) - 1
    for i, values in enumerate(arguments):
        expect(
            isinstance(values, list) and all(is_int(v) and -1 <= v <= top for v in values),
            f"arguments[{i}] must list indices into strings (-1: not shown)",
        )
    exceptions = doc.get("exceptions", [])
    expect(isinstance(exceptions, list), "exceptions must be a list")
    for i, pair in enumerate(exceptions):
        expect(
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(s, str) for s in pair),
            f"exceptions[{i}] must be [type, message]",
        )
    return list(strings), [tuple(a) for a in arguments], [(t, m) for t, m in exceptions]


def _raise_lines(entries: Any, flags: np.ndarray) -> np.ndarray:
    """The ``raise_line`` column from the ``[call id, line]`` pairs of ``entries``."""
    column = np.zeros(len(flags), dtype=np.int32)
    ids, lines = _call_pairs("raise_lines", entries, "line", len(flags))
    _within(lines, 1, 2**31 - 1, "raise_lines: a line number out of range")
    expect(
        bool(np.all(flags[ids - 1] & RAISED)), "raise_lines: a line for a call that did not raise"
    )
    column[ids - 1] = lines
    return column


def _tasks(entries: Any, flags: np.ndarray, strings: int) -> np.ndarray:
    """The ``task`` column from the ``[call id, string]`` pairs of ``entries``."""
    column = np.full(len(flags), -1, dtype=np.int32)
    ids, names = _call_pairs("tasks", entries, "index into strings", len(flags))
    _within(names, 0, strings - 1, "tasks: a task name that is not in strings")
    expect(bool(np.all(flags[ids - 1] & RESUMED)), "tasks: a task for a call that is no resumption")
    column[ids - 1] = names
    return column


def _call_pairs(key: str, entries: Any, what: str, calls: int) -> tuple[np.ndarray, np.ndarray]:
    """The call ids (int64) and values (Python ints) of the ``[call id, value]``
    pairs of the top-level member ``key``: call ids in calls, ascending."""
    expect(
        isinstance(entries, list)
        and all(isinstance(e, list) and len(e) == 2 and all(map(is_int, e)) for e in entries),
        f"{key} must be a list of [call id, {what}]",
    )
    pairs = np.array(entries, dtype=object).reshape(-1, 2)
    ids = pairs[:, 0].astype(np.int64)
    _within(ids, 1, calls, f"{key}: a call id that is not in calls")
    expect(bool(np.all(np.diff(ids) > 0)), f"{key} must be in call order, one per call")
    return ids, pairs[:, 1]


def _depths(parent: np.ndarray) -> np.ndarray:
    """Each call's depth from its parent row (-1 for a root), parents first."""
    depth = np.zeros(len(parent), dtype=np.int32)
    if call_depths is not None:
        call_depths(np.ascontiguousarray(parent, dtype=np.int64), depth)
        return depth
    # pointer doubling: after k rounds, ancestor[i] is 2^k calls up (or -1)
    ancestor = parent.copy()
    steps = (parent >= 0).astype(np.int32)
    while True:
        up = ancestor >= 0
        if not up.any():
            return steps
        above = ancestor[up]
        steps[up] += steps[above]
        ancestor[up] = ancestor[above]
