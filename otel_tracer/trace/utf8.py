"""Text every output can encode: a file name or ``sys.argv`` word with bytes that
are not UTF-8 reaches Python as lone surrogates (``surrogateescape``), which
JSON, protobuf and UTF-8 streams refuse. Such a byte is kept as its ``\\xff``
escape; any other lone surrogate (a program can name a function anything) as
its ``\\udcff`` escape."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson

from otel_tracer.trace.text import valid_text

if TYPE_CHECKING:
    from otel_tracer.trace.model import Trace


def valid_data(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, tuples, strings) with every string valid."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, dict):
        return {valid_data(k): valid_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [valid_data(v) for v in value]
    return value


def json_bytes(value: Any) -> bytes:
    """``orjson.dumps(value)``, escaping strings that are not valid UTF-8 (only
    then is ``value`` walked)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return orjson.dumps(valid_data(value))


def _all_valid(texts: list[str]) -> bool:
    try:
        "\0".join(texts).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def make_valid(trace: Trace) -> None:
    """Escape, in place, every string of ``trace`` that is not valid UTF-8 (one
    pass over the strings when all are valid, as they nearly always are)."""
    if not _all_valid(trace.strings):
        trace.strings[:] = [valid_text(s) for s in trace.strings]
    names = [t for f in trace.functions for t in (f.name, f.qualname, f.module, f.file)]
    names += [n for f in trace.functions for n in f.argnames]
    if not _all_valid(names):
        trace.functions[:] = [
            replace(
                f,
                name=valid_text(f.name),
                qualname=valid_text(f.qualname),
                module=valid_text(f.module),
                file=valid_text(f.file),
                argnames=tuple(valid_text(n) for n in f.argnames),
            )
            for f in trace.functions
        ]
    if not _all_valid([t.name for t in trace.threads]):
        trace.threads[:] = [replace(t, name=valid_text(t.name)) for t in trace.threads]
    if not _all_valid([t for pair in trace.exceptions for t in pair]):
        trace.exceptions[:] = [(valid_text(t), valid_text(m)) for t, m in trace.exceptions]
    trace.meta = valid_data(trace.meta)
