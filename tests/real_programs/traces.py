"""What a real program's trace must show: real calls in the scope."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

import otel_tracer


def call_counts(trace: otel_tracer.Trace, external: bool = False) -> Counter[str]:
    """Calls per function recorded in scope, by plain name (the same on every
    Python version: 3.10 has no qualified names for nested functions), or with
    ``external``, those outside it, by ``module:qualname``."""
    per_function = np.bincount(trace.calls.function, minlength=len(trace.functions))
    counts: Counter[str] = Counter()
    for index, function in enumerate(trace.functions):
        if per_function[index] and function.external == external:
            name = f"{function.module}:{function.qualname}" if external else function.name
            counts[name] += int(per_function[index])
    return counts


def check_trace(
    path: Path,
    exit_code: int,
    scope: Path,
    expected: dict[str, int],
    min_calls: int,
    min_threads: int = 1,
) -> otel_tracer.Trace:
    """Load the trace at ``path`` and check that it is the run's: its exit status,
    at least ``min_calls`` calls in ``min_threads`` threads, each function of
    ``expected`` called at least that many times (in scope), and every in-scope
    function defined under ``scope``."""
    trace = otel_tracer.load(path)
    assert trace.meta["exit_code"] == exit_code
    assert len(trace) >= min_calls, f"only {len(trace)} calls recorded"
    assert len(set(trace.calls.thread.tolist())) >= min_threads
    counts = call_counts(trace)
    missing = {
        name: (counts[name], least) for name, least in expected.items() if counts[name] < least
    }
    assert not missing, f"(recorded, expected at least) calls: {missing}"
    root = os.path.realpath(scope) + os.sep
    outside = {
        f.qualname: f.file
        for f in trace.functions
        if not f.external and not os.path.realpath(f.file).startswith(root)
    }
    assert not outside, f"in-scope functions outside {scope}: {outside}"
    return trace
