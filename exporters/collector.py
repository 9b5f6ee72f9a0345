"""Sending a recorded trace to an OTLP collector, with one status line either way."""

from __future__ import annotations

import sys
from collections.abc import Callable

from exporters.otlp import OtlpTarget, send_trace
from otel_tracer.model import Trace
from otel_tracer.span_plan import span_plan


def export_to_collector(
    trace: Trace,
    target: OtlpTarget,
    fold_patterns: bool,
    status: Callable[[str], None],
    label: str = "otel-tracer",
) -> bool:
    """Send the trace's spans (one repetition per pattern group with
    ``fold_patterns``); a failure is one ``error:`` line on stderr, never an
    exception. True when every span was sent."""
    result = send_trace(trace, span_plan(trace, fold_patterns), target, progress=True)
    if result.error is not None:
        print(f"{label}: error: {result.error}", file=sys.stderr, flush=True)
        return False
    status(f"{result.sent} spans sent to {target.endpoint} ({target.protocol})")
    return True
