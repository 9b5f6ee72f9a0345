"""Format 3's pattern groups (otel_tracer/trace/group_table.py): layouts shared by
the instances of a group, one row per instance. Loading checks every reference,
so a mangled file is refused in one line or gives groups whose every call and
group id is in the trace; never a traceback later, when an exporter asks."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from conftest import json_positions, traced_loops
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import otel_tracer
from otel_tracer.trace.format import TraceFormatError, from_document
from otel_tracer.trace.group_table import GroupTable
from otel_tracer.trace.save import to_document

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def document(tmp_path_factory) -> dict:
    return json.loads(traced_loops(tmp_path_factory.mktemp("groups")).read_text())


def sound(document: dict) -> bool:
    """Load ``document``: True when it loads and every group entry's references are
    in the trace (a call's siblings, the group's own nested groups), False when
    it is refused with ``TraceFormatError``; anything else fails the test."""
    try:
        trace = from_document(document)
    except TraceFormatError as error:
        assert "\n" not in str(error)
        return False
    groups = trace.patterns.section["groups"]
    n, calls = len(trace), trace.calls
    for group in groups:
        assert 1 <= group["first"] <= group["last"] <= n
        parent_call = (group["parent_call"] or 0) - 1
        for variant in group["variants"]:
            for entry in variant["entries"]:
                if "call" in entry:
                    row = entry["call"] - 1
                    assert calls.parent[row] == parent_call
                    assert calls.thread[row] == group["thread"]
                else:
                    assert entry["group"] in group["groups"]
        for call in group["iterations"]:
            assert calls.parent[call - 1] == parent_call
        for nested in group["groups"]:
            assert groups[nested - 1]["parent"] == group["id"]
        trace.patterns.attributes_of(group["first"] - 1)
    return True


def test_written_groups_are_layouts_and_rows(document) -> None:
    section = document["patterns"]
    rows, layouts = section["groups"], section["layouts"]
    assert document["version"] == 3 and len(rows) > len(layouts) >= 4
    assert all(len(row) == 6 for row in rows)
    assert any(len(layout["variants"]) > 1 for layout in layouts)
    assert any("group" in e for layout in layouts for e in layout["variants"][0]["entries"])
    assert {row[3] for row in rows} == {0, 1}  # both threads fold
    assert sound(document)


def test_entries_resolve_to_the_calls_they_name(document) -> None:
    """The template of the thread's 12-iteration loop: mid, then leaf, each
    iteration's first step a call of ``mid``."""
    trace = from_document(copy.deepcopy(document))
    table = trace.patterns.section["groups"]
    assert isinstance(table, GroupTable)
    loop = max(table, key=lambda g: (g["repetitions"], g["thread"] == 0))
    assert loop["repetitions"] == 12
    names = [trace.function_of(e["call"] - 1).name for e in loop["template"] if "call" in e]
    assert names[-1] == "leaf" and trace.function_of(loop["iterations"][3] - 1).name == "mid"
    assert table.head(loop["id"] - 1) == {
        k: loop[k]
        for k in ("id", "parent", "parent_call", "thread", "first", "last", "repetitions")
        + ("calls_per_repetition", "total_calls", "near")
    }


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s["groups"][0].__setitem__(0, 10**6), "layout or parent"),
        (lambda s: s["groups"][-1].__setitem__(1, len(s["groups"])), "layout or parent"),
        (lambda s: s["groups"][0].__setitem__(4, 10**9), "calls are not in the trace"),
        (lambda s: s["groups"][0].__setitem__(3, 7), "thread does not exist"),
        (lambda s: s["groups"][0].append(1), "list of 6 integers"),
        (lambda s: s["groups"][0].__setitem__(2, 1.5), "list of 6 integers"),
        (lambda s: s["groups"][0].__setitem__(2, -1), "must not be negative"),
        (lambda s: s["groups"][0].__setitem__(5, 2**64), "out of range"),
        (lambda s: s["layouts"][0]["iterations"].append(10**6), "iterations"),
        (lambda s: s["layouts"][0].pop("near"), "not a layout"),
        (lambda s: s["layouts"].clear(), "layout or parent"),
    ],
)
def test_mangled_groups_are_refused_in_one_line(document, edit, message) -> None:
    doc = copy.deepcopy(document)
    edit(doc["patterns"])
    with pytest.raises(TraceFormatError, match=message):
        from_document(doc)


def test_steps_past_the_siblings_are_refused(document) -> None:
    doc = copy.deepcopy(document)
    for layout in doc["patterns"]["layouts"]:
        layout["variants"][0]["entries"].append({"call": 10**4})
    with pytest.raises(TraceFormatError, match="run past its siblings"):
        from_document(doc)


def test_a_nested_group_must_be_the_groups_own(document) -> None:
    doc = copy.deepcopy(document)
    layout = next(
        la
        for la in doc["patterns"]["layouts"]
        if any("group" in e for e in la["variants"][0]["entries"])
    )
    for entry in layout["variants"][0]["entries"]:
        if "group" in entry:
            entry["group"] += 1
    with pytest.raises(TraceFormatError, match="nested group"):
        from_document(doc)


def test_every_integer_on_every_edge(document) -> None:
    """Each integer of the layouts and rows set to each edge value, one at a time:
    refused in one line, or loaded with every reference in the trace."""
    section = document["patterns"]
    n, groups = len(document["calls"]), len(section["groups"])
    edges = [-1, 0, 1, 2, n - 1, n, n + 1, groups, groups + 1, 2**63, 2**64]
    loaded = edits = 0
    layouts = list(json_positions(section["layouts"], ("layouts",)))
    rows = list(json_positions(section["groups"], ("groups",)))
    for where in layouts[:400] + rows[:400]:
        *outer, last = where
        container = section
        for step in outer:
            container = container[step]
        if type(container[last]) is not int:
            continue
        original = container[last]
        for value in edges:
            container[last] = value
            loaded += sound(document)
            edits += 1
        container[last] = original
    assert sound(document) and edits > 1000 and loaded > 0


@FUZZ
@given(data=st.data())
def test_random_edits_never_crash(document, data) -> None:
    doc = copy.deepcopy(document)
    section = doc["patterns"]
    n = len(doc["calls"])
    values = st.one_of(
        st.integers(-2, n + 2), st.sampled_from([2**63, 2**64, None, True, [], {}, "x", 1.5])
    )
    for _ in range(data.draw(st.integers(1, 3))):
        positions = list(json_positions(section))
        *outer, last = data.draw(st.sampled_from(positions))
        container = section
        for step in outer:
            container = container[step]
        if data.draw(st.booleans()) or not isinstance(container, (list, dict)):
            container[last] = data.draw(values)
        elif isinstance(container, dict):
            del container[last]
        else:
            container.pop(last)
    sound(doc)


def test_rows_round_trip_as_numpy(document, tmp_path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(document))
    trace = otel_tracer.load(path)
    table = trace.patterns.section["groups"]
    assert np.array_equal(table.rows, np.array(document["patterns"]["groups"]))
    again = to_document(trace)
    assert again["patterns"] == document["patterns"]


def test_groups_nested_past_any_real_depth_are_refused(document) -> None:
    """A chain of groups, each inside the previous one among the same siblings,
    deeper than any fold makes (each level repeats at least twice): refused in one
    line, before an exporter would recurse through it."""
    doc = copy.deepcopy(document)
    rows = doc["patterns"]["groups"]
    first = rows[0]
    for _ in range(140):
        rows.append([first[0], len(rows), *first[2:]])
    with pytest.raises(TraceFormatError, match="loops nest over 128 deep"):
        from_document(doc)
    del rows[-140 + 128 :]  # 128 levels deep: at the limit, it loads
    assert sound(doc)
