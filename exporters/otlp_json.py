"""OTLP/JSON files: the JSON encoding of an OTLP ``ExportTraceServiceRequest``
(``{"resourceSpans": [...]}``) with hex trace and span ids, integer enums and
64-bit integers as decimal strings, as the OTLP specification defines it;
Jaeger UI's "JSON File" upload opens it.

``write_otlp_json`` writes a recorded trace straight from its columns (the fast
path); ``OtlpJsonFileExporter`` is a ``SpanExporter`` that writes any
OpenTelemetry program's spans in the same encoding.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from exporters.json_trace import atomic_output
from otel_tracer.model import EXTERNAL, RAISED, RESUMED, UNFINISHED, YIELDED, Trace
from otel_tracer.span_plan import SpanPlan, span_plan
from otel_tracer.spans import (
    ARGS_PREFIX,
    RETURN_VALUE,
    YIELDED_VALUE,
    SpanBuilder,
    span_name,
)

CHUNK = 20_000  # spans encoded and written at a time
_KIND_INTERNAL = 1  # OTLP SpanKind: the SDK's SpanKind value + 1
_STATUS_CODES = {StatusCode.UNSET: 0, StatusCode.OK: 1, StatusCode.ERROR: 2}


def any_value(value: Any) -> dict[str, Any]:
    """An attribute value as an OTLP/JSON ``AnyValue``."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    return {"stringValue": str(value)}


def key_values(attributes: Any) -> list[dict[str, Any]]:
    """Attributes as an OTLP/JSON ``KeyValue`` list."""
    return [{"key": k, "value": any_value(v)} for k, v in (attributes or {}).items()]


def span_object(span: ReadableSpan) -> dict[str, Any]:
    """One SDK span as an OTLP/JSON ``Span``."""
    context = span.context
    out: dict[str, Any] = {
        "traceId": f"{context.trace_id:032x}",
        "spanId": f"{context.span_id:016x}",
    }
    if span.parent is not None:
        out["parentSpanId"] = f"{span.parent.span_id:016x}"
    out["name"] = span.name
    out["kind"] = span.kind.value + 1
    out["startTimeUnixNano"] = str(span.start_time)
    out["endTimeUnixNano"] = str(span.end_time)
    out["attributes"] = key_values(span.attributes)
    if span.events:
        out["events"] = [
            {
                "timeUnixNano": str(e.timestamp),
                "name": e.name,
                "attributes": key_values(e.attributes),
            }
            for e in span.events
        ]
    out["status"] = _status(span)
    return out


def _status(span: ReadableSpan) -> dict[str, Any]:
    code = _STATUS_CODES[span.status.status_code]
    status: dict[str, Any] = {"code": code} if code else {}
    if span.status.description:
        status["message"] = span.status.description
    return status


def _document_parts(resource: Resource, scope: dict[str, str]) -> tuple[bytes, bytes]:
    """The document around the spans array of one resource and scope."""
    head = {
        "resourceSpans": [
            {
                "resource": {"attributes": key_values(resource.attributes)},
                "scopeSpans": [{"scope": scope, "spans": []}],
            }
        ]
    }
    text = orjson.dumps(head)
    cut = text.rindex(b"[]")
    return text[: cut + 1], text[cut + 1 :]


def write_otlp_json(
    trace: Trace, path: str | os.PathLike[str], plan: SpanPlan | None = None
) -> int:
    """Write ``trace`` (the spans of ``plan``, by default every call) as one OTLP/JSON
    document, atomically; returns the number of spans."""
    plan = plan if plan is not None else span_plan(trace)
    with atomic_output(Path(path)) as out:
        out.writelines(otlp_json_pieces(trace, plan))
    return len(plan)


def otlp_json_pieces(trace: Trace, plan: SpanPlan | None = None) -> Iterator[bytes]:
    """The OTLP/JSON document of ``trace`` in pieces of at most ``CHUNK`` spans."""
    plan = plan if plan is not None else span_plan(trace)
    build = SpanBuilder(trace)
    root = build.root(plan)
    scope = root.instrumentation_scope
    head, tail = _document_parts(root.resource, {"name": scope.name, "version": scope.version})
    yield head + orjson.dumps(span_object(root))
    for chunk in _CallEncoder(build, plan).chunks():
        yield b"," + chunk
    yield tail


def _items(attributes: dict[str, Any]) -> bytes:
    """Attributes as comma-separated KeyValue objects (no brackets)."""
    return orjson.dumps(key_values(attributes))[1:-1]


_CALL_ID = b',{"key":"otel_tracer.call.id","value":{"intValue":"%d"}}'
_EXTERNAL = {flag: b"," + _items({"otel_tracer.call.external": flag}) for flag in (False, True)}
_RESUMED = b"," + _items({"otel_tracer.call.resumed": True})
_UNFINISHED = b"," + _items({"otel_tracer.call.unfinished": True})
_PATTERN_POSITION = (
    b',{"key":"pattern.iteration","value":{"intValue":"%d"}}'
    b',{"key":"pattern.variant","value":{"intValue":"%d"}}'
)


class _CallEncoder:
    """The calls' and groups' spans as OTLP/JSON bytes, the calls built from the
    columns with what calls share (names, function, thread, arguments) encoded once."""

    def __init__(self, build: SpanBuilder, plan: SpanPlan) -> None:
        self.build = build
        self.trace = build.trace
        self.plan = plan
        self.head = b'{"traceId":"%032x","spanId":"' % build.trace_id
        self.names: dict[tuple[int, int], bytes] = {}
        attributes = build.attributes
        self.functions = [_items(a) for a in attributes.functions]
        self.threads = [b"," + _items(a) for a in attributes.threads]
        self.args: dict[tuple[int, int], bytes] = {}
        self.values: dict[tuple[int, bool], bytes] = {}
        self.patterns = self.trace.patterns
        self.pattern_groups: dict[int, bytes] = {}

    def _attributes(self, row: int, flags: int) -> bytes:
        """The KeyValue items of call ``row``: the same as ``CallAttributes.of``,
        assembled from cached pieces."""
        a = self.build.attributes
        function = a.function[row]
        parts = [
            self.functions[function],
            self.threads[a.thread[row]],
            _CALL_ID % (row + 1),
            _EXTERNAL[bool(flags & EXTERNAL)],
        ]
        if flags & RESUMED:
            parts.append(_RESUMED)
        if flags & UNFINISHED:
            parts.append(_UNFINISHED)
        if a.arg_tuple[row] >= 0:
            key = (function, a.arg_tuple[row])
            args = self.args.get(key)
            if args is None:
                named = {k: v for k, v in a.of(row).items() if k.startswith(ARGS_PREFIX)}
                args = self.args[key] = b"," + _items(named) if named else b""
            parts.append(args)
        if a.value[row] >= 0:
            key = (a.value[row], bool(flags & YIELDED))
            value = self.values.get(key)
            if value is None:
                name = YIELDED_VALUE if key[1] else RETURN_VALUE
                value = self.values[key] = b"," + _items({name: self.trace.strings[key[0]]})
            parts.append(value)
        if self.patterns is not None and self.patterns.group[row] >= 0:
            parts.append(self._pattern(row))
        return b"".join(parts)

    def _pattern(self, row: int) -> bytes:
        """The ``pattern.*`` items of a call in a pattern group."""
        group = int(self.patterns.group[row])
        shared = self.pattern_groups.get(group)
        if shared is None:
            named = self.patterns.attributes_of(row)
            del named["pattern.iteration"], named["pattern.variant"]
            shared = self.pattern_groups[group] = b"," + _items(named)
        return shared + _PATTERN_POSITION % (
            int(self.patterns.iteration[row]),
            int(self.patterns.variant[row]),
        )

    def chunks(self) -> Iterator[bytes]:
        """Comma-joined spans, ``CHUNK`` calls at a time, group spans before their
        first call."""
        plan = self.plan
        groups = iter(plan.groups)
        group = next(groups, None)
        for lo in range(0, len(plan.rows), CHUNK):
            hi = min(lo + CHUNK, len(plan.rows))
            pieces = []
            for i, piece in enumerate(self._calls(lo, hi), lo):
                while group is not None and group.before == i:
                    pieces.append(orjson.dumps(span_object(self.build.group(group))))
                    group = next(groups, None)
                pieces.append(piece)
            yield b",".join(pieces)

    def _calls(self, lo: int, hi: int) -> Iterator[bytes]:
        calls, build = self.trace.calls, self.build
        rows = self.plan.rows[lo:hi]
        for row, span_id, parent_id, start, end, flags in zip(
            rows.tolist(),
            calls.span_id[rows].tolist(),
            self.plan.parent_ids[lo:hi].tolist(),
            calls.start[rows].tolist(),
            calls.end[rows].tolist(),
            calls.flags[rows].tolist(),
            strict=True,
        ):
            if flags & RAISED:  # rare: the generic path, with the exception event
                yield orjson.dumps(span_object(build.call(row, parent_id)))
                continue
            yield b'%s%016x","parentSpanId":"%016x","name":%s,%s%d",%s%d",%s%s]%s' % (
                self.head,
                span_id,
                parent_id,
                self._name(row, flags),
                b'"kind":1,"startTimeUnixNano":"',
                start,
                b'"endTimeUnixNano":"',
                end,
                b'"attributes":[',
                self._attributes(row, flags),
                b',"status":{}}',
            )

    def _name(self, row: int, flags: int) -> bytes:
        key = (int(self.trace.calls.function[row]), flags & EXTERNAL)
        name = self.names.get(key)
        if name is None:
            name = self.names[key] = orjson.dumps(span_name(self.trace, row))
        return name


class OtlpJsonFileExporter(SpanExporter):
    """A ``SpanExporter`` writing every span it is given to one OTLP/JSON file on
    ``shutdown`` (atomically), grouped by resource and instrumentation scope."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._resources: dict[int, Resource] = {}
        self._spans: dict[tuple[int, tuple[str, str]], list[bytes]] = {}
        self._closed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Encode ``spans`` now; they are written on shutdown."""
        with self._lock:
            if self._closed:
                return SpanExportResult.FAILURE
            for span in spans:
                scope = span.instrumentation_scope
                self._resources.setdefault(id(span.resource), span.resource)
                names = (scope.name, scope.version or "") if scope else ("", "")
                key = (id(span.resource), names)
                self._spans.setdefault(key, []).append(orjson.dumps(span_object(span)))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Write the file."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with atomic_output(self.path) as out:
                out.writelines(self._document())

    def _document(self) -> Iterator[bytes]:
        """The document in pieces: the encoded spans are spliced in, not re-parsed."""
        by_resource: dict[int, list[tuple[tuple[str, str], list[bytes]]]] = {}
        for (resource, names), spans in self._spans.items():
            by_resource.setdefault(resource, []).append((names, spans))
        yield b'{"resourceSpans":['
        for i, (resource, scopes) in enumerate(by_resource.items()):
            attributes = key_values(self._resources[resource].attributes)
            yield b"," * (i > 0) + b'{"resource":' + orjson.dumps({"attributes": attributes})
            yield b',"scopeSpans":['
            for j, ((name, version), spans) in enumerate(scopes):
                scope = {"name": name, **({"version": version} if version else {})}
                yield b"," * (j > 0) + b'{"scope":' + orjson.dumps(scope) + b',"spans":['
                yield b",".join(spans)
                yield b"]}"
            yield b"]}"
        yield b"]}"

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Nothing is buffered outside the file's contents; always true."""
        return True
