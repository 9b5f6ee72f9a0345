"""OTLP/protobuf export requests built straight from a trace's columns.

``encode_requests`` yields serialized ``ExportTraceServiceRequest``s that decode to
exactly what the SDK's ``encode_spans`` makes of ``trace_spans`` (the same resource,
scope, ids, parents, times, attributes in the same order, events, status and
flags), split into size-bounded batches. A call's span is assembled from bytes
encoded once and shared (its name, its function's and thread's attributes, the
strings of its arguments and return value) around a per-call record of ids and
times that numpy lays out for a chunk of calls at a time; no ``ReadableSpan`` or
protobuf message is made for it. The rare spans (the root, ``--fold-patterns``
group spans, calls that raised, with their exception event) go through
``SpanBuilder`` and the SDK's encoder.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans
from opentelemetry.sdk.trace import ReadableSpan

from exporters.protowire import key as _key
from exporters.protowire import varint as _varint
from exporters.protowire import varint_sizes
from otel_tracer.spans.plan import PATTERN_PREFIX, SpanPlan, pattern_attributes
from otel_tracer.spans.sdk import (
    ARGS_PREFIX,
    CALL_EXTERNAL,
    CALL_ID,
    NAMESPACE,
    RETURN_VALUE,
    YIELDED_VALUE,
    SpanBuilder,
    span_name,
)
from otel_tracer.trace.model import EXTERNAL, FINALIZER, RAISED, RESUMED, UNFINISHED, YIELDED, Trace

BATCH_SPANS = 2_000  # ~0.9 MB of protobuf for typical call spans
BATCH_BYTES = 1 << 20  # collectors and Jaeger refuse gRPC messages over 4 MiB
CHUNK = 2_000  # calls laid out by numpy at a time
CACHE_SIZE = 1 << 16  # encoded argument lists, values and pattern positions kept


def encode_requests(
    trace: Trace,
    plan: SpanPlan,
    *,
    batch_spans: int = BATCH_SPANS,
    batch_bytes: int = BATCH_BYTES,
) -> Iterator[tuple[bytes, int]]:
    """The spans of ``plan`` (the root first, group spans before their first call)
    as serialized ``ExportTraceServiceRequest``s of at most ``batch_spans`` spans
    and ``batch_bytes`` bytes of spans (a larger span goes alone), each with its
    number of spans; encoded lazily, a chunk of calls at a time. Each process of
    the run is its own ResourceSpans (its own Resource), so a request holds the
    spans of one process."""
    first = SpanBuilder(trace)
    for part in plan.parts:
        build = first.for_part(part)
        resource_spans = encode_spans([build.root(part)]).resource_spans[0]
        root = resource_spans.scope_spans[0].spans[0].SerializeToString()
        envelope = _Envelope(resource_spans)
        spans = _CallEncoder(build, part).spans(first=root)
        for batch in _batches(spans, batch_spans, batch_bytes):
            yield envelope.request(batch), len(batch)


def _batches(spans: Iterable[bytes], most: int, most_bytes: int) -> Iterator[list[bytes]]:
    """Lists of at most ``most`` encoded spans and ``most_bytes`` bytes."""
    batch: list[bytes] = []
    size = 0
    for span in spans:
        if batch and (len(batch) == most or size + len(span) > most_bytes):
            yield batch
            batch, size = [], 0
        batch.append(span)
        size += len(span)
    if batch:
        yield batch


class _Envelope:
    """The resource and scope around a batch of spans, as the SDK encodes them."""

    def __init__(self, resource_spans: ResourceSpans) -> None:
        head = ResourceSpans()
        head.CopyFrom(resource_spans)
        scope_spans = head.scope_spans[0]
        del scope_spans.spans[:]
        self.scope = scope_spans.SerializeToString()  # the scope and its schema URL
        del head.scope_spans[:]
        self.resource = head.SerializeToString()  # the resource and its schema URL

    def request(self, spans: list[bytes]) -> bytes:
        """An ExportTraceServiceRequest of one ResourceSpans with one ScopeSpans
        holding ``spans``."""
        pieces = [self.scope]
        for span in spans:
            pieces += (_SPAN, _varint(len(span)), span)
        scope_spans = sum(map(len, pieces))
        head = _SCOPE_SPANS + _varint(scope_spans)
        resource_spans = len(self.resource) + len(head) + scope_spans
        return b"".join([_RESOURCE_SPANS, _varint(resource_spans), self.resource, head, *pieces])


class _CallEncoder:
    """The calls' and groups' spans of a plan, the calls assembled from their
    record and shared, cached pieces."""

    def __init__(self, build: SpanBuilder, plan: SpanPlan) -> None:
        self.build = build
        self.trace = trace = build.trace
        self.plan = plan
        self.records = _Records(build)
        a = build.attributes
        self.function_items = [_attributes(items) for items in a.functions]
        self.thread_items = [_attributes(items) for items in a.threads]
        self.arg_keys = [
            [_field(1, (ARGS_PREFIX + name).encode()) for name in function.argnames]
            for function in trace.functions
        ]
        self.statics: dict[int, bytes] = {}
        self.args: dict[int, bytes] = {}
        self.values: dict[int, bytes] = {}
        self.pattern_groups: dict[int, bytes] = {}
        self.positions: dict[tuple[int, int], bytes] = {}

    def spans(self, first: bytes) -> Iterator[bytes]:
        """``first`` (the root span), then the plan's calls, CHUNK at a time, with
        the group spans before their first call."""
        yield first
        groups = iter(self.plan.groups)
        group = next(groups, None)
        for lo in range(0, len(self.plan.rows), CHUNK):
            for i, span in enumerate(self._calls(lo, min(lo + CHUNK, len(self.plan.rows))), lo):
                while group is not None and group.before == i:
                    yield _sdk_span(self.build.group(group))
                    group = next(groups, None)
                yield span

    def _calls(self, lo: int, hi: int) -> list[bytes]:
        """The spans of ``plan.rows[lo:hi]``: for each call its name, function and
        thread attributes, its record, then the attributes that follow the call id
        in ``CallAttributes.of``, in that order; the shared pieces are looked up by
        keys computed for the whole chunk (-1 or None: no such attribute)."""
        calls = self.trace.calls
        rows = self.plan.rows[lo:hi]
        parent_ids = self.plan.parent_ids[lo:hi]
        functions = calls.function[rows].astype(np.int64)
        flags = calls.flags[rows].astype(np.int64)
        statics = functions * 2 + (flags & EXTERNAL)
        statics = statics * len(self.trace.threads) + calls.thread[rows]
        arg_tuples = calls.args[rows].astype(np.int64)
        args = np.where(arg_tuples < 0, -1, arg_tuples * len(self.trace.functions) + functions)
        values = calls.value[rows].astype(np.int64)
        values = np.where(values < 0, -1, values * 2 + ((flags & YIELDED) > 0))
        spans = []
        for row, parent_id, record, flag, static, arg, value, pattern in zip(
            rows.tolist(),
            parent_ids.tolist(),
            self.records.of(rows, parent_ids),
            flags.tolist(),
            statics.tolist(),
            args.tolist(),
            values.tolist(),
            self._pattern_keys(rows),
            strict=True,
        ):
            if flag & RAISED:  # rare: the SDK's encoding, with the exception event
                spans.append(_sdk_span(self.build.call(row, parent_id)))
                continue
            parts = [
                self.statics.get(static) or self._static(static, row),
                record,
                _EXTERNAL[flag & EXTERNAL],
            ]
            if flag & RESUMED:
                parts.append(_RESUMED)
            if flag & UNFINISHED:
                parts.append(_UNFINISHED)
            if flag & FINALIZER:
                parts.append(_FINALIZER)
            if arg >= 0:
                parts.append(self.args.get(arg) or self._args(arg, row))
            if value >= 0:
                parts.append(self.values.get(value) or self._value(value))
            if pattern is not None:
                parts.append(self._pattern(pattern, row))
            spans.append(b"".join(parts))
        return spans

    def _pattern_keys(self, rows: np.ndarray) -> list[tuple[int, int, int] | None]:
        """(pattern group, repetition, variant) of each call; None outside groups."""
        patterns = self.trace.patterns
        if patterns is None:
            return [None] * len(rows)
        columns = (patterns.group[rows], patterns.iteration[rows], patterns.variant[rows])
        return [
            None if group < 0 else (group, iteration, variant)
            for group, iteration, variant in zip(*(c.tolist() for c in columns), strict=True)
        ]

    def _static(self, key: int, row: int) -> bytes:
        """The name, function and thread attributes of call ``row``, cached under ``key``."""
        a = self.build.attributes
        name = _field(_SPAN_NAME, span_name(self.trace, row).encode())
        piece = name + self.function_items[a.function[row]] + self.thread_items[a.thread[row]]
        self.statics[key] = piece
        return piece

    def _args(self, key: int, row: int) -> bytes:
        """The argument attributes of call ``row``, cached under ``key``."""
        a, strings = self.build.attributes, self.trace.strings
        names = self.arg_keys[a.function[row]]
        piece = b"".join(
            _string_attribute(name, strings[index])
            for name, index in zip(names, self.trace.arg_tuples[a.arg_tuple[row]], strict=False)
            if index >= 0
        )
        return _remember(self.args, key, piece)

    def _value(self, key: int) -> bytes:
        """The return (``key`` even) or yielded value attribute, cached under ``key``."""
        name = _YIELDED_VALUE if key % 2 else _RETURN_VALUE
        return _remember(self.values, key, _string_attribute(name, self.trace.strings[key // 2]))

    def _pattern(self, key: tuple[int, int, int], row: int) -> bytes:
        """The ``pattern.*`` attributes of call ``row``: its group's, cached per group,
        then its repetition and variant, cached per pair."""
        group, iteration, variant = key
        shared = self.pattern_groups.get(group)
        position = self.positions.get((iteration, variant))
        if shared is None or position is None:
            named = pattern_attributes(self.trace.patterns.attributes_of(row))
            where = {name: named.pop(name) for name in _PATTERN_POSITION}
            shared = self.pattern_groups[group] = _attributes(named)
            position = _remember(self.positions, (iteration, variant), _attributes(where))
        return shared + position


class _Records:
    """Per call, the fields that differ between calls (span id, parent span id,
    start, end and the call id attribute) with the constant ones between them
    (trace id, kind, status, flags), laid out by numpy for a chunk of calls."""

    def __init__(self, build: SpanBuilder) -> None:
        calls = build.trace.calls
        self.span_ids, self.starts, self.ends = calls.span_id, calls.start, calls.end
        self.trace_id = build.trace_id.to_bytes(16, "big")
        state = build.trace_state.to_header().encode()
        self.trace_state = _field(3, state) if state else b""  # Span.trace_state
        self.layouts: dict[int, np.ndarray] = {}

    def of(self, rows: np.ndarray, parent_ids: np.ndarray) -> list[bytes]:
        """The records of trace ``rows`` under ``parent_ids``."""
        call_ids = rows.astype(np.uint64) + np.uint64(1)
        sizes = varint_sizes(call_ids)
        records = np.empty(len(rows), dtype=object)
        for size in np.unique(sizes).tolist():
            where = np.flatnonzero(sizes == size)
            record = np.repeat(self._template(size), len(where))
            record["span_id"] = self.span_ids[rows[where]]
            record["parent_id"] = parent_ids[where]
            record["start"] = self.starts[rows[where]]
            record["end"] = self.ends[rows[where]]
            record["call_id"] = _varint_columns(call_ids[where], size)
            records[where] = record.view(f"V{record.itemsize}").tolist()
        return records.tolist()

    def _template(self, size: int) -> np.ndarray:
        """A record holding the constant parts, for call ids of ``size`` varint
        bytes. Span fields: 1 trace_id, 2 span_id, 4 parent_span_id, 6 kind,
        7 start_time_unix_nano, 8 end_time_unix_nano, then status and flags."""
        template = self.layouts.get(size)
        if template is None:
            layout = [
                ("trace_id", _key(1) + b"\x10" + self.trace_id + _key(2) + b"\x08"),
                ("span_id", ">u8"),
                ("parent_key", self.trace_state + _key(4) + b"\x08"),
                ("parent_id", ">u8"),
                ("kind", _key(6, 0) + b"\x01" + _key(7, 1)),  # SPAN_KIND_INTERNAL
                ("start", "<u8"),
                ("end_key", _key(8, 1)),
                ("end", "<u8"),
                ("tail", _STATUS_AND_FLAGS + _int_attribute_head(CALL_ID, size)),
            ]
            dtype = [(name, f"V{len(p)}" if isinstance(p, bytes) else p) for name, p in layout]
            template = np.zeros(1, dtype=[*dtype, ("call_id", "u1", (size,))])
            for name, part in layout:
                if isinstance(part, bytes):
                    template[name] = np.void(part)
            self.layouts[size] = template
        return template


def _remember(cache: dict[Any, bytes], key: Any, piece: bytes) -> bytes:
    """Cache ``piece`` under ``key``, emptying the cache first when it holds
    CACHE_SIZE pieces (memory stays bounded when values never repeat)."""
    if len(cache) >= CACHE_SIZE:
        cache.clear()
    cache[key] = piece
    return piece


def _sdk_span(span: ReadableSpan) -> bytes:
    """One span as the SDK's encoder serializes it."""
    return encode_spans([span]).resource_spans[0].scope_spans[0].spans[0].SerializeToString()


def _varint_columns(values: np.ndarray, size: int) -> np.ndarray:
    """The varints of ``values`` that all take ``size`` bytes, one row each."""
    shifts = np.arange(size, dtype=np.uint64) * np.uint64(7)
    columns = ((values[:, None] >> shifts) & np.uint64(0x7F)).astype(np.uint8)
    columns[:, :-1] |= 0x80
    return columns


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return _key(number) + _varint(len(payload)) + payload


def _any_value(value: bool | int | str) -> bytes:
    """An attribute value as an ``AnyValue``."""
    if isinstance(value, bool):
        return _key(2, 0) + _varint(int(value))
    if isinstance(value, int):
        return _key(3, 0) + _varint(value & 0xFFFF_FFFF_FFFF_FFFF)
    return _field(1, value.encode())


def _attribute(key: str, value: bool | int | str) -> bytes:
    """One ``Span.attributes`` field: a ``KeyValue``."""
    return _field(_SPAN_ATTRIBUTES, _field(1, key.encode()) + _field(2, _any_value(value)))


def _string_attribute(key: bytes, text: str) -> bytes:
    """A string attribute, ``key`` being its encoded ``KeyValue.key`` field (the
    fast path of ``_attribute`` for the many argument and return values)."""
    data = text.encode()
    value = _STRING_VALUE + _varint(len(data)) + data  # an AnyValue
    pair = key + _KEY_VALUE_VALUE + _varint(len(value)) + value  # a KeyValue
    return _ATTRIBUTE + _varint(len(pair)) + pair


def _attributes(attributes: dict[str, Any]) -> bytes:
    """``Span.attributes`` fields, in order."""
    return b"".join(_attribute(key, value) for key, value in attributes.items())


def _int_attribute_head(key: str, size: int) -> bytes:
    """An int attribute up to its value's varint, for a varint of ``size`` bytes."""
    pair = _field(1, key.encode()) + _key(2) + _varint(1 + size) + _key(3, 0)
    return _ATTRIBUTE + _varint(len(pair) + size) + pair


# The fields written here by hand (opentelemetry/proto/.../trace.proto, common.proto).
_SPAN_NAME = 5  # Span.name
_SPAN_ATTRIBUTES = 9  # Span.attributes
_ATTRIBUTE = _key(_SPAN_ATTRIBUTES)
_KEY_VALUE_VALUE = _key(2)  # KeyValue.value
_STRING_VALUE = _key(1)  # AnyValue.string_value
_SPAN = _key(2)  # ScopeSpans.spans
_SCOPE_SPANS = _key(2)  # ResourceSpans.scope_spans
_RESOURCE_SPANS = _key(1)  # ExportTraceServiceRequest.resource_spans
_STATUS_AND_FLAGS = (
    _field(15, b"")  # an UNSET status
    + _key(16, 5)
    + (0x100).to_bytes(4, "little")  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK, as the SDK sets
)
_EXTERNAL = {flag: _attribute(CALL_EXTERNAL, bool(flag)) for flag in (0, EXTERNAL)}
_RESUMED = _attribute(f"{NAMESPACE}.call.resumed", True)
_UNFINISHED = _attribute(f"{NAMESPACE}.call.unfinished", True)
_FINALIZER = _attribute(f"{NAMESPACE}.call.finalizer", True)
_PATTERN_POSITION = (PATTERN_PREFIX + "pattern.iteration", PATTERN_PREFIX + "pattern.variant")
_RETURN_VALUE = _field(1, RETURN_VALUE.encode())
_YIELDED_VALUE = _field(1, YIELDED_VALUE.encode())
