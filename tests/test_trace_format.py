"""The documented JSON trace: schema, round trip and loader errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from conftest import REPO, call_objects, run_tracer, write_files

import otel_tracer
from otel_tracer.trace.save import save, to_document

SCHEMA = json.loads((REPO / "otel_tracer/trace/schema/trace-v3.schema.json").read_text())
V1_SCHEMA = REPO / "otel_tracer/trace/schema/trace-v1.schema.json"

PROGRAM = """
    import json, threading
    class Model:
        def __init__(self, width):
            self.width = width
        def forward(self, x, *rest, scale=1.0, **extra):
            return [v * scale for v in x]
    def gen():
        yield 1
    def fail():
        raise RuntimeError("<script>alert(1)</script>")
    def main(password="hunter2"):
        m = Model(3)
        m.forward([1, 2], 3, scale=2.0, tag="x")
        list(gen())
        json.dumps({"k": 1})
        t = threading.Thread(target=m.forward, args=([1],))
        t.start(); t.join()
        try:
            fail()
        except RuntimeError:
            pass
    main()
"""


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fmt")
    write_files(root, {"prog.py": PROGRAM})
    result = run_tracer(["-q", "prog.py", "-o", "t.json"], root)
    assert result.returncode == 0, result.stderr
    return root / "t.json"


def test_trace_validates_against_schema(trace_file):
    doc = json.loads(trace_file.read_text())
    jsonschema.validate(doc, SCHEMA)
    calls = call_objects(doc)
    assert doc["metadata"]["call_count"] == len(calls)
    assert len({c["span_id"] for c in calls}) == len(calls)


def test_calls_hold_parent_depth_args_and_times(trace_file):
    doc = json.loads(trace_file.read_text())
    calls = call_objects(doc)
    by_id = {c["id"]: c for c in calls}
    for call in calls:
        assert call["start"] <= call["end"]
        if call["parent"] is not None:
            parent = by_id[call["parent"]]
            assert parent["id"] < call["id"]
            assert call["depth"] == parent["depth"] + 1
            assert parent["start"] <= call["start"] and call["end"] <= parent["end"]
        else:
            assert call["depth"] == 0
    fn = {i: f["qualname"] for i, f in enumerate(doc["functions"])}
    forward = next(c for c in calls if fn[c["function"]] == "Model.forward")
    assert forward["args"] == {
        "self": "Model",
        "x": "list(len=2)[1, 2]",
        "rest": "tuple(len=1)[3]",
        "scale": "2.0",
        "extra": "dict(len=1){'tag': 'x'}",
    }
    assert forward["return"] == "list(len=2)[2.0, 4.0]"
    fail = next(c for c in calls if fn[c["function"]] == "fail")
    assert fail["exception"] == {"type": "RuntimeError", "message": "<script>alert(1)</script>"}
    start = doc["metadata"]["start_time_unix_nano"]
    assert all(c["start"] >= start for c in calls)


def test_round_trip_through_loader_is_identical(trace_file, tmp_path):
    trace = otel_tracer.load(trace_file)
    save(trace, tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == json.loads(trace_file.read_text())
    save(trace, tmp_path / "again.json.gz")
    assert to_document(otel_tracer.load(tmp_path / "again.json.gz")) == to_document(trace)


def test_model_children_index(trace_file):
    trace = otel_tracer.load(trace_file)
    for row in range(len(trace)):
        for child in trace.children_of(row):
            assert trace.calls.parent[child] == row
    roots = trace.children_of(-1)
    assert np.all(trace.calls.parent[roots] == -1)
    assert sum(len(trace.children_of(r)) for r in range(len(trace))) + len(roots) == len(trace)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not valid JSON"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not an otel-tracer trace"),
        (b'{"format": "other"}', "not an otel-tracer trace"),
        (b'{"format": "otel-tracer-trace", "version": 99}', "version 99 is not supported"),
        (b'{"format": "otel-tracer-trace", "version": 1}', "malformed trace"),
        (gzip.compress(b"{}")[:10], "corrupt gzip"),
    ],
)
def test_loader_errors_are_clear(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(otel_tracer.TraceFormatError, match=message):
        otel_tracer.load(path)


def test_loader_missing_file(tmp_path):
    with pytest.raises(otel_tracer.TraceFormatError, match="cannot read"):
        otel_tracer.load(tmp_path / "nope.json")


def test_bytes_per_call_is_reported(tmp_path):
    write_files(
        tmp_path, {"prog.py": "def f(n):\n    return n\nfor i in range(2000):\n    f(i % 7)\n"}
    )
    result = run_tracer(["prog.py", "-o", "t.json"], tmp_path)
    assert "bytes/call" in result.stderr
    size = (tmp_path / "t.json").stat().st_size
    assert size / 2001 < 400


def test_only_used_functions_and_none_of_the_tool(trace_file):
    doc = json.loads(trace_file.read_text())
    used = {c["function"] for c in call_objects(doc)}
    assert used == set(range(len(doc["functions"])))
    assert not any(f["module"].startswith("otel_tracer") for f in doc["functions"])
    assert len(doc["strings"]) == len(set(doc["strings"]))


def test_version_1_files_still_load():
    """tests/data/trace-v1.json was written by the version 1 writer (12 calls, with
    arguments, a generator, an exception, an external call and pattern groups)."""
    old = REPO / "tests/data/trace-v1.json"
    doc = json.loads(old.read_text())
    jsonschema.validate(doc, json.loads(V1_SCHEMA.read_text()))
    trace = otel_tracer.load(old)
    assert len(trace) == len(doc["calls"]) == 12 and trace.patterns is not None
    for row, call in enumerate(doc["calls"]):
        assert trace.function_of(row).qualname == doc["functions"][call["function"]]["qualname"]
        assert trace.args_of(row) == call.get("args", {})
        assert trace.value_of(row) == call.get("return")
        exception = call.get("exception")
        assert trace.exception_of(row) == (exception and (exception["type"], exception["message"]))
        assert int(trace.calls.depth[row]) == call["depth"]
        assert int(trace.calls.end[row]) == call["end"]
    # written again, it is version 3, with only the 8 functions its calls use
    again = to_document(trace)
    jsonschema.validate(again, SCHEMA)
    assert again["version"] == 3 and len(again["functions"]) == 8 < len(doc["functions"])
    expanded = call_objects(again)
    for call, new in zip(doc["calls"], expanded, strict=True):
        assert {k: v for k, v in call.items() if k != "function"} == {
            k: v for k, v in new.items() if k != "function"
        }


def test_version_2_files_still_load():
    """tests/data/trace-v2.json was written by the version 2 writer (144 calls in
    two threads, 23 pattern groups with variants and nested groups, every group
    an object): it loads with the same groups, and written again it is version 3,
    folded again into the same groups."""
    old = REPO / "tests/data/trace-v2.json"
    doc = json.loads(old.read_text())
    trace = otel_tracer.load(old)
    assert doc["version"] == 2 and len(trace) == len(doc["calls"]) == 144
    groups = doc["patterns"]["groups"]
    assert len(groups) == 23 and any(len(g["variants"]) > 1 for g in groups)
    assert trace.patterns.section["groups"] == groups
    again = to_document(trace)
    jsonschema.validate(again, SCHEMA)
    assert again["version"] == 3 and "layouts" in again["patterns"]
    assert again["calls"] == doc["calls"]  # the same pattern marks
    assert again["patterns"]["statistics"] == doc["patterns"]["statistics"]
    reread = otel_tracer.trace.format.from_document(again)
    assert list(reread.patterns.section["groups"]) == groups


def test_native_and_python_readers_agree(trace_file, monkeypatch):
    from otel_tracer.trace import format as trace_format

    raw = trace_file.read_bytes()
    native = trace_format.from_bytes(raw)
    monkeypatch.setattr(trace_format, "find_member", None)
    monkeypatch.setattr(trace_format, "call_depths", None)
    python = trace_format.from_bytes(raw)
    assert to_document(native) == to_document(python) == json.loads(raw)
    for name in ("parent", "depth", "start", "end", "span_id", "flags", "args", "value"):
        assert np.array_equal(getattr(native.calls, name), getattr(python.calls, name))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["calls"][1].__setitem__(0, 5), "parent must come before"),
        (lambda d: d["calls"][1].__setitem__(1, 10**6), "function does not exist"),
        (lambda d: d["calls"][1].__setitem__(5, "xyz"), "span_id"),
        (lambda d: d["calls"][1].__setitem__(3, 1.5), "integers"),
        (lambda d: d["calls"][1].__setitem__(4, 2**63 - 1), "end is out of range"),
        (lambda d: d["calls"][1].__setitem__(slice(6, None), [-1, -1, 64]), "flags"),
        (lambda d: d["calls"][1].extend([7] * 10), "too few or too many|malformed"),
        (lambda d: d["calls"].__setitem__(1, d["calls"][1][:5]), "too few"),
        (lambda d: d["calls"][1].__setitem__(slice(6, None), [10**6]), "not in arguments"),
    ],
)
def test_bad_rows_are_one_line(trace_file, tmp_path, change, message):
    doc = json.loads(trace_file.read_text())
    change(doc)
    path = tmp_path / "bad.json"
    path.write_bytes(json.dumps(doc).encode())
    with pytest.raises(otel_tracer.TraceFormatError, match=message) as error:
        otel_tracer.load(path)
    assert "\n" not in str(error.value)


def test_raise_lines_name_the_raise_site(trace_file):
    """``raise_lines``: [call id, line] of the calls an exception ended; here
    only ``fail``, at its ``raise`` (``main`` catches it)."""
    doc = json.loads(trace_file.read_text())
    trace = otel_tracer.load(trace_file)
    named = [(trace.function_of(call_id - 1).name, line) for call_id, line in doc["raise_lines"]]
    assert named == [("fail", 11)]
    rows = np.flatnonzero(trace.calls.raise_line)
    assert [[int(r) + 1, int(trace.calls.raise_line[r])] for r in rows] == doc["raise_lines"]


@pytest.mark.parametrize(
    ("raise_lines", "message"),
    [
        ({"x": 1}, "raise_lines must be a list"),
        ([[1]], "raise_lines must be a list"),
        ([[1, True]], "raise_lines must be a list"),
        ([[0, 3]], "call id that is not in calls"),
        ([[10**6, 3]], "call id that is not in calls"),
        ([[1, 0]], "line number out of range"),
        ([[1, 2**40]], "line number out of range"),
        ("raised-twice", "in call order"),
        ("not-raised", "did not raise"),
    ],
)
def test_bad_raise_lines_are_one_line(trace_file, tmp_path, raise_lines, message):
    doc = json.loads(trace_file.read_text())
    raised = doc["raise_lines"][0]
    if raise_lines == "raised-twice":
        raise_lines = [raised, raised]
    elif raise_lines == "not-raised":
        raise_lines = [[1 if raised[0] != 1 else 2, 5]]
        assert not otel_tracer.load(trace_file).calls.flags[raise_lines[0][0] - 1] & 4
    doc["raise_lines"] = raise_lines
    path = tmp_path / "bad.json"
    path.write_bytes(json.dumps(doc).encode())
    with pytest.raises(otel_tracer.TraceFormatError, match=message) as error:
        otel_tracer.load(path)
    assert "\n" not in str(error.value)


def test_fib_with_arguments_is_compact(tmp_path):
    write_files(
        tmp_path,
        {"fib.py": "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\nfib(16)\n"},
    )
    result = run_tracer(["-q", "fib.py", "-o", "t.json"], tmp_path)
    assert result.returncode == 0, result.stderr
    trace = otel_tracer.load(tmp_path / "t.json")
    assert len(trace) == 3194 and trace.args_of(1) == {"n": "16"}
    assert (tmp_path / "t.json").stat().st_size / len(trace) < 100
