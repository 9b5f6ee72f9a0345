"""Behaviour preserved on real programs (the quick ones, run on every Python):
each program runs untraced and under ``python -m cli.main`` on every recording
core, and must print the same stdout and stderr, exit with the same status and
write the same files (tests/real_programs/harness.py); its trace must hold real
calls of the scope. The slow cases (library test suites, PyTorch) are in
test_real_libraries.py and test_real_torch.py, marked ``slow``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import MONITORING_CORES
from real_programs.harness import (
    PROGRAMS,
    Run,
    assert_same_behaviour,
    note_timing,
    require_module,
    run,
    show_timings,
    traced_command,
)
from real_programs.traces import call_counts, check_trace

import otel_tracer

Untraced = Callable[[list[str]], Run]  # the untraced fixture: a program's untraced run

CONCURRENCY = PROGRAMS / "concurrency"
OWN_HOOKS = PROGRAMS / "own_hooks"
HOOK_SECTIONS = ["setprofile", "bdb", "settrace", "cprofile", "coverage"]
NOT_RECORDED = {
    "sys.setprofile": "calls made while it was replaced were not recorded",
    "sys.settrace": "the exceptions that ended calls made while it was replaced were not recorded",
}


def warning(hook: str, threads: int) -> str:
    """The tracer's warning about its ``hook`` replaced by the program in ``threads`` threads."""
    where = f"{threads} thread{'' if threads == 1 else 's'}"
    return (
        f"otel-tracer: warning: the program replaced the tracer's hook ({hook}) in {where}; "
        + NOT_RECORDED[hook]
    )


def expected_warnings(core: str, sections: list[str]) -> tuple[str, ...]:
    """What the tracer must say about the program's hooks in ``sections``: which of
    its hooks they replace, in how many threads. The sys.monitoring core shares
    nothing with sys.setprofile and sys.settrace, and from 3.12 cProfile is a
    sys.monitoring tool."""
    if core in MONITORING_CORES:
        return ()
    replaced = {
        "setprofile": {"sys.setprofile": 1},  # a call counter, put back after
        "bdb": {"sys.settrace": 1},  # set_trace and runcall, removed after
        "settrace": {"sys.settrace": 1},  # a line counter, put back after
        "cprofile": {"sys.setprofile": 1} if sys.version_info < (3, 12) else {},
        "coverage": {"sys.settrace": 2},  # this thread's and the measured thread's
    }
    threads = {"sys.setprofile": 0, "sys.settrace": 0}
    for section in sections:
        for hook, count in replaced[section].items():
            threads[hook] = max(threads[hook], count)  # each thread counts once
    return tuple(warning(hook, n) for hook, n in threads.items() if n)


# A known bug of following child processes, not to be hidden by this test: it
# fails on anything else.
@pytest.fixture(scope="module", autouse=True)
def _timings(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    show_timings(request.config)


@pytest.fixture(scope="module")
def untraced(tmp_path_factory: pytest.TempPathFactory) -> Untraced:
    """The untraced run of a program, made once per module."""
    runs: dict[tuple[str, ...], Run] = {}

    def get(program: list[str]) -> Run:
        key = tuple(program)
        if key not in runs:
            runs[key] = run(program, tmp_path_factory.mktemp("untraced"))
        return runs[key]

    return get


def traced_like_untraced(
    label: str,
    program: list[str],
    core: str,
    cwd: Path,
    untraced: Untraced,
    tracer_lines: tuple[str, ...] | None = (),
) -> Run:
    """The program run under the tracer (``core``) in ``cwd``, its time noted
    against the untraced run's; both must succeed and behave alike, the tracer
    printing only ``tracer_lines`` (None: not checked)."""
    plain = untraced(program)
    result = run(traced_command(program, ["--core", core]), cwd)
    note_timing(f"{label} [{core}]", plain, result)
    assert plain.returncode == 0, plain.describe()
    assert_same_behaviour(plain, result, tracer_lines)
    return result


def test_threads_and_asyncio(tmp_path: Path, core: str, untraced: Untraced) -> None:
    """A thread pool, producer/consumer threads, an asyncio pipeline (tasks, an
    async generator, a queue, cancellation, a timeout, to_thread) and an event
    loop in a thread of its own."""
    program = [str(CONCURRENCY / "threads_asyncio.py"), "12"]
    result = traced_like_untraced("threads_asyncio", program, core, tmp_path, untraced)
    assert set(result.files) == {"report.json"}
    expected = {
        "word_counts": 4,
        "consume": 2,
        "square_later": 14,
        "numbers": 12,
        "never_finishes": 2,
        "checksum": 1,
        "loop_in_thread": 1,
    }
    check_trace(result.trace_path, 0, CONCURRENCY, expected, min_calls=100, min_threads=5)


def test_multiprocessing_pool(tmp_path: Path, core: str, untraced: Untraced) -> None:
    """multiprocessing.Pool (the default start method and spawn) mapping functions
    of the script. Only the parent's trace is checked here: the worker processes'
    traces are the business of the child-process tests."""
    program = [str(CONCURRENCY / "pool_program.py"), "12"]
    result = traced_like_untraced("pool_program", program, core, tmp_path, untraced, None)
    # the only line allowed: a spawn worker still starting when the pool was
    # terminated (on a busy machine) is named, having recorded nothing
    lost = "the program started left no trace"
    assert all(lost in line for line in result.tracer_lines()), result.tracer_lines()
    assert set(result.files) == {"results.txt"}
    check_trace(result.trace_path, 0, CONCURRENCY, {"use_pool": 2, "main": 1}, min_calls=3)


def expect_known_difference(request: pytest.FixtureRequest, core: str, section: str) -> None:
    """Known differences, to be fixed in the cores: the test must fail (strict)."""
    # bdb switches f_trace_lines back on itself from 3.13; the C core leaves it
    # alone from 3.12, the Python core switches it off in in-scope frames
    lines_off = (core == "python" and sys.version_info < (3, 13)) or (
        core == "c" and sys.version_info < (3, 12)
    )
    if section == "bdb" and lines_off:
        reason = (
            "a debugger started in a running frame (bdb/pdb set_trace, breakpoint()) gets no "
            "line events in the frames the core had already seen: the core switched their "
            "f_trace_lines off, and bdb switches it back on only from Python 3.13"
        )
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


@pytest.mark.parametrize("section", HOOK_SECTIONS)
def test_program_with_its_own_hooks(
    request: pytest.FixtureRequest, tmp_path: Path, core: str, section: str, untraced: Untraced
) -> None:
    """A program installing its own sys.setprofile / sys.settrace function (a call
    counter, a bdb debugger, a line counter, cProfile, coverage.py with a thread)
    behaves as untraced, each section in a run of its own."""
    if section == "coverage":
        require_module("coverage")
    expect_known_difference(request, core, section)
    program = [str(OWN_HOOKS / "own_hooks.py"), section]
    label, warnings = f"own_hooks {section}", expected_warnings(core, [section])
    result = traced_like_untraced(label, program, core, tmp_path, untraced, warnings)
    assert set(result.files) == {"hooks-done.txt"}


def test_own_hooks_all_at_once(tmp_path: Path, core: str, untraced: Untraced) -> None:
    """Every section in one run (but bdb's, see expect_known_difference): the
    program behaves as untraced; the tracer says once per hook what it could not
    record, and records the rest: the calls in coverage.py's thread (the main
    thread is not recorded after cProfile.disable() removed the profile hook up to
    3.11), and with the sys.monitoring core, which shares no hook with the program,
    everything."""
    require_module("coverage")
    sections = [s for s in HOOK_SECTIONS if s != "bdb"]
    program = [str(OWN_HOOKS / "own_hooks.py"), *sections]
    warnings = expected_warnings(core, sections)
    result = traced_like_untraced("own_hooks all", program, core, tmp_path, untraced, warnings)
    counts = call_counts(otel_tracer.load(result.trace_path))
    assert counts["call_counter"] == counts["line_counter"] == 1
    assert counts["scaled"] == 1  # in the thread coverage.py measures
    if core in MONITORING_CORES:
        assert counts["measured"] == counts["after_hooks"] == 1
        assert counts["fib"] >= 41 + 109 + 13  # those made under the program's hooks too
