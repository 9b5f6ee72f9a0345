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
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import StatusCode

from otel_tracer.spans.plan import SpanPlan, pattern_attributes, span_plan
from otel_tracer.spans.sdk import (
    ARGS_PREFIX,
    RETURN_VALUE,
    YIELDED_VALUE,
    SpanBuilder,
    span_name,
)
from otel_tracer.trace.model import EXTERNAL, FINALIZER, RAISED, RESUMED, UNFINISHED, YIELDED, Trace
from otel_tracer.trace.save import atomic_output

CHUNK = 20_000  # calls encoded at a time
# At most 1 MiB per line: the Collector's otlpjsonfile receiver reads files with
# stanza's fileconsumer, whose ``max_log_size`` (the longest line) defaults to 1 MiB.
LINE_BYTES = 1 << 20
_KIND_INTERNAL = 1  # OTLP SpanKind: the SDK's SpanKind value + 1
_HAS_IS_REMOTE = 0x100  # SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK (trace.proto)
_IS_REMOTE = 0x200  # SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
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
    if context.trace_state:
        out["traceState"] = context.trace_state.to_header()
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
    remote = span.parent is not None and span.parent.is_remote
    out["flags"] = _HAS_IS_REMOTE | (_IS_REMOTE if remote else 0)  # as the SDK sends them
    return out


def _status(span: ReadableSpan) -> dict[str, Any]:
    code = _STATUS_CODES[span.status.status_code]
    status: dict[str, Any] = {"code": code} if code else {}
    if span.status.description:
        status["message"] = span.status.description
    return status


def _document_parts(resource: Resource, scope: InstrumentationScope) -> tuple[bytes, bytes]:
    """The request around the spans array of one resource and scope."""
    head = {
        "resourceSpans": [
            {
                "resource": {"attributes": key_values(resource.attributes)},
                "scopeSpans": [{"scope": _scope(scope), "spans": [], **_schema(scope)}],
                **_schema(resource),
            }
        ]
    }
    text = orjson.dumps(head)
    cut = text.index(b"[]")
    return text[: cut + 1], text[cut + 1 :]


def _scope(scope: InstrumentationScope | None) -> dict[str, str]:
    """An OTLP/JSON ``InstrumentationScope``."""
    if scope is None:
        return {}
    return {"name": scope.name, **({"version": scope.version} if scope.version else {})}


def _schema(owner: Resource | InstrumentationScope | None) -> dict[str, str]:
    """The ``schemaUrl`` field of a ResourceSpans or ScopeSpans, when there is one."""
    url = getattr(owner, "schema_url", "")
    return {"schemaUrl": url} if url else {}


def write_otlp_json(
    trace: Trace, path: str | os.PathLike[str], plan: SpanPlan | None = None
) -> int:
    """Write ``trace`` (the spans of ``plan``, by default every call) as OTLP/JSON
    Lines, atomically; returns the number of spans."""
    plan = plan if plan is not None else span_plan(trace)
    with atomic_output(Path(path)) as out:
        out.writelines(otlp_json_lines(trace, plan))
    return len(plan)


def otlp_json_lines(trace: Trace, plan: SpanPlan | None = None) -> Iterator[bytes]:
    """The OTLP/JSON Lines of ``trace``: one ``ExportTraceServiceRequest`` per line,
    ending in a newline, of one process (one Resource) each and at most
    ``LINE_BYTES`` bytes (a single span larger than that goes alone)."""
    for request, _ in otlp_json_requests(trace, plan):
        yield request + b"\n"


def otlp_json_requests(trace: Trace, plan: SpanPlan | None = None) -> Iterator[tuple[bytes, int]]:
    """The OTLP/JSON requests of ``trace`` (each of one process, at most
    ``LINE_BYTES`` - 1 bytes) with their number of spans: the lines of the file,
    and the bodies of ``http/json``."""
    plan = plan if plan is not None else span_plan(trace)
    first = SpanBuilder(trace)
    for part in plan.parts:
        build = first.for_part(part)
        root = build.root(part)
        head, tail = _document_parts(root.resource, root.instrumentation_scope)
        room = LINE_BYTES - len(head) - len(tail) - 1
        spans = _CallEncoder(build, part).spans(first=orjson.dumps(span_object(root)))
        for batch in _lines(spans, room):
            yield head + b",".join(batch) + tail, len(batch)


def _lines(spans: Iterator[bytes], room: int) -> Iterator[list[bytes]]:
    """The encoded spans in lists whose comma-joined size fits ``room``."""
    batch: list[bytes] = []
    size = -1
    for span in spans:
        if batch and size + 1 + len(span) > room:
            yield batch
            batch, size = [], -1
        batch.append(span)
        size += 1 + len(span)
    if batch:
        yield batch


def _items(attributes: dict[str, Any]) -> bytes:
    """Attributes as comma-separated KeyValue objects (no brackets)."""
    return orjson.dumps(key_values(attributes))[1:-1]


_CALL_ID = b',{"key":"otel_tracer.call.id","value":{"intValue":"%d"}}'
_EXTERNAL = {flag: b"," + _items({"otel_tracer.call.external": flag}) for flag in (False, True)}
_RESUMED = b"," + _items({"otel_tracer.call.resumed": True})
_UNFINISHED = b"," + _items({"otel_tracer.call.unfinished": True})
_FINALIZER = b"," + _items({"otel_tracer.call.finalizer": True})
_PATTERN_POSITION = (
    b',{"key":"otel_tracer.pattern.iteration","value":{"intValue":"%d"}}'
    b',{"key":"otel_tracer.pattern.variant","value":{"intValue":"%d"}}'
)


class _CallEncoder:
    """The calls' and groups' spans as OTLP/JSON bytes, the calls built from the
    columns with what calls share (names, function, thread, arguments) encoded once."""

    def __init__(self, build: SpanBuilder, plan: SpanPlan) -> None:
        self.build = build
        self.trace = build.trace
        self.plan = plan
        self.head = b'{"traceId":"%032x","spanId":"' % build.trace_id
        state = build.trace_state.to_header()
        self.state = b',"traceState":' + orjson.dumps(state) if state else b""
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
        if flags & FINALIZER:
            parts.append(_FINALIZER)
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
            named = pattern_attributes(named)
            shared = self.pattern_groups[group] = b"," + _items(named)
        return shared + _PATTERN_POSITION % (
            int(self.patterns.iteration[row]),
            int(self.patterns.variant[row]),
        )

    def spans(self, first: bytes) -> Iterator[bytes]:
        """``first`` (the root span), then the spans of the calls, ``CHUNK`` calls
        encoded at a time, group spans before their first call."""
        yield first
        plan = self.plan
        groups = iter(plan.groups)
        group = next(groups, None)
        for lo in range(0, len(plan.rows), CHUNK):
            hi = min(lo + CHUNK, len(plan.rows))
            for i, piece in enumerate(self._calls(lo, hi), lo):
                while group is not None and group.before == i:
                    yield orjson.dumps(span_object(self.build.group(group)))
                    group = next(groups, None)
                yield piece

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
            yield b'%s%016x"%s,"parentSpanId":"%016x","name":%s,%s%d",%s%d",%s%s]%s' % (
                self.head,
                span_id,
                self.state,
                parent_id,
                self._name(row, flags),
                b'"kind":1,"startTimeUnixNano":"',
                start,
                b'"endTimeUnixNano":"',
                end,
                b'"attributes":[',
                self._attributes(row, flags),
                b',"status":{},"flags":%d}' % _HAS_IS_REMOTE,
            )

    def _name(self, row: int, flags: int) -> bytes:
        key = (int(self.trace.calls.function[row]), flags & EXTERNAL)
        name = self.names.get(key)
        if name is None:
            name = self.names[key] = orjson.dumps(span_name(self.trace, row))
        return name


class OtlpJsonFileExporter(SpanExporter):
    """A ``SpanExporter`` writing every span it is given to one OTLP/JSON Lines
    file on ``shutdown`` (atomically): per resource and instrumentation scope,
    requests of at most ``LINE_BYTES``, one per line."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._owners: dict[tuple[int, int], tuple[Resource, InstrumentationScope | None]] = {}
        self._spans: dict[tuple[int, int], list[bytes]] = {}
        self._closed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Encode ``spans`` now; they are written on shutdown."""
        with self._lock:
            if self._closed:
                return SpanExportResult.FAILURE
            for span in spans:
                scope = span.instrumentation_scope
                key = (id(span.resource), id(scope))
                self._owners.setdefault(key, (span.resource, scope))
                self._spans.setdefault(key, []).append(orjson.dumps(span_object(span)))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Write the file."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with atomic_output(self.path) as out:
                out.writelines(self._lines())

    def _lines(self) -> Iterator[bytes]:
        """The requests, one per line: the encoded spans are spliced in, not re-parsed."""
        for key, spans in self._spans.items():
            head, tail = _document_parts(*self._owners[key])
            for batch in _lines(iter(spans), LINE_BYTES - len(head) - len(tail) - 1):
                yield head + b",".join(batch) + tail + b"\n"

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Nothing is buffered outside the file's contents; always true."""
        return True
