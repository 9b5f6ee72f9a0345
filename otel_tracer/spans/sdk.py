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

import copy
import os
import uuid
from collections.abc import Iterator
from typing import Any

from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from otel_tracer.spans.plan import (
    NAMESPACE,
    GroupSpan,
    SpanPlan,
    pattern_attributes,
    program_name,
    span_name,
    span_plan,
)
from otel_tracer.trace.model import (
    EXTERNAL,
    FINALIZER,
    RAISED,
    RESUMED,
    UNFINISHED,
    YIELDED,
    Function,
    Trace,
)

TOOL = "otel-tracer"
CALL_ID = f"{NAMESPACE}.call.id"
CALL_EXTERNAL = f"{NAMESPACE}.call.external"
RETURN_VALUE = f"{NAMESPACE}.return_value"
YIELDED_VALUE = f"{NAMESPACE}.yielded_value"
TASK = f"{NAMESPACE}.async.task"  # the asyncio task of a coroutine's resumption
ARGS_PREFIX = f"{NAMESPACE}.args."
NATIVE_THREAD_ID = f"{NAMESPACE}.thread.native_id"
# The semantic conventions release whose names the spans use (Resource and scope
# ``schemaUrl``; spec: "Telemetry Schemas", OTLP ``schema_url`` fields).
SCHEMA_URL = "https://opentelemetry.io/schemas/1.37.0"
MAX_FRAMES = 200  # frames in an exception.stacktrace (bounds a span's size)
MAX_ARG_CHARS = 4_096  # one argument in process.command_args
MAX_COMMAND_CHARS = 65_536  # all of them: bounds the Resource that every request carries


def _tool_version() -> str:
    from otel_tracer.record.recorder import tool_version

    return tool_version()


def resource_of(trace: Trace, process: dict[str, Any] | None = None) -> Resource:
    """The Resource of one process of the run (``process``: its
    ``metadata.processes`` entry; None: the first, described by the metadata):
    ``service.name`` (the program's name), ``service.instance.id`` (a UUID per
    process per run, from the metadata), the ``process.*`` and runtime
    attributes, and the tool. ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``
    win over these (spec: resource/sdk.md, "Specifying resource information via
    an environment variable")."""
    meta = trace.meta
    entry = process or meta
    argv = [str(a) for a in entry.get("argv") or []]
    executable = _executable_path(entry.get("executable") or meta.get("executable"))
    pid = int(entry.get("pid", 0))
    args = [*argv[0].split(" ", 1), *argv[1:]] if argv and argv[0].startswith("-m ") else argv
    attributes: dict[str, Any] = {
        "service.name": _service_name(trace, process),
        "service.instance.id": instance_id(trace, entry),
        "process.pid": pid,
        "process.command_args": bounded_command([executable or "python", *args]),
        "process.runtime.name": str(meta.get("python_implementation", "CPython")).lower(),
        "process.runtime.version": str(meta.get("python_version", "")),
        "telemetry.distro.name": TOOL,
        "telemetry.distro.version": str(meta.get("tool_version") or _tool_version()),
    }
    if entry.get("parent_pid"):
        attributes["process.parent_pid"] = int(entry["parent_pid"])
    if executable:
        attributes["process.executable.path"] = executable
        attributes["process.executable.name"] = os.path.basename(executable)
    given = OTELResourceDetector().detect().attributes
    if os.environ.get("OTEL_SERVICE_NAME", "").strip():
        given = {**given, "service.name": os.environ["OTEL_SERVICE_NAME"]}
    ours = {key: value for key, value in attributes.items() if key not in given}
    return Resource.create(ours, SCHEMA_URL)


def bounded_command(args: list[str]) -> list[str]:
    """``args`` within ``MAX_ARG_CHARS`` each and ``MAX_COMMAND_CHARS`` in all, so
    that no request outgrows its size cap for a long command line: a longer
    argument ends in ``...(+N chars)``, and one ``...(+N args)`` stands for the
    arguments past the total."""
    kept: list[str] = []
    total = 0
    for index, arg in enumerate(args):
        if len(arg) > MAX_ARG_CHARS:
            arg = f"{arg[:MAX_ARG_CHARS]}...(+{len(arg) - MAX_ARG_CHARS} chars)"
        if total + len(arg) > MAX_COMMAND_CHARS:
            kept.append(f"...(+{len(args) - index} args)")
            break
        kept.append(arg)
        total += len(arg)
    return kept


def instance_id(trace: Trace, entry: dict[str, Any]) -> str:
    """``service.instance.id`` of a process: the UUID it recorded
    (``service_instance_id``), or for traces recorded before there was one, a
    UUID made from the trace id and the pid, so every export agrees."""
    recorded = entry.get("service_instance_id")
    if recorded:
        return str(recorded)
    name = f"{trace.meta['trace_id']}:{int(entry.get('pid', 0))}"
    return str(uuid.uuid5(uuid.NAMESPACE_OID, name))


def _executable_path(path: str | None) -> str | None:
    """The interpreter's path made absolute and normal (no ``..`` or ``//``);
    symbolic links are kept, as a virtual environment's ``python`` is one."""
    return os.path.normpath(os.path.abspath(path)) if path else None


def _service_name(trace: Trace, process: dict[str, Any] | None) -> str:
    """The script's or module's name (``train.py``, ``pkg.train``)."""
    if process is not None:
        return program_name(process.get("argv") or [])
    meta = trace.meta
    if meta.get("module"):
        return str(meta["module"])
    script = meta.get("script")
    return os.path.basename(str(script)) if script else program_name(meta.get("argv") or [])


def trace_spans(
    trace: Trace, resource: Resource | None = None, plan: SpanPlan | None = None
) -> Iterator[ReadableSpan]:
    """For each process of ``plan`` (by default every call), its root span, then
    one span per call in call order, with the plan's group spans before their
    calls; each process's spans carry its own Resource (``resource`` replaces
    the first process's)."""
    plan = plan if plan is not None else span_plan(trace)
    first = SpanBuilder(trace, resource)
    for part in plan.parts:
        build = first.for_part(part)
        yield build.root(part)
        groups = iter(part.groups)
        group = next(groups, None)
        parent_ids = part.parent_ids.tolist()
        for j, row in enumerate(part.rows.tolist()):
            while group is not None and group.before == j:
                yield build.group(group)
                group = next(groups, None)
            yield build.call(row, parent_ids[j])


class SpanBuilder:
    """Makes the SDK spans of one process of a trace (``process``: its
    ``metadata.processes`` entry, None for the first): its root, pattern groups
    and calls."""

    def __init__(
        self, trace: Trace, resource: Resource | None = None, process: dict[str, Any] | None = None
    ) -> None:
        self.trace = trace
        self.process = process
        self.resource = resource or resource_of(trace, process)
        self.scope = InstrumentationScope(
            TOOL, str(trace.meta.get("tool_version") or _tool_version()), SCHEMA_URL
        )
        self.trace_id = int(trace.meta["trace_id"], 16)
        self.trace_state = TraceState.from_header([str(trace.meta.get("trace_state") or "")])
        self.attributes = CallAttributes(trace)
        calls = trace.calls
        self.span_ids = calls.span_id.tolist()
        self.starts = calls.start.tolist()
        self.ends = calls.end.tolist()
        self.unset = Status(StatusCode.UNSET)

    def for_part(self, part: SpanPlan) -> SpanBuilder:
        """This builder for the process of ``part`` (its Resource), sharing the
        per-call tables."""
        if part.process is self.process:
            return self
        other = copy.copy(self)
        other.process = part.process
        other.resource = resource_of(self.trace, part.process)
        return other

    def _context(self, span_id: int, remote: bool = False) -> SpanContext:
        return SpanContext(
            self.trace_id,
            span_id,
            is_remote=remote,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
            trace_state=self.trace_state,
        )

    def _span(
        self, name: str, span_id: int, parent_id: int | None, remote: bool = False, **fields
    ) -> ReadableSpan:
        return ReadableSpan(
            name=name,
            context=self._context(span_id),
            parent=None if parent_id is None else self._context(parent_id, remote),
            resource=self.resource,
            kind=SpanKind.INTERNAL,
            instrumentation_scope=self.scope,
            **fields,
        )

    def root(self, plan: SpanPlan) -> ReadableSpan:
        """The root span of ``plan``'s process: for the first, under the
        ``TRACEPARENT`` the run was started under, if any; for the others, under
        the root span of the process that started them."""
        process = plan.process
        if process is None:
            parent = self.trace.meta.get("parent_span_id")
            parent_id = None if parent is None else int(parent, 16)
        else:
            parent_id = plan.root_parent
        start, end = run_bounds(self.trace, plan)
        return self._span(
            root_name(self.trace, process),
            plan.root_id,
            parent_id,
            remote=process is None and parent_id is not None,
            attributes=root_attributes(self.trace, plan),
            status=_root_status(self.trace if process is None else None),
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


def run_bounds(trace: Trace, plan: SpanPlan | None = None) -> tuple[int, int]:
    """Start and end (Unix ns) of a process's root span (``plan``'s process, by
    default the first): the process's recording, widened to its calls."""
    entry = (plan.process if plan is not None else None) or trace.meta
    calls = trace.calls
    rows = plan.process_rows if plan is not None else None
    starts = calls.start if rows is None else calls.start[rows]
    ends = calls.end if rows is None else calls.end[rows]
    start = int(entry.get("start_time_unix_nano") or (starts.min() if len(starts) else 0))
    end = start + int(entry.get("duration_ns") or 0)
    if len(starts):
        start = min(start, int(starts.min()))
        end = max(end, int(ends.max()))
    return start, end


def root_name(trace: Trace, process: dict[str, Any] | None = None) -> str:
    """The program's name (``train.py``, ``pkg.train``): a low-cardinality span
    name, as the spec asks (trace/api.md, "Span": the span name "SHOULD be the
    most general string that identifies a (statistically) interesting class of
    Spans"); the arguments are in the Resource's ``process.command_args``."""
    return _service_name(trace, process)


def root_attributes(trace: Trace, plan: SpanPlan) -> dict[str, Any]:
    """The process's call count, calls left out by folding, and the exit code."""
    attributes: dict[str, Any] = {f"{NAMESPACE}.calls": plan.total_calls}
    if plan.omitted:
        attributes[f"{NAMESPACE}.calls.omitted"] = plan.omitted
    exit_code = (plan.process or trace.meta).get("exit_code")
    if exit_code is not None:
        attributes["process.exit.code"] = int(exit_code)
    return attributes


def _root_status(trace: Trace | None) -> Status:
    uncaught = trace.meta.get("uncaught_exception") if trace is not None else None
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


class CallAttributes:
    """The attributes of calls' spans (see docs/opentelemetry.md), with what
    calls share (function, thread, argument tuple) built once."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.functions = [_function_attributes(f) for f in trace.functions]
        self.threads = [
            {"thread.id": t.id, "thread.name": t.name, NATIVE_THREAD_ID: t.native_id}
            for t in trace.threads
        ]
        self.args: dict[tuple[int, int], dict[str, str]] = {}
        calls = trace.calls
        self.function = calls.function.tolist()
        self.thread = calls.thread.tolist()
        self.arg_tuple = calls.args.tolist()
        self.value = calls.value.tolist()
        self.flags = calls.flags.tolist()
        self.task = calls.task.tolist()

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
            if self.task[row] >= 0:
                attributes[TASK] = self.trace.strings[self.task[row]]
        if flags & UNFINISHED:
            attributes[f"{NAMESPACE}.call.unfinished"] = True
        if flags & FINALIZER:
            attributes[f"{NAMESPACE}.call.finalizer"] = True
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
            attributes.update(pattern_attributes(self.trace.patterns.attributes_of(row)))
        return attributes


def _function_attributes(function: Function) -> dict[str, Any]:
    qualified = f"{function.module}.{function.qualname}" if function.module else function.qualname
    attributes: dict[str, Any] = {"code.function.name": qualified}
    if function.file:
        attributes["code.file.path"] = function.file
        attributes["code.line.number"] = function.line
    return attributes


def _stacktrace(trace: Trace, row: int, kind: str, message: str) -> str:
    """A Python-style traceback of the exception that ended call ``row``: its
    frame, then the calls it unwound, down to the innermost call that ended with
    the same exception (where it was raised), as Python prints the traceback
    that reaches the span's function. Each frame's line is the one it was at when
    the exception left it (``raise_line``, recorded at the unwind): the raise
    site for the innermost. C functions show no frame, as in Python's
    tracebacks, unless the span is one. At most MAX_FRAMES frames: the outermost
    and innermost halves."""
    calls = trace.calls
    chain = [row]
    while True:
        children = trace.children_of(chain[-1])
        same = children[
            ((calls.flags[children] & RAISED) != 0)
            & (calls.exception[children] == calls.exception[row])
        ]
        if not len(same):
            break
        chain.append(int(same[-1]))
    chain = [call for call in chain if call == row or trace.function_of(call).file]
    frames = [_frame(trace, call) for call in chain]
    if len(frames) > MAX_FRAMES:
        half = MAX_FRAMES // 2
        omitted = f"  [... {len(frames) - 2 * half} frames omitted ...]"
        frames = [*frames[:half], omitted, *frames[-half:]]
    last = f"{kind}: {message}" if message else kind
    return "\n".join(["Traceback (most recent call last):", *frames, last])


def _frame(trace: Trace, row: int) -> str:
    """One traceback entry; a trace written before raise lines were recorded
    gives the function's first line."""
    function = trace.function_of(row)
    if not function.file:
        name = f"{function.module}.{function.qualname}" if function.module else function.qualname
        return f"  [C function {name}]"
    line = int(trace.calls.raise_line[row]) or function.line
    return f'  File "{function.file}", line {line}, in {function.name}'
