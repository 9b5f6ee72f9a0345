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
import uuid
from collections.abc import Iterator
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from otel_tracer.model import EXTERNAL, RAISED, RESUMED, UNFINISHED, YIELDED, Function, Trace
from otel_tracer.span_plan import GroupSpan, SpanPlan, span_name, span_plan

NAMESPACE = "otel_tracer"
TOOL = "otel-tracer"
CALL_ID = f"{NAMESPACE}.call.id"
CALL_EXTERNAL = f"{NAMESPACE}.call.external"
RETURN_VALUE = f"{NAMESPACE}.return_value"
YIELDED_VALUE = f"{NAMESPACE}.yielded_value"
ARGS_PREFIX = f"{NAMESPACE}.args."


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
    if not os.environ.get("OTEL_SERVICE_NAME") and not _in_environment("service.name"):
        script = meta.get("script") or (argv[0] if argv else "python")
        attributes["service.name"] = os.path.basename(str(script)) or "python"
    if not _in_environment("service.instance.id") and meta.get("trace_id"):
        attributes["service.instance.id"] = str(uuid.UUID(hex=meta["trace_id"]))  # one per run
    return Resource.create(attributes)


def _in_environment(key: str) -> bool:
    """Whether ``OTEL_RESOURCE_ATTRIBUTES`` sets ``key``."""
    pairs = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(",")
    return any(pair.split("=", 1)[0].strip() == key for pair in pairs)


def trace_spans(
    trace: Trace, resource: Resource | None = None, plan: SpanPlan | None = None
) -> Iterator[ReadableSpan]:
    """The root span of the run, then one span per call of ``plan`` (by default
    every call) in call order, with the plan's group spans before their calls."""
    plan = plan if plan is not None else span_plan(trace)
    build = SpanBuilder(trace, resource)
    yield build.root(plan)
    groups = iter(plan.groups)
    group = next(groups, None)
    parent_ids = plan.parent_ids.tolist()
    for i, row in enumerate(plan.rows.tolist()):
        while group is not None and group.before == i:
            yield build.group(group)
            group = next(groups, None)
        yield build.call(row, parent_ids[i])


class SpanBuilder:
    """Makes the SDK spans of one trace: the root, pattern groups and calls."""

    def __init__(self, trace: Trace, resource: Resource | None = None) -> None:
        self.trace = trace
        self.resource = resource or resource_of(trace)
        self.scope = InstrumentationScope(
            TOOL, str(trace.meta.get("tool_version") or _tool_version())
        )
        self.trace_id = int(trace.meta["trace_id"], 16)
        self.attributes = CallAttributes(trace)
        calls = trace.calls
        self.span_ids = calls.span_id.tolist()
        self.starts = calls.start.tolist()
        self.ends = calls.end.tolist()
        self.unset = Status(StatusCode.UNSET)

    def _span(
        self, name: str, span_id: int, parent_id: int | None, remote: bool = False, **fields
    ) -> ReadableSpan:
        return ReadableSpan(
            name=name,
            context=_context(self.trace_id, span_id),
            parent=None if parent_id is None else _context(self.trace_id, parent_id, remote),
            resource=self.resource,
            kind=SpanKind.INTERNAL,
            instrumentation_scope=self.scope,
            **fields,
        )

    def root(self, plan: SpanPlan) -> ReadableSpan:
        """The span of the whole run, under the ``TRACEPARENT`` it ran under, if any."""
        start, end = run_bounds(self.trace)
        parent = self.trace.meta.get("parent_span_id")
        return self._span(
            root_name(self.trace),
            plan.root_id,
            None if parent is None else int(parent, 16),
            remote=parent is not None,
            attributes=root_attributes(self.trace, plan),
            status=_root_status(self.trace),
            start_time=start,
            end_time=end,
        )

    def group(self, group: GroupSpan) -> ReadableSpan:
        """The span of a folded pattern group (``--fold-patterns``)."""
        return self._span(
            group.name,
            group.span_id,
            group.parent_id,
            attributes=group.attributes,
            status=self.unset,
            start_time=group.start,
            end_time=group.end,
        )

    def call(self, row: int, parent_id: int) -> ReadableSpan:
        """The span of call ``row`` under the span ``parent_id``."""
        events, status = (), self.unset
        if self.attributes.flags[row] & RAISED:
            events, status = _exception(self.trace, row, self.ends[row])
        return self._span(
            span_name(self.trace, row),
            self.span_ids[row],
            parent_id,
            attributes=self.attributes.of(row),
            events=events,
            status=status,
            start_time=self.starts[row],
            end_time=self.ends[row],
        )


def run_bounds(trace: Trace) -> tuple[int, int]:
    """Start and end (Unix ns) of the run's root span: the run, widened to every call."""
    meta, calls = trace.meta, trace.calls
    start = int(meta.get("start_time_unix_nano") or (calls.start.min() if len(trace) else 0))
    end = start + int(meta.get("duration_ns") or 0)
    if len(trace):
        start = min(start, int(calls.start.min()))
        end = max(end, int(calls.end.max()))
    return start, end


def root_name(trace: Trace) -> str:
    """``python script.py args...``."""
    argv = " ".join(str(a) for a in trace.meta.get("argv") or [])
    return f"python {argv}".strip()


def root_attributes(trace: Trace, plan: SpanPlan) -> dict[str, Any]:
    """The call count, calls left out by folding, and the exit code."""
    attributes: dict[str, Any] = {f"{NAMESPACE}.calls": len(trace)}
    if plan.omitted:
        attributes[f"{NAMESPACE}.calls.omitted"] = plan.omitted
    exit_code = trace.meta.get("exit_code")
    if exit_code is not None:
        attributes["process.exit.code"] = int(exit_code)
    return attributes


def _root_status(trace: Trace) -> Status:
    uncaught = trace.meta.get("uncaught_exception")
    if uncaught:
        return Status(StatusCode.ERROR, f"{uncaught['type']}: {uncaught['message']}")
    return Status(StatusCode.UNSET)


def _exception(trace: Trace, row: int, when: int) -> tuple[tuple[Event, ...], Status]:
    """The exception event and ERROR status of a call that raised."""
    kind, message = trace.exception_of(row)  # type: ignore[misc]
    event = Event("exception", exception_attributes(trace, row), timestamp=when)
    return (event,), Status(StatusCode.ERROR, f"{kind}: {message}")


def exception_attributes(trace: Trace, row: int) -> dict[str, str]:
    """``exception.type``, ``exception.message`` and ``exception.stacktrace``."""
    kind, message = trace.exception_of(row)  # type: ignore[misc]
    return {
        "exception.type": kind,
        "exception.message": message,
        "exception.stacktrace": _stacktrace(trace, row, kind, message),
    }


def _context(trace_id: int, span_id: int, remote: bool = False) -> SpanContext:
    return SpanContext(trace_id, span_id, is_remote=remote, trace_flags=TraceFlags(1))


class CallAttributes:
    """The attributes of calls' spans (see docs/opentelemetry.md), with what
    calls share (function, thread, argument tuple) built once."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.functions = [_function_attributes(f) for f in trace.functions]
        self.threads = [{"thread.id": t.native_id, "thread.name": t.name} for t in trace.threads]
        self.args: dict[tuple[int, int], dict[str, str]] = {}
        calls = trace.calls
        self.function = calls.function.tolist()
        self.thread = calls.thread.tolist()
        self.arg_tuple = calls.args.tolist()
        self.value = calls.value.tolist()
        self.flags = calls.flags.tolist()

    def of(self, row: int) -> dict[str, Any]:
        """The attributes of call ``row``'s span."""
        function, flags = self.function[row], self.flags[row]
        attributes = {
            **self.functions[function],
            **self.threads[self.thread[row]],
            CALL_ID: row + 1,
            CALL_EXTERNAL: bool(flags & EXTERNAL),
        }
        if flags & RESUMED:
            attributes[f"{NAMESPACE}.call.resumed"] = True
        if flags & UNFINISHED:
            attributes[f"{NAMESPACE}.call.unfinished"] = True
        if self.arg_tuple[row] >= 0:
            key = (function, self.arg_tuple[row])
            args = self.args.get(key)
            if args is None:
                args = self.args[key] = {
                    ARGS_PREFIX + name: value for name, value in self.trace.args_of(row).items()
                }
            attributes.update(args)
        if self.value[row] >= 0 and not flags & RAISED:
            key = YIELDED_VALUE if flags & YIELDED else RETURN_VALUE
            attributes[key] = self.trace.strings[self.value[row]]
        if self.trace.patterns is not None:
            attributes.update(self.trace.patterns.attributes_of(row))
        return attributes


def _function_attributes(function: Function) -> dict[str, Any]:
    qualified = f"{function.module}.{function.qualname}" if function.module else function.qualname
    attributes: dict[str, Any] = {"code.function.name": qualified}
    if function.file:
        attributes["code.file.path"] = function.file
        attributes["code.line.number"] = function.line
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
