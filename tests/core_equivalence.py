"""What the equivalence tests of the recording cores share (test_ccore.py,
test_moncore.py): every core records what the pure-Python core records.

The cores: ``python`` (otel_tracer/record/pycore.py, the reference, on the profile
API), ``c`` (the same in C), and from Python 3.12 the sys.monitoring cores
``pymonitoring`` (otel_tracer/record/moncore.py) and ``monitoring`` (the same in C,
otel_tracer/record/_cmoncore.h). A program runs under each with the same options; the
traces must have the same calls, per thread and in order, with the same
function, parent, depth, flags, arguments, return value, exception, raise line
and asyncio task (times differ): exactly for the C cores and their Python reference, and
for the monitoring cores and PythonCore but where PythonCore is wrong
(``pycore_misreads``).
"""

from __future__ import annotations

import gc
import runpy
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from conftest import c_core_built

from otel_tracer.record.options import RecordOptions
from otel_tracer.record.recorder import Recorder, core_class
from otel_tracer.record.scope import Scope
from otel_tracer.trace.model import RAISED, RESUMED, YIELDED, Trace

MONITORING = sys.version_info >= (3, 12)

OPTIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "no_externals": {"external_calls": False},
    "builtins": {"include_builtins": True},
    "no_args": {"capture_args": False},
    "max_depth": {"max_depth": 2},
    "max_calls": {"max_calls": 12},
}


def compared_cores() -> list[str]:
    """The cores compared with ``python`` here: the C ones when built (test_ccore.py
    fails when they are not), the sys.monitoring ones from 3.12."""
    built = c_core_built()
    cores = ["c"] if built else []
    if MONITORING:
        cores += ["pymonitoring", "monitoring"] if built else ["pymonitoring"]
    return cores


def cases(programs: list[str]) -> list[Any]:
    """(program, option) for every program and option set."""
    params = []
    for program in programs:
        for option in OPTIONS:
            marks = []
            if program == "threads" and option == "max_calls":
                # the call budget is shared by threads: who uses it up depends on scheduling
                marks.append(pytest.mark.skip(reason="scheduling-dependent"))
            params.append(pytest.param(program, option, marks=marks, id=f"{program}-{option}"))
    return params


def record(scope: Path, main: Path, core: str, **options: Any) -> tuple[Recorder, Trace]:
    """Run ``main`` as __main__ under a Recorder on ``core`` (``scope`` in scope);
    returns it and its Trace."""
    recorder = Recorder(Scope([str(scope)]), RecordOptions(**options), core=core)
    gc.collect()  # no finalizer of an earlier run's objects runs while recording
    recorder.start()
    try:
        runpy.run_path(str(main), run_name="__main__")
    except Exception:  # the program's own uncaught exception
        pass
    finally:
        recorder.stop()
    return recorder, recorder.build()


Call = tuple[Any, ...]


def structure(trace: Trace) -> dict[str, list[Call]]:
    """Per thread name, the calls in start order with everything but times;
    a call's parent is given as its position in the thread's list."""
    calls: dict[str, list[Call]] = defaultdict(list)
    position: dict[int, int] = {}
    tasks: dict[str | None, int] = {None: -1}  # task names by first appearance
    for row in range(len(trace)):
        thread = trace.threads[int(trace.calls.thread[row])].name
        function = trace.function_of(row)
        parent = int(trace.calls.parent[row])
        position[row] = len(calls[thread])
        calls[thread].append(
            (
                function.qualname,
                function.module,
                function.external,
                function.argnames,
                int(trace.calls.depth[row]),
                position[parent] if parent >= 0 else -1,
                int(trace.calls.flags[row]),
                trace.args_of(row),
                trace.value_of(row),
                trace.exception_of(row),
                int(trace.calls.raise_line[row]),
                tasks.setdefault(trace.task_of(row), len(tasks)),  # Task-N counts per process
            )
        )
    return dict(calls)


def pycore_misreads(py: Call, mon: Call) -> bool:
    """The differences allowed: where PythonCore is wrong and a monitoring core
    right, both on an exception thrown into a suspended generator (``throw()``,
    ``close()``, or ``close()`` when an unfinished generator is freed):

    * PythonCore tells how a frame left from its last instruction, and a generator
      that does not catch the thrown exception leaves from its ``yield``: without
      its trace hook, which only watches in-scope frames, it records a yield of
      None (seen for library generators, external calls);
    * PythonCore before its ``is_resumption`` fix took a throw on 3.12 for a
      fresh call, with arguments.
    """
    if py[:6] != mon[:6] or (py[6] ^ mon[6]) & ~(RESUMED | YIELDED | RAISED):
        return False
    py_flags, mon_flags = py[6], mon[6]
    if mon_flags & RAISED and not py_flags & RAISED:
        if not (py_flags & YIELDED and py[8] in ("None", None) and py[9] is None):
            return False  # only "yielded None" may stand for the exception
        py_flags = py_flags & ~YIELDED | RAISED
    if sys.version_info < (3, 13) and mon_flags & RESUMED and not py_flags & RESUMED:
        py_flags |= RESUMED
        if mon[7] != {}:
            return False
    elif py[7] != mon[7]:
        return False
    return py_flags == mon_flags and (bool(mon_flags & RAISED) or py[8:] == mon[8:])


def assert_same_calls(py_trace: Trace, mon_trace: Trace) -> None:
    """A monitoring core's trace has PythonCore's calls (``pycore_misreads`` aside)."""
    py_calls, mon_calls = structure(py_trace), structure(mon_trace)
    assert sorted(py_calls) == sorted(mon_calls)
    for thread, calls in py_calls.items():
        assert len(calls) == len(mon_calls[thread]), thread
        for py, mon in zip(calls, mon_calls[thread], strict=True):
            assert py == mon or pycore_misreads(py, mon), (thread, py, mon)


def assert_cores_agree(scope: Path, main: Path, option: str, monitoring_like_python: bool) -> None:
    """Run ``main`` untraced (lazy initialisation in the libraries it uses happens
    there), then under every core with OPTIONS[option], and compare the traces:
    ``c`` with ``python`` exactly, the C monitoring core with the Python one
    exactly, and those with ``python`` when ``monitoring_like_python`` (not for
    programs that replace the profile/trace hooks, which sys.monitoring ignores)."""
    try:
        runpy.run_path(str(main), run_name="__main__")
    except Exception:
        pass
    options = OPTIONS[option]
    py_recorder, py_trace = record(scope, main, "python", **options)
    assert len(py_trace) > 0
    traces = {"python": (py_recorder, py_trace)}
    for core in compared_cores():
        recorder, trace = record(scope, main, core, **options)
        assert trace.meta["core"] == recorder.core.name == core_class(core).name
        traces[core] = recorder, trace
    pairs = [("c", "python", True), ("monitoring", "pymonitoring", True)]
    if monitoring_like_python:
        pairs += [("pymonitoring", "python", False), ("monitoring", "python", False)]
    for core, reference, exact in pairs:
        if core not in traces:
            continue
        (recorder, trace), (expected_recorder, expected) = traces[core], traces[reference]
        if exact:
            assert structure(trace) == structure(expected), (core, reference)
        else:
            assert_same_calls(expected, trace)
        assert recorder.core.dropped == expected_recorder.core.dropped, (core, reference)
        assert trace.meta["dropped_calls"] == expected.meta["dropped_calls"]
