"""Benchmark what happens to a saved trace after the run: loading it, the grouped
view's statistics and the viewer build, against the traced run that made it.

    python benchmarks/load.py                      # fib(27) and fib(28), medians of 3
    python benchmarks/load.py --fib 27 --repeat 1  # quicker
    python benchmarks/load.py --fib --oo 6000      # only oo (6000 orders): irregular

For each fib(N) (benchmarks/workloads/fib.py) and each oo(N)
(benchmarks/workloads/oo.py, N orders: an irregular trace with tens of thousands of
pattern groups), recording arguments with the default core, it runs the tracer
once per repetition (``-o trace.json -o trace.json.gz``, timed end to end), then
times, each in a fresh process:

* ``load``: ``otel_tracer.load(trace.json)`` in process (``load gz``: the .json.gz);
* ``patterns --stats``: ``python -m patterns trace.json --stats``, end to end;
* ``viewer build``: ``python -m exporters.viewer trace.json -o page.html``, end to end;
* ``viewer served``: ``python -m exporters.viewer trace.json 0`` until it prints
  the address it serves on (then it is stopped);
* ``viewer drawn``: the same command, its page opened in headless Chromium
  (``/usr/bin/chromium`` through Playwright, already running, a fresh context each
  time) as soon as the address is printed: seconds from the command's start until
  the page has drawn the tree (``window.viewerReady``; benchmarks/viewer.py's
  ``served_from_file``). ``--no-browser`` leaves it out.

Peak memory is the process's peak RSS (``wait4``); ``B / call`` is that peak minus
the same command's peak on a 15-call trace (the interpreter and the imports), per
call. Medians over ``--repeat`` runs. See the README's Performance section.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKLOADS = HERE / "workloads"
PY = sys.executable
LOAD = (
    "import sys, time, otel_tracer; t = time.perf_counter(); tr = otel_tracer.load(sys.argv[1]); "
    "print(time.perf_counter() - t, len(tr))"
)


def measured(cmd: list[str], **kw) -> tuple[float, int, str]:
    """(wall seconds, peak RSS bytes, stdout) of ``cmd``; with ``until`` the clock stops,
    and the process is stopped (its peak read from /proc first), once a stdout line
    contains it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    until = kw.get("until")
    out = b""
    wall = None
    if until is not None:
        for line in proc.stdout:
            out += line
            if until in line:
                wall = time.perf_counter() - start
                peak = _vmhwm(proc.pid)
                proc.send_signal(signal.SIGINT)
                break
        proc.communicate()
        return wall, peak, out.decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out = proc.stdout.read()
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {err.decode()[-2000:]}")
    return wall, usage.ru_maxrss * 1024, out.decode()


def _vmhwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def steps(trace: Path, page: Path) -> dict[str, list[str]]:
    return {
        "load": [PY, "-c", LOAD, str(trace)],
        "load gz": [PY, "-c", LOAD, str(trace) + ".gz"],
        "patterns --stats": [PY, "-m", "patterns", str(trace), "--stats", "-q"],
        "viewer build": [PY, "-m", "exporters.viewer", str(trace), "-o", str(page)],
        "viewer served": [PY, "-m", "exporters.viewer", str(trace), "0"],
    }


def trace_cmd(workload: str, n: int, out: Path) -> list[str]:
    script = str(WORKLOADS / f"{workload}.py")
    return [PY, "-m", "cli.main", "-q", script, str(n), "-o", str(out), "-o", f"{out}.gz"]


def step_time(name: str, out: str, wall: float) -> float:
    """The load steps report their own in-process time; the others are end to end."""
    return float(out.split()[0]) if name.startswith("load") else wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fib", type=int, nargs="*", default=[27, 28], help="fib(N) traces")
    parser.add_argument("--oo", type=int, nargs="*", default=[], help="oo traces of N orders")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-browser", action="store_true", help="leave out 'viewer drawn'")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    browser = None
    if not args.no_browser:
        sys.path.insert(0, str(HERE))
        from viewer import Browser, served_from_file  # benchmarks/viewer.py

        browser = Browser(args.chromium, 120)
    with tempfile.TemporaryDirectory(prefix="otel-load-bench-") as tmp:
        tmp = Path(tmp)
        small = tmp / "small.json"
        measured(trace_cmd("fib", 5, small))
        base = {}
        for name, cmd in steps(small, tmp / "small.html").items():
            kw = {"until": b"open  http"} if name == "viewer served" else {}
            base[name] = measured(cmd, **kw)[1]
        print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; medians of {args.repeat}")
        print()
        print("| trace | calls | step | s (median) | x traced run | peak RSS MiB | B / call |")
        print("|---|---|---|---|---|---|---|")
        for workload, n in [*(("fib", n) for n in args.fib), *(("oo", n) for n in args.oo)]:
            trace = tmp / f"{workload}{n}.json"
            label = f"{workload}({n})"
            runs: dict[str, list[tuple[float, int]]] = {}
            calls = 0
            for _ in range(args.repeat):
                wall, peak, _ = measured(trace_cmd(workload, n, trace))
                runs.setdefault("traced run", []).append((wall, peak))
                for name, cmd in steps(trace, tmp / "page.html").items():
                    kw = {"until": b"open  http"} if name == "viewer served" else {}
                    wall, peak, out = measured(cmd, **kw)
                    if name == "load":
                        calls = int(out.split()[1])
                    runs.setdefault(name, []).append((step_time(name, out, wall), peak))
                if browser is not None:
                    result = served_from_file(browser, trace)
                    if "error" in result:
                        raise RuntimeError(f"viewer drawn: {result['error']}")
                    runs.setdefault("viewer drawn", []).append((result["drawn_s"], 0))
            size = trace.stat().st_size
            gz = Path(f"{trace}.gz").stat().st_size
            traced = statistics.median(t for t, _ in runs["traced run"])
            for name, values in runs.items():
                t = statistics.median(v for v, _ in values)
                peak = statistics.median(p for _, p in values)
                per_call = (peak - base[name]) / calls if name in base else None
                ratio = "-" if name == "traced run" else f"{t / traced:.2f}x"
                shown = f"{peak / 2**20:.1f}" if peak else "-"
                print(
                    f"| {label} | {calls:,} | {name} | {t:.3f} | {ratio} | {shown} | "
                    f"{'-' if per_call is None else f'{per_call:,.0f}'} |"
                )
            print(
                f"| {label} | {calls:,} | file size | {size / 2**20:.1f} MiB .json, "
                f"{gz / 2**20:.1f} MiB .json.gz | - | - | "
                f"{size / calls:.1f} / {gz / calls:.1f} B on disk |"
            )
            sys.stdout.flush()
    if browser is not None:
        browser.close()


if __name__ == "__main__":
    main()
