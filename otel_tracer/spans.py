"""OpenTelemetry spans from a recorded trace.

Every call becomes a finished ``opentelemetry.sdk.trace.ReadableSpan``, built
after the run from the trace's columns (never on the hot path): one trace per
run, a root span for the whole run, one span per call with its parent link,
start and end in Unix ns. Attribute names follow the OpenTelemetry semantic
conventions where they exist (``code.*``, ``thread.*``, ``exception.*``);
arguments, values, the external flag and the call id are under ``otel_tracer.``;
pattern groups add ``pattern.*``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from otel_tracer.model import EXTERNAL, RAISED, RESUMED, UNFINISHED, YIELDED, Trace

NAMESPACE = "otel_tracer"
TOOL = "otel-tracer"


def _tool_version() -> str:
    from otel_tracer.recorder import tool_version

    return tool_version()


def resource_of(trace: Trace) -> Resource:
    """The run's resource: ``service.name`` (the script's name unless
    ``OTEL_SERVICE_NAME`` or ``OTEL_RESOURCE_ATTRIBUTES`` set one), the process
    and runtime, and the tool; other ``OTEL_RESOURCE_ATTRIBUTES`` are kept."""
    meta = trace.meta
    argv = [str(a) for a in meta.get("argv") or []]
    attributes: dict[str, Any] = {
        "process.pid": int(meta.get("pid", 0)),
        "process.command_args": [meta.get("executable") or "python", *argv],
        "process.runtime.name": str(meta.get("python_implementation", "CPython")).lower(),
        "process.runtime.version": str(meta.get("python_version", "")),
        "telemetry.distro.name": TOOL,
        "telemetry.distro.version": str(meta.get("tool_version") or _tool_version()),
    }
    if meta.get("executable"):
        attributes["process.executable.path"] = meta["executable"]
    if not _service_name_from_environment():
        script = meta.get("script") or (argv[0] if argv else "python")
        attributes["service.name"] = os.path.basename(str(script)) or "python"
    return Resource.create(attributes)


def _service_name_from_environment() -> bool:
    if os.environ.get("OTEL_SERVICE_NAME"):
        return True
    pairs = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(",")
    return any(pair.split("=", 1)[0].strip() == "service.name" for pair in pairs)


def root_span_id(trace: Trace) -> int:
    """A span id for the run's root span, derived from the trace id and distinct
    from every call's span id."""
    candidate = int(trace.meta["trace_id"][:16], 16) or 1
    while np.any(trace.calls.span_id == np.uint64(candidate)):
        candidate = (candidate * 6364136223846793005 + 1) % 2**64 or 1
    return candidate


def trace_spans(trace: Trace, resource: Resource | None = None) -> Iterator[ReadableSpan]:
    """The root span of the run, then one span per call in call order."""
    resource = resource or resource_of(trace)
    scope = InstrumentationScope(TOOL, str(trace.meta.get("tool_version") or _tool_version()))
    trace_id = int(trace.meta["trace_id"], 16)
    calls = trace.calls
    meta = trace.meta
    root_id = root_span_id(trace)
    root_context = _context(trace_id, root_id)
    start = int(meta.get("start_time_unix_nano") or (calls.start.min() if len(trace) else 0))
    end = start + int(meta.get("duration_ns") or 0)
    if len(trace):
        start = min(start, int(calls.start.min()))
        end = max(end, int(calls.end.max()))
    argv = " ".join(str(a) for a in meta.get("argv") or [])
    exit_code = meta.get("exit_code")
    uncaught = meta.get("uncaught_exception")
    root_attributes: dict[str, Any] = {f"{NAMESPACE}.calls": len(trace)}
    if exit_code is not None:
        root_attributes["process.exit.code"] = int(exit_code)
    yield ReadableSpan(
        name=f"python {argv}".strip(),
        context=root_context,
        resource=resource,
        attributes=root_attributes,
        kind=SpanKind.INTERNAL,
        status=Status(StatusCode.ERROR, f"{uncaught['type']}: {uncaught['message']}")
        if uncaught
        else Status(StatusCode.UNSET),
        start_time=start,
        end_time=end,
        instrumentation_scope=scope,
    )
    parents = calls.parent.tolist()
    span_ids = calls.span_id.tolist()
    starts = calls.start.tolist()
    ends = calls.end.tolist()
    flags = calls.flags.tolist()
    for row in range(len(trace)):
        parent = parents[row]
        parent_context = root_context if parent < 0 else _context(trace_id, span_ids[parent])
        raised = flags[row] & RAISED
        events, status = (), Status(StatusCode.UNSET)
        if raised:
            kind, message = trace.exception_of(row)
            events = (
                Event(
                    "exception",
                    {
                        "exception.type": kind,
                        "exception.message": message,
                        "exception.stacktrace": _stacktrace(trace, row, kind, message),
                    },
                    timestamp=ends[row],
                ),
            )
            status = Status(StatusCode.ERROR, f"{kind}: {message}")
        yield ReadableSpan(
            name=span_name(trace, row),
            context=_context(trace_id, span_ids[row]),
            parent=parent_context,
            resource=resource,
            attributes=call_attributes(trace, row),
            events=events,
            kind=SpanKind.INTERNAL,
            status=status,
            start_time=starts[row],
            end_time=ends[row],
            instrumentation_scope=scope,
        )


def _context(trace_id: int, span_id: int) -> SpanContext:
    return SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(1))


def span_name(trace: Trace, row: int) -> str:
    """``qualname`` for calls in scope, ``module.qualname`` for external ones."""
    function = trace.function_of(row)
    if trace.calls.flags[row] & EXTERNAL and function.module:
        return f"{function.module}.{function.qualname}"
    return function.qualname


def call_attributes(trace: Trace, row: int) -> dict[str, Any]:
    """The attributes of one call's span (see docs/opentelemetry.md)."""
    function = trace.function_of(row)
    flags = int(trace.calls.flags[row])
    thread = trace.threads[int(trace.calls.thread[row])]
    qualified = f"{function.module}.{function.qualname}" if function.module else function.qualname
    attributes: dict[str, Any] = {"code.function.name": qualified}
    if function.file:
        attributes["code.file.path"] = function.file
        attributes["code.line.number"] = function.line
    attributes["thread.id"] = thread.native_id
    attributes["thread.name"] = thread.name
    attributes[f"{NAMESPACE}.call.id"] = row + 1
    attributes[f"{NAMESPACE}.call.external"] = bool(flags & EXTERNAL)
    if flags & RESUMED:
        attributes[f"{NAMESPACE}.call.resumed"] = True
    if flags & UNFINISHED:
        attributes[f"{NAMESPACE}.call.unfinished"] = True
    for name, value in trace.args_of(row).items():
        attributes[f"{NAMESPACE}.args.{name}"] = value
    value = trace.value_of(row)
    if value is not None and not flags & RAISED:
        key = "yielded_value" if flags & YIELDED else "return_value"
        attributes[f"{NAMESPACE}.{key}"] = value
    if trace.patterns is not None:
        attributes.update(trace.patterns.attributes_of(row))
    return attributes


def _stacktrace(trace: Trace, row: int, kind: str, message: str) -> str:
    """A Python-style traceback from the recorded call chain (the lines are the
    functions' first lines: the trace does not record the raising line)."""
    chain = []
    parent = trace.calls.parent
    while row >= 0:
        chain.append(row)
        row = int(parent[row])
    lines = ["Traceback (most recent call last):"]
    for call in reversed(chain):
        function = trace.function_of(call)
        where = function.file or f"<{function.module or 'external'}>"
        lines.append(f'  File "{where}", line {function.line}, in {function.qualname}')
    lines.append(f"{kind}: {message}" if message else kind)
    return "\n".join(lines)
