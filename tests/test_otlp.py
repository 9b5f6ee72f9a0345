"""OTLP export: a traced program's spans sent to real gRPC and HTTP/protobuf receivers."""

from __future__ import annotations

import dataclasses
import io
import logging
import socket
import sys
import time
import types
from collections.abc import Callable, Iterator

import pytest
from conftest import run_python, run_tracer, write_files
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import SpanContext
from otlp_receivers import GrpcReceiver, HttpReceiver, OtlpReceiver

import exporters.otlp as otlp
import exporters.otlp_proto as otlp_proto
import otel_tracer
from exporters.otlp import (
    BATCH_BYTES,
    BATCH_SPANS,
    OtlpConfigError,
    OtlpTarget,
    SendResult,
    otlp_target,
    send_spans,
    send_trace,
)
from exporters.otlp_proto import encode_requests
from otel_tracer.spans.plan import SpanPlan, root_span_id, span_plan
from otel_tracer.spans.sdk import trace_spans
from otel_tracer.trace.model import Trace

PROGRAM = """
    import json
    import sys
    import threading

    def connect(host, password):
        return json.dumps({"host": host})

    def step(i):
        if i == 2:
            raise ValueError(f"bad step {i}")
        return i * 2

    def numbers(n):
        for i in range(n):
            yield i

    def work():
        for i in range(4):
            try:
                step(i)
            except ValueError:
                pass
        return sum(numbers(3))

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

    def main():
        connect("db.local", password="hunter2")
        train(5)
        workers = [threading.Thread(target=work, name=f"worker-{n}") for n in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        sys.exit(3)

    main()
"""

HTTP = "http/protobuf"
RECEIVERS = {"grpc": GrpcReceiver, HTTP: HttpReceiver}


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """The program's trace (it exits with status 3)."""
    root = tmp_path_factory.mktemp("otlp")
    write_files(root, {"prog.py": PROGRAM})
    result = run_tracer(["prog.py", "-o", "trace.json", "-q"], root)
    assert result.returncode == 3, result.stderr
    return otel_tracer.load(root / "trace.json")


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch):
    """No OTEL_* settings from the developer's shell."""
    for name in list(__import__("os").environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@pytest.fixture(params=list(RECEIVERS))
def receiver(request) -> Iterator[OtlpReceiver]:
    """A running receiver of each protocol (its protocol in ``.protocol``)."""
    with RECEIVERS[request.param]() as running:
        running.protocol = request.param
        yield running


def target_of(
    receiver: OtlpReceiver, headers=(), timeout: float = 10.0, compression: str = "none"
) -> OtlpTarget:
    return OtlpTarget(receiver.endpoint, receiver.protocol, tuple(headers), timeout, compression)


def value_of(value: AnyValue) -> object:
    """A Python value from an OTLP AnyValue (arrays as tuples)."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(value_of(item) for item in value.array_value.values)
    return getattr(value, kind)


def attributes_of(pairs: list[KeyValue]) -> dict[str, object]:
    return {pair.key: value_of(pair.value) for pair in pairs}


def plain(attributes) -> dict[str, object]:
    """SDK attributes with sequences as tuples, to compare with received ones."""
    return {
        key: tuple(value) if isinstance(value, list | tuple) else value
        for key, value in attributes.items()
    }


def free_port() -> int:
    """A port on 127.0.0.1 where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sent_to(receiver: OtlpReceiver, traced, compression: str = "none") -> list:
    target = target_of(receiver, compression=compression)
    result = send_spans(trace_spans(traced), len(traced) + 1, target)
    assert result == SendResult(len(traced) + 1, None)
    return receiver.spans()


def test_every_span_arrives_with_its_links(receiver, traced):
    received = sent_to(receiver, traced)
    expected = list(trace_spans(traced))
    assert len(received) == len(traced) + 1 == len(expected)
    assert [span.name for span in received] == [span.name for span in expected]
    trace_id = bytes.fromhex(traced.meta["trace_id"])
    assert {span.trace_id for span in received} == {trace_id}
    root = received[0]
    assert root.name == "prog.py" and root.parent_span_id == b""
    assert int.from_bytes(root.span_id, "big") == root_span_id(traced)
    for row, span in enumerate(received[1:]):
        assert int.from_bytes(span.span_id, "big") == int(traced.calls.span_id[row])
        parent = int(traced.calls.parent[row])
        parent_id = root_span_id(traced) if parent < 0 else int(traced.calls.span_id[parent])
        assert int.from_bytes(span.parent_span_id, "big") == parent_id
        assert span.start_time_unix_nano == int(traced.calls.start[row])
        assert span.end_time_unix_nano == int(traced.calls.end[row])
    names = {span.name for span in received}
    assert {"main", "connect", "json.dumps", "work", "step"} <= names


def test_attributes_arrive_as_recorded(receiver, traced):
    received = sent_to(receiver, traced)
    for sent, got in zip(trace_spans(traced), received, strict=True):
        assert attributes_of(got.attributes) == plain(sent.attributes)
    by_name = {span.name: attributes_of(span.attributes) for span in reversed(received)}
    connect = by_name["connect"]
    assert connect["code.function.name"] == "__main__.connect"
    assert connect["code.file.path"].endswith("prog.py")
    assert connect["code.line.number"] == 6
    main_thread = traced.threads[0]
    assert connect["thread.id"] == main_thread.id
    assert connect["otel_tracer.thread.native_id"] == main_thread.native_id
    assert connect["otel_tracer.call.id"] == 4  # after <module>, the class Layer body, main
    assert connect["otel_tracer.args.host"] == "'db.local'"
    assert by_name["json.dumps"]["otel_tracer.call.external"] is True
    steps = [attributes_of(s.attributes) for s in received if s.name == "step"]
    assert len(steps) == 8
    assert {s["thread.name"] for s in steps} == {"worker-0", "worker-1"}
    # Python reuses a finished thread's ident, so the two workers (one after the
    # other) may share thread.id; their OS thread ids and names differ
    assert {s["thread.id"] for s in steps} <= {t.id for t in traced.threads}
    assert attributes_of(received[0].attributes)["process.exit.code"] == 3


def test_secret_argument_arrives_redacted(receiver, traced):
    received = sent_to(receiver, traced)
    connect = next(span for span in received if span.name == "connect")
    assert attributes_of(connect.attributes)["otel_tracer.args.password"] == "[redacted]"
    assert all(b"hunter2" not in request.SerializeToString() for request in receiver.requests)


def test_resource_and_scope(receiver, traced):
    sent_to(receiver, traced)
    resources = {r.SerializeToString() for r, _ in receiver.resource_spans()}
    assert len(resources) == 1
    resource = attributes_of(receiver.resource_spans()[0][0].attributes)
    assert resource["service.name"] == "prog.py"
    assert resource["process.pid"] == traced.meta["pid"]
    assert resource["telemetry.distro.name"] == "otel-tracer"
    assert resource["telemetry.sdk.language"] == "python"
    scopes = {
        s.scope.name for r in receiver.requests for rs in r.resource_spans for s in rs.scope_spans
    }
    assert scopes == {"otel-tracer"}


def test_exception_event_and_error_status(receiver, traced):
    received = sent_to(receiver, traced)
    failed = [span for span in received if span.name == "step" and span.events]
    assert len(failed) == 2  # step(2) in each worker
    for span in failed:
        assert span.status.code == Status.STATUS_CODE_ERROR
        assert span.status.message == "ValueError: bad step 2"
        (event,) = span.events
        assert event.name == "exception"
        attributes = attributes_of(event.attributes)
        assert attributes["exception.type"] == "ValueError"
        assert attributes["exception.message"] == "bad step 2"
        stack = attributes["exception.stacktrace"]
        assert stack.startswith("Traceback (most recent call last):")
        assert "in step" in stack and stack.endswith("ValueError: bad step 2")
    assert "in work" not in stack  # work caught it: not on the exception's traceback
    ok = [span for span in received if span.name == "step" and not span.events]
    assert {span.status.code for span in ok} == {Status.STATUS_CODE_UNSET}


def test_headers_arrive(receiver, traced):
    headers = [("x-api-key", "s3cret"), ("x-team", "ml a")]
    send_spans(trace_spans(traced), len(traced) + 1, target_of(receiver, headers))
    assert receiver.headers
    for received in receiver.headers:
        assert received["x-api-key"] == "s3cret" and received["x-team"] == "ml a"


def test_environment_headers_arrive_with_an_endpoint_option(receiver, traced):
    environ = {"OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20abc,x-team=ml"}
    target = otlp_target(receiver.endpoint, receiver.protocol, environ)
    assert send_spans(trace_spans(traced), len(traced) + 1, target).error is None
    assert receiver.headers[0]["authorization"] == "Bearer abc"
    assert receiver.headers[0]["x-team"] == "ml"


def synthetic_spans(count: int, stack_bytes: int = 0) -> Iterator[ReadableSpan]:
    """``count`` spans of one trace, each with an exception event carrying a stack
    trace of ``stack_bytes`` characters."""
    resource = Resource.create({"service.name": "synthetic"})
    for index in range(count):
        events = (Event("exception", {"exception.stacktrace": "x" * stack_bytes}),)
        yield ReadableSpan(
            name=f"call-{index}",
            context=SpanContext(1, index + 1, is_remote=False),
            resource=resource,
            attributes={"otel_tracer.call.id": index + 1},
            events=events if stack_bytes else (),
            start_time=index,
            end_time=index + 1,
        )


def test_large_spans_are_batched_under_the_grpc_message_limit():
    with GrpcReceiver() as receiver:  # refuses messages over 4 MiB, as collectors do
        target = OtlpTarget(receiver.endpoint, "grpc", (), 10.0)
        result = send_spans(synthetic_spans(60, stack_bytes=200_000), 60, target)
        assert result == SendResult(60, None)
        assert [span.name for span in receiver.spans()] == [f"call-{i}" for i in range(60)]
        assert len(receiver.requests) >= 3
        assert max(request.ByteSize() for request in receiver.requests) < 4 * 2**20


def test_spans_are_consumed_lazily_in_batches():
    count = 3 * BATCH_SPANS + 7
    with GrpcReceiver() as receiver:

        def spans() -> Iterator[ReadableSpan]:
            for index, span in enumerate(synthetic_spans(count)):
                arrived = sum(
                    len(r.resource_spans[0].scope_spans[0].spans) for r in receiver.requests
                )
                assert index - arrived <= BATCH_SPANS  # at most one batch held
                yield span

        target = OtlpTarget(receiver.endpoint, "grpc", (), 10.0)
        assert send_spans(spans(), count, target) == SendResult(count, None)
        sizes = [len(r.resource_spans[0].scope_spans[0].spans) for r in receiver.requests]
        assert sizes == [BATCH_SPANS] * 3 + [7]


def test_gzip_compression_setting(receiver, traced):
    environ = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}
    assert otlp_target(None, None, environ).compression == "gzip"
    assert len(sent_to(receiver, traced, "gzip")) == len(traced) + 1
    if receiver.protocol == HTTP:
        assert receiver.headers[0]["content-encoding"] == "gzip"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("total", "shown"), [(60_000, True), (49_999, False)])
def test_progress_bar_for_long_exports_on_a_terminal(total, shown, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with GrpcReceiver() as receiver:
        target = OtlpTarget(receiver.endpoint, "grpc", (), 10.0)
        assert send_spans(synthetic_spans(10), total, target).error is None
        assert ("OTLP export" in terminal.getvalue()) is shown
        before = terminal.getvalue()
        send_spans(synthetic_spans(10), total, target, progress=False)
    assert terminal.getvalue() == before


# -- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "protocol", "environ", "expected"),
    [
        (None, None, {}, None),
        (None, None, {"OTEL_TRACES_EXPORTER": "none"}, None),
        (None, None, {"OTEL_TRACES_EXPORTER": "console"}, None),
        (None, None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, None),
        (None, None, {"OTEL_TRACES_EXPORTER": "otlp"}, ("http://localhost:4317", "grpc")),
        (
            None,
            None,
            {
                "OTEL_TRACES_EXPORTER": "console, OTLP",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            },
            ("http://localhost:4318/v1/traces", "http/protobuf"),
        ),
        (
            None,
            None,
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"},
            ("http://c:4317", "grpc"),
        ),
        (
            None,
            None,
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "https://c.example/otlp/",
            },
            ("https://c.example/otlp/v1/traces", "http/protobuf"),
        ),
        (
            None,
            None,
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://generic:4318",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:9000/custom",
            },
            ("http://c:9000/custom", "http/protobuf"),
        ),
        (
            None,
            None,
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            },
            ("http://localhost:4317", "grpc"),
        ),
        (
            None,
            None,
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
            ("http://c:4318/v1/traces", "http/protobuf"),
        ),
        ("http://c:4317", None, {}, ("http://c:4317", "grpc")),
        ("http://c:4318", None, {}, ("http://c:4318/v1/traces", "http/protobuf")),
        ("http://c/v1/traces", None, {}, ("http://c/v1/traces", "http/protobuf")),
        ("http://c:80", "http/protobuf", {}, ("http://c:80/v1/traces", "http/protobuf")),
        ("http://c:80/in", "http/protobuf", {}, ("http://c:80/in", "http/protobuf")),
        ("http://c:4318", "grpc", {}, ("http://c:4318", "grpc")),
        (
            "http://opt:4317",
            None,
            {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:1"},
            ("http://opt:4317", "grpc"),
        ),
        (
            "http://opt:4317",
            None,
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
            ("http://opt:4317/v1/traces", "http/protobuf"),
        ),
    ],
)
def test_target_from_options_and_environment(endpoint, protocol, environ, expected):
    target = otlp_target(endpoint, protocol, environ)
    assert (target and (target.endpoint, target.protocol)) == expected


def test_headers_and_timeout_from_environment():
    environ = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_HEADERS": "generic=1",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": " API-Key = a%3Db%2Cc , x-empty=,",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
    }
    target = otlp_target(None, None, environ)
    assert target.headers == (("api-key", "a=b,c"), ("x-empty", ""))
    assert target.timeout == 2.5
    environ["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"] = "400"
    assert otlp_target(None, None, environ).timeout == 0.4
    assert otlp_target("http://c:4317").timeout == 10.0
    assert otlp_target("http://c:4317", environ={}).headers == ()


def test_bad_settings_are_one_line_errors():
    """Bad options are errors; bad OTEL_* values are warnings (tests/test_otel_settings.py)."""
    for endpoint in ("localhost:4317", "ftp://c:21", "http://", "http://c:port"):
        with pytest.raises(OtlpConfigError) as error:
            otlp_target(endpoint, None, {})
        assert str(error.value).startswith(f"--otlp-endpoint={endpoint!r} is not an OTLP endpoint")


# -- failures ----------------------------------------------------------------------------


Sender = Callable[[Trace, OtlpTarget], SendResult]
SENDERS: dict[str, Sender] = {
    "send_spans": lambda trace, target: send_spans(trace_spans(trace), len(trace) + 1, target),
    "send_trace": lambda trace, target: send_trace(trace, span_plan(trace), target),
}


def quiet_failure(
    target: OtlpTarget, traced, capfd, caplog, send: Sender = SENDERS["send_spans"]
) -> SendResult:
    """Send to a failing target: bounded time, no output, no log records let through,
    logging configuration restored."""
    otel_logger = logging.getLogger("opentelemetry")
    before = otel_logger.level, otel_logger.propagate, otel_logger.handlers[:]
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    result = send(traced, target)
    assert time.monotonic() - started < 60
    assert result.sent == 0 and result.error is not None
    assert "\n" not in result.error
    assert capfd.readouterr() == ("", "")
    assert not [r for r in caplog.records if r.name.startswith("opentelemetry")]
    assert (otel_logger.level, otel_logger.propagate, otel_logger.handlers) == before
    return result


@pytest.mark.parametrize("sender", list(SENDERS))
@pytest.mark.parametrize("protocol", list(RECEIVERS))
def test_collector_down(protocol, sender, traced, capfd, caplog):
    port = free_port()
    target = otlp_target(
        f"http://127.0.0.1:{port}", protocol, {"OTEL_EXPORTER_OTLP_TIMEOUT": "3000"}
    )
    result = quiet_failure(target, traced, capfd, caplog, SENDERS[sender])
    assert result.error == (
        f"OTLP export to {target.endpoint} ({protocol}) failed after 0 of {len(traced) + 1} "
        "spans: collector unavailable (connection refused)"
    )


@pytest.mark.parametrize("sender", list(SENDERS))
@pytest.mark.parametrize(
    ("protocol", "reason"),
    [
        ("grpc", "collector unavailable (receiver refuses (test))"),
        ("http/protobuf", "collector unavailable (Service Unavailable)"),
    ],
)
def test_collector_refuses(protocol, reason, sender, traced, capfd, caplog):
    with RECEIVERS[protocol](refuse=True) as receiver:
        target = OtlpTarget(receiver.endpoint, protocol, (), 2.0)
        result = quiet_failure(target, traced, capfd, caplog, SENDERS[sender])
    assert result.error.startswith(
        f"OTLP export to {receiver.endpoint} ({protocol}) failed after 0"
    )
    assert result.error.endswith(f"spans: {reason}")


def test_failure_after_some_batches_counts_what_was_sent(traced, capfd, caplog):
    with GrpcReceiver() as receiver:
        target = OtlpTarget(receiver.endpoint, "grpc", (), 2.0)

        def spans() -> Iterator[ReadableSpan]:
            for index, span in enumerate(synthetic_spans(2 * BATCH_SPANS + 1)):
                receiver.refuse = index > BATCH_SPANS  # from the second batch on
                yield span

        result = send_spans(spans(), 2 * BATCH_SPANS + 1, target)
    assert result.sent == BATCH_SPANS == len(receiver.spans())
    assert f"failed after {BATCH_SPANS} of {2 * BATCH_SPANS + 1} spans" in result.error


def test_repeated_failures_each_have_their_reason(traced, capfd, caplog):
    port = free_port()
    target = otlp_target(f"http://127.0.0.1:{port}", "grpc", {"OTEL_EXPORTER_OTLP_TIMEOUT": "500"})
    for _ in range(2):  # the SDK's duplicate filter must not hide the second one
        result = quiet_failure(target, traced, capfd, caplog)
        assert result.error.endswith("collector unavailable (connection refused)")


# -- send_trace: requests encoded from the trace's columns ------------------------------

MANY_CALLS = """
    def scale(value, factor=2):
        return value * factor

    def numbers(n):
        yield from range(n)

    total = 0
    for i in range(17_000):  # call ids of 1, 2 and 3 varint bytes
        total += scale(i)
    print(total, sum(numbers(5)))
"""


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Trace:
    """A trace of 17,000+ calls with pattern annotations (several batches)."""
    root = tmp_path_factory.mktemp("otlp_many")
    write_files(root, {"prog.py": MANY_CALLS})
    result = run_tracer(["prog.py", "-o", "trace.json", "-q"], root)
    assert result.returncode == 0, result.stderr
    trace = otel_tracer.load(root / "trace.json")
    assert len(trace) > 1 << 14 and trace.patterns is not None
    return trace


def sdk_spans(trace: Trace, plan: SpanPlan) -> list[Span]:
    """The spans of ``plan`` as the SDK's own encoder encodes them."""
    (resource_spans,) = encode_spans(list(trace_spans(trace, plan=plan))).resource_spans
    (scope_spans,) = resource_spans.scope_spans
    return list(scope_spans.spans)


def envelopes(receiver: OtlpReceiver) -> list[tuple]:
    """The distinct (resource, schema URL, scope, schema URL) the receiver got."""
    seen: list[tuple] = []
    for request in receiver.requests:
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                envelope = (
                    resource_spans.resource,
                    resource_spans.schema_url,
                    scope_spans.scope,
                    scope_spans.schema_url,
                )
                if envelope not in seen:
                    seen.append(envelope)
    return seen


def forbidden(name: str) -> Callable[..., None]:
    """A stand-in for ``name`` that fails the test when called."""

    def call(*args, **kwargs) -> None:
        raise AssertionError(f"{name} was called")

    return call


@pytest.mark.parametrize("fold", [False, True], ids=["every-call", "fold-patterns"])
def test_send_trace_sends_what_send_spans_sends(receiver, traced, fold, monkeypatch):
    """Span by span (protobuf equality), resource and scope: the same as the SDK's
    own spans and encoder deliver."""
    plan = span_plan(traced, fold)
    assert bool(plan.groups) is fold
    with monkeypatch.context() as patched:
        patched.setattr(otlp, "trace_spans", forbidden("trace_spans"))  # no SDK spans
        result = send_trace(traced, plan, target_of(receiver))
    with RECEIVERS[receiver.protocol]() as reference:
        reference.protocol = receiver.protocol
        expected = send_spans(trace_spans(traced, plan=plan), len(plan), target_of(reference))
    assert result == expected and result.error is None
    ours, theirs = receiver.spans(), reference.spans()
    assert len(ours) == len(theirs) == result.sent
    for mine, sdk in zip(ours, theirs, strict=True):
        assert mine == sdk
    assert len(envelopes(receiver)) == 1 and envelopes(receiver) == envelopes(reference)
    keys = {kv.key for span in ours for kv in span.attributes}
    if fold:
        assert {"otel_tracer.pattern.group", "otel_tracer.pattern.iteration"} <= keys
    else:
        assert {"otel_tracer.yielded_value", "otel_tracer.call.resumed"} <= keys
        assert {"otel_tracer.args.password", "otel_tracer.pattern.iteration"} <= keys
        assert sum(bool(span.events) for span in ours) >= 2  # the exceptions
        threads = {attributes_of(span.attributes).get("thread.name") for span in ours}
        assert {"MainThread", "worker-0", "worker-1"} <= threads
    assert all(b"hunter2" not in request.SerializeToString() for request in receiver.requests)


@pytest.mark.parametrize("cache_size", [otlp_proto.CACHE_SIZE, 16])
def test_encoded_requests_hold_the_sdk_encoding_in_batches(many, cache_size, monkeypatch):
    monkeypatch.setattr(otlp_proto, "CACHE_SIZE", cache_size)  # 16: the caches overflow
    plan = span_plan(many)
    requests = [
        (ExportTraceServiceRequest.FromString(data), count)
        for data, count in encode_requests(many, plan)
    ]
    assert len(requests) > len(plan) // BATCH_SPANS
    spans = []
    for request, count in requests:
        (resource_spans,) = request.resource_spans
        (scope_spans,) = resource_spans.scope_spans
        assert len(scope_spans.spans) == count
        spans += scope_spans.spans
    assert spans == sdk_spans(many, plan)


@pytest.mark.parametrize(("most", "most_bytes"), [(7, BATCH_BYTES), (BATCH_SPANS, 3_000), (1, 1)])
def test_encoded_requests_respect_the_batch_limits(traced, most, most_bytes):
    plan = span_plan(traced)
    spans = []
    for data, count in encode_requests(traced, plan, batch_spans=most, batch_bytes=most_bytes):
        (resource_spans,) = ExportTraceServiceRequest.FromString(data).resource_spans
        (scope_spans,) = resource_spans.scope_spans
        assert len(scope_spans.spans) == count <= most
        assert count == 1 or sum(span.ByteSize() for span in scope_spans.spans) <= most_bytes
        spans += scope_spans.spans
    assert spans == sdk_spans(traced, plan)


def with_huge_values(trace: Trace) -> Trace:
    """The trace with every argument 300 kB long and every exception message 200 kB
    (the exception event's stack trace ends with the message)."""
    strings = list(trace.strings)
    for arguments in trace.arg_tuples:
        for index in arguments:
            if index >= 0:
                strings[index] = "x" * 300_000
    exceptions = [(kind, "m" * 200_000) for kind, _ in trace.exceptions]
    return dataclasses.replace(trace, strings=strings, exceptions=exceptions)


def test_send_trace_keeps_requests_under_the_grpc_limit_with_huge_values(traced):
    huge = with_huge_values(traced)
    plan = span_plan(huge)
    with GrpcReceiver() as receiver:  # refuses messages over 4 MiB, as collectors do
        target = OtlpTarget(receiver.endpoint, "grpc", (), 10.0)
        assert send_trace(huge, plan, target) == SendResult(len(plan), None)
        assert receiver.spans() == sdk_spans(huge, plan)
        assert len(receiver.requests) >= 5
        for request in receiver.requests:
            (resource_spans,) = request.resource_spans
            (scope_spans,) = resource_spans.scope_spans
            size = sum(span.ByteSize() for span in scope_spans.spans)
            assert len(scope_spans.spans) == 1 or size <= BATCH_BYTES
            assert request.ByteSize() < 4 * 2**20


def test_send_trace_falls_back_to_sdk_spans_without_the_hook(receiver, traced, monkeypatch):
    monkeypatch.setattr(otlp, "_request_exporter_class", lambda protocol: None)
    monkeypatch.setattr(otlp, "encode_requests", forbidden("encode_requests"))
    plan = span_plan(traced)
    assert send_trace(traced, plan, target_of(receiver)) == SendResult(len(plan), None)
    assert receiver.spans() == sdk_spans(traced, plan)


def test_the_hooks_are_detected(monkeypatch):
    """The installed SDK has both hooks; an SDK without them gets the fallback."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.http import trace_exporter

    detect_grpc = otlp._grpc_request_exporter.__wrapped__
    detect_http = otlp._http_request_exporter.__wrapped__
    assert detect_grpc() is not None and detect_http() is not None
    monkeypatch.setattr(OTLPSpanExporter, "_translate_data", None)
    monkeypatch.setattr(trace_exporter, "_http", types.SimpleNamespace())
    assert detect_grpc() is None and detect_http() is None


class FirstRequestReceiver(GrpcReceiver):
    """Takes the first request, then refuses."""

    def Export(self, request, context):
        self.refuse = bool(self.requests)
        return super().Export(request, context)


def test_send_trace_failure_after_some_batches_counts_what_was_sent(many, capfd, caplog):
    plan = span_plan(many)
    _, first = next(encode_requests(many, plan))
    with FirstRequestReceiver() as receiver:
        result = send_trace(many, plan, OtlpTarget(receiver.endpoint, "grpc", (), 2.0))
    assert result.sent == first == len(receiver.spans()) > 0
    assert result.error == (
        f"OTLP export to {receiver.endpoint} (grpc) failed after {first} of {len(plan)} "
        "spans: collector unavailable (receiver refuses (test))"
    )
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("protocol", list(RECEIVERS))
def test_send_trace_retries_through_the_exporters_transport(protocol, traced):
    """A collector that refuses once and then takes the batch: the SDK's retry (and,
    for gRPC, its reconnection, which makes the stub again) delivers everything."""
    plan = span_plan(traced)
    with RECEIVERS[protocol](refuse_first=1) as receiver:
        target = OtlpTarget(receiver.endpoint, protocol, (), 10.0)
        assert send_trace(traced, plan, target) == SendResult(len(plan), None)
        assert receiver.spans() == sdk_spans(traced, plan)
        assert receiver.refuse_first == 0


def test_send_trace_encoding_error_is_one_line(traced, monkeypatch):
    def failing(trace, plan):
        yield from encode_requests(trace, plan, batch_spans=5)
        raise RuntimeError("cannot encode\nsecond line")

    monkeypatch.setattr(otlp, "encode_requests", failing)
    plan = span_plan(traced)
    with GrpcReceiver() as receiver:
        result = send_trace(traced, plan, OtlpTarget(receiver.endpoint, "grpc", (), 10.0))
    assert result.sent == len(plan) == len(receiver.spans())
    assert result.error.endswith(f"{len(plan)} of {len(plan)} spans: RuntimeError: cannot encode")


def test_send_trace_uses_the_exporters_settings(receiver, traced):
    plan = span_plan(traced)
    target = target_of(receiver, [("x-api-key", "s3cret")], compression="gzip")
    assert send_trace(traced, plan, target) == SendResult(len(plan), None)
    assert receiver.spans() == sdk_spans(traced, plan)
    assert all(headers["x-api-key"] == "s3cret" for headers in receiver.headers)
    if receiver.protocol == HTTP:
        assert receiver.headers[0]["content-encoding"] == "gzip"


def test_send_trace_progress_bar(traced, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(otlp, "PROGRESS_MIN_SPANS", 10)
    with GrpcReceiver() as receiver:
        target = OtlpTarget(receiver.endpoint, "grpc", (), 10.0)
        assert send_trace(traced, span_plan(traced), target, progress=False).error is None
        assert terminal.getvalue() == ""
        assert send_trace(traced, span_plan(traced), target).error is None
    assert "OTLP export" in terminal.getvalue()


# -- command line ------------------------------------------------------------------------


@pytest.fixture
def program(tmp_path):
    write_files(tmp_path, {"prog.py": PROGRAM})
    return tmp_path


def test_cli_sends_to_the_endpoint_and_writes_the_trace(program):
    with GrpcReceiver() as receiver:
        result = run_tracer(
            ["prog.py", "-q", "-o", "t.json", "--otlp-endpoint", receiver.endpoint], program
        )
        assert result.returncode == 3, result.stderr
        trace = otel_tracer.load(program / "t.json")
        assert len(receiver.spans()) == len(trace) + 1
    assert "Traceback" not in result.stderr


def test_cli_collector_down_keeps_trace_and_exit_code(program):
    url = f"http://127.0.0.1:{free_port()}"
    result = run_tracer(
        ["prog.py", "-q", "-o", "t.json", "--otlp-endpoint", url],
        program,
        env={"OTEL_EXPORTER_OTLP_TIMEOUT": "2000"},
    )
    assert result.returncode == 3
    assert len(otel_tracer.load(program / "t.json")) > 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "OTLP export to" in lines[0] and "connection refused" in lines[0]


def test_cli_standard_environment_grpc(program):
    with GrpcReceiver() as receiver:
        env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
        result = run_tracer(["prog.py", "-q", "-o", "t.json"], program, env=env)
        assert result.returncode == 3, result.stderr
        assert len(receiver.spans()) == len(otel_tracer.load(program / "t.json")) + 1


def test_cli_standard_environment_http(program):
    with HttpReceiver() as receiver:
        env = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint.removesuffix("/v1/traces"),
            "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=s3cret",
        }
        result = run_tracer(["prog.py", "-q", "-o", "t.json"], program, env=env)
        assert result.returncode == 3, result.stderr
        assert len(receiver.spans()) == len(otel_tracer.load(program / "t.json")) + 1
        assert receiver.headers[0]["x-api-key"] == "s3cret"


def test_cli_bad_endpoint_is_rejected_before_the_run(program):
    result = run_tracer(["prog.py", "-o", "t.json", "--otlp-endpoint", "localhost:4317"], program)
    assert result.returncode == 2
    assert "localhost:4317" in result.stderr and "Traceback" not in result.stderr
    assert not (program / "t.json").exists()


def test_exporters_command_sends_a_trace_file(program):
    assert run_tracer(["prog.py", "-q", "-o", "t.json"], program).returncode == 3
    with HttpReceiver() as receiver:
        result = run_python(
            ["-m", "exporters", "t.json", "--to", "otlp", "--otlp-endpoint", receiver.endpoint],
            program,
        )
        assert result.returncode == 0, result.stderr
        assert len(receiver.spans()) == len(otel_tracer.load(program / "t.json")) + 1
