"""Run a real program untraced and under the tracer, and compare what it did.

A program is ``[script, *args]`` or ``["-m", module, *args]``. Each run gets a
working directory of its own; what the program wrote there (files created or
changed, by relative path and content) is compared, except the tracer's own
files, whose names start with the trace output's stem (``trace.json``, the
``trace.<pid>.*`` files of the recording and of followed processes).
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent
TRACE = "trace.json"
TRACER_FILES = "trace."  # the prefix of every file the tracer writes next to TRACE
TRACER_LINE = "otel-tracer: "  # the tracer's own stderr lines
# Set by CI's slow step: a missing optional dependency fails instead of skipping.
REQUIRED_ENV = "OTEL_TRACER_REAL_REQUIRED"


class TimedOut(AssertionError):
    """A run did not end in time (it was killed, with every process it started)."""


@dataclass
class Run:
    """One run of a program: what it printed, its exit status and the files it wrote."""

    command: list[str]
    cwd: Path
    returncode: int
    stdout: str
    stderr: str
    files: dict[str, bytes]
    seconds: float

    @property
    def trace_path(self) -> Path:
        return self.cwd / TRACE

    def program_stderr(self) -> str:
        """stderr without the tracer's own lines."""
        return "".join(
            line
            for line in self.stderr.splitlines(keepends=True)
            if not line.startswith(TRACER_LINE)
        )

    def tracer_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith(TRACER_LINE)]

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.command)}  (in {self.cwd})\n"
            f"exit status {self.returncode}\n--- stderr (last 3000 characters) ---\n"
            f"{self.stderr[-3000:]}"
        )


@dataclass
class Timing:
    """A case's untraced and traced run times, with notes (counts, calls recorded)."""

    label: str
    untraced: float
    traced: float
    notes: list[str]


TIMINGS: list[Timing] = []  # the cases not yet shown by show_timings


def note_timing(label: str, plain: Run, traced: Run) -> Timing:
    """Note the times of a case's two runs (shown by show_timings)."""
    timing = Timing(label, plain.seconds, traced.seconds, [])
    TIMINGS.append(timing)
    return timing


def last_timing() -> Timing:
    """The case noted last (to add notes to)."""
    return TIMINGS[-1]


def require(condition: bool, reason: str) -> None:
    """Skip the test when ``condition`` is false, or fail it when CI requires
    every real program to run (``OTEL_TRACER_REAL_REQUIRED=1``)."""
    if condition:
        return
    if os.environ.get(REQUIRED_ENV) == "1":
        pytest.fail(f"{reason} (required: {REQUIRED_ENV}=1)")
    pytest.skip(reason)


def require_module(name: str) -> None:
    """Skip (or fail, see ``require``) unless module ``name`` can be imported."""
    try:
        __import__(name)
    except ImportError as error:
        require(False, f"{name} is not installed ({error}); pip install -e '.[real]'")


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> content), but the tracer's."""
    files = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and not relative.startswith(TRACER_FILES):
            files[relative] = path.read_bytes()
    return files


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The same environment for both runs: this repository importable (for
    ``-m cli.main``), a fixed hash seed, no bytecode written into shared trees, and
    none of this test run's pytest options (``PYTEST_ADDOPTS``) in the library
    suites' pytest runs."""
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def run(
    command: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> Run:
    """Run ``python command...`` in ``cwd``; records the files it created or changed
    there. A run past ``timeout`` seconds is killed with every process it started:
    TimedOut."""
    cwd.mkdir(parents=True, exist_ok=True)
    before = snapshot(cwd)
    started = time.perf_counter()
    with subprocess.Popen(
        [sys.executable, *command],
        cwd=cwd,
        env=environment(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, to kill on a time-out
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            left = processes_of_session(process.pid)
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            raise TimedOut(
                f"$ python {' '.join(command)}  (in {cwd}) did not end in {timeout} s\n"
                f"--- processes then ---\n{left}\n"
                f"--- stdout ---\n{stdout[-2000:]}\n--- stderr ---\n{stderr[-2000:]}"
            ) from None
    seconds = time.perf_counter() - started
    written = {name: data for name, data in snapshot(cwd).items() if before.get(name) != data}
    return Run(command, cwd, process.returncode, stdout, stderr, written, seconds)


def processes_of_session(session: int) -> str:
    """``ps`` of the processes of a run that timed out (which one hangs, and in
    what kernel wait), to diagnose a hang seen only now and then."""
    try:
        listing = subprocess.run(
            ["ps", "-o", "pid,ppid,stat,wchan:32,etime,args", "-s", str(session)],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as error:
        return f"(ps failed: {error})"
    return listing.stdout.strip() or listing.stderr.strip()


def traced_command(program: list[str], tracer_options: Iterable[str] = ()) -> list[str]:
    """``-m cli.main -q -o trace.json OPTIONS`` before ``program``; every program
    argument reaches it verbatim (after ``--``, or after ``-m module``)."""
    head = ["-m", "cli.main", "-q", "-o", TRACE, *tracer_options]
    if program[0] == "-m":
        return [*head, *program]
    return [*head, "--", *program]


def run_both(
    label: str,
    program: list[str],
    workdir: Path,
    tracer_options: Iterable[str] = (),
    template: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> tuple[Run, Run]:
    """The program run untraced in ``workdir/untraced``, then traced in
    ``workdir/traced``; both start as a copy of ``template`` when given. Their
    times are noted in TIMINGS under ``label``."""
    runs = []
    traced = traced_command(program, tracer_options)
    for name, command in (("untraced", program), ("traced", traced)):
        cwd = workdir / name
        if template is not None:
            shutil.copytree(template, cwd)
        runs.append(run(command, cwd, env, timeout))
    note_timing(label, runs[0], runs[1])
    return runs[0], runs[1]


def show_timings(config: pytest.Config) -> None:
    """Print the times of the runs made since the last call (pytest's terminal)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not TIMINGS:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line("real programs, seconds untraced -> traced:")
        for t in TIMINGS:
            notes = "".join(f"; {note}" for note in t.notes)
            ratio = t.traced / t.untraced
            reporter.write_line(
                f"  {t.label}: {t.untraced:.1f} -> {t.traced:.1f} ({ratio:.1f}x){notes}"
            )
    TIMINGS.clear()


def unified(expected: str, actual: str, label: str) -> str:
    """A short unified diff of two texts (untraced, traced)."""
    lines = difflib.unified_diff(
        expected.splitlines(),
        actual.splitlines(),
        f"{label} untraced",
        f"{label} traced",
        lineterm="",
        n=2,
    )
    return "\n".join(list(lines)[:80])


def behaviour_differences(
    plain: Run, traced: Run, compare_stdout: bool = True, compare_stderr: bool = True
) -> list[str]:
    """How the traced run differed from the untraced one: exit status, stdout,
    stderr (the tracer's own lines aside) and files written; empty when alike."""
    differences = []
    if plain.returncode != traced.returncode:
        differences.append(f"exit status: untraced {plain.returncode}, traced {traced.returncode}")
    if compare_stdout and plain.stdout != traced.stdout:
        differences.append(unified(plain.stdout, traced.stdout, "stdout"))
    if compare_stderr and plain.stderr != traced.program_stderr():
        differences.append(unified(plain.stderr, traced.program_stderr(), "stderr"))
    if plain.files.keys() != traced.files.keys():
        differences.append(
            f"files written: untraced {sorted(plain.files)}, traced {sorted(traced.files)}"
        )
    changed = [
        n for n in plain.files.keys() & traced.files.keys() if plain.files[n] != traced.files[n]
    ]
    if changed:
        differences.append(f"files with other contents: {sorted(changed)}")
    return differences


def assert_same_behaviour(
    plain: Run, traced: Run, tracer_lines: tuple[str, ...] | None = (), **compare: bool
) -> None:
    """Fail with the differences (and both commands) unless the runs behaved alike
    and the tracer printed ``tracer_lines`` on stderr (by default none: no warning;
    None: not checked)."""
    differences = behaviour_differences(plain, traced, **compare)
    said = tuple(traced.tracer_lines())
    if tracer_lines is not None and said != tracer_lines:
        differences.append(f"the tracer said {said}, expected {tracer_lines}")
    if differences:
        pytest.fail(
            "the traced run behaved differently:\n"
            + "\n".join(differences)
            + f"\n\nuntraced: {plain.describe()}\ntraced: {traced.describe()}",
            pytrace=False,
        )
    assert traced.trace_path.is_file(), f"no trace written\n{traced.describe()}"


# pytest's outcome lines under -rA ("PASSED tests/x.py::test_y", "FAILED ... - message")
_OUTCOME = re.compile(
    r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS|SUBPASSED|SUBFAILED|SUBSKIPPED)\b(.*?)(?: - .*)?$"
)
_DURATION = re.compile(r" in [0-9.]+s( \([0-9:]+\))?")


def pytest_outcomes(stdout: str) -> tuple[list[str], str]:
    """The per-test outcome lines of a ``pytest -q -rA`` run (without failure
    messages) and its final counts line (without the duration): what must match
    between two runs of a test suite, whose output also holds timings and
    object addresses."""
    lines = stdout.splitlines()
    counts = _DURATION.sub("", lines[-1]) if lines else ""
    outcomes = []
    if "short test summary info" in stdout:
        summary = stdout[stdout.index("short test summary info") :].splitlines()[1:-1]
        outcomes = [m.group(1) + m.group(2) for line in summary if (m := _OUTCOME.match(line))]
    return outcomes, counts


def passed_count(counts: str) -> int:
    """N of the "N passed" in a pytest counts line (0 when none passed)."""
    found = re.search(r"(\d+) passed", counts)
    return int(found.group(1)) if found else 0
