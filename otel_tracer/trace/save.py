"""Writing the documented JSON trace (docs/trace-format.md).

Writes are atomic: the file is written under a temporary name in the target
directory and renamed into place, so a crash never leaves a half-written trace.
"""

from __future__ import annotations

import gzip
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson

from otel_tracer.trace.files import output_problem  # noqa: F401 (also here, for writers)
from otel_tracer.trace.format import CALL_FIELDS, DEFAULTS, FORMAT, REQUIRED, VERSION
from otel_tracer.trace.group_table import GroupTable, section_document
from otel_tracer.trace.model import RAISED, Function, Trace

try:  # the optional C speedups, built by pip install when a compiler is present
    from otel_tracer.trace._speedups import encode_calls
except ImportError:
    encode_calls = None


@dataclass
class Compact:
    """What the file holds of a trace's tables: only the entries its calls use,
    renumbered in their order (``otel_tracer.load`` gives them back so)."""

    functions: list[Function]
    strings: list[str]
    arg_tuples: list[tuple[int, ...]]
    exceptions: list[tuple[str, str]]
    function: np.ndarray  # int32 per call, into functions
    args: np.ndarray  # int32 per call, into arg_tuples, -1: none
    value: np.ndarray  # int32 per call, into strings, -1: none
    exception: np.ndarray  # int32 per call, into exceptions, -1: none or unknown
    task: np.ndarray  # int32 per call, into strings, -1: none


def _used(columns: list[np.ndarray], size: int) -> np.ndarray:
    """Which entries of a table of ``size`` entries the index ``columns`` refer to
    (-1: none), ascending: a mark per entry, no sort."""
    marks = np.zeros(size, dtype=bool)
    for column in columns:
        marks[column[column >= 0]] = True
    return np.flatnonzero(marks)


def _into(used: np.ndarray, size: int, column: np.ndarray) -> np.ndarray:
    """``column`` (indices into a table of ``size`` entries, -1: none) renumbered
    into ``used`` (ascending), as int32."""
    new_index = np.full(size + 1, -1, dtype=np.int32)  # the last one: for -1
    new_index[used] = np.arange(len(used), dtype=np.int32)
    return new_index[column]


def compact(trace: Trace) -> Compact:
    """The used entries of the trace's tables, and the call columns renumbered."""
    c = trace.calls
    sizes = len(trace.functions), len(trace.arg_tuples), len(trace.strings), len(trace.exceptions)
    used_functions = _used([c.function], sizes[0])
    used_args = _used([c.args], sizes[1])
    tuples = [trace.arg_tuples[i] for i in used_args.tolist()]
    members = np.fromiter((v for t in tuples for v in t), dtype=np.int64)
    used_strings = _used([c.value, c.task, members], sizes[2])
    string_index = dict(zip(used_strings.tolist(), range(len(used_strings)), strict=True))
    raised = (c.flags & RAISED) != 0
    exception_column = np.where(raised, c.exception, -1)
    used_exceptions = _used([exception_column], sizes[3])
    return Compact(
        functions=[trace.functions[i] for i in used_functions.tolist()],
        strings=[trace.strings[i] for i in used_strings.tolist()],
        arg_tuples=[tuple(string_index[v] if v >= 0 else -1 for v in t) for t in tuples],
        exceptions=[trace.exceptions[i] for i in used_exceptions.tolist()],
        function=_into(used_functions, sizes[0], c.function),
        args=_into(used_args, sizes[1], c.args),
        value=_into(used_strings, sizes[2], c.value),
        exception=_into(used_exceptions, sizes[3], exception_column),
        task=_into(used_strings, sizes[2], c.task),
    )


def _head(trace: Trace, tables: Compact) -> dict[str, Any]:
    """Everything in the document but the calls."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "metadata": trace.meta,
        "functions": [
            {
                "name": f.name,
                "qualname": f.qualname,
                "module": f.module,
                "file": f.file,
                "line": f.line,
                "external": f.external,
                "argnames": list(f.argnames),
            }
            for f in tables.functions
        ],
        "threads": [
            {"id": t.id, "native_id": t.native_id, "name": t.name, "pid": t.pid}
            for t in trace.threads
        ],
        "strings": tables.strings,
        "arguments": [list(t) for t in tables.arg_tuples],
        "exceptions": [list(e) for e in tables.exceptions],
        **trace.extra,
        **({"patterns": _patterns(trace)} if trace.patterns is not None else {}),
        **_call_pairs("raise_lines", trace.calls.raise_line, 0),
        **_call_pairs("tasks", tables.task, -1),
        "call_fields": list(CALL_FIELDS),
        "start_base": _start_base(trace),
    }


def _patterns(trace: Trace) -> dict[str, Any]:
    """The ``patterns`` section as format 3 writes it; the groups of a trace read
    from an older file are folded again, with the options they were folded with."""
    section = trace.patterns.section  # type: ignore[union-attr]
    if not isinstance(section["groups"], GroupTable):
        from otel_tracer.trace.annotators import annotator  # importlib.metadata: only here

        annotator("patterns")(trace)
        section = trace.patterns.section  # type: ignore[union-attr]
    return section_document(section)


def _call_pairs(key: str, column: np.ndarray, missing: int) -> dict[str, list[list[int]]]:
    """``{key: [[call id, value], ...]}`` for the calls whose ``column`` is not
    ``missing`` (``raise_lines``, ``tasks``), or nothing when there are none."""
    rows = np.flatnonzero(column != missing)
    if not len(rows):
        return {}
    return {key: np.column_stack((rows + 1, column[rows])).tolist()}


def _start_base(trace: Trace) -> int:
    """What call starts are written after: the first start."""
    return int(trace.calls.start.min()) if len(trace) else 0


def to_document(trace: Trace) -> dict[str, Any]:
    """The JSON document of a trace, as plain Python objects."""
    return orjson.loads(dumps(trace))


def dumps(trace: Trace) -> bytes:
    """The trace as JSON bytes."""
    return b"".join(_pieces(trace))


def _pieces(trace: Trace) -> Iterator[bytes | memoryview]:
    """The JSON document in pieces, made as they are written: the calls a chunk
    of rows at a time, so that writing a 10^8-call trace never holds its JSON."""
    tables = compact(trace)
    head = orjson.dumps(_head(trace, tables), option=orjson.OPT_SERIALIZE_NUMPY)
    yield head[:-1]
    yield b',"calls":'
    yield from _encode_calls(trace, tables)
    yield b"}"


def _columns(trace: Trace, tables: Compact) -> list[np.ndarray]:
    """The columns a call row is made of (see ``encode_calls``)."""
    c = trace.calls
    group, iteration, variant = _pattern_columns(trace)
    return [
        np.ascontiguousarray(c.parent, dtype=np.int64),
        tables.function,
        np.ascontiguousarray(c.thread, dtype=np.int32),
        np.ascontiguousarray(c.start, dtype=np.int64),
        np.ascontiguousarray(c.end, dtype=np.int64),
        np.ascontiguousarray(c.span_id, dtype=np.uint64),
        tables.args,
        tables.value,
        tables.exception,
        np.ascontiguousarray(c.flags, dtype=np.uint8),
        group,
        iteration,
        variant,
    ]


def _encode_calls(trace: Trace, tables: Compact) -> Iterator[bytes | memoryview]:
    """The ``calls`` array as JSON, in pieces of at most ``CHUNK_ROWS`` rows (in C
    when the speedups are built)."""
    columns, base = _columns(trace, tables), _start_base(trace)
    if encode_calls is None:
        yield orjson.dumps(list(_call_rows(columns, base)))
        return
    if len(trace) <= CHUNK_ROWS:
        yield encode_calls(*columns, base)
        return
    yield b"["
    for lo in range(0, len(trace), CHUNK_ROWS):
        rows = encode_calls(*(column[lo : lo + CHUNK_ROWS] for column in columns), base)
        if lo:
            yield b","
        yield memoryview(rows)[1:-1]  # without its brackets
    yield b"]"


def _pattern_columns(trace: Trace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(group, iteration, variant) per call; group -1 where there is none."""
    p = trace.patterns
    if p is None:
        none = np.full(len(trace), -1, dtype=np.int64)
        return none, none, np.full(len(trace), -1, dtype=np.int32)
    return (
        np.ascontiguousarray(p.group, dtype=np.int64),
        np.ascontiguousarray(p.iteration, dtype=np.int64),
        np.ascontiguousarray(p.variant, dtype=np.int32),
    )


def _call_rows(columns: list[np.ndarray], base: int) -> Iterator[list[Any]]:
    """The call rows one by one (the pure-Python path of ``encode_calls``)."""
    (parent, function, thread, start, end, span, args, value, exception, flags, group,
     iteration, variant) = (column.tolist() for column in columns)  # fmt: skip
    for i in range(len(parent)):
        marked = group[i] >= 0
        row = [
            parent[i] + 1,
            function[i],
            thread[i],
            start[i] - base,
            end[i] - start[i],
            format(span[i], "016x"),
            args[i],
            value[i],
            flags[i],
            exception[i],
            group[i] + 1 if marked else 0,
            iteration[i] if marked else 0,
            variant[i] if marked else 0,
        ]
        members = len(row)
        while members > REQUIRED and row[members - 1] == DEFAULTS[members - 1]:
            members -= 1
        yield row[:members]


CHUNK_ROWS = 1 << 20  # call rows encoded at a time (about 40 MB of JSON)


def save(trace: Trace, path: str | os.PathLike[str], compress: bool | None = None) -> None:
    """Write ``trace`` to ``path`` atomically; ``-`` writes to stdout. Gzipped when
    ``compress`` is true or, by default, when the name ends in ``.gz``."""
    pieces = _pieces(trace)
    if os.fspath(path) == "-":
        sys.stdout.flush()
        sys.stdout.buffer.writelines([*pieces, b"\n"])
        sys.stdout.flush()
        return
    target = Path(path)
    if compress is None:
        compress = target.name.endswith(".gz")
    with atomic_output(target) as out:
        if compress:
            with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=5, mtime=0) as zipped:
                zipped.writelines(pieces)
        else:
            out.writelines(pieces)


FILE_MODE = 0o600  # every file that may hold argument values


@contextmanager
def atomic_output(target: Path) -> Iterator[BinaryIO]:
    """A binary file that replaces ``target`` only once it is completely written:
    it is written under a temporary name in the same directory and renamed.
    Readable by its owner only (0600): traces hold argument values."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
