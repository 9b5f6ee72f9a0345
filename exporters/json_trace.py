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
from pathlib import Path
from typing import Any

import orjson

from otel_tracer.model import RAISED, Trace
from otel_tracer.trace_format import FLAG_KEYS, FORMAT, VERSION


def to_document(trace: Trace) -> dict[str, Any]:
    """The JSON document of a trace, as plain Python objects."""
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
        "threads": [{"id": t.id, "native_id": t.native_id, "name": t.name} for t in trace.threads],
        "calls": list(_call_objects(trace)),
        **trace.extra,
    }


def _call_objects(trace: Trace) -> Iterator[dict[str, Any]]:
    c = trace.calls
    parent = (c.parent + 1).tolist()
    depth, function, thread = c.depth.tolist(), c.function.tolist(), c.thread.tolist()
    start, end, flags = c.start.tolist(), c.end.tolist(), c.flags.tolist()
    args, value, exc = c.args.tolist(), c.value.tolist(), c.exception.tolist()
    span_ids = [format(s, "016x") for s in c.span_id.tolist()]
    strings = trace.strings
    arg_dicts: dict[tuple[int, int], dict[str, str]] = {}
    exc_dicts = [{"type": t, "message": m} for t, m in trace.exceptions]
    unknown = {"type": "<unknown>", "message": ""}
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
        yield call


def dumps(trace: Trace) -> bytes:
    """The trace as JSON bytes."""
    return orjson.dumps(to_document(trace))


def save(trace: Trace, path: str | os.PathLike[str], compress: bool | None = None) -> None:
    """Write ``trace`` to ``path`` atomically; ``-`` writes to stdout. Gzipped when
    ``compress`` is true or, by default, when the name ends in ``.gz``."""
    data = dumps(trace)
    if os.fspath(path) == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(data + b"\n")
        sys.stdout.flush()
        return
    target = Path(path)
    if compress is None:
        compress = target.name.endswith(".gz")
    if compress:
        data = gzip.compress(data, compresslevel=5)
    atomic_write(target, data)


def atomic_write(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` via a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
