"""The OpenTelemetry bridge: which calls and pattern groups become spans and
with which attributes (``plan``), and the SDK spans themselves (``sdk``:
``trace_spans(trace)`` gives ``ReadableSpan``s for any ``SpanExporter``)."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # ``otel_tracer.spans.trace_spans`` without importing the SDK for ``plan`` users
    if name == "trace_spans":
        from otel_tracer.spans.sdk import trace_spans

        return trace_spans
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
