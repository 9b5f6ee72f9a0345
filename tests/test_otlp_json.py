"""OTLP/JSON files: the tracer's ``-o trace.otlp.json``, the SpanExporter for any
OpenTelemetry program, and ``--fold-patterns``."""

from __future__ import annotations

import base64
import json

import pytest
from conftest import run_python, run_tracer, write_files
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from trace_builder import build_trace

import otel_tracer
from exporters.otlp_json import OtlpJsonFileExporter, write_otlp_json
from otel_tracer.span_plan import span_plan
from otel_tracer.spans import trace_spans
from patterns.annotate import annotate

PROGRAM = """
    import json
    import threading

    def load(path, password):
        return json.dumps({"path": path})

    def gen(n):
        for i in range(n):
            yield i

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
        list(gen(3))

    class Layer:
        def forward(self, x):
            return x + 1

    def layer_name(layer):
        return "layer"

    def epoch(layers, number):
        for layer in layers:
            layer.forward(number)
            layer_name(layer)

    def train(epochs):
        layers = [Layer() for _ in range(3)]
        for number in range(epochs):
            epoch(layers, number)

    load("data.csv", password="hunter2")
    worker = threading.Thread(target=work, name="worker")
    worker.start()
    worker.join()
    train(5)
"""


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """The program traced once, with its JSON trace and its OTLP/JSON file."""
    root = tmp_path_factory.mktemp("otlp_json")
    write_files(root, {"prog.py": PROGRAM})
    result = run_tracer(["prog.py", "-o", "trace.json", "-o", "trace.otlp.json"], root)
    assert result.returncode == 0, result.stderr
    assert "trace written to trace.otlp.json" in result.stderr
    return root


def spans_of(document: dict) -> list[dict]:
    (resource_spans,) = document["resourceSpans"]
    (scope_spans,) = resource_spans["scopeSpans"]
    return scope_spans["spans"]


def attributes(item: dict) -> dict:
    """KeyValue list -> {key: the AnyValue's one field's value}."""
    return {kv["key"]: next(iter(kv["value"].values())) for kv in item.get("attributes", [])}


def parse_otlp_json(text: str | bytes) -> ExportTraceServiceRequest:
    """OTLP/JSON -> the protobuf request, as a receiver does: hex ids become bytes
    (json_format reads bytes fields as base64), then the standard parser."""
    document = json.loads(text)
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    return json_format.ParseDict(document, ExportTraceServiceRequest())


def test_the_file_has_the_otlp_json_structure(traced):
    document = json.loads((traced / "trace.otlp.json").read_bytes())
    trace = otel_tracer.load(traced / "trace.json")
    spans = spans_of(document)
    assert len(spans) == len(trace) + 1
    resource = attributes(document["resourceSpans"][0]["resource"])
    assert resource["service.name"] == "prog.py"
    assert resource["telemetry.distro.name"] == "otel-tracer"
    scope = document["resourceSpans"][0]["scopeSpans"][0]["scope"]
    assert scope["name"] == "otel-tracer" and scope["version"]
    ids = {s["spanId"] for s in spans}
    for span in spans:
        assert len(span["traceId"]) == 32 and span["traceId"] == trace.meta["trace_id"]
        assert len(span["spanId"]) == 16 and int(span["spanId"], 16)
        assert span["kind"] == 1  # SPAN_KIND_INTERNAL, an integer
        assert int(span["startTimeUnixNano"]) <= int(span["endTimeUnixNano"])
        assert "parentSpanId" not in span or span["parentSpanId"] in ids
    root, *calls = spans
    assert root["name"] == "python prog.py" and "parentSpanId" not in root
    for span, row in zip(calls, range(len(trace)), strict=True):
        assert int(span["spanId"], 16) == int(trace.calls.span_id[row])
        parent = int(trace.calls.parent[row])
        expected = root["spanId"] if parent < 0 else f"{int(trace.calls.span_id[parent]):016x}"
        assert span["parentSpanId"] == expected
    load = next(s for s in calls if s["name"] == "load")
    assert attributes(load)["otel_tracer.args.password"] == "[redacted]"
    assert attributes(load)["otel_tracer.args.path"] == "'data.csv'"
    failed = next(s for s in calls if s.get("status", {}).get("code") == 2)
    assert failed["name"] == "step" and failed["status"]["message"] == "ValueError: bad step 2"
    (event,) = failed["events"]
    assert event["name"] == "exception"
    assert attributes(event)["exception.type"] == "ValueError"
    assert "Traceback (most recent call last):" in attributes(event)["exception.stacktrace"]


def test_the_file_parses_into_what_the_otlp_exporters_send(traced):
    """The fast column writer and the SDK's own OTLP encoder agree, span by span."""
    request = parse_otlp_json((traced / "trace.otlp.json").read_bytes())
    trace = otel_tracer.load(traced / "trace.json")
    expected = encode_spans(list(trace_spans(trace)))
    (ours,) = request.resource_spans
    (theirs,) = expected.resource_spans
    assert ours.resource == theirs.resource
    (our_scope,) = ours.scope_spans
    (their_scope,) = theirs.scope_spans
    assert our_scope.scope == their_scope.scope
    assert len(our_scope.spans) == len(their_scope.spans) == len(trace) + 1
    for mine, reference in zip(our_scope.spans, their_scope.spans, strict=True):
        reference.ClearField("flags")  # W3C trace flags bits: not in our file
        assert mine == reference


def test_the_span_exporter_writes_the_same_document(traced, tmp_path):
    trace = otel_tracer.load(traced / "trace.json")
    exporter = OtlpJsonFileExporter(tmp_path / "sdk.otlp.json")
    spans = list(trace_spans(trace))
    exporter.export(spans[:10])
    exporter.export(spans[10:])
    exporter.shutdown()
    written = json.loads((tmp_path / "sdk.otlp.json").read_bytes())
    assert written == json.loads((traced / "trace.otlp.json").read_bytes())


def test_the_span_exporter_in_an_opentelemetry_program(tmp_path):
    """Any OpenTelemetry program can write OTLP/JSON with our exporter."""
    write_files(
        tmp_path,
        {
            "app.py": """
                from opentelemetry.sdk.resources import Resource
                from opentelemetry.sdk.trace import TracerProvider
                from opentelemetry.sdk.trace.export import BatchSpanProcessor
                from exporters.otlp_json import OtlpJsonFileExporter

                provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
                provider.add_span_processor(BatchSpanProcessor(OtlpJsonFileExporter("out.json")))
                tracer = provider.get_tracer("shop.checkout", "2.0")
                with tracer.start_as_current_span("checkout") as span:
                    span.set_attribute("cart.items", 3)
                    span.set_attribute("cart.tags", ["a", "b"])
                    with tracer.start_as_current_span("pay"):
                        pass
                provider.shutdown()
            """
        },
    )
    result = run_python(["app.py"], tmp_path)
    assert result.returncode == 0, result.stderr
    request = parse_otlp_json((tmp_path / "out.json").read_bytes())
    (resource_spans,) = request.resource_spans
    service = [a for a in resource_spans.resource.attributes if a.key == "service.name"]
    assert service[0].value.string_value == "shop"
    (scope_spans,) = resource_spans.scope_spans
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("shop.checkout", "2.0")
    pay, checkout = sorted(scope_spans.spans, key=lambda s: s.name != "pay")
    assert (pay.name, checkout.name) == ("pay", "checkout")
    assert pay.parent_span_id == checkout.span_id and not checkout.parent_span_id
    cart = {a.key: a.value for a in checkout.attributes}
    assert cart["cart.items"].int_value == 3
    assert [v.string_value for v in cart["cart.tags"].array_value.values] == ["a", "b"]


def test_fold_patterns_keeps_one_repetition_under_a_group_span(traced, tmp_path):
    trace = otel_tracer.load(traced / "trace.json")
    plan = span_plan(trace, fold_patterns=True)
    write_otlp_json(trace, tmp_path / "folded.otlp.json", plan)
    spans = spans_of(json.loads((tmp_path / "folded.otlp.json").read_bytes()))
    assert len(spans) == len(plan) < len(trace)
    ids = {s["spanId"] for s in spans}
    assert len(ids) == len(spans)
    assert all(s["parentSpanId"] in ids for s in spans[1:])
    by_id = {s["spanId"]: s for s in spans}
    epochs = next(s for s in spans if s["name"] == "5x epoch")
    counts = attributes(epochs)
    assert counts["otel_tracer.pattern_group"] is True
    assert counts["pattern.repetitions"] == "5"
    assert counts["pattern.total_calls"] == "35"
    assert counts["pattern.omitted_calls"] == "28"  # 4 more epochs of 7 calls
    assert by_id[epochs["parentSpanId"]]["name"] == "train"
    (first_epoch,) = [s for s in spans if s.get("parentSpanId") == epochs["spanId"]]
    assert first_epoch["name"] == "epoch"
    (layers,) = [s for s in spans if s.get("parentSpanId") == first_epoch["spanId"]]
    assert layers["name"] == "3x Layer.forward/layer_name"
    assert attributes(layers)["pattern.omitted_calls"] == "4"
    steps = [s for s in spans if s.get("parentSpanId") == layers["spanId"]]
    assert [s["name"] for s in steps] == ["Layer.forward", "layer_name"]
    root = attributes(spans[0])
    assert root["otel_tracer.calls"] == str(len(trace))
    assert int(root["otel_tracer.calls.omitted"]) == len(trace) - len(plan.rows) > 0
    # every call kept is exported once, with its own span id
    kept = {int(s["spanId"], 16) for s in spans} & set(trace.calls.span_id.tolist())
    assert len(kept) == len(plan.rows)


def test_fold_patterns_from_the_command_line(tmp_path):
    write_files(tmp_path, {"prog.py": PROGRAM})
    result = run_tracer(["prog.py", "-q", "-o", "t.otlp.json", "--fold-patterns"], tmp_path)
    assert result.returncode == 0, result.stderr
    spans = spans_of(json.loads((tmp_path / "t.otlp.json").read_bytes()))
    assert any(attributes(s).get("otel_tracer.pattern_group") for s in spans)
    refused = run_tracer(["prog.py", "--fold-patterns", "--no-patterns"], tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "otel-tracer: error: --fold-patterns needs the pattern groups: drop --no-patterns"
    ]


def test_otlp_json_to_stdout_and_by_format(tmp_path):
    write_files(tmp_path, {"prog.py": "def f():\n    return 1\nf()\n"})
    result = run_tracer(["prog.py", "-q", "-o", "-", "--format", "otlp-json"], tmp_path)
    assert result.returncode == 0, result.stderr
    names = [s["name"] for s in spans_of(json.loads(result.stdout))]
    assert names == ["python prog.py", "<module>", "f"]
    refused = run_tracer(["prog.py", "-o", "-", "--format", "perfetto"], tmp_path)
    assert refused.returncode == 2
    assert "the Perfetto trace needs a file name: -o trace.pftrace" in refused.stderr


def check_folded_plan(trace) -> list:
    """Invariants of a folded plan, through ``trace_spans``: every span of the plan
    is emitted once, and every parent is a span of the export."""
    plan = span_plan(trace, fold_patterns=True)
    assert [g.before for g in plan.groups] == sorted(g.before for g in plan.groups)
    spans = list(trace_spans(trace, plan=plan))
    assert len(spans) == len(plan)
    ids = {s.context.span_id for s in spans}
    assert len(ids) == len(spans)
    assert all(s.parent.span_id in ids for s in spans[1:])
    return spans


def test_folded_plans_keep_every_group_span_and_parent():
    """Groups nested at several levels, listed by the folding outer ones first:
    the plan still emits them in call order, each under an exported parent."""
    layer = ("layer", ["matmul", "act"])
    step = ("step", ["load", ("forward", [layer] * 4), "backward", ("log", ["write"] * 3)])
    trace = build_trace(
        [("main", [("setup", ["init"] * 5), ("train", [step] * 6), ("eval", [step] * 3)])],
        [("worker", ["fetch"] * 7)],
    )
    annotate(trace)
    spans = check_folded_plan(trace)
    names = [s.name for s in spans if s.attributes.get("otel_tracer.pattern_group")]
    assert names == ["5x init", "6x step", "4x layer", "3x write", "3x step", "4x layer",
                     "3x write", "7x fetch"]  # fmt: skip
