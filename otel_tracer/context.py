"""W3C trace context (``traceparent``) for the processes of one run.

A traced process passes ``TRACEPARENT=00-<trace id>-<its root span id>-01`` to
the processes it starts, and a tracer started under a ``TRACEPARENT`` records
into that trace with its root span under that parent: so every process of a
run, on one machine or many, is one OpenTelemetry trace.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

ENV_VAR = "TRACEPARENT"
_FORMAT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


class BadTraceParent(ValueError):
    """A ``traceparent`` value that is not W3C trace context."""


@dataclass(frozen=True)
class TraceParent:
    """The trace and parent span a run records under."""

    trace_id: str  # 32 lower-case hex digits
    span_id: str  # 16 lower-case hex digits: the parent of the run's root span
    sampled: bool = True

    def header(self) -> str:
        """The ``traceparent`` value."""
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


def parse_traceparent(value: str) -> TraceParent:
    """The W3C ``traceparent`` ``value``; raises BadTraceParent when it is not one
    (zero ids, version ``ff``, or a version-00 value with extra fields)."""
    match = _FORMAT.fullmatch(value.strip())
    if match is None:
        raise BadTraceParent(f"{ENV_VAR}={value!r} is not version-traceid-spanid-flags in hex")
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        raise BadTraceParent(f"{ENV_VAR}={value!r}: unsupported version {version}")
    if int(trace_id, 16) == 0 or int(span_id, 16) == 0:
        raise BadTraceParent(f"{ENV_VAR}={value!r}: the trace and span ids must not be zero")
    return TraceParent(trace_id, span_id, bool(int(flags, 16) & 1))


def inherited_traceparent() -> TraceParent | None:
    """The ``TRACEPARENT`` this process was started under, if any (BadTraceParent
    when it is malformed)."""
    value = os.environ.get(ENV_VAR)
    return parse_traceparent(value) if value else None


def new_span_id() -> str:
    """A random non-zero span id, 16 hex digits."""
    while True:
        span_id = os.urandom(8).hex()
        if int(span_id, 16):
            return span_id
