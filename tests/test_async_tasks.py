"""The asyncio task of each coroutine resumption (issue 19): recorded by every
core, saved as ``tasks``, shown in the tree, the spans, Perfetto and the viewer,
without running the program's code (a Task subclass's ``get_name``) and without
changing what the program prints."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import conftest
import jsonschema
import pytest

import otel_tracer
from otel_tracer.spans.sdk import TASK, CallAttributes
from otel_tracer.trace.model import RESUMED, Trace
from otel_tracer.trace.tree import call_label

REPO = Path(__file__).resolve().parent.parent
PROGRAM = REPO / "tests" / "programs" / "async_tasks.py"
SCHEMA = json.loads((REPO / "otel_tracer/trace/schema/trace-v3.schema.json").read_text())


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )


def traced(tmp_path: Path, core: str) -> tuple[Trace, str]:
    out = tmp_path / "trace.json"
    result = run(
        [sys.executable, "-m", "cli.main", "-q", "--core", core, "-o", str(out), str(PROGRAM)]
    )
    return otel_tracer.load(out), result.stdout


def tasks_of_resumptions(trace: Trace) -> Counter:
    return Counter(
        (trace.function_of(row).name, trace.task_of(row))
        for row in range(len(trace))
        if trace.calls.flags[row] & RESUMED
    )


@pytest.mark.parametrize("core", conftest.CORES)
def test_each_resumption_names_its_task(tmp_path: Path, core: str) -> None:
    trace, stdout = traced(tmp_path, core)
    assert stdout == run([sys.executable, str(PROGRAM)]).stdout  # get_name not called
    seen = tasks_of_resumptions(trace)
    for task in ("worker-a", "worker-b"):
        assert seen[("worker", task)] == 4 and seen[("fetch", task)] == 4
    assert seen[("loud", "custom")] == 1  # a Task subclass: the name it was given
    assert seen[("numbers", "Task-1")] == 4  # an async generator, in asyncio.run's task
    assert seen[("by_hand", None)] == 1  # driven by hand: no event loop, no task
    assert seen[("__await__", None)] == 1  # a plain generator never gets one
    calls = [row for row in range(len(trace)) if not trace.calls.flags[row] & RESUMED]
    assert all(trace.task_of(row) is None for row in calls)


def test_tasks_are_saved_and_shown(tmp_path: Path) -> None:
    trace, _ = traced(tmp_path, "auto")
    document = json.loads((tmp_path / "trace.json").read_text())
    jsonschema.validate(document, SCHEMA)
    named = {(call_id, document["strings"][index]) for call_id, index in document["tasks"]}
    assert named == {
        (row + 1, trace.task_of(row)) for row in range(len(trace)) if trace.task_of(row)
    }
    worker = next(
        row for row in range(len(trace))
        if trace.function_of(row).name == "worker" and trace.task_of(row) == "worker-b"
    )  # fmt: skip
    assert "(resumed in task worker-b)" in call_label(trace, worker)
    attributes = CallAttributes(trace)
    assert attributes.of(worker)[TASK] == "worker-b"
    first = next(row for row in range(len(trace)) if trace.function_of(row).name == "worker")
    assert TASK not in attributes.of(first)


def test_perfetto_shows_the_task(tmp_path: Path) -> None:
    """(The viewer's details: test_viewer_browser.py, which runs the browser, and
    with it Playwright's event loop, after the tests that run asyncio here.)"""
    from test_perfetto import decode

    out = tmp_path / "trace.json"
    command = [sys.executable, "-m", "cli.main", "-q", "-o", str(out)]
    run([*command, "-o", str(tmp_path / "trace.pftrace"), str(PROGRAM)])
    trace = otel_tracer.load(out)
    slices = decode(tmp_path / "trace.pftrace").calls()
    assert slices[worker_a_fetch(trace) + 1].args[TASK] == "worker-a"
    assert all(
        (TASK in item.args) == (trace.task_of(call_id - 1) is not None)
        for call_id, item in slices.items()
    )


def worker_a_fetch(trace: Trace) -> int:
    """A resumption of ``fetch`` in the task ``worker-a``."""
    return next(
        row for row in range(len(trace))
        if trace.function_of(row).name == "fetch" and trace.task_of(row) == "worker-a"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda tasks, strings: {"a": 1}, "tasks must be a list"),
        (lambda tasks, strings: [[tasks[0][0]]], "tasks must be a list"),
        (lambda tasks, strings: [[tasks[0][0], "worker-a"]], "tasks must be a list"),
        (lambda tasks, strings: [[10**6, 0]], "call id that is not in calls"),
        (lambda tasks, strings: [[tasks[0][0], strings]], "not in strings"),
        (lambda tasks, strings: [tasks[0], tasks[0]], "in call order"),
        (lambda tasks, strings: [[1, tasks[0][1]]], "no resumption"),
    ],
)
def test_bad_tasks_are_one_line(tmp_path: Path, change, message) -> None:
    traced(tmp_path, "auto")
    document = json.loads((tmp_path / "trace.json").read_text())
    document["tasks"] = change(document["tasks"], len(document["strings"]))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document))
    with pytest.raises(otel_tracer.TraceFormatError, match=message) as error:
        otel_tracer.load(bad)
    assert "\n" not in str(error.value)
