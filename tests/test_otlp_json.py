"""OTLP/JSON Lines files: the tracer's ``-o trace.otlp.json``/``.otlp.jsonl``, the
SpanExporter for any OpenTelemetry program, and ``--fold-patterns``. The files are
read as the specification's "JSON File serialization" says (protocol/file-exporter.md):
one ``ExportTraceServiceRequest`` per line."""

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
from exporters.otlp_json import LINE_BYTES, OtlpJsonFileExporter, write_otlp_json
from exporters.outputs import output_format
from otel_tracer.spans.plan import span_plan
from otel_tracer.spans.sdk import trace_spans
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


def lines_of(data: bytes | str) -> list[dict]:
    """The requests of a JSON Lines file, each line ending in a newline."""
    text = data.decode() if isinstance(data, bytes) else data
    assert text.endswith("\n")
    return [json.loads(line) for line in text[:-1].split("\n")]


def spans_of(data: bytes | str) -> list[dict]:
    """Every span of a JSON Lines file, in file order."""
    return [
        span
        for document in lines_of(data)
        for resource_spans in document["resourceSpans"]
        for scope_spans in resource_spans["scopeSpans"]
        for span in scope_spans["spans"]
    ]


def attributes(item: dict) -> dict:
    """KeyValue list -> {key: the AnyValue's one field's value}."""
    return {kv["key"]: next(iter(kv["value"].values())) for kv in item.get("attributes", [])}


def parse_otlp_json(text: str | bytes) -> ExportTraceServiceRequest:
    """One OTLP/JSON request -> the protobuf request, as a receiver does: hex ids
    become bytes (json_format reads bytes fields as base64), then the standard
    parser (OTLP/JSON: "trace and span ids are hex-encoded strings")."""
    document = json.loads(text)
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    return json_format.ParseDict(document, ExportTraceServiceRequest())


def parse_lines(data: bytes) -> list[ExportTraceServiceRequest]:
    """Every line of a JSON Lines file as a request."""
    assert data.endswith(b"\n")
    return [parse_otlp_json(line) for line in data[:-1].split(b"\n")]


def test_the_file_has_the_otlp_json_structure(traced):
    data = (traced / "trace.otlp.json").read_bytes()
    document = lines_of(data)[0]
    trace = otel_tracer.load(traced / "trace.json")
    spans = spans_of(data)
    assert len(spans) == len(trace) + 1
    resource = attributes(document["resourceSpans"][0]["resource"])
    assert resource["service.name"] == "prog.py"
    assert resource["telemetry.distro.name"] == "otel-tracer"
    assert document["resourceSpans"][0]["schemaUrl"].startswith("https://opentelemetry.io/")
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
    assert root["name"] == "prog.py" and "parentSpanId" not in root
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
    """The fast column writer and the SDK's own OTLP encoder agree, span by span,
    flags included (the same in the file as on the wire)."""
    requests = parse_lines((traced / "trace.otlp.json").read_bytes())
    trace = otel_tracer.load(traced / "trace.json")
    expected = encode_spans(list(trace_spans(trace)))
    (theirs,) = expected.resource_spans
    (their_scope,) = theirs.scope_spans
    mine = []
    for request in requests:
        (ours,) = request.resource_spans
        assert ours.resource == theirs.resource and ours.schema_url == theirs.schema_url
        (our_scope,) = ours.scope_spans
        assert our_scope.scope == their_scope.scope
        assert our_scope.schema_url == their_scope.schema_url
        mine += our_scope.spans
    assert len(mine) == len(their_scope.spans) == len(trace) + 1
    for span, reference in zip(mine, their_scope.spans, strict=True):
        assert span == reference


def test_the_span_exporter_writes_the_same_document(traced, tmp_path):
    trace = otel_tracer.load(traced / "trace.json")
    exporter = OtlpJsonFileExporter(tmp_path / "sdk.otlp.json")
    spans = list(trace_spans(trace))
    exporter.export(spans[:10])
    exporter.export(spans[10:])
    exporter.shutdown()
    written = spans_of((tmp_path / "sdk.otlp.json").read_bytes())
    assert written == spans_of((traced / "trace.otlp.json").read_bytes())


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
    (request,) = parse_lines((tmp_path / "out.json").read_bytes())
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
    spans = spans_of((tmp_path / "folded.otlp.json").read_bytes())
    assert len(spans) == len(plan) < len(trace)
    ids = {s["spanId"] for s in spans}
    assert len(ids) == len(spans)
    assert all(s["parentSpanId"] in ids for s in spans[1:])
    by_id = {s["spanId"]: s for s in spans}
    epochs = next(s for s in spans if s["name"] == "5x epoch")
    counts = attributes(epochs)
    assert counts["otel_tracer.pattern.group"] is True
    assert counts["otel_tracer.pattern.repetitions"] == "5"
    assert counts["otel_tracer.pattern.total_calls"] == "35"
    assert counts["otel_tracer.pattern.omitted_calls"] == "28"  # 4 more epochs of 7 calls
    assert by_id[epochs["parentSpanId"]]["name"] == "train"
    (first_epoch,) = [s for s in spans if s.get("parentSpanId") == epochs["spanId"]]
    assert first_epoch["name"] == "epoch"
    (layers,) = [s for s in spans if s.get("parentSpanId") == first_epoch["spanId"]]
    assert layers["name"] == "3x Layer.forward/layer_name"
    assert attributes(layers)["otel_tracer.pattern.omitted_calls"] == "4"
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
    spans = spans_of((tmp_path / "t.otlp.json").read_bytes())
    assert any(attributes(s).get("otel_tracer.pattern.group") for s in spans)
    refused = run_tracer(["prog.py", "--fold-patterns", "--no-patterns"], tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "otel-tracer: error: --fold-patterns needs the pattern groups: drop --no-patterns"
    ]


def test_otlp_json_to_stdout_and_by_format(tmp_path):
    write_files(tmp_path, {"prog.py": "def f():\n    return 1\nf()\n"})
    result = run_tracer(["prog.py", "-q", "-o", "-", "--format", "otlp-json"], tmp_path)
    assert result.returncode == 0, result.stderr
    names = [s["name"] for s in spans_of(result.stdout)]
    assert names == ["prog.py", "<module>", "f"]
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
    names = [s.name for s in spans if s.attributes.get("otel_tracer.pattern.group")]
    assert names == ["5x init", "6x step", "4x layer", "3x write", "3x step", "4x layer",
                     "3x write", "7x fetch"]  # fmt: skip


def test_large_traces_are_lines_of_at_most_one_mebibyte(tmp_path):
    """Every line a request of at most LINE_BYTES, each parsing with the official
    protos, together every span once; ``.jsonl`` is an OTLP/JSON name too."""
    trace = build_trace([("main", [("step", ["forward", "backward"])] * 3000)])
    write_otlp_json(trace, tmp_path / "big.otlp.jsonl")
    data = (tmp_path / "big.otlp.jsonl").read_bytes()
    lines = data[:-1].split(b"\n")
    assert len(lines) > 1 and all(len(line) + 1 <= LINE_BYTES for line in lines)
    requests = parse_lines(data)
    spans = [s for r in requests for s in r.resource_spans[0].scope_spans[0].spans]
    assert len(spans) == len(trace) + 1
    assert len({s.span_id for s in spans}) == len(spans)
    assert output_format("run.jsonl", None) == output_format("run.otlp.jsonl", None)
    assert output_format("run.otlp.jsonl", None) == "otlp-json"


def test_a_huge_command_line_keeps_every_request_under_its_cap(tmp_path):
    """A program run with a command line near the kernel's limit (2 MiB): the
    Resource each request carries holds it cut to MAX_COMMAND_CHARS, so every
    line stays under LINE_BYTES and every protobuf request under 1 MiB of spans
    plus a bounded envelope."""
    from exporters.otlp_proto import BATCH_BYTES, encode_requests
    from otel_tracer.spans.sdk import MAX_ARG_CHARS, MAX_COMMAND_CHARS

    write_files(tmp_path, {"prog.py": "import sys\nprint(len(sys.argv))\n"})
    args = ["x" * 100_000, *(["y" * 1_000] * 1_500)]  # 1.6 MB
    result = run_tracer(["-q", "-o", "t.json", "-o", "t.otlp.jsonl", "prog.py", *args], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1502\n"
    data = (tmp_path / "t.otlp.jsonl").read_bytes()
    assert all(len(line) + 1 <= LINE_BYTES for line in data[:-1].split(b"\n"))
    (request,) = parse_lines(data)
    (attribute,) = [
        a for a in request.resource_spans[0].resource.attributes if a.key == "process.command_args"
    ]
    command = [v.string_value for v in attribute.value.array_value.values]
    assert command[2] == "x" * MAX_ARG_CHARS + f"...(+{100_000 - MAX_ARG_CHARS} chars)"
    assert command[-1].startswith("...(+") and command[-1].endswith(" args)")
    assert sum(map(len, command)) <= MAX_COMMAND_CHARS + 20
    trace = otel_tracer.load(tmp_path / "t.json")
    assert trace.meta["argv"][1:] == args  # the trace itself keeps all of it
    for encoded, _ in encode_requests(trace, span_plan(trace)):
        assert len(encoded) <= BATCH_BYTES + MAX_COMMAND_CHARS + 4_096
