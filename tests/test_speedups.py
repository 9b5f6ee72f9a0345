"""The optional C post-processing speedups give the same results as the pure
Python/numpy paths they replace."""

from __future__ import annotations

import os

import numpy as np
import orjson
import pytest
from conftest import run_tracer, write_files
from hypothesis import given, settings
from hypothesis import strategies as st

import otel_tracer
from otel_tracer.trace import build, events
from otel_tracer.trace import save as json_trace

if build.pair_events is None and os.environ.get("OTEL_TRACER_ALLOW_NO_C") == "1":
    pytest.skip("C speedups not built (OTEL_TRACER_ALLOW_NO_C=1)", allow_module_level=True)


@st.composite
def event_streams(draw) -> np.ndarray:
    """Well-formed interleavings of nested calls in a few threads; some calls
    are left open at the end (unfinished)."""
    n_threads = draw(st.integers(1, 4))
    open_counts = [0] * n_threads
    rows = []
    for t in range(draw(st.integers(0, 200))):
        thread = draw(st.integers(0, n_threads - 1))
        if open_counts[thread] and draw(st.booleans()):
            kind = draw(st.sampled_from([events.RETURN, events.YIELD, events.RAISE]))
            open_counts[thread] -= 1
        else:
            kind = draw(st.sampled_from([events.CALL, events.RESUME, events.EXTERNAL]))
            open_counts[thread] += 1
        rows.append((events.head(kind, thread, draw(st.integers(0, 5))), 1000 + t, t % 7))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


@settings(max_examples=200, deadline=None)
@given(event_streams())
def test_native_pairing_matches_numpy(ev):
    kind = ev[:, 0] & events.KIND_MASK
    opening = np.isin(kind, events.OPENING)
    positions = np.flatnonzero(opening)
    native = build._link_native(ev, kind, opening, positions)
    numpy = build._link_numpy(ev, kind, opening, positions)
    for a, b in zip(native, numpy, strict=True):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=200, deadline=None)
@given(event_streams())
def test_native_call_table_matches_numpy(ev):
    """The call columns built in one C pass are those of the numpy path, every
    column (span ids aside: random), unfinished calls and all."""
    native = build._pair_events(ev, 10**6)
    saved = build.build_calls
    build.build_calls = None
    try:
        numpy = build._pair_events(ev, 10**6)
    finally:
        build.build_calls = saved
    for name in build.Calls.__dataclass_fields__:
        if name != "span_id":
            a, b = getattr(native, name), getattr(numpy, name)
            assert a.dtype == b.dtype, name
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_native_json_matches_python_json(tmp_path, monkeypatch):
    write_files(
        tmp_path,
        {
            "prog.py": """
                import json
                def gen():
                    yield "a\\u00e9\\"<x>"
                def bad():
                    raise KeyError("k")
                def f(x, *a, **k):
                    list(gen())
                    json.dumps([x])
                    try:
                        bad()
                    except KeyError:
                        pass
                    return {"r": x}
                for i in range(3):
                    f(i, 2, z="q")
            """
        },
    )
    assert run_tracer(["-q", "prog.py", "-o", "t.json"], tmp_path).returncode == 0
    trace = otel_tracer.load(tmp_path / "t.json")
    native = json_trace.dumps(trace)
    with monkeypatch.context() as patch:  # rows encoded a few at a time, as for 10^8 calls
        patch.setattr(json_trace, "CHUNK_ROWS", 4)
        assert len(trace) > 8 and json_trace.dumps(trace) == native
    monkeypatch.setattr(json_trace, "encode_calls", None)
    python = json_trace.dumps(trace)
    assert orjson.loads(native) == orjson.loads(python)
    assert native == python


@st.composite
def call_trees(draw) -> tuple[np.ndarray, np.ndarray]:
    """Parents (each before its call, -1 for a root) and functions of a random forest."""
    n = draw(st.integers(0, 300))
    parent = np.full(n, -1, dtype=np.int64)
    for i in range(1, n):
        parent[i] = draw(st.integers(-1, i - 1))
    function = np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), np.int32)
    return parent, function


@settings(max_examples=150, deadline=None)
@given(call_trees())
def test_shapes_in_c_equal_the_numpy_passes(tree):
    """patterns.shapes: the C two-pass hashes and the counting-sort child index and
    depth levels give what the numpy passes give."""
    from trace_builder import build_trace

    from otel_tracer.trace import model
    from patterns import shapes

    parent, function = tree
    trace = build_trace([])
    n = len(parent)
    depth = np.zeros(n, dtype=np.int32)
    for i in range(n):
        depth[i] = depth[parent[i]] + 1 if parent[i] >= 0 else 0
    calls = trace.calls
    trace.calls = type(calls)(
        parent=parent,
        depth=depth,
        function=function,
        thread=np.zeros(n, np.int32),
        start=np.arange(n, dtype=np.int64),
        end=np.arange(n, dtype=np.int64) + 1,
        args=np.full(n, -1, np.int32),
        value=np.full(n, -1, np.int32),
        exception=np.full(n, -1, np.int32),
        flags=np.zeros(n, np.uint8),
        span_id=np.arange(1, n + 1, dtype=np.uint64),
        raise_line=np.zeros(n, np.int32),
        task=np.full(n, -1, np.int32),
    )
    fast = shapes.compute_shapes(trace)
    fast_children = model.bucket_rows(parent + 1, n + 1)
    saved = shapes.subtree_hashes, model.bucket_order
    try:
        shapes.subtree_hashes = model.bucket_order = None
        slow = shapes.compute_shapes(trace)
        slow_children = model.bucket_rows(parent + 1, n + 1)
    finally:
        shapes.subtree_hashes, model.bucket_order = saved
    for a, b in [(fast.size, slow.size), (fast.last, slow.last), (fast.shape, slow.shape)]:
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert [x.tolist() for x in fast.levels] == [x.tolist() for x in slow.levels]
    for a, b in zip(fast_children, slow_children, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


keys = st.lists(st.integers(-3, 3) | st.sampled_from([2**62, -(2**63)]), max_size=12)


@settings(max_examples=400, deadline=None)
@given(keys, keys, st.integers(0, 14))
def test_edit_distances_in_c_equal_the_python_ones(a, b, limit):
    """patterns/near.py's bounded edit distance and prefix distances."""
    from patterns import near

    assert near.distance is not near._distance  # the C one, built
    assert near.distance(tuple(a), tuple(b), limit) == near._distance(tuple(a), tuple(b), limit)
    assert near.distance(a, tuple(b), limit) == near._distance(a, tuple(b), limit)
    assert near.prefix_distances(tuple(a), b) == near._prefix_distances(tuple(a), b)


@settings(max_examples=400, deadline=None)
@given(keys, st.lists(st.integers(-3, 3), min_size=1, max_size=3), st.data())
def test_anchor_search_in_c_equals_the_python_one(values, anchor, data):
    """patterns/near.py's search for a loop body's first steps, both directions."""
    from patterns import near

    assert near._find_anchor is not near._find_anchor_python  # the C one, built
    lo = data.draw(st.integers(0, len(values)))
    hi = data.draw(st.integers(lo, len(values)))
    for step in (1, -1):
        found = near._find_anchor(values, tuple(anchor), lo, hi, step)
        assert found == near._find_anchor_python(values, tuple(anchor), lo, hi, step)


@st.composite
def loops_with_noise(draw) -> tuple[list[int], list[int]]:
    """Keys of a loop body repeated with edits (insertions, deletions and
    substitutions), and a seed: bounds of some consecutive iterations in it."""
    body = draw(st.lists(st.integers(0, 4), min_size=1, max_size=7))
    keys: list[int] = draw(st.lists(st.integers(0, 4), max_size=5))
    starts = []
    for _ in range(draw(st.integers(1, 8))):
        starts.append(len(keys))
        iteration = list(body)
        for _ in range(draw(st.integers(0, 2))):
            where = draw(st.integers(0, len(iteration)))
            edit = draw(st.sampled_from(["insert", "delete", "replace"]))
            if edit == "insert" or not iteration:
                iteration.insert(where, draw(st.integers(0, 5)))
            elif edit == "delete":
                del iteration[min(where, len(iteration) - 1)]
            else:
                iteration[min(where, len(iteration) - 1)] = draw(st.integers(0, 5))
        keys.extend(iteration)
    keys.extend(draw(st.lists(st.integers(0, 4), max_size=5)))
    starts.append(len(keys))
    cuts = sorted(set(draw(st.lists(st.integers(0, len(keys)), min_size=2, max_size=5))))
    if len(cuts) < 2 or draw(st.booleans()):  # a seed on the loop's own iterations
        first = draw(st.integers(0, len(starts) - 2))
        last = draw(st.integers(first + 1, len(starts) - 1))
        cuts = [s for s in starts[first : last + 1]]
    cuts = sorted(set(cuts))
    if len(cuts) < 2:
        cuts = [0, len(keys)] if keys else [0, 1]
    return keys or [0], cuts


@settings(max_examples=1500, deadline=None)
@given(loops_with_noise())
def test_near_repeat_growth_in_c_equals_the_python_one(case):
    """patterns/near.py's growth of one seed over its neighbouring iterations."""
    from patterns import near

    keys, seed = case
    assert near._grow_seed_c is not None  # the C one, built
    expected = near.merge_near(keys, [list(seed)])[0]
    assert near._grow_seed_c(np.array(keys, dtype=np.int64), list(seed)) == expected


@settings(max_examples=800, deadline=None)
@given(st.lists(st.integers(0, 3) | st.sampled_from([2**62, -(2**63)]), max_size=47), st.data())
def test_tandem_runs_in_c_equal_the_python_ones(values, data):
    """patterns/tandem.py's runs of a short sequence (its _find_runs_small)."""
    from patterns import tandem

    assert tandem._find_runs_small_c is not None  # the C one, built
    max_period = data.draw(st.integers(1, 30))
    keys = np.array(values, dtype=np.int64)
    expected = tandem._find_runs_small(values, max_period)
    assert tandem._find_runs_small_c(keys, max_period) == expected
    if len(values) < tandem._NUMPY_FROM:
        assert tandem.find_runs(keys, max_period) == expected


@st.composite
def iterations(draw) -> tuple[np.ndarray, list[int]]:
    """A signature (one int64 per unit, or two) and the bounds of consecutive
    iterations over it, some of them alike."""
    body = st.lists(st.integers(0, 2), min_size=1, max_size=4)
    bodies = draw(st.lists(body, min_size=1, max_size=4))
    picks = draw(st.lists(st.integers(0, len(bodies) - 1), min_size=1, max_size=12))
    units: list[int] = [9] * draw(st.integers(0, 2))  # units before the first iteration
    bounds = [len(units)]
    for pick in picks:
        units.extend(bodies[pick])
        bounds.append(len(units))
    signature = np.array(units, dtype=np.int64)
    if draw(st.booleans()):  # match="function": (layout, size) per unit
        signature = np.stack((signature, signature % 2), axis=1)
    return signature, bounds


@settings(max_examples=800, deadline=None)
@given(iterations())
def test_iteration_variants_in_c_equal_the_python_ones(case):
    """patterns/fold.py's variants of a group's iterations."""
    from patterns import fold

    signature, bounds = case
    assert fold._variants_c is not None  # the C one, built
    first, last = bounds[0], bounds[-1]
    data = signature[first:last].tobytes()
    row = len(data) // (last - first)
    variant_of, firsts = fold._variants_c(data, row, bounds)
    expected_of, expected_firsts = fold._iteration_variants_py(data, row, bounds)
    assert np.frombuffer(variant_of, dtype=np.int32).tolist() == expected_of.tolist()
    assert firsts == expected_firsts
    shortcut_or_not = fold._iteration_variants(signature, bounds)
    assert shortcut_or_not[0].tolist() == expected_of.tolist()
    assert shortcut_or_not[1] == expected_firsts
