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
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson

from otel_tracer.model import RAISED, Trace
from otel_tracer.trace_format import FLAG_KEYS, FORMAT, UNKNOWN_EXCEPTION, VERSION

try:  # the optional C speedups, built by pip install when a compiler is present
    from otel_tracer._speedups import encode_calls
except ImportError:
    encode_calls = None


def _head(trace: Trace) -> dict[str, Any]:
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
            for f in trace.functions
        ],
        "threads": [
            {"id": t.id, "native_id": t.native_id, "name": t.name, "pid": t.pid}
            for t in trace.threads
        ],
        **trace.extra,
        **({"patterns": trace.patterns.section} if trace.patterns is not None else {}),
    }


def to_document(trace: Trace) -> dict[str, Any]:
    """The JSON document of a trace, as plain Python objects."""
    return {**_head(trace), "calls": orjson.loads(_encode_calls(trace))}


def dumps(trace: Trace) -> bytes:
    """The trace as JSON bytes."""
    return b"".join(_pieces(trace))


def _pieces(trace: Trace) -> list[bytes]:
    """The JSON document in pieces, to write without joining them in memory."""
    head = orjson.dumps(_head(trace))
    return [head[:-1], b',"calls":', _encode_calls(trace), b"}"]


def _encode_calls(trace: Trace) -> bytes:
    """The ``calls`` array as JSON bytes (in C when the speedups are built)."""
    if encode_calls is None:
        return orjson.dumps(list(_call_objects(trace)))
    c = trace.calls
    has_args = c.args >= 0
    pair = c.function.astype(np.int64) * (len(trace.arg_tuples) + 1) + c.args
    pairs, args_index = np.unique(np.where(has_args, pair, -1), return_inverse=True)
    first_row = {int(p): i for i, p in enumerate(pairs)}
    rows = np.flatnonzero(has_args)
    _, first = np.unique(pair[rows], return_index=True)
    args_fragments = [b""] * len(pairs)
    for row in rows[first].tolist():
        args_fragments[first_row[int(pair[row])]] = b',"args":' + orjson.dumps(trace.args_of(row))
    args_index = np.where(has_args, args_index.reshape(-1), -1).astype(np.int32)
    value_fragments = [b',"return":' + orjson.dumps(text) for text in trace.strings]
    exception_fragments = [
        b',"exception":' + orjson.dumps({"type": t, "message": m})
        for t, m in [*trace.exceptions, UNKNOWN_EXCEPTION]
    ]
    raised = (c.flags & RAISED) != 0
    exception = np.where(c.exception >= 0, c.exception, len(trace.exceptions))
    exception_index = np.where(raised, exception, -1).astype(np.int32)
    flag_fragments = [
        b"".join(b',"%s":true' % name.encode() for bit, name in FLAG_KEYS if bits & bit)
        for bits in range(256)
    ]
    return encode_calls(
        np.ascontiguousarray(c.parent, dtype=np.int64),
        np.ascontiguousarray(c.depth, dtype=np.int32),
        np.ascontiguousarray(c.function, dtype=np.int32),
        np.ascontiguousarray(c.thread, dtype=np.int32),
        np.ascontiguousarray(c.start, dtype=np.int64),
        np.ascontiguousarray(c.end, dtype=np.int64),
        np.ascontiguousarray(c.span_id, dtype=np.uint64),
        args_index,
        np.ascontiguousarray(c.value, dtype=np.int32),
        exception_index,
        np.ascontiguousarray(c.flags, dtype=np.uint8),
        *_pattern_columns(trace),
        args_fragments,
        value_fragments,
        exception_fragments,
        flag_fragments,
    )


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


def _call_objects(trace: Trace) -> Iterator[dict[str, Any]]:
    """The call objects one by one (the pure-Python path)."""
    c = trace.calls
    parent = (c.parent + 1).tolist()
    depth, function, thread = c.depth.tolist(), c.function.tolist(), c.thread.tolist()
    start, end, flags = c.start.tolist(), c.end.tolist(), c.flags.tolist()
    args, value, exc = c.args.tolist(), c.value.tolist(), c.exception.tolist()
    span_ids = [format(s, "016x") for s in c.span_id.tolist()]
    strings = trace.strings
    arg_dicts: dict[tuple[int, int], dict[str, str]] = {}
    exc_dicts = [{"type": t, "message": m} for t, m in trace.exceptions]
    group, iteration, variant = (column.tolist() for column in _pattern_columns(trace))
    unknown = dict(zip(("type", "message"), UNKNOWN_EXCEPTION, strict=True))
    for i in range(len(c)):
        call: dict[str, Any] = {
            "id": i + 1,
            "parent": parent[i] or None,
            "depth": depth[i],
            "function": function[i],
            "thread": thread[i],
            "start": start[i],
            "end": end[i],
            "span_id": span_ids[i],
        }
        if args[i] >= 0:
            key = (function[i], args[i])
            shown = arg_dicts.get(key)
            if shown is None:
                shown = arg_dicts[key] = trace.args_of(i)
            call["args"] = shown
        if value[i] >= 0:
            call["return"] = strings[value[i]]
        f = flags[i]
        if f & RAISED:
            call["exception"] = exc_dicts[exc[i]] if exc[i] >= 0 else unknown
        for bit, name in FLAG_KEYS:
            if f & bit:
                call[name] = True
        if group[i] >= 0:
            call["pattern"] = {"id": group[i] + 1, "iteration": iteration[i], "variant": variant[i]}
        yield call


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


def output_problem(path: str) -> str | None:
    """Why ``path`` cannot be written (one line), or None when it can."""
    directory = Path(path).parent.resolve()
    if not directory.is_dir():
        return f"cannot write {path}: directory {directory} does not exist"
    if not os.access(directory, os.W_OK):
        return f"cannot write {path}: directory {directory} is not writable"
    if Path(path).is_dir():
        return f"cannot write {path}: it is a directory"
    return None


@contextmanager
def atomic_output(target: Path) -> Iterator[BinaryIO]:
    """A binary file that replaces ``target`` only once it is completely written:
    it is written under a temporary name in the same directory and renamed."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
