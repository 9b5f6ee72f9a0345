"""The column checks of pattern groups (otel_tracer/trace/plain_groups.py) agree
with the per-group checks they stand in for: whatever one accepts, the other
accepts, on real groups and on groups with any member replaced or removed."""

from __future__ import annotations

import copy
import json

import pytest
from conftest import json_positions, traced_loops
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import otel_tracer
from otel_tracer.trace import checks
from otel_tracer.trace.plain_groups import PlainGroups
from otel_tracer.trace.save import to_document

FUZZ = settings(
    max_examples=1000,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _edges(n: int, groups: int) -> list[int]:
    return [-1, 0, 1, 2, 3, n - 1, n, n + 1, groups, groups + 1, 2**63, 2**64]


def _values(n: int, groups: int) -> st.SearchStrategy:
    """Replacement members of other kinds: lists, entries, wrong types."""
    edges = _edges(n, groups)
    return st.one_of(
        st.none(),
        st.booleans(),
        st.just([]),
        st.lists(st.sampled_from(edges), max_size=3),
        st.just({"call": 3}),
        st.just({"group": 1}),
        st.just({"call": 1, "group": 1}),
        st.just({"call": n + 1}),
        st.just({"group": groups + 1}),
        st.text(max_size=2),
    )


@pytest.fixture(scope="module")
def document(tmp_path_factory) -> dict:
    path = traced_loops(tmp_path_factory.mktemp("plain"))
    return version_2(json.loads(path.read_text()), path)


def version_2(document: dict, path) -> dict:
    """The same trace as format 2 wrote it: every group an object (the checks of
    ``PlainGroups`` are those of reading format 2 files)."""
    assert document["version"] == 3
    groups = list(otel_tracer.load(path).patterns.section["groups"])
    document["version"] = 2
    del document["patterns"]["layouts"]
    document["patterns"]["groups"] = groups
    return document


def _size(document: dict) -> tuple[int, int]:
    return len(document["calls"]), len(document["threads"])


def _one_by_one(groups: list, n: int, threads: int) -> bool:
    try:
        for i, group in enumerate(groups):
            checks._check_group(group, i, groups, n, threads)
    except (ValueError, TypeError, KeyError):
        return False
    return True


def _columns(groups: list, n: int, threads: int) -> bool | None:
    plain = PlainGroups.of(groups)
    return None if plain is None else plain.fit(n, threads)


def test_real_groups_take_the_column_path(document, tmp_path) -> None:
    groups = document["patterns"]["groups"]
    assert any(len(g["variants"]) > 1 for g in groups) and any(g["groups"] for g in groups)
    assert any("group" in e for g in groups for e in g["template"])
    n, threads = _size(document)
    assert _columns(groups, n, threads) is True
    assert _one_by_one(groups, n, threads)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(document))
    loaded = otel_tracer.load(path)
    assert loaded.patterns.section["groups"] == groups
    assert to_document(loaded)["version"] == 3  # written again: folded again, as format 3


@FUZZ
@given(data=st.data())
def test_mangled_groups_get_the_same_answer(document, data) -> None:
    groups = copy.deepcopy(document["patterns"]["groups"])
    n, threads = _size(document)
    for _ in range(data.draw(st.integers(1, 2))):
        group = data.draw(st.sampled_from(groups)) if groups else None
        if not isinstance(group, dict) or not group:
            break
        key = data.draw(st.sampled_from(sorted(group)))
        where = data.draw(st.sampled_from([(key,), *json_positions(group[key], (key,))]))
        *outer, last = where
        container = group
        for step in outer:
            container = container[step]
        action = data.draw(st.sampled_from(["edge", "edge", "edge", "list", "value", "remove"]))
        edges = st.sampled_from(_edges(n, len(groups)))
        if action == "edge":  # mostly the integers that sit on a range's edges
            container[last] = data.draw(edges)
        elif action == "list":
            container[last] = data.draw(st.lists(edges, max_size=2))
        elif action == "value":
            container[last] = data.draw(_values(n, len(groups)))
        elif isinstance(container, dict):
            del container[last]
        else:
            container.pop(last)
    slow = _one_by_one(groups, n, threads)
    fast = _columns(groups, n, threads)
    if fast is True:
        assert slow, "the columns accepted groups the per-group checks reject"
    if fast is False:
        assert not slow, "the columns rejected groups the per-group checks accept"


def test_every_member_on_every_edge(document) -> None:
    """Each integer of the groups set to each edge value, each list emptied, each
    member removed, one at a time: both checks give the same answer every time."""
    groups = document["patterns"]["groups"]
    n, threads = _size(document)
    edits = 0
    for where in list(json_positions(groups)):
        *outer, last = where
        original = groups
        for step in outer:
            original = original[step]
        value = original[last]
        if type(value) is int:
            replacements = _edges(n, len(groups))
        elif isinstance(value, list):
            replacements = [[], [value[0]] if value else [1]]
        else:
            replacements = [None]
        for replacement in [*replacements, _REMOVE]:
            edited = copy.deepcopy(groups)
            container = edited
            for step in outer:
                container = container[step]
            if replacement is _REMOVE:
                del container[last]
            else:
                container[last] = replacement
            assert _columns(edited, n, threads) in (None, _one_by_one(edited, n, threads)), where
            edits += 1
    assert edits > 1000


_REMOVE = object()
