"""The standard ``OTEL_*`` settings, per the specification's
configuration/sdk-environment-variables.md, against real receivers on 127.0.0.1
(tests/otlp_receivers.py): invalid values are one warning line and the default
(the program always runs), enums are case-insensitive, ``OTEL_SDK_DISABLED``,
the SDK's samplers (parent-based by default), the exporter list, ``http/json``,
compression, ``TRACESTATE``, partial success and a slow collector."""

from __future__ import annotations

import json

import pytest
from conftest import run_tracer, write_files
from otlp_receivers import GrpcReceiver, HttpReceiver

import otel_tracer
from exporters.collector import span_export
from exporters.otlp import OtlpConfigError, otlp_target

PROGRAM = """
    import sys

    def step(i):
        return i * 2

    for i in range(3):
        step(i)
    print("ran")
    sys.exit(3)
"""
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.fixture
def program(tmp_path):
    write_files(tmp_path, {"prog.py": PROGRAM})
    return tmp_path


def traced(program, receiver, env: dict[str, str], *options: str):
    """Run the program traced, sending to ``receiver``; the result and the trace."""
    base = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    if isinstance(receiver, HttpReceiver):
        base["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = receiver.endpoint
        base["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf"
    result = run_tracer(["prog.py", "-o", "t.json", *options], program, env={**base, **env})
    assert result.returncode == 3 and result.stdout == "ran\n", result.stderr
    return result, otel_tracer.load(program / "t.json")


def warnings_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("otel-tracer: warning:")]


@pytest.mark.parametrize(
    ("environ", "warning"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"}, "OTEL_EXPORTER_OTLP_PROTOCOL='thrift'"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "10s"}, "OTEL_EXPORTER_OTLP_TIMEOUT='10s'"),
        ({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "0"}, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT='0'"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "a=1,novalue"}, "OTEL_EXPORTER_OTLP_HEADERS: item 2"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, "OTEL_EXPORTER_OTLP_COMPRESSION='zstd'"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "c:4317"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
    ],
)
def test_bad_environment_values_are_warnings_and_defaults(environ, warning):
    target = otlp_target(None, None, {"OTEL_TRACES_EXPORTER": "otlp", **environ})
    (line,) = target.warnings
    assert line.startswith(warning) and line.endswith("ignored")
    assert target.timeout == 10.0 and target.compression == "none"
    assert target.endpoint == "http://localhost:4317" or "ENDPOINT" not in warning


def test_bad_header_values_are_never_echoed():
    secret = "Authorization Bearer s3cret-token"
    target = otlp_target(None, None, {"OTEL_TRACES_EXPORTER": "otlp",
                                      "OTEL_EXPORTER_OTLP_HEADERS": secret})  # fmt: skip
    assert target.headers == () and "s3cret" not in " ".join(target.warnings)


def test_enums_are_case_insensitive():
    environ = {"OTEL_TRACES_EXPORTER": "OTLP", "OTEL_EXPORTER_OTLP_PROTOCOL": "HTTP/JSON",
               "OTEL_EXPORTER_OTLP_COMPRESSION": "GZIP"}  # fmt: skip
    export = span_export(None, None, environ)
    assert export.otlp.protocol == "http/json" and export.otlp.compression == "gzip"
    assert export.warnings == ()


@pytest.mark.parametrize(
    ("endpoint", "protocol", "message"),
    [
        ("localhost:4317", None, "--otlp-endpoint='localhost:4317' is not an OTLP endpoint"),
        ("http://c:port", None, "--otlp-endpoint='http://c:port' is not an OTLP endpoint"),
        ("http://c", "thrift", "--otlp-protocol='thrift' is not an OTLP protocol"),
    ],
)
def test_bad_options_are_one_line_errors(endpoint, protocol, message):
    with pytest.raises(OtlpConfigError) as error:
        otlp_target(endpoint, protocol, {})
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_the_program_runs_despite_bad_values(program):
    with GrpcReceiver() as receiver:
        result, trace = traced(
            program, receiver, {"OTEL_EXPORTER_OTLP_TIMEOUT": "soon", "OTEL_SDK_DISABLED": "yes"}
        )
        assert len(receiver.spans()) == len(trace) + 1
    assert warnings_of(result.stderr) == [
        "otel-tracer: warning: OTEL_SDK_DISABLED='yes' is not true or false; taken as false",
        "otel-tracer: warning: OTEL_EXPORTER_OTLP_TIMEOUT='soon' is not a timeout in "
        "milliseconds; ignored",
    ]


def test_sdk_disabled_sends_nothing(program):
    with GrpcReceiver() as receiver:
        result, _ = traced(program, receiver, {"OTEL_SDK_DISABLED": "TRUE"})
        assert receiver.requests == []
    assert (program / "t.json").exists() and "spans sent" not in result.stderr


@pytest.mark.parametrize(
    ("env", "sent"),
    [
        ({"TRACEPARENT": f"00-{TRACE_ID}-{PARENT}-00"}, False),  # parent-based by default
        ({"TRACEPARENT": f"00-{TRACE_ID}-{PARENT}-01"}, True),
        ({"OTEL_TRACES_SAMPLER": "ALWAYS_OFF"}, False),
        ({"OTEL_TRACES_SAMPLER": "always_on", "TRACEPARENT": f"00-{TRACE_ID}-{PARENT}-00"}, True),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"}, False),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1"}, True),
    ],
)
def test_samplers(program, env, sent):
    with HttpReceiver() as receiver:
        result, trace = traced(program, receiver, env)
        assert len(receiver.spans()) == (len(trace) + 1 if sent else 0)
    assert ("not sampled" in result.stderr) != sent or "-q" in result.args


def test_unknown_sampler_is_a_warning(program):
    with HttpReceiver() as receiver:
        result, trace = traced(program, receiver, {"OTEL_TRACES_SAMPLER": "sometimes"})
        assert len(receiver.spans()) == len(trace) + 1
    (warning,) = warnings_of(result.stderr)
    assert warning.startswith("otel-tracer: warning: OTEL_TRACES_SAMPLER: ")


def test_exporter_list_console_and_unknown(program):
    with HttpReceiver() as receiver:
        result = run_tracer(
            ["prog.py", "-q", "-o", "t.json"],
            program,
            env={"OTEL_TRACES_EXPORTER": "console, zipkin"},
        )
        assert receiver.requests == []
    assert result.returncode == 3
    assert warnings_of(result.stderr) == [
        "otel-tracer: warning: OTEL_TRACES_EXPORTER: unknown exporter 'zipkin' ignored"
    ]
    printed, names, decoder = result.stdout.removeprefix("ran\n"), [], json.JSONDecoder()
    while printed.strip():
        span, end = decoder.raw_decode(printed.lstrip())
        names.append(span["name"])
        printed = printed.lstrip()[end:]
    assert names[:2] == ["prog.py", "<module>"] and names.count("step") == 3
    none = run_tracer(["prog.py", "-q"], program, env={"OTEL_TRACES_EXPORTER": "none"})
    assert none.returncode == 3 and none.stderr == ""


def test_http_json_reaches_an_otlp_json_receiver(program):
    with HttpReceiver() as receiver:
        result, trace = traced(program, receiver, {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
        assert set(receiver.content_types) == {"application/json"}
        spans = receiver.spans()
    assert len(spans) == len(trace) + 1
    assert {s.span_id.hex() for s in spans[1:]} == {f"{i:016x}" for i in trace.calls.span_id}
    assert "(http/json)" in result.stderr


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_compression(program, compression):
    with HttpReceiver() as receiver:
        _, trace = traced(program, receiver, {"OTEL_EXPORTER_OTLP_COMPRESSION": compression})
        encoding = receiver.headers[0].get("content-encoding")
        assert len(receiver.spans()) == len(trace) + 1
    assert encoding == (None if compression == "none" else "gzip")


def test_tracestate_is_kept_on_the_spans(program):
    state = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    env = {"TRACEPARENT": f"00-{TRACE_ID}-{PARENT}-01", "TRACESTATE": state}
    with GrpcReceiver() as receiver:
        _, trace = traced(program, receiver, env)
        spans = receiver.spans()
    assert trace.meta["trace_state"] == state
    assert {s.trace_state for s in spans} == {state}
    assert spans[0].parent_span_id.hex() == PARENT and spans[0].trace_id.hex() == TRACE_ID


@pytest.mark.parametrize("receiver_class", [GrpcReceiver, HttpReceiver])
def test_partial_success_is_a_warning(program, receiver_class):
    with receiver_class(reject=(2, "2 spans too old")) as receiver:
        result, _ = traced(program, receiver, {})
    (warning,) = warnings_of(result.stderr)
    assert warning.startswith("otel-tracer: warning: the collector rejected 2 of ")
    assert warning.endswith("spans: 2 spans too old")


@pytest.mark.parametrize("receiver_class", [GrpcReceiver, HttpReceiver])
def test_a_slow_collector_is_uncertain_not_failed(program, receiver_class):
    with receiver_class(delay=1.5) as receiver:
        result, trace = traced(program, receiver, {"OTEL_EXPORTER_OTLP_TIMEOUT": "500"})
        assert receiver.spans()  # the collector stored them
    (warning,) = warnings_of(result.stderr)
    assert "may have stored those" in warning and "(uncertain)" in warning
    assert "error:" not in result.stderr and len(trace)
