"""Child process for the "memory while running" measurement of ``run.py``.

``python benchmarks/memprobe.py MODE RESULT.json SCRIPT [ARGS...]`` runs SCRIPT as
``__main__`` (via ``runpy``) in this process, either untraced (MODE ``none``) or
inside ``otel_tracer.Tracer`` (MODE ``c``, ``python``, ``monitoring``,
``pymonitoring`` or ``noargs`` = C core without argument capture), and writes to
RESULT.json the peak RSS (``ru_maxrss``, KiB) taken right before recording stops,
i.e. before ``Tracer.__exit__`` builds the
trace, and the time the program ran while recording (``run_s``). The untraced
mode imports ``otel_tracer`` too, so the difference between the two is what
recording itself holds and costs. This file lives outside the workloads
directory, so it is never in the traced scope.
"""

from __future__ import annotations

import json
import os
import resource
import runpy
import sys
import time
from typing import Any

import otel_tracer

MODES = ("none", "c", "python", "noargs", "monitoring", "pymonitoring")


def peak_rss_kib() -> int:
    """This process's peak resident set size so far, in KiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def probe(mode: str, script: str, args: list[str]) -> dict[str, Any]:
    """Run ``script`` under ``mode`` and return the RSS readings and the call count."""
    scope = os.path.dirname(os.path.abspath(script))
    sys.argv = [script, *args]
    sys.path[0] = scope
    result: dict[str, Any] = {"mode": mode, "start_kib": peak_rss_kib()}
    if mode == "none":
        started = time.perf_counter()
        runpy.run_path(script, run_name="__main__")
        result["run_s"] = time.perf_counter() - started
        result["before_stop_kib"] = peak_rss_kib()
        result["calls"] = 0
        return result
    core = mode if mode in ("python", "monitoring", "pymonitoring") else "c"
    tracer = otel_tracer.Tracer(scope=[scope], core=core, capture_args=mode != "noargs")
    with tracer:
        started = time.perf_counter()
        runpy.run_path(script, run_name="__main__")
        result["run_s"] = time.perf_counter() - started
        result["before_stop_kib"] = peak_rss_kib()
    result["after_build_kib"] = peak_rss_kib()
    result["calls"] = len(tracer.trace) if tracer.trace is not None else 0
    return result


def main(argv: list[str]) -> int:
    """Command-line entry point."""
    if len(argv) < 4 or argv[1] not in MODES:
        print(f"usage: {argv[0]} {{{','.join(MODES)}}} RESULT.json SCRIPT [ARGS...]")
        return 2
    mode, result_path, script, *args = argv[1:]
    result = probe(mode, script, args)
    with open(result_path, "w", encoding="utf-8") as out:
        json.dump(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
