"""Redaction: argument values whose names look like secrets are replaced by
``[redacted]`` in the trace, after the run and before any output is written,
so no output (JSON, text, viewer, OpenTelemetry) carries them.

A name is secret when ``SECRET_NAMES`` (or an extra pattern given with
``--redact REGEX``) is found in it, case-insensitively: ``password``,
``db_password``, ``api_key``, ``auth_token`` and ``Authorization`` all are.
Values are matched by the argument's name only: a secret inside another value
(a dict passed as ``config``, a returned token) is not found.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from otel_tracer.model import Trace

REDACTED = "[redacted]"
SECRET_NAMES = (
    r"passw(or)?d|passphrase|secret|token|api_?key|cookie|credential|private_?key"
    r"|access_?key|session_?id|signature"
    r"|(?<![a-z])auth(orization|entication)?(?![a-z])"  # auth, http_auth; not author
)


def secret_pattern(extra: Sequence[str] = ()) -> re.Pattern[str]:
    """The default secret names plus ``extra`` regular expressions; raises
    ``re.error`` for a bad one."""
    for expression in extra:
        re.compile(expression)
    return re.compile("|".join([SECRET_NAMES, *extra]), re.IGNORECASE)


def redact(trace: Trace, pattern: re.Pattern[str] | None) -> int:
    """Replace secret argument values in ``trace``; returns how many calls had
    one. Records what was done in ``trace.meta["redaction"]``."""
    if pattern is None:
        trace.meta["redaction"] = {"enabled": False}
        return 0
    secret = [
        tuple(i for i, name in enumerate(f.argnames) if pattern.search(name))
        for f in trace.functions
    ]
    calls = trace.calls
    has_secret = np.array([bool(positions) for positions in secret], dtype=bool)
    rows = np.flatnonzero((calls.args >= 0) & has_secret[calls.function]) if len(calls) else []
    if len(rows):
        replacement = _string_index(trace, REDACTED)
        pairs = np.stack((calls.function[rows].astype(np.int64), calls.args[rows]), axis=1)
        unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
        new_index = []
        for function, args in unique.tolist():
            values = list(trace.arg_tuples[args])
            for position in secret[function]:
                if position < len(values) and values[position] >= 0:
                    values[position] = replacement
            new_index.append(len(trace.arg_tuples))
            trace.arg_tuples.append(tuple(values))
        calls.args[rows] = np.asarray(new_index, dtype=calls.args.dtype)[inverse.reshape(-1)]
    trace.meta["redaction"] = {"enabled": True, "pattern": pattern.pattern, "calls": len(rows)}
    return len(rows)


def _string_index(trace: Trace, text: str) -> int:
    try:
        return trace.strings.index(text)
    except ValueError:
        trace.strings.append(text)
        return len(trace.strings) - 1
