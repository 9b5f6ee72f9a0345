"""Where a recorded trace's spans are sent, as ``--otlp-endpoint`` and the standard
``OTEL_*`` variables say, and sending them with one status line either way.

The settings follow the specification's configuration/sdk-environment-variables.md:
``OTEL_SDK_DISABLED`` (a boolean: only ``true``, any case, disables), the comma
list ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``, ``none``; an unknown name is
warned about and ignored), ``OTEL_TRACES_SAMPLER``/``OTEL_TRACES_SAMPLER_ARG``
(read by the SDK's own ``TracerProvider``; default ``parentbased_always_on``), and
the ``OTEL_EXPORTER_OTLP_*`` variables (exporters/otlp.py). An invalid value is
one warning line and the default, never a reason not to run the program.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from exporters.otlp import OtlpTarget, SendResult, otlp_target, send_trace
from otel_tracer.spans.plan import span_plan
from otel_tracer.spans.sdk import root_name, trace_spans
from otel_tracer.trace.model import Trace
from otel_tracer.trace.text import printable

EXPORTERS = ("otlp", "console", "none")
_TRUE, _FALSE = "true", "false"
CONSOLE_BATCH = 1_000


@dataclass(frozen=True)
class SpanExport:
    """What to do with a run's spans beyond the files: send them over OTLP, print
    them (``console``), with the sampler that decides whether the run is sent."""

    otlp: OtlpTarget | None
    console: bool
    sampler: object | None  # an opentelemetry.sdk.trace.sampling.Sampler
    warnings: tuple[str, ...]

    @property
    def wanted(self) -> bool:
        """Whether any span is to go anywhere."""
        return self.otlp is not None or self.console


def span_export(
    endpoint: str | None, protocol: str | None, environ: Mapping[str, str] = os.environ
) -> SpanExport:
    """The span export ``--otlp-endpoint``/``--otlp-protocol`` and the ``OTEL_*``
    variables ask for. Raises OtlpConfigError for a bad option only."""
    warnings: list[str] = []
    if _disabled(environ, warnings):
        return SpanExport(None, False, None, tuple(warnings))
    names = _exporter_names(environ, warnings)
    target = otlp_target(endpoint, protocol, environ)
    if target is not None:
        warnings += target.warnings
    console = "console" in names
    sampler = _sampler(warnings) if target is not None or console else None
    return SpanExport(target, console, sampler, tuple(warnings))


def _disabled(environ: Mapping[str, str], warnings: list[str]) -> bool:
    """``OTEL_SDK_DISABLED``: true only for ``true`` (any case); a value other
    than true, false or empty is warned about (spec: "Boolean value")."""
    value = environ.get("OTEL_SDK_DISABLED", "").strip()
    if value.lower() not in (_TRUE, _FALSE, ""):
        warnings.append(f"OTEL_SDK_DISABLED={value!r} is not true or false; taken as false")
    return value.lower() == _TRUE


def _exporter_names(environ: Mapping[str, str], warnings: list[str]) -> set[str]:
    """The names in ``OTEL_TRACES_EXPORTER``, lower-cased; unknown ones warned about
    and dropped (spec: "Exporter Selection")."""
    names = {n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",")}
    names.discard("")
    for name in sorted(names - set(EXPORTERS)):
        warnings.append(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} ignored")
    return names & set(EXPORTERS)


def _sampler(warnings: list[str]) -> object:
    """The sampler ``OTEL_TRACES_SAMPLER`` and ``OTEL_TRACES_SAMPLER_ARG`` name, as
    the SDK's TracerProvider reads them; its complaints become warning lines."""
    from opentelemetry.sdk.trace import TracerProvider

    from exporters.otlp import sdk_log_records

    with sdk_log_records() as records:
        sampler = TracerProvider().sampler
    warnings += [f"OTEL_TRACES_SAMPLER: {record.getMessage()}" for record in records]
    return sampler


def sampled(trace: Trace, sampler: object | None) -> bool:
    """Whether ``sampler`` keeps the run: asked once, for the run's root span,
    under the ``TRACEPARENT`` the run was started under (so the default,
    parent-based, follows its sampled flag: ``-00`` sends nothing)."""
    if sampler is None:
        return True
    from opentelemetry.trace import (
        NonRecordingSpan,
        SpanContext,
        TraceFlags,
        TraceState,
        set_span_in_context,
    )

    meta = trace.meta
    trace_id = int(meta["trace_id"], 16)
    context = None
    if meta.get("parent_span_id"):
        flags = TraceFlags.DEFAULT if meta.get("parent_sampled") is False else TraceFlags.SAMPLED
        parent = SpanContext(
            trace_id,
            int(meta["parent_span_id"], 16),
            is_remote=True,
            trace_flags=TraceFlags(flags),
            trace_state=TraceState.from_header([str(meta.get("trace_state") or "")]),
        )
        context = set_span_in_context(NonRecordingSpan(parent))
    decision = sampler.should_sample(context, trace_id, root_name(trace))  # type: ignore[attr-defined]
    return decision.decision.is_sampled()


def export_spans(
    trace: Trace,
    export: SpanExport,
    fold_patterns: bool,
    status: Callable[[str], None],
    label: str = "otel-tracer",
) -> bool:
    """Print and send the trace's spans as ``export`` says (one repetition per
    pattern group with ``fold_patterns``), unless the sampler drops the run; a
    failure is one line on stderr, never an exception. True unless spans that
    should have gone did not."""
    if not export.wanted:
        return True
    if not sampled(trace, export.sampler):
        status("the run is not sampled (OTEL_TRACES_SAMPLER, TRACEPARENT): no spans sent")
        return True
    plan = span_plan(trace, fold_patterns)
    if export.console:
        _print_spans(trace, plan)
    if export.otlp is None:
        return True
    result = send_trace(trace, plan, export.otlp, progress=True)
    return _report(result, export.otlp, len(plan), status, label)


def _print_spans(trace: Trace, plan: object) -> None:
    """The spans as the SDK's ConsoleSpanExporter prints them, on stdout."""
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    exporter = ConsoleSpanExporter()
    spans = trace_spans(trace, plan=plan)  # type: ignore[arg-type]
    while batch := list(itertools.islice(spans, CONSOLE_BATCH)):
        exporter.export(batch)
    sys.stdout.flush()


def _report(
    result: SendResult, target: OtlpTarget, total: int, status: Callable[[str], None], label: str
) -> bool:
    """One line for the outcome: sent, partly rejected, uncertain, or failed."""
    if result.rejected or result.messages:
        why = f": {'; '.join(result.messages)}" if result.messages else ""
        _line(label, "warning", f"the collector rejected {result.rejected} of {total} spans{why}")
    if result.error is None:
        status(f"{result.sent - result.rejected} spans sent to {target.shown} ({target.protocol})")
        return not result.rejected
    if result.uncertain:
        _line(
            label,
            "warning",
            f"{result.error.replace(' failed after ', ' stopped after ', 1)}; "
            f"the collector may have stored those {result.uncertain} spans (uncertain), "
            f"the {total - result.sent - result.uncertain} after them were not sent",
        )
    else:
        _line(label, "error", result.error)
    return False


def _line(label: str, kind: str, message: str) -> None:
    print(f"{label}: {kind}: {printable(message)}", file=sys.stderr, flush=True)
