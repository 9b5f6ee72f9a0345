"""The Python API: Tracer, traced, load."""

from __future__ import annotations

import json
import sys

import otel_tracer
from otel_tracer import Tracer, traced


def helper(x):
    return x + 1


def compute(n):
    return sum(helper(i) for i in range(n))


def test_tracer_context_manager_records_and_saves(tmp_path, core):
    with Tracer(core=core) as tracer:
        compute(3)
    trace = tracer.trace
    names = [trace.function_of(i).qualname for i in range(len(trace))]
    assert names[0] == "compute"
    assert names.count("helper") == 3
    assert trace.args_of(0) == {"n": "3"}
    assert trace.value_of(0) == "6"
    tracer.save(tmp_path / "t.json")
    loaded = otel_tracer.load(tmp_path / "t.json")
    assert len(loaded) == len(trace)
    assert json.loads((tmp_path / "t.json").read_text())["metadata"]["exit_code"] is None


def test_tracer_save_annotates_patterns(tmp_path):
    with Tracer(core="python") as tracer:
        for _ in range(4):
            helper(1)
    tracer.save(tmp_path / "plain.json", patterns=False)
    assert "patterns" not in json.loads((tmp_path / "plain.json").read_text())
    tracer.save(tmp_path / "t.json")
    loaded = otel_tracer.load(tmp_path / "t.json")
    (group,) = loaded.patterns.section["groups"]
    assert (group["repetitions"], group["calls_per_repetition"]) == (4, 1)
    assert loaded.patterns.attributes_of(2)["pattern.iteration"] == 2


def test_tracer_options(tmp_path):
    with Tracer(scope=[tmp_path], capture_args=False) as tracer:
        compute(2)
    assert len(tracer.trace) == 0  # this file is outside the given scope
    with Tracer(capture_args=False, core="python") as tracer:
        compute(2)
    assert tracer.trace.args_of(0) == {}


def test_traced_decorator(tmp_path):
    @traced(output=tmp_path / "d.json")
    def job(k):
        return compute(k)

    assert job(2) == 3
    trace = job.last_trace
    nested = "test_traced_decorator.<locals>.job" if sys.version_info >= (3, 11) else "job"
    assert [trace.function_of(i).qualname for i in range(len(trace))][:2] == [nested, "compute"]
    assert len(otel_tracer.load(tmp_path / "d.json")) == len(trace)
