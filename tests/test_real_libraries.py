"""Behaviour preserved on real programs (slow): the test suites of toolz, boltons
and more-itertools, run by pytest untraced and under the tracer with the installed
library as the scope (``python -m cli.main --scope <library> -m pytest ...``).
Both runs must have the same per-test outcomes, the same counts, the same exit
status and the same files written; the trace must hold the library's calls.

Run with ``python -m pytest -m slow`` after ``pip install -e '.[test,real]'``; the
suites of more-itertools and boltons are fetched from PyPI (``pip download``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from real_programs.harness import (
    Run,
    assert_same_behaviour,
    last_timing,
    passed_count,
    pytest_outcomes,
    require,
    require_module,
    run_both,
    show_timings,
)
from real_programs.libraries import LIBRARIES, Library, pytest_command, suite_tree
from real_programs.traces import check_trace

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _timings(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    show_timings(request.config)


def check_outcomes(plain: Run, traced: Run, library: Library) -> None:
    """The same tests with the same outcomes, and the same counts line."""
    plain_outcomes, plain_counts = pytest_outcomes(plain.stdout)
    traced_outcomes, traced_counts = pytest_outcomes(traced.stdout)
    assert passed_count(plain_counts) >= library.min_passed, plain.stdout[-3000:]
    assert traced_counts == plain_counts
    assert traced_outcomes == plain_outcomes


@pytest.mark.parametrize("name", sorted(LIBRARIES))
def test_library_suite(tmp_path: Path, name: str) -> None:
    library = LIBRARIES[name]
    require_module(library.package)
    try:
        tree = suite_tree(library, tmp_path)
    except Exception as error:  # pip download failed: PyPI not reachable
        require(False, f"cannot get the test suite of {name}: {error}")
    package_dir = library.package_dir()
    plain, traced = run_both(
        f"{name} test suite",
        pytest_command(library),
        tmp_path,
        ["--scope", str(package_dir)],
        template=tree,
        timeout=1200,
    )
    assert plain.returncode == 0, plain.describe() + plain.stdout[-3000:]
    check_outcomes(plain, traced, library)
    assert_same_behaviour(plain, traced, compare_stdout=False)
    trace = check_trace(
        traced.trace_path,
        plain.returncode,
        package_dir,
        library.expected_calls,
        library.min_calls,
    )
    last_timing().notes += [pytest_outcomes(plain.stdout)[1], f"{len(trace):,} calls recorded"]
