"""How much tracing inflates the durations a trace reports.

``python benchmarks/inflation.py [--repeat N] [--tools A,B] [--json PATH]`` runs two
small programs, each calling a mid-level function ``target()`` (about 1 ms of work)
many times and timing every call itself with ``time.perf_counter_ns``:

* ``calls``: ``target()`` makes 400 in-scope calls to a small function (call-heavy);
* ``library``: ``target()`` makes a few in-scope calls into standard-library code
  (``difflib``, ``textwrap``, ``json``) that makes thousands of calls of its own,
  out of scope (library-heavy).

Each program runs untraced, under otel-tracer (default core, arguments captured;
and with ``--no-args``) and under VizTracer (default settings). The inflation of a
tool is the median duration of ``target`` read from the tool's trace file (ours:
``end - start`` of its calls; VizTracer: ``dur`` of its complete events) over the
median duration the untraced program measured with ``perf_counter_ns`` around its
calls; the same for the fastest 10% of the calls (their 10th percentile: less
affected by a loaded machine, whose preemptions only add time); and the
program-measured median under the tool over the untraced one: what the traced
program itself sees. Runs are interleaved (every tool once, then
again); the ratios are taken within a repetition, and the table shows their median
over the repetitions (and the median durations).

Neither tool subtracts its own overhead from the durations it reports.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = sys.executable

CALLS = """
import json, sys, time

def leaf(i):
    total = 0
    for k in range(40):
        total += (i ^ k) & 7
    return total

def target(n):
    total = 0
    for i in range(n):
        total += leaf(i)
    return total

def main(reps):
    times = []
    for _ in range(reps):
        started = time.perf_counter_ns()
        target(400)
        times.append(time.perf_counter_ns() - started)
    times.sort()
    print(json.dumps({"median_ns": times[len(times) // 2], "p10_ns": times[len(times) // 10]}))

main(int(sys.argv[1]))
"""

LIBRARY = """
import difflib, json, sys, textwrap, time

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu " * 20).split()
LEFT = [" ".join(WORDS[i:i + 6]) for i in range(0, 210, 3)]
RIGHT = [line.replace("eta", "ETA") if i % 3 else line for i, line in enumerate(LEFT)]

def wrap(text):
    return textwrap.fill(text, width=30)

def compare(a, b):
    return difflib.SequenceMatcher(None, a, b).ratio()

def encode(data):
    return json.loads(json.dumps(data, indent=1, sort_keys=True))

def target():
    wrapped = wrap(" ".join(WORDS))
    ratio = compare(LEFT, RIGHT)
    data = encode({"lines": LEFT, "ratio": ratio, "wrapped": wrapped})
    return len(data["lines"])

def main(reps):
    times = []
    for _ in range(reps):
        started = time.perf_counter_ns()
        target()
        times.append(time.perf_counter_ns() - started)
    times.sort()
    print(json.dumps({"median_ns": times[len(times) // 2], "p10_ns": times[len(times) // 10]}))

main(int(sys.argv[1]))
"""

PROGRAMS = {"calls": (CALLS, "300"), "library": (LIBRARY, "200")}
TOOLS = ("untraced", "ours", "ours-noargs", "viztracer")


def child_env() -> dict[str, str]:
    """Environment of every child: the repository importable, hashing fixed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env["PYTHONHASHSEED"] = "0"
    return env


def argv_of(tool: str, script: Path, size: str, output: Path) -> list[str]:
    """The command line running ``script`` under ``tool``."""
    ours = [PY, "-m", "cli.main", str(script), "-o", str(output), "-q"]
    if tool == "untraced":
        return [PY, str(script), size]
    if tool == "ours":
        return [*ours, "--", size]
    if tool == "ours-noargs":
        return [*ours, "--no-args", "--", size]
    if tool == "viztracer":
        return [PY, "-m", "viztracer", "-o", str(output), "--quiet", str(script), size]
    raise ValueError(tool)


def our_durations(path: Path) -> list[int]:
    """Durations (ns) of the ``target`` calls in one of our trace files."""
    sys.path.insert(0, str(REPO))
    import otel_tracer

    trace = otel_tracer.load(path)
    wanted = {i for i, f in enumerate(trace.functions) if f.qualname == "target"}
    calls = trace.calls
    return [
        int(calls.end[row] - calls.start[row])
        for row in range(len(calls))
        if int(calls.function[row]) in wanted
    ]


def viztracer_durations(path: Path) -> list[int]:
    """Durations (ns) of the ``target`` calls in a VizTracer JSON file (``dur`` in us)."""
    events = json.loads(path.read_text())["traceEvents"]
    return [
        round(event["dur"] * 1000)
        for event in events
        if event.get("ph") == "X" and str(event.get("name", "")).startswith("target (")
    ]


def run_once(tool: str, program: str, workdir: Path) -> dict[str, Any]:
    """One run: the program-measured median and the trace's median of ``target``."""
    source, size = PROGRAMS[program]
    script = workdir / f"{program}.py"
    script.write_text(source)
    output = workdir / f"{tool}.json"
    output.unlink(missing_ok=True)
    done = subprocess.run(
        argv_of(tool, script, size, output),
        cwd=workdir,
        env=child_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{tool} on {program} failed: {done.stderr[-2000:]}")
    line = [text for text in done.stdout.splitlines() if text.startswith("{")][-1]
    measured = json.loads(line)
    result: dict[str, Any] = {
        "program_ns": measured["median_ns"],
        "program_p10_ns": measured["p10_ns"],
    }
    if tool != "untraced":
        durations = sorted((viztracer_durations if tool == "viztracer" else our_durations)(output))
        result["trace_ns"] = statistics.median(durations)
        result["trace_p10_ns"] = durations[len(durations) // 10]
        result["traced_calls"] = len(durations)
    return result


def ratio(runs: list[dict[str, Any]], base: list[dict[str, Any]], key: str, base_key: str) -> float:
    """``key`` of each run over ``base_key`` of the untraced run of the same repetition
    (runs close in time), then the median over the repetitions: the machine's load
    drifts between repetitions."""
    return statistics.median(run[key] / ref[base_key] for run, ref in zip(runs, base, strict=True))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per tool (default 5)")
    parser.add_argument("--tools", default=",".join(TOOLS), help="any of " + ",".join(TOOLS))
    parser.add_argument("--programs", default="calls,library", help="any of calls,library")
    parser.add_argument("--json", metavar="PATH", help="save every sample as JSON")
    args = parser.parse_args(argv)
    tools = ["untraced", *(t for t in args.tools.split(",") if t != "untraced")]
    programs = args.programs.split(",")
    for name in [*tools, *programs]:
        if name not in TOOLS and name not in PROGRAMS:
            parser.error(f"unknown tool or program {name!r}")
    if "viztracer" in tools:
        try:
            import viztracer  # noqa: F401
        except ImportError:
            print("viztracer is not installed: skipped", file=sys.stderr)
            tools.remove("viztracer")
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        p: {t: [] for t in tools} for p in programs
    }
    with tempfile.TemporaryDirectory(prefix="otel-inflation-") as tmp:
        for run in range(args.repeat):
            for program in programs:
                for tool in tools:
                    print(f"run {run + 1}/{args.repeat}: {program} {tool}", file=sys.stderr)
                    samples[program][tool].append(run_once(tool, program, Path(tmp)))
    print(f"Python {sys.version.split()[0]}, median of {args.repeat} interleaved runs\n")
    print(
        "| program | tool | target in trace ms | x untraced | x untraced, fastest 10% "
        "| program-measured x untraced |"
    )
    print("|---|---|---|---|---|---|")
    for program in programs:
        base = samples[program]["untraced"]
        base_ms = statistics.median(s["program_ns"] for s in base) / 1e6
        print(f"| {program} | untraced | {base_ms:.3f} (program-measured) | 1.00 | 1.00 | 1.00 |")
        for tool in tools[1:]:
            runs = samples[program][tool]

            trace_ms = statistics.median(s["trace_ns"] for s in runs) / 1e6
            cells = [
                program,
                tool,
                f"{trace_ms:.3f}",
                f"{ratio(runs, base, 'trace_ns', 'program_ns'):.2f}",
                f"{ratio(runs, base, 'trace_p10_ns', 'program_p10_ns'):.2f}",
                f"{ratio(runs, base, 'program_ns', 'program_ns'):.2f}",
            ]
            print(f"| {' | '.join(cells)} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"python": sys.version, "samples": samples}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
