"""What the hook-based cores could not record because the program replaced their hooks.

The Python and C cores record through one ``sys.setprofile``-style hook and one
``sys.settrace``-style hook per thread. A program that installs its own (a
profiler, a debugger, coverage.py) replaces the core's for that thread: calls
are not recorded while the profile hook is replaced, and the exceptions that end
calls are not recorded while the trace hook is. The cores find this out at the
in-scope calls seen by their other hook, when a new thread already has the
program's trace function, and when recording stops, and count each thread once
per hook. (The ``sys.monitoring`` core shares nothing with these functions.)
"""

from __future__ import annotations

import os
import sys

PROFILE = "sys.setprofile"
TRACE = "sys.settrace"
NOT_RECORDED = {
    PROFILE: "calls made while it was replaced were not recorded",
    TRACE: "the exceptions that ended calls made while it was replaced were not recorded",
}


def warn(displaced: dict[str, int], started_in: int) -> None:
    """One warning line on stderr per hook the program replaced in some thread.
    ``started_in``: the pid that started recording (a forked child, which stops
    its inherited copy of the recording, says nothing)."""
    if os.getpid() != started_in:
        return
    for hook, threads in displaced.items():
        if threads:
            print(
                f"otel-tracer: warning: the program replaced the tracer's hook ({hook}) in "
                f"{threads} thread{'' if threads == 1 else 's'}; {NOT_RECORDED[hook]}",
                file=sys.stderr,
                flush=True,
            )
