"""The OpenTelemetry bridge: a traced program's calls as SDK ReadableSpans."""

from __future__ import annotations

import pytest
from conftest import run_tracer, write_files
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import otel_tracer
from otel_tracer.spans.plan import root_span_id
from otel_tracer.spans.sdk import resource_of, trace_spans

PROGRAM = """
    import json
    import threading

    def load(path, token):
        return json.dumps({"path": path})

    def step(i):
        if i == 2:
            raise ValueError(f"bad step {i}")
        return i * 2

    def work():
        for i in range(4):
            try:
                step(i)
            except ValueError:
                pass

    load("data.csv", token="t-123")
    worker = threading.Thread(target=work, name="worker")
    worker.start()
    worker.join()
"""


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    root = tmp_path_factory.mktemp("spans")
    write_files(root, {"prog.py": PROGRAM})
    result = run_tracer(["prog.py", "-o", "trace.json", "-q"], root)
    assert result.returncode == 0, result.stderr
    return otel_tracer.load(root / "trace.json")


def by_name(spans, name):
    return [s for s in spans if s.name == name]


def test_one_span_per_call_plus_the_run(traced):
    spans = list(trace_spans(traced))
    assert len(spans) == len(traced) + 1
    root = spans[0]
    assert root.name == "prog.py"
    assert root.parent is None
    trace_id = int(traced.meta["trace_id"], 16)
    assert {s.context.trace_id for s in spans} == {trace_id}
    ids = [s.context.span_id for s in spans]
    assert len(set(ids)) == len(ids) and root.context.span_id == root_span_id(traced)
    for row, span in enumerate(spans[1:]):
        parent = int(traced.calls.parent[row])
        expected = root.context.span_id if parent < 0 else int(traced.calls.span_id[parent])
        assert span.parent.span_id == expected
        assert span.context.span_id == int(traced.calls.span_id[row])
        assert span.start_time == int(traced.calls.start[row])
        assert span.end_time == int(traced.calls.end[row])
        assert root.start_time <= span.start_time <= span.end_time <= root.end_time


def test_attributes_follow_the_conventions(traced):
    spans = list(trace_spans(traced))
    load = by_name(spans, "load")[0]
    assert load.attributes["code.function.name"] == "__main__.load"
    assert load.attributes["code.file.path"].endswith("prog.py")
    assert load.attributes["code.line.number"] == 5
    assert load.attributes["thread.name"] == "MainThread"
    assert load.attributes["otel_tracer.args.path"] == "'data.csv'"
    assert load.attributes["otel_tracer.args.token"] == "[redacted]"
    assert load.attributes["otel_tracer.call.external"] is False
    assert load.attributes["otel_tracer.return_value"].startswith("'{")
    dumps = by_name(spans, "json.dumps")[0]
    assert dumps.attributes["otel_tracer.call.external"] is True
    assert dumps.parent.span_id == load.context.span_id
    steps = by_name(spans, "step")
    assert {s.attributes["thread.name"] for s in steps} == {"worker"}
    assert [s.attributes["otel_tracer.call.id"] for s in steps] == sorted(
        s.attributes["otel_tracer.call.id"] for s in steps
    )


def test_exception_event_and_status(traced):
    failed = [s for s in trace_spans(traced) if s.status.status_code is StatusCode.ERROR]
    assert [s.name for s in failed] == ["step"]
    (event,) = failed[0].events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "bad step 2"
    stack = event.attributes["exception.stacktrace"]
    assert stack.startswith("Traceback (most recent call last):")
    assert "in step" in stack and stack.endswith("ValueError: bad step 2")
    assert "in work" not in stack  # work caught it: not on the exception's traceback


def test_pattern_attributes_when_annotated(traced):
    step = next(s for s in trace_spans(traced) if s.name == "step")
    assert step.attributes["otel_tracer.pattern.repetitions"] >= 2
    assert step.attributes["otel_tracer.pattern.iteration"] == 0
    traced.patterns, saved = None, traced.patterns
    try:
        plain = next(s for s in trace_spans(traced) if s.name == "step")
        assert not any(key.startswith("otel_tracer.pattern.") for key in plain.attributes)
    finally:
        traced.patterns = saved


def test_resource(traced, monkeypatch):
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci,team=ml")
    resource = resource_of(traced).attributes
    assert resource["service.name"] == "prog.py"
    assert resource["deployment.environment"] == "ci" and resource["team"] == "ml"
    assert resource["process.pid"] == traced.meta["pid"]
    assert resource["process.command_args"][1:] == ("prog.py",)
    assert resource["process.runtime.name"] == "cpython"
    assert resource["telemetry.distro.name"] == "otel-tracer"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "trainer")
    assert resource_of(traced).attributes["service.name"] == "trainer"
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-env")
    assert resource_of(traced).attributes["service.name"] == "from-env"


def test_spans_work_with_any_span_exporter(traced):
    spans = list(trace_spans(traced))
    exporter = InMemorySpanExporter()
    exporter.export(spans)
    assert len(exporter.get_finished_spans()) == len(spans)
    request = encode_spans(spans)  # what the OTLP exporters send
    sent = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert len(sent) == len(spans)
    assert sent[0].trace_id.hex() == traced.meta["trace_id"]


def test_stacktrace_runs_from_the_span_down_to_the_raise(tmp_path):
    """Each span's exception.stacktrace holds the frames the exception unwound
    from that span's function down to where it was raised, innermost last."""
    write_files(
        tmp_path,
        {
            "prog.py": """
                def inner():
                    raise KeyError("k")

                def middle():
                    inner()

                def outer():
                    try:
                        middle()
                    except KeyError:
                        pass

                outer()
            """
        },
    )
    assert run_tracer(["prog.py", "-q", "-o", "t.json"], tmp_path).returncode == 0
    spans = {s.name: s for s in trace_spans(otel_tracer.load(tmp_path / "t.json"))}
    stack = spans["middle"].events[0].attributes["exception.stacktrace"]
    frames = [line.split(" in ")[-1] for line in stack.splitlines() if line.startswith("  File")]
    assert frames == ["middle", "inner"] and stack.endswith("KeyError: 'k'")
    assert "in inner" in spans["inner"].events[0].attributes["exception.stacktrace"]
    assert not spans["outer"].events
