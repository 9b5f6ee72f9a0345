"""Start-up cost: how long a traced process takes to reach the program's first
line, against the same program untraced (and under VizTracer when installed).

    python benchmarks/startup.py [--repeat 15]

Each run is a fresh process; the program prints ``time.time()`` as its first
line and exits; the runner takes the time just before starting it. Runs of the
tools are interleaved and the medians reported, with the added start-up
(traced median - untraced median)."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROGRAM = "import time\nprint(time.time())\n"


def commands(program: str, out: str) -> dict[str, list[str]]:
    python = sys.executable
    tools = {
        "untraced": [python, program],
        "otel-tracer": [python, "-m", "cli.main", "-q", "-o", f"{out}/t.json", program],
    }
    try:
        import viztracer  # noqa: F401
    except ImportError:
        pass
    else:
        tools["viztracer"] = [python, "-m", "viztracer", "--quiet", "-o", f"{out}/v.json", program]
    return tools


def first_line_delay(command: list[str]) -> float:
    """Seconds from starting ``command`` to its program's first line (with
    bytecode caches written and used, as for users)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    started = time.time()
    output = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
    return float(output.split()[0]) - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        program = str(Path(out) / "first_line.py")
        Path(program).write_text(PROGRAM)
        tools = commands(program, out)
        samples: dict[str, list[float]] = {name: [] for name in tools}
        for command in tools.values():
            first_line_delay(command)  # warm the file cache and .pyc files
        for _ in range(args.repeat):
            for name, command in tools.items():
                samples[name].append(first_line_delay(command))
    base = statistics.median(samples["untraced"])
    print(f"Python {sys.version.split()[0]}, median of {args.repeat} runs")
    print(f"{'tool':<14} {'first line s':>12} {'added s':>8}")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:<14} {median:>12.3f} {median - base:>8.3f}")


if __name__ == "__main__":
    main()
