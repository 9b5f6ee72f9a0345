"""otel-tracer: a scoped Python execution tracer whose traces export as
OpenTelemetry spans.

    with otel_tracer.Tracer(scope=["src/"]) as t:
        train()
    t.save("trace.json")
    trace = otel_tracer.load("trace.json")

The names below are imported on first use: the tracer's command line and the
processes it follows import this package before the program starts, and pay
only for what recording needs (numpy and the rest come after the program).
"""

from importlib import import_module

from otel_tracer.version import VERSION as __version__

_EXPORTS = {
    "Function": "otel_tracer.trace.model",
    "RecordOptions": "otel_tracer.record.options",
    "ThreadInfo": "otel_tracer.trace.model",
    "Trace": "otel_tracer.trace.model",
    "TraceFormatError": "otel_tracer.trace.format",
    "Tracer": "otel_tracer.api",
    "load": "otel_tracer.trace.format",
    "traced": "otel_tracer.api",
}

__all__ = [
    "Function",
    "RecordOptions",
    "ThreadInfo",
    "Trace",
    "TraceFormatError",
    "Tracer",
    "__version__",
    "load",
    "traced",
]


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
