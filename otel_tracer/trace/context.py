"""W3C trace context (``traceparent``) for the processes of one run.

A traced process passes ``TRACEPARENT=00-<trace id>-<its root span id>-01`` to
the processes it starts, and a tracer started under a ``TRACEPARENT`` records
into that trace with its root span under that parent: so every process of a
run, on one machine or many, is one OpenTelemetry trace.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace

ENV_VAR = "TRACEPARENT"
STATE_VAR = "TRACESTATE"  # W3C ``tracestate``, passed on with ``TRACEPARENT``
_FORMAT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


_STATE_MEMBER = re.compile(
    r"(?:[a-z0-9][_0-9a-z*/-]{0,255}|[a-z0-9][_0-9a-z*/-]{0,240}@[a-z][_0-9a-z*/-]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)


class BadTraceParent(ValueError):
    """A ``traceparent`` value that is not W3C trace context."""


@dataclass(frozen=True)
class TraceParent:
    """The trace and parent span a run records under."""

    trace_id: str  # 32 lower-case hex digits
    span_id: str  # 16 lower-case hex digits: the parent of the run's root span
    sampled: bool = True
    trace_state: str = ""  # the W3C ``tracestate`` value, kept as given

    def header(self) -> str:
        """The ``traceparent`` value."""
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def environment(self) -> dict[str, str]:
        """``TRACEPARENT`` and, when there is one, ``TRACESTATE``."""
        state = {STATE_VAR: self.trace_state} if self.trace_state else {}
        return {ENV_VAR: self.header(), **state}


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
    when it is malformed), with the ``TRACESTATE`` that came with it. A
    ``tracestate`` that the SDK's parser rejects is dropped, as W3C trace context
    says a receiver does with an invalid one ("Mutating the tracestate field")."""
    value = os.environ.get(ENV_VAR)
    if not value:
        return None
    parent = parse_traceparent(value)
    state = os.environ.get(STATE_VAR, "").strip()
    return replace(parent, trace_state=state) if state and _valid_state(state) else parent


def _valid_state(state: str) -> bool:
    """Whether ``state`` is a W3C ``tracestate``: at most 32 ``key=value`` list
    members (W3C Trace Context, "tracestate Header Field Values")."""
    members = [m.strip() for m in state.split(",") if m.strip()]
    keys = [m.split("=", 1)[0] for m in members]
    valid = all(_STATE_MEMBER.fullmatch(m) for m in members)
    return valid and 0 < len(members) <= 32 and len(set(keys)) == len(keys)


def new_span_id() -> str:
    """A random non-zero span id, 16 hex digits."""
    while True:
        span_id = os.urandom(8).hex()
        if int(span_id, 16):
            return span_id
