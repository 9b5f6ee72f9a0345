"""The folding a trace was saved with, rebuilt from its groups (patterns/restore.py)
instead of folding again: the same folding as folding again, and a fresh fold
whenever the saved groups do not describe the trace."""

from __future__ import annotations

import copy
import json

import pytest
from conftest import json_positions, traced_loops
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_patterns_properties import assert_same_folding

from otel_tracer.trace.format import TraceFormatError, from_document
from patterns.engine import fold_trace
from patterns.fold import FoldOptions
from patterns.render import grouped_lines
from patterns.restore import restored_folding, saved_or_folded


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict:
    return json.loads(traced_loops(tmp_path_factory.mktemp("restore")).read_text())


def test_the_saved_folding_is_the_folding(saved) -> None:
    trace = from_document(copy.deepcopy(saved))
    assert_same_folding(restored_folding(trace, FoldOptions()), fold_trace(trace))


def test_other_options_fold_again(saved) -> None:
    trace = from_document(copy.deepcopy(saved))
    assert restored_folding(trace, FoldOptions(near=False)) is None
    exact = saved_or_folded(trace, FoldOptions(near=False))
    assert_same_folding(exact, fold_trace(trace, FoldOptions(near=False)))


def test_groups_that_disagree_with_the_marks_fold_again(saved) -> None:
    """An iteration moved to another variant: the file still loads, the calls'
    variant marks no longer agree, so the trace is folded again."""
    doc = copy.deepcopy(saved)
    layout = next(la for la in doc["patterns"]["layouts"] if len(la["variants"]) > 1)
    moved = layout["variants"][1]["iterations"].pop()
    layout["variants"][0]["iterations"].append(moved)
    trace = from_document(doc)
    assert restored_folding(trace, FoldOptions()) is None
    assert_same_folding(saved_or_folded(trace, FoldOptions()), fold_trace(trace))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_edited_groups_never_break_the_view(saved, data) -> None:
    """Any integer of the saved groups changed: the file is refused in one line,
    or its grouped view is that of a folding whose marks are the file's."""
    doc = copy.deepcopy(saved)
    section = doc["patterns"]
    positions = [p for p in json_positions(section) if p[0] in ("layouts", "groups")]
    *outer, last = data.draw(st.sampled_from(positions))
    container = section
    for step in outer:
        container = container[step]
    if type(container[last]) is not int:
        return
    container[last] = data.draw(st.integers(-1, len(doc["calls"]) + 1))
    try:
        trace = from_document(doc)
    except TraceFormatError:
        return
    folding = saved_or_folded(trace, FoldOptions())
    assert folding.group.tolist() == trace.patterns.group.tolist() or (
        restored_folding(trace, FoldOptions()) is None
    )
    assert list(grouped_lines(folding))
