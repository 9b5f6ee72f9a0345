"""The line each call was at when an exception ended it (``raise_line``, issue
18): the raise site for the innermost call, the line of the call it propagated
from for the others, exactly as Python's own traceback shows them. A real
program (tests/programs/raise_sites.py) writes its tracebacks' frames while it
runs under each core; the trace's lines and the spans' ``exception.stacktrace``
must match them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import conftest
import numpy as np
import pytest

import otel_tracer
from otel_tracer.spans.sdk import exception_attributes
from otel_tracer.trace.model import RAISED, Trace

REPO = Path(__file__).resolve().parent.parent
PROGRAM = REPO / "tests" / "programs" / "raise_sites.py"


def traced_run(tmp_path: Path, core: str) -> tuple[Trace, list[list[list]]]:
    """The trace of the program under ``core`` and the frames its tracebacks had."""
    out, frames = tmp_path / "trace.json", tmp_path / "frames.json"
    command = [sys.executable, "-m", "cli.main", "-q", "--core", core, "-o", str(out)]
    subprocess.run([*command, str(PROGRAM), str(frames)], cwd=REPO, check=True, timeout=120)
    return otel_tracer.load(out), json.loads(frames.read_text())


def case_runs(trace: Trace) -> list[int]:
    """The calls of the program's ``run(case)``, in order."""
    return [
        r for r in range(len(trace))
        if trace.function_of(r).qualname == "run" and trace.function_of(r).module == "__main__"
    ]  # fmt: skip


def unwound(trace: Trace, row: int) -> list[int]:
    """The calls under ``row`` that the exception which ended its last raising
    child unwound, outermost first (following C calls, as the spans do)."""
    chain, exception = [], None
    while True:
        children = [
            int(c)
            for c in trace.children_of(row)
            if trace.calls.flags[c] & RAISED
            and (exception is None or trace.calls.exception[c] == exception)
        ]
        if not children:
            return chain
        row = children[-1]
        exception = trace.calls.exception[row]
        chain.append(row)


def in_program(frames: list[list]) -> list[list]:
    """``[line, function]`` of the frames in the program's own file."""
    return [[line, name] for file, line, name in frames if file == str(PROGRAM)]


@pytest.mark.parametrize("core", conftest.CORES)
def test_raise_lines_are_the_lines_python_shows(tmp_path: Path, core: str) -> None:
    trace, expected = traced_run(tmp_path, core)
    runs = case_runs(trace)
    assert len(runs) == len(expected)
    for run, frames in zip(runs, expected, strict=True):
        chain = [r for r in unwound(trace, run) if trace.function_of(r).file == str(PROGRAM)]
        lines = [[int(trace.calls.raise_line[r]), trace.function_of(r).name] for r in chain]
        assert lines == in_program(frames), trace.function_of(chain[0]).name


@pytest.mark.parametrize("core", conftest.CORES)
def test_stacktraces_show_the_frames_python_shows(tmp_path: Path, core: str) -> None:
    trace, expected = traced_run(tmp_path, core)
    runs = case_runs(trace)
    for run, frames in zip(runs, expected, strict=True):
        case = unwound(trace, run)[0]
        text = exception_attributes(trace, case)["exception.stacktrace"]
        shown = [
            [file, int(line), name]
            for file, line, name in (
                (part.split('"')[1], part.split(", line ")[1].split(",")[0], part.split(" in ")[-1])
                for part in text.splitlines()
                if part.startswith('  File "')
            )
        ]
        # every frame shown is one of Python's, in its order (library frames
        # below a recorded external call are not recorded, so may be missing)
        remaining = iter(frames)
        assert all(frame in remaining for frame in shown), (text, frames)
        assert in_program(shown) == in_program(frames)


def test_raise_lines_survive_a_save_and_a_load(tmp_path: Path) -> None:
    trace, _ = traced_run(tmp_path, "auto")
    document = json.loads((tmp_path / "trace.json").read_text())
    rows = np.flatnonzero(trace.calls.raise_line)
    assert document["raise_lines"] == [[int(r) + 1, int(trace.calls.raise_line[r])] for r in rows]
    assert np.all(trace.calls.flags[rows] & RAISED)
