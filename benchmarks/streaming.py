"""Memory while recording a long run: the tracer's streaming (the CLI, which
moves the events to ``TRACE.<pid>.spool`` every 0.2 s), its ring buffer (the CLI
with ``--ring-buffer 100000``: the last 10^5 calls kept in memory), and keeping
every event in memory (the Python API, ``otel_tracer.Tracer``), against untraced.

The workload (``workloads/steps.py N``) makes N in-scope calls, each with a new
argument and return value, and prints its
own resident memory (VmRSS) and peak (VmHWM) at the end of its loop, i.e. while
recording and before any trace is built; the median of ``--repeat`` runs is
reported for each mode.

    python benchmarks/streaming.py                  # N = 10^6 and 3 x 10^6
    python benchmarks/streaming.py --calls 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKLOAD = HERE / "workloads" / "steps.py"
MODES = ("streaming", "ring-buffer", "in-memory")
RING = 100_000
IN_MEMORY = """
import runpy, sys
import otel_tracer
sys.argv = [{script!r}, {calls!r}]
with otel_tracer.Tracer(scope=[{scope!r}], capture_args={args!r}):
    runpy.run_path({script!r}, run_name="__main__")
"""


def measure(mode: str, args: bool, calls: int, workdir: str) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB at the end of the workload's loop, for one run."""
    script = str(WORKLOAD)
    if mode == "untraced":
        command = [sys.executable, script, str(calls)]
    elif mode in ("streaming", "ring-buffer"):
        command = [sys.executable, "-m", "cli.main", "-q", "--no-patterns"]
        command += [] if args else ["--no-args"]
        command += ["--ring-buffer", str(RING)] if mode == "ring-buffer" else []
        command += ["-o", os.path.join(workdir, "t.json"), script, str(calls)]
    else:
        code = IN_MEMORY.format(
            script=script, calls=str(calls), scope=str(WORKLOAD.parent), args=args
        )
        command = [sys.executable, "-c", code]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("memory"))
    _, rss, hwm = line.split()
    return int(rss) / 1024, int(hwm) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, nargs="*", default=[10**6, 3 * 10**6])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("| calls | mode | arguments | VmRSS at the end of the loop (MiB) | peak so far (MiB) |")
    print("|---|---|---|---|---|")
    modes = [("untraced", False)] + [(m, a) for a in (False, True) for m in MODES]
    with tempfile.TemporaryDirectory() as workdir:
        for calls in args.calls:
            for mode, captured in modes:
                runs = [measure(mode, captured, calls, workdir) for _ in range(args.repeat)]
                rss = statistics.median(r for r, _ in runs)
                hwm = statistics.median(h for _, h in runs)
                shown = "-" if mode == "untraced" else ("captured" if captured else "--no-args")
                print(f"| {calls:,} | {mode} | {shown} | {rss:.0f} | {hwm:.0f} |", flush=True)


if __name__ == "__main__":
    main()
