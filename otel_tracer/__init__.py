"""otel-tracer: a scoped Python execution tracer whose traces export as
OpenTelemetry spans.

    with otel_tracer.Tracer(scope=["src/"]) as t:
        train()
    t.save("trace.json")
    trace = otel_tracer.load("trace.json")
"""

import signal as _signal

# numpy starts its BLAS threads when it is imported. They start with SIGINT and
# SIGTERM blocked, so that these signals reach the traced program's main thread:
# delivered to a BLAS thread, they would leave a main thread blocked in a wait (a
# multiprocessing worker in ``SimpleQueue.get``) waiting for ever.
if hasattr(_signal, "pthread_sigmask"):
    _mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGINT, _signal.SIGTERM})
    try:
        import numpy  # noqa: F401
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, _mask)

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
