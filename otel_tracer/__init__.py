"""otel-tracer: a scoped Python execution tracer whose traces export as
OpenTelemetry spans.

    with otel_tracer.Tracer(scope=["src/"]) as t:
        train()
    t.save("trace.json")
    trace = otel_tracer.load("trace.json")
"""

from otel_tracer.api import Tracer, traced
from otel_tracer.model import Function, ThreadInfo, Trace
from otel_tracer.options import RecordOptions
from otel_tracer.trace_format import TraceFormatError, load

__all__ = [
    "Function",
    "RecordOptions",
    "ThreadInfo",
    "Trace",
    "TraceFormatError",
    "Tracer",
    "load",
    "traced",
]
