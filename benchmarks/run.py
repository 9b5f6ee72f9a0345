"""Benchmark otel-tracer against no tracing, cProfile and VizTracer.

Every measurement is one whole process, start to exit (trace file written),
timed from ``Popen`` to ``os.wait4``, which also yields the child's own peak RSS.
Tools are interleaved within each repetition and the median is reported.

    python benchmarks/run.py                      # everything, 5 repetitions
    python benchmarks/run.py --quick              # small sizes, 3 repetitions
    python benchmarks/run.py --workloads fib,oo --tools untraced,c,viztracer --json out.json

See ``benchmarks/README.md`` for the columns and the methodology.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import importlib.util
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKLOAD_DIR = HERE / "workloads"
PY = sys.executable

# name -> (script, full-size argument, --quick argument)
WORKLOADS: dict[str, tuple[str, str, str]] = {
    "fib": ("fib.py", "27", "22"),
    "oo": ("oo.py", "6000", "1500"),
    "library_heavy": ("library_heavy.py", "130", "25"),
    "threaded": ("threaded.py", "23", "19"),
}
TOOLS = (
    "untraced",
    "c",
    "python",
    "noargs",
    "monitoring",
    "pymonitoring",
    "cprofile",
    "viztracer",
)
OUR_TOOLS = ("c", "python", "noargs", "monitoring", "pymonitoring")
TOOL_LABELS = {
    "untraced": "untraced",
    "c": "otel-tracer C core",
    "python": "otel-tracer Python core",
    "noargs": "otel-tracer C core --no-args",
    "monitoring": "otel-tracer sys.monitoring core (C when built)",
    "pymonitoring": "otel-tracer sys.monitoring core in Python",
    "cprofile": "cProfile",
    "viztracer": "VizTracer",
}
VIZTRACER_DEFAULT_ENTRIES = 1_000_000  # VizTracer's default circular buffer size
SEP = "\x1f"  # field separator of the spawner.py protocol

# Targets.
MAX_VS_VIZTRACER = 0.5
# recording ns per call (issue 16): 150 on fib, 300 with argument capture on oo
MAX_NS_PER_CALL = {"fib": 150.0, "oo": 300.0}
MAX_RUNNING_BYTES_PER_CALL = 64.0
MAX_LIBRARY_RATIO = 1.5
CALL_HEAVY = ("fib", "oo", "threaded")


@dataclass
class Sample:
    """One process run."""

    wall_s: float
    maxrss_kib: int
    returncode: int
    trace_bytes: int | None = None


@dataclass
class Row:
    """Everything measured for one (workload, tool) pair."""

    workload: str
    tool: str
    status: str = "ok"  # ok | skipped | failed
    note: str = ""
    samples: list[Sample] = field(default_factory=list)
    calls: int | None = None
    calls_lower_bound: bool = False
    output_checked: bool = False
    running_samples: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float | None = None
    ratio: float | None = None
    ns_per_call: float | None = None
    peak_rss_mib: float | None = None
    peak_bytes_per_call: float | None = None
    running_bytes_per_call: float | None = None
    recording_ns_per_call: float | None = None
    trace_bytes: int | None = None
    disk_bytes_per_call: float | None = None


# --------------------------------------------------------------------------- running


def child_env() -> dict[str, str]:
    """Environment of every child: the repository importable, hashing fixed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env["PYTHONHASHSEED"] = "0"
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    return env


class Launcher:
    """The small ``spawner.py`` process that starts, times and reaps every measured child.

    Children are not started from this process directly: on Linux a child's
    ``ru_maxrss`` is at least the peak RSS of the process that forked it, and this
    runner grows while it reads trace files."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [PY, "-S", str(HERE / "spawner.py")],
            cwd=REPO,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def run(self, argv: list[str], out: Path, err: Path) -> Sample:
        """Run ``argv`` with stdout/stderr to the given files; its Sample."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        fields = [str(out), str(err), *argv]
        if any(SEP in f or "\n" in f for f in fields):
            raise ValueError(f"cannot pass {argv!r} to the launcher")
        self.proc.stdin.write(SEP.join(fields) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline().split()
        if len(reply) != 3:
            raise RuntimeError("the launcher (benchmarks/spawner.py) died")
        return Sample(float(reply[1]), int(reply[2]), int(reply[0]))

    def close(self) -> None:
        """Stop the launcher."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait()


_LAUNCHER: Launcher | None = None


def run_child(argv: list[str], workdir: Path) -> tuple[Sample, str, str]:
    """Run ``argv`` to completion; its wall time, own peak RSS, stdout and stderr."""
    global _LAUNCHER
    if _LAUNCHER is None:
        _LAUNCHER = Launcher()
        atexit.register(_LAUNCHER.close)
    out, err = workdir / "child.stdout", workdir / "child.stderr"
    sample = _LAUNCHER.run(argv, out, err)
    stdout = out.read_text(errors="replace")
    stderr = err.read_text(errors="replace")
    return sample, stdout, stderr


def tool_argv(tool: str, script: Path, args: list[str], output: Path) -> list[str]:
    """The command line measuring ``tool`` on ``script``."""
    ours = [PY, "-m", "cli.main", str(script), "-o", str(output), "-q"]
    if tool == "untraced":
        return [PY, str(script), *args]
    if tool == "c":
        return [*ours, "--core", "c", "--", *args]
    if tool == "python":
        return [*ours, "--core", "python", "--", *args]
    if tool == "noargs":
        return [*ours, "--core", "c", "--no-args", "--", *args]
    if tool in ("monitoring", "pymonitoring"):
        return [*ours, "--core", tool, "--", *args]
    if tool == "cprofile":
        return [PY, "-m", "cProfile", "-o", str(output), str(script), *args]
    if tool == "viztracer":
        return [PY, "-m", "viztracer", "-o", str(output), "--quiet", str(script), *args]
    raise ValueError(f"unknown tool {tool!r}")


def output_name(tool: str) -> str | None:
    """The trace file a tool writes, or None."""
    return {"untraced": None, "cprofile": "out.prof"}.get(tool, f"{tool}.json")


def c_core_problem() -> str | None:
    """None when the C core imports, else why not."""
    check = subprocess.run(
        [PY, "-c", "from otel_tracer.record._ctracer import CCore"],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
    )
    if check.returncode == 0:
        return None
    lines = check.stderr.strip().splitlines()
    return f"C core not built ({lines[-1] if lines else 'import failed'})"


def monitoring_available() -> bool:
    """Whether the children's interpreter has sys.monitoring (Python 3.12+)."""
    return sys.version_info >= (3, 12)


def module_available(name: str) -> bool:
    """Whether ``name`` can be imported by the children (same interpreter)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def skip_reasons(tools: list[str]) -> dict[str, str]:
    """Tools that cannot run here, with the reason."""
    reasons: dict[str, str] = {}
    if any(t in ("c", "noargs") for t in tools):
        problem = c_core_problem()
        if problem:
            reasons.update(c=problem, noargs=problem)
    if not monitoring_available():
        reasons.update(monitoring="sys.monitoring needs Python 3.12+")
        reasons.update(pymonitoring=reasons["monitoring"])
    if "viztracer" in tools and not module_available("viztracer"):
        reasons["viztracer"] = "VizTracer not installed (pip install viztracer)"
    return {t: r for t, r in reasons.items() if t in tools}


# --------------------------------------------------------------------------- counting


def count_our_calls(path: Path) -> int:
    """``metadata.call_count`` of one of our JSON traces (metadata comes first)."""
    with open(path, "rb") as trace:
        head = trace.read(1 << 20).decode(errors="replace")
    found = re.search(r'"call_count"\s*:\s*(\d+)', head)
    if found:
        return int(found.group(1))
    with open(path, encoding="utf-8") as trace:
        return int(json.load(trace)["metadata"]["call_count"])


def count_substring(path: Path, needle: bytes) -> int:
    """Occurrences of ``needle`` in a file, streamed."""
    total, tail = 0, b""
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 24):
            data = tail + chunk  # the tail is too short to hold a whole needle
            total += data.count(needle)
            tail = data[1 - len(needle) :] if len(needle) > 1 else b""
    return total


def count_calls(tool: str, path: Path) -> int | None:
    """Calls recorded in ``tool``'s output file."""
    if tool in OUR_TOOLS:
        return count_our_calls(path)
    if tool == "cprofile":
        import pstats

        return int(pstats.Stats(str(path)).total_calls)  # type: ignore[attr-defined]
    if tool == "viztracer":
        return count_substring(path, b'"ph":"X"')  # complete (function) events
    return None


def result_line(stdout: str) -> str:
    """The workload's one result line (the last non-empty line it printed)."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    return lines[-1] if lines else ""


# --------------------------------------------------------------------------- benchmark


def bench_workload(
    name: str,
    size: str,
    tools: list[str],
    skipped: dict[str, str],
    repeat: int,
    probe: bool,
    workdir: Path,
) -> list[Row]:
    """Measure every tool on one workload; rows in ``tools`` order."""
    script = WORKLOAD_DIR / WORKLOADS[name][0]
    rows = {t: Row(name, t) for t in tools}
    for tool, reason in skipped.items():
        rows[tool].status, rows[tool].note = "skipped", reason
    active = [t for t in tools if rows[t].status == "ok"]
    # Warm-up (file cache, .pyc files); its result line is what every tool must print.
    warm, warm_out, warm_err = run_child(tool_argv("untraced", script, [size], workdir), workdir)
    if warm.returncode != 0:
        raise RuntimeError(f"{script.name} {size} failed untraced: {warm_err.strip()[-300:]}")
    expected = result_line(warm_out)
    probe_modes = [t for t in active if t in OUR_TOOLS]
    probe_modes = ["none", *probe_modes] if probe and probe_modes else []
    probes: dict[str, list[dict[str, Any]]] = {m: [] for m in probe_modes}
    for rep in range(repeat):
        shift = rep % max(1, len(active))
        order = active[shift:] + active[:shift]  # rotate so no tool always runs first
        for tool in order:
            row = rows[tool]
            if row.status != "ok":
                continue
            out_name = output_name(tool)
            output = workdir / (out_name or "none")
            output.unlink(missing_ok=True)
            sample, stdout, stderr = run_child(tool_argv(tool, script, [size], output), workdir)
            print(
                f"  {name:<14} {tool:<10} rep {rep + 1}/{repeat}: {sample.wall_s:7.3f} s",
                file=sys.stderr,
                flush=True,
            )
            if sample.returncode != 0:
                row.status = "failed"
                row.note = f"exit {sample.returncode}: {stderr.strip()[-300:]}"
                continue
            line = result_line(stdout)
            if line != expected:
                row.note = f"output differs from untraced: {line[:80]!r}"
            row.output_checked = True
            if out_name is not None:
                if not output.exists():
                    row.status, row.note = "failed", f"no output file {output.name}"
                    continue
                sample.trace_bytes = output.stat().st_size
                if row.calls is None:
                    row.calls = count_calls(tool, output)
                output.unlink()
            row.samples.append(sample)
        turn = rep % max(1, len(probe_modes))
        for mode in probe_modes[turn:] + probe_modes[:turn]:
            reading = run_probe(mode, script, size, workdir)
            if reading is not None:
                probes[mode].append(reading)
    finish_rows(rows, probes)
    return [rows[t] for t in tools]


def run_probe(mode: str, script: Path, size: str, workdir: Path) -> dict[str, Any] | None:
    """One in-process memory reading (see memprobe.py), or None if it failed."""
    result = workdir / f"probe-{mode}.json"
    result.unlink(missing_ok=True)
    argv = [PY, str(HERE / "memprobe.py"), mode, str(result), str(script), size]
    sample, _, stderr = run_child(argv, workdir)
    if sample.returncode != 0 or not result.exists():
        print(f"  memory probe {mode} failed: {stderr.strip()[-300:]}", file=sys.stderr)
        return None
    reading = json.loads(result.read_text())
    result.unlink()
    return reading


def finish_rows(rows: dict[str, Row], probes: dict[str, list[dict[str, Any]]]) -> None:
    """Medians and derived per-call figures."""
    for row in rows.values():
        if row.samples:
            row.wall_s = statistics.median(s.wall_s for s in row.samples)
            row.peak_rss_mib = statistics.median(s.maxrss_kib for s in row.samples) / 1024
            sizes = [s.trace_bytes for s in row.samples if s.trace_bytes is not None]
            row.trace_bytes = int(statistics.median(sizes)) if sizes else None
        if row.tool == "viztracer" and row.calls is not None:
            row.calls_lower_bound = row.calls >= VIZTRACER_DEFAULT_ENTRIES
    base = rows.get("untraced")
    base_probe = probes.get("none") or []
    for row in rows.values():
        if row.wall_s is None:
            continue
        if row.calls:
            if row.trace_bytes is not None:
                row.disk_bytes_per_call = row.trace_bytes / row.calls
        if base is None or base.wall_s is None or row.tool == "untraced":
            continue
        assert base.peak_rss_mib is not None
        row.ratio = row.wall_s / base.wall_s
        if row.calls:
            row.ns_per_call = (row.wall_s - base.wall_s) * 1e9 / row.calls
            extra_kib = (row.peak_rss_mib - base.peak_rss_mib) * 1024
            row.peak_bytes_per_call = extra_kib * 1024 / row.calls
        readings = probes.get(row.tool) or []
        if readings and base_probe:
            row.running_samples = readings
            traced = statistics.median(r["before_stop_kib"] for r in readings)
            untraced = statistics.median(r["before_stop_kib"] for r in base_probe)
            calls = statistics.median(r["calls"] for r in readings)
            if calls:
                row.running_bytes_per_call = (traced - untraced) * 1024 / calls
                run_s = statistics.median(r["run_s"] for r in readings)
                base_s = statistics.median(r["run_s"] for r in base_probe)
                row.recording_ns_per_call = (run_s - base_s) * 1e9 / calls
    if base is not None and base_probe:
        base.running_samples = base_probe


# --------------------------------------------------------------------------- reporting


def fmt(value: float | int | None, spec: str, suffix: str = "") -> str:
    """``value`` formatted, or '-'."""
    return "-" if value is None else f"{value:{spec}}{suffix}"


def fmt_size(size: int | None) -> str:
    """A byte count in KiB/MiB."""
    if size is None:
        return "-"
    if size >= 1 << 20:
        return f"{size / (1 << 20):.1f} MiB"
    return f"{size / 1024:.1f} KiB"


COLUMNS = (
    "workload",
    "tool",
    "wall s (median)",
    "x untraced",
    "recorded calls",
    "ns / call",
    "recording ns / call",
    "peak RSS MiB",
    "+B / call (peak)",
    "+B / call (running)",
    "trace file",
    "B / call on disk",
)


def table(rows: list[Row]) -> str:
    """All rows as one markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for row in rows:
        label = TOOL_LABELS[row.tool]
        if row.status != "ok" or row.wall_s is None:
            cells = [row.workload, label, f"{row.status}: {row.note}".replace("|", "/")]
            cells += ["-"] * (len(COLUMNS) - len(cells))
        else:
            calls = fmt(row.calls, ",") + ("*" if row.calls_lower_bound else "")
            cells = [
                row.workload,
                label,
                fmt(row.wall_s, ".3f"),
                fmt(row.ratio, ".2f", "x"),
                calls,
                fmt(row.ns_per_call, ",.0f"),
                fmt(row.recording_ns_per_call, ",.0f"),
                fmt(row.peak_rss_mib, ".1f"),
                fmt(row.peak_bytes_per_call, ",.0f"),
                fmt(row.running_bytes_per_call, ",.0f"),
                fmt_size(row.trace_bytes),
                fmt(row.disk_bytes_per_call, ",.0f"),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass
class Target:
    """One PASS/MISS line."""

    name: str
    workload: str
    value: str
    limit: str
    passed: bool | None  # None: not measured

    def line(self) -> str:
        """Printable form."""
        verdict = {True: "PASS", False: "MISS", None: "n/a "}[self.passed]
        return f"- {verdict}  {self.name} [{self.workload}]: {self.value} (target {self.limit})"


def targets(rows: list[Row]) -> tuple[str, list[Target]]:
    """Evaluate the targets on our default mode (arguments recorded): the
    sys.monitoring core from 3.12, else the C core."""
    by_key = {(r.workload, r.tool): r for r in rows}
    ours = "c"
    if any(r.tool == "monitoring" and r.wall_s is not None for r in rows):
        ours = "monitoring"
    elif not any(r.tool == "c" and r.wall_s is not None for r in rows):
        ours = "python"
    label = TOOL_LABELS[ours]
    if ours == "python":
        label += " (C core not measured; the targets are meant for the C core)"
    found: list[Target] = []

    def get(workload: str, tool: str) -> Row | None:
        row = by_key.get((workload, tool))
        return row if row is not None and row.wall_s is not None else None

    for workload in ("fib", "oo"):
        mine, viz = get(workload, ours), get(workload, "viztracer")
        if (workload, ours) not in by_key:
            continue
        if mine and viz and viz.wall_s:
            share = mine.wall_s / viz.wall_s  # type: ignore[operator]
            value = f"{mine.wall_s:.3f} s vs VizTracer {viz.wall_s:.3f} s = {share:.2f}x"
            found.append(
                Target(
                    "end-to-end time vs VizTracer",
                    workload,
                    value,
                    f"<= {MAX_VS_VIZTRACER}x",
                    share <= MAX_VS_VIZTRACER,
                )
            )
        else:
            found.append(
                Target(
                    "end-to-end time vs VizTracer",
                    workload,
                    "not measured",
                    f"<= {MAX_VS_VIZTRACER}x",
                    None,
                )
            )
    for workload, limit in MAX_NS_PER_CALL.items():
        if (workload, ours) not in by_key:
            continue
        mine = get(workload, ours)
        ns = mine.recording_ns_per_call if mine else None
        found.append(
            Target(
                "recording cost per recorded call (while running, in process)",
                workload,
                fmt(ns, ",.0f", " ns") if ns is not None else "not measured",
                f"<= {limit:.0f} ns",
                None if ns is None else ns <= limit,
            )
        )
    for workload in CALL_HEAVY:
        if (workload, ours) not in by_key:
            continue
        mine = get(workload, ours)
        running = mine.running_bytes_per_call if mine else None
        peak = mine.peak_bytes_per_call if mine else None
        value = fmt(running, ",.0f", " B while running")
        if running is None:
            value = "running not measured"
        value += f"; end-to-end peak incl. building the output: {fmt(peak, ',.0f', ' B')}"
        found.append(
            Target(
                "extra memory per recorded call",
                workload,
                value,
                f"< {MAX_RUNNING_BYTES_PER_CALL:.0f} B while running",
                None if running is None else running < MAX_RUNNING_BYTES_PER_CALL,
            )
        )
    if ("library_heavy", ours) in by_key:
        mine = get("library_heavy", ours)
        ratio = mine.ratio if mine else None
        found.append(
            Target(
                "time vs untraced",
                "library_heavy",
                fmt(ratio, ".2f", "x untraced") if ratio is not None else "not measured",
                f"<= {MAX_LIBRARY_RATIO}x",
                None if ratio is None else ratio <= MAX_LIBRARY_RATIO,
            )
        )
    return label, found


def environment() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": PY,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        info["loadavg_at_start"] = os.getloadavg()
    except OSError:
        pass
    if shutil.which("git"):
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
        info["git_head"] = head.stdout.strip() or None
    try:
        import viztracer

        info["viztracer"] = viztracer.__version__
    except ImportError:
        info["viztracer"] = None
    return info


def parse_list(text: str, allowed: tuple[str, ...] | list[str], what: str) -> list[str]:
    """A comma-separated list, checked against ``allowed`` and kept in ``allowed`` order."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in items if t not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return [t for t in allowed if t in items]


def parse_cli(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated, from {','.join(WORKLOADS)}",
    )
    parser.add_argument(
        "--tools", default=",".join(TOOLS), help=f"comma-separated, from {','.join(TOOLS)}"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="repetitions per tool; the median is reported (default 5, 3 quick)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small workload sizes and 3 repetitions: a smoke run"
    )
    parser.add_argument("--json", metavar="PATH", help="save the raw results as JSON")
    parser.add_argument(
        "--no-probe",
        action="store_true",
        help="skip the in-process 'memory while running' measurement",
    )
    opts = parser.parse_args(argv)
    opts.workloads = parse_list(opts.workloads, list(WORKLOADS), "workload")
    opts.tools = parse_list(opts.tools, TOOLS, "tool")
    if opts.repeat is None:
        opts.repeat = 3 if opts.quick else 5
    if opts.repeat < 1:
        parser.error("--repeat must be >= 1")
    return opts


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table and the targets, optionally save JSON."""
    opts = parse_cli(argv)
    tools: list[str] = opts.tools
    if "untraced" not in tools:
        tools = ["untraced", *tools]  # every ratio needs the baseline
    skipped = skip_reasons(tools)
    for tool, reason in skipped.items():
        print(f"note: skipping {TOOL_LABELS[tool]}: {reason}")
    env = environment()
    print(
        f"python {env['python']} on {env['platform']}, {env['cpu_count']} CPUs; "
        f"repeat {opts.repeat}{' (quick sizes)' if opts.quick else ''}",
        flush=True,
    )
    rows: list[Row] = []
    sizes = {}
    with tempfile.TemporaryDirectory(prefix="otel-bench-") as tmp:
        for name in opts.workloads:
            sizes[name] = WORKLOADS[name][2 if opts.quick else 1]
            print(f"{name} ({WORKLOADS[name][0]} {sizes[name]})", flush=True)
            rows += bench_workload(
                name, sizes[name], tools, skipped, opts.repeat, not opts.no_probe, Path(tmp)
            )
    print()
    print(table(rows))
    lower = [r for r in rows if r.calls_lower_bound]
    if lower:
        print(
            f"\n* VizTracer's circular buffer ({VIZTRACER_DEFAULT_ENTRIES:,} entries by "
            "default) filled up: older events were overwritten, so its call count is a lower "
            "bound and its per-call figures are upper bounds."
        )
    if any(r.tool == "cprofile" and r.workload == "threaded" and r.wall_s for r in rows):
        print(
            "\nNote: cProfile profiles only the thread that starts it, so on 'threaded' it "
            "misses the worker threads' calls (its per-call figures there are meaningless)."
        )
    notes = [r for r in rows if r.status == "ok" and r.note]
    for row in notes:
        print(f"note: {row.workload} / {TOOL_LABELS[row.tool]}: {row.note}")
    label, found = targets(rows)
    if found:
        print(f"\nTargets ({label}):")
        for target in found:
            print(target.line())
    if opts.json:
        payload = {
            "environment": env,
            "repeat": opts.repeat,
            "quick": opts.quick,
            "sizes": sizes,
            "skipped": skipped,
            "rows": [asdict(r) for r in rows],
            "targets_for": label,
            "targets": [asdict(t) for t in found],
        }
        Path(opts.json).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"\nraw results: {opts.json}")
    return 1 if any(r.status == "failed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
