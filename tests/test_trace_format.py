"""The documented JSON trace: schema, round trip and loader errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from conftest import REPO, run_tracer, write_files

import otel_tracer
from exporters.json_trace import save, to_document

SCHEMA = json.loads((REPO / "otel_tracer/schema/trace-v1.schema.json").read_text())

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
    assert [c["id"] for c in doc["calls"]] == list(range(1, len(doc["calls"]) + 1))
    assert doc["metadata"]["call_count"] == len(doc["calls"])
    assert len({c["span_id"] for c in doc["calls"]}) == len(doc["calls"])


def test_calls_hold_parent_depth_args_and_times(trace_file):
    doc = json.loads(trace_file.read_text())
    by_id = {c["id"]: c for c in doc["calls"]}
    for call in doc["calls"]:
        assert call["start"] <= call["end"]
        if call["parent"] is not None:
            parent = by_id[call["parent"]]
            assert parent["id"] < call["id"]
            assert call["depth"] == parent["depth"] + 1
            assert parent["start"] <= call["start"] and call["end"] <= parent["end"]
        else:
            assert call["depth"] == 0
    fn = {i: f["qualname"] for i, f in enumerate(doc["functions"])}
    forward = next(c for c in doc["calls"] if fn[c["function"]] == "Model.forward")
    assert forward["args"] == {
        "self": "Model",
        "x": "list(len=2)[1, 2]",
        "rest": "tuple(len=1)[3]",
        "scale": "2.0",
        "extra": "dict(len=1){'tag': 'x'}",
    }
    assert forward["return"] == "list(len=2)[2.0, 4.0]"
    fail = next(c for c in doc["calls"] if fn[c["function"]] == "fail")
    assert fail["exception"] == {"type": "RuntimeError", "message": "<script>alert(1)</script>"}
    start = doc["metadata"]["start_time_unix_nano"]
    assert all(c["start"] >= start for c in doc["calls"])


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
