"""Send a recorded run's spans to an OTLP collector (gRPC or HTTP/protobuf).

``otlp_target`` reads ``--otlp-endpoint``/``--otlp-protocol`` and the standard
``OTEL_*`` variables into an ``OtlpTarget`` (see docs/otlp.md). ``send_trace``
sends a trace's spans as requests encoded straight from its columns
(exporters/otlp_proto.py) through the transport of the OpenTelemetry SDK's OTLP
exporters (their retries, TLS, headers, compression and timeouts); ``send_spans``
exports any SDK spans through those exporters. Both send size-bounded batches and
turn a failure into one line instead of the SDK's log records.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from tqdm import tqdm

from exporters.otlp_proto import BATCH_BYTES, BATCH_SPANS, encode_requests
from otel_tracer.spans.plan import SpanPlan
from otel_tracer.spans.sdk import trace_spans
from otel_tracer.trace.model import Trace
from otel_tracer.trace.redact import REDACTED

GRPC = "grpc"
HTTP = "http/protobuf"
HTTP_JSON = "http/json"
PROTOCOLS = (GRPC, HTTP, HTTP_JSON)
COMPRESSIONS = ("gzip", "none")
DEFAULT_ENDPOINTS = {
    GRPC: "http://localhost:4317",
    HTTP: "http://localhost:4318/v1/traces",
    HTTP_JSON: "http://localhost:4318/v1/traces",
}
TRACES_PATH = "/v1/traces"
TRACE_EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"  # gRPC
DEFAULT_TIMEOUT_MS = 10_000
PROGRESS_MIN_SPANS = 50_000
NO_ANSWER = "no answer"
_HEADER_KEY = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
_Batch = TypeVar("_Batch")


class OtlpConfigError(ValueError):
    """One-line message for a bad ``--otlp-endpoint``/``--otlp-protocol``."""


@dataclass(frozen=True)
class OtlpTarget:
    """Where and how to send spans."""

    endpoint: str  # full URL as given to the SDK exporter
    protocol: str  # "grpc", "http/protobuf" or "http/json"
    headers: tuple[tuple[str, str], ...]
    timeout: float  # seconds per batch
    compression: str = "none"  # "gzip" or "none"
    warnings: tuple[str, ...] = ()  # OTEL_* values ignored, one line each

    @property
    def shown(self) -> str:
        """The endpoint as printed: without the user and password it may hold."""
        return shown_url(self.endpoint)

    def scrub(self, text: str) -> str:
        """``text`` (a message of the SDK, an exception) with the endpoint's
        credentials and every header value replaced by ``[redacted]``."""
        userinfo = urlsplit(self.endpoint).netloc.rpartition("@")[0]
        secrets = {userinfo, unquote(userinfo), *userinfo.split(":"), *unquote(userinfo).split(":")}
        secrets |= {value for _, value in self.headers}
        for secret in sorted((s for s in secrets if len(s) >= 3), key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return text


def shown_url(url: str) -> str:
    """``url`` with its user and password (``http://user:pass@host``) replaced by
    ``[redacted]``, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{REDACTED}@{host}"))


@dataclass
class SendResult:
    """How many spans the collector accepted, and why it stopped if it did."""

    sent: int
    error: str | None  # one line, None on success
    rejected: int = 0  # spans a partial success answer said were not stored
    messages: list[str] = field(default_factory=list)  # the partial success messages
    uncertain: int = 0  # spans of a request that timed out: maybe stored


def otlp_target(
    endpoint: str | None, protocol: str | None = None, environ: Mapping[str, str] = os.environ
) -> OtlpTarget | None:
    """The OTLP target asked for by ``--otlp-endpoint``/``--otlp-protocol`` and the
    ``OTEL_*`` variables; None when neither an endpoint option nor
    ``OTEL_TRACES_EXPORTER=otlp`` asks for OTLP. A bad option raises
    OtlpConfigError; a bad ``OTEL_*`` value is ignored, with a line in
    ``warnings`` (spec: configuration/sdk-environment-variables.md, "Parsing":
    an invalid value SHOULD be warned about and treated as if it were not set)."""
    if endpoint is None and not exporter_requested(environ):
        return None
    warnings: list[str] = []
    source, url = _endpoint_setting(endpoint, environ)
    if url is not None and not _is_url(url):
        if source == "--otlp-endpoint":
            raise OtlpConfigError(
                f"{source}={shown_url(url)!r} is not an OTLP endpoint URL "
                "(expected http:// or https:// and a host, e.g. http://localhost:4317)"
            )
        warnings.append(f"{source}: not an http:// or https:// URL with a host; ignored")
        source, url = "default", None
    chosen = _protocol(protocol, url, environ, warnings)
    return OtlpTarget(
        endpoint=_signal_url(source, url, chosen),
        protocol=chosen,
        headers=_headers(environ, warnings),
        timeout=_timeout(environ, warnings),
        compression=_compression(environ, warnings),
        warnings=tuple(warnings),
    )


def _setting(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """(variable, value) of the signal-specific ``OTEL_EXPORTER_OTLP_TRACES_<name>``,
    else of ``OTEL_EXPORTER_OTLP_<name>``, else None (empty values count as unset:
    spec, "Parsing empty value")."""
    for variable in (f"OTEL_EXPORTER_OTLP_TRACES_{name}", f"OTEL_EXPORTER_OTLP_{name}"):
        value = environ.get(variable, "").strip()
        if value:
            return variable, value
    return None


def exporter_requested(environ: Mapping[str, str]) -> bool:
    """Whether the comma list ``OTEL_TRACES_EXPORTER`` names ``otlp``."""
    names = {name.strip().lower() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",")}
    return "otlp" in names


def _endpoint_setting(endpoint: str | None, environ: Mapping[str, str]) -> tuple[str, str | None]:
    """(where it came from, URL) of the endpoint; URL None for the default."""
    if endpoint is not None:
        return "--otlp-endpoint", endpoint.strip()
    return _setting(environ, "ENDPOINT") or ("default", None)


def _is_url(url: str) -> bool:
    """Whether ``url`` is an http(s) URL with a host and a valid port."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _protocol(
    protocol: str | None, url: str | None, environ: Mapping[str, str], warnings: list[str]
) -> str:
    """The protocol: the option, else OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL (an enum:
    case-insensitive), else http/protobuf for an endpoint on port 4318 or ending
    in /v1/traces, else grpc."""
    if protocol:
        if protocol.strip().lower() not in PROTOCOLS:
            raise OtlpConfigError(
                f"--otlp-protocol={protocol!r} is not an OTLP protocol "
                "(use grpc, http/protobuf or http/json)"
            )
        return protocol.strip().lower()
    setting = _setting(environ, "PROTOCOL")
    if setting is not None:
        variable, value = setting
        if value.lower() in PROTOCOLS:
            return value.lower()
        warnings.append(f"{variable}={value!r} is not grpc, http/protobuf or http/json; ignored")
    return HTTP if url is not None and _looks_like_http(url) else GRPC


def _looks_like_http(url: str) -> bool:
    """An OTLP/HTTP endpoint by convention: port 4318 or a /v1/traces path."""
    parts = urlsplit(url)
    return parts.port == 4318 or parts.path.rstrip("/").endswith(TRACES_PATH)


def _signal_url(source: str, url: str | None, protocol: str) -> str:
    """The URL for the exporter: for OTLP/HTTP the generic OTEL_EXPORTER_OTLP_ENDPOINT,
    or an option URL without a path, gets /v1/traces (spec: protocol/exporter.md,
    "Endpoint URLs for OTLP/HTTP")."""
    if url is None:
        return DEFAULT_ENDPOINTS[protocol]
    if protocol == GRPC or source == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":
        return url
    if source == "OTEL_EXPORTER_OTLP_ENDPOINT" or urlsplit(url).path in ("", "/"):
        return url.rstrip("/") + TRACES_PATH
    return url


def _headers(environ: Mapping[str, str], warnings: list[str]) -> tuple[tuple[str, str], ...]:
    """OTEL_EXPORTER_OTLP_(TRACES_)HEADERS ``k=v,k2=v2`` with URL-decoded values;
    keys lower-cased (gRPC metadata keys must be). An item that is not
    ``key=value`` is left out with a warning that names it by position only (a
    header value is often a credential)."""
    setting = _setting(environ, "HEADERS")
    if setting is None:
        return ()
    variable, value = setting
    headers = []
    for position, item in enumerate(value.split(","), 1):
        if not item.strip():
            continue
        key, equals, text = item.partition("=")
        key = unquote(key).strip().lower()
        if not equals or not _HEADER_KEY.fullmatch(key):
            warnings.append(f"{variable}: item {position} is not key=value; ignored")
            continue
        headers.append((key, unquote(text).strip()))
    return tuple(headers)


def _timeout(environ: Mapping[str, str], warnings: list[str]) -> float:
    """OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT in milliseconds (as the specification
    says) as seconds; 10 s by default."""
    setting = _setting(environ, "TIMEOUT")
    if setting is None:
        return DEFAULT_TIMEOUT_MS / 1000
    variable, value = setting
    try:
        milliseconds = float(value)
    except ValueError:
        milliseconds = -1.0
    if not 0 < milliseconds < float("inf"):
        warnings.append(f"{variable}={value!r} is not a timeout in milliseconds; ignored")
        return DEFAULT_TIMEOUT_MS / 1000
    return milliseconds / 1000


def _compression(environ: Mapping[str, str], warnings: list[str]) -> str:
    """OTEL_EXPORTER_OTLP_(TRACES_)COMPRESSION: ``gzip`` or ``none`` (default)."""
    setting = _setting(environ, "COMPRESSION")
    if setting is None:
        return "none"
    variable, value = setting
    if value.lower() in COMPRESSIONS:
        return value.lower()
    warnings.append(f"{variable}={value!r} is not gzip or none; ignored")
    return "none"


def send_trace(
    trace: Trace, plan: SpanPlan, target: OtlpTarget, *, progress: bool = True
) -> SendResult:
    """Send the spans of ``plan`` (``len(plan)`` of them) to ``target`` as requests
    encoded from the trace's columns, through the SDK exporter's transport; the same
    spans, batches, failures and progress bar as ``send_spans(trace_spans(trace,
    plan=plan), ...)``, which it falls back to when the installed SDK lacks the hook
    that takes an encoded request."""
    exporter_class = _request_exporter_class(target.protocol)
    if exporter_class is None:
        if target.protocol == HTTP_JSON:
            reason = "the installed OTLP/HTTP exporter cannot send JSON bodies"
            return SendResult(0, _failure(target, 0, len(plan), reason))
        return send_spans(trace_spans(trace, plan=plan), len(plan), target, progress=progress)
    exporter_for = functools.partial(_exporter, exporter_class=exporter_class)
    if target.protocol == HTTP_JSON:
        from exporters.otlp_json import otlp_json_requests

        requests = _one_ahead(otlp_json_requests(trace, plan))
    else:
        requests = _one_ahead(encode_requests(trace, plan))
    return _send(target, len(plan), progress, exporter_for, requests, _export_request)


def _one_ahead(items: Iterator[_Batch]) -> Iterator[_Batch]:
    """``items``, the next one made in a worker thread while the caller sends the
    current one (the exporters wait for the collector's answer with the GIL released,
    so encoding overlaps the round trip)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="otlp-encode") as worker:
        upcoming = worker.submit(next, items, None)
        while (item := upcoming.result()) is not None:
            upcoming = worker.submit(next, items, None)
            yield item


def send_spans(
    spans: Iterable[ReadableSpan], total: int, target: OtlpTarget, *, progress: bool = True
) -> SendResult:
    """Export ``spans`` (about ``total`` of them, consumed lazily) to ``target`` in
    batches; stop at the first batch the collector does not take. A progress bar
    shows on a terminal for ``progress`` and at least PROGRESS_MIN_SPANS spans."""
    batches = ((batch, len(batch)) for batch in _batches(spans))
    return _send(target, total, progress, _exporter, batches, _export_spans)


def _send(
    target: OtlpTarget,
    total: int,
    progress: bool,
    exporter_for: Callable[[OtlpTarget], Any],
    batches: Iterable[tuple[_Batch, int]],
    export: Callable[[Any, _Batch, int], bool],
) -> SendResult:
    """Export ``batches`` (each with its number of spans) with the exporter made by
    ``exporter_for``; stop at the first batch that ``export`` says the collector
    did not take; one line for a failure. A ``partial_success`` answer counts its
    rejected spans (spec: protocol/otlp.md, "Partial Success"); a request that
    got no answer in time is uncertain, not failed: the collector may have
    stored it."""
    result = SendResult(0, None)
    with sdk_log_records() as records, _progress_bar(total, progress) as bar:
        try:
            exporter = exporter_for(target)
        except Exception as error:
            result.error = _failure(target, 0, total, _exception_text(error))
            return result
        try:
            for batch, count in batches:
                ok = export(exporter, batch, count)
                for rejected, message in getattr(exporter, "partial", ()):
                    result.rejected += rejected
                    if message and message not in result.messages:
                        result.messages.append(message)
                if not ok:
                    reason = _reason(records, target)
                    if reason.startswith(NO_ANSWER):
                        result.uncertain = count
                    result.error = _failure(target, result.sent, total, reason)
                    return result
                result.sent += count
                bar.update(count)
        except Exception as error:
            result.error = _failure(target, result.sent, total, _exception_text(error))
        finally:
            exporter.shutdown()
    return result


def _export_spans(exporter: SpanExporter, batch: list[ReadableSpan], count: int) -> bool:
    """Export SDK spans; whether the collector took them."""
    return exporter.export(batch) is SpanExportResult.SUCCESS


def _export_request(exporter: Any, request: bytes, count: int) -> bool:
    """Send one encoded request of ``count`` spans; whether the collector took it."""
    return exporter.export_request(request, count)


def _exporter(target: OtlpTarget, exporter_class: type[SpanExporter] | None = None) -> SpanExporter:
    """The SDK's OTLP span exporter for ``target`` (or ``exporter_class``, a subclass
    of it from ``_request_exporter_class``, made with the same settings)."""
    if target.protocol == GRPC:
        _quiet_grpc()
        from grpc import Compression
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return (exporter_class or OTLPSpanExporter)(
            endpoint=target.endpoint,
            insecure=urlsplit(target.endpoint).scheme == "http",
            headers=target.headers,
            timeout=target.timeout,
            compression=Compression.Gzip
            if target.compression == "gzip"
            else Compression.NoCompression,
        )
    from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    headers = dict(target.headers)
    if target.protocol == HTTP_JSON:  # spec: protocol/otlp.md, "JSON Protobuf Encoding"
        headers["content-type"] = "application/json"
    return (exporter_class or HttpSpanExporter)(
        endpoint=target.endpoint,
        headers=headers,
        timeout=target.timeout,
        compression=HttpCompression(target.compression),
    )


def _request_exporter_class(protocol: str) -> type[SpanExporter] | None:
    """The SDK's exporter class for ``protocol`` with an ``export_request(request,
    spans) -> bool`` that sends an encoded request through the exporter's own
    transport (retries, backoff, TLS, headers, compression, timeout); None when
    the installed SDK lacks the private hook it needs (or the exporter itself, which
    ``send_spans`` then reports)."""
    try:
        return _grpc_request_exporter() if protocol == GRPC else _http_request_exporter()
    except ImportError:
        return None


def _quiet_grpc() -> None:
    """Keep gRPC's C core from writing its own log lines (``Got goaway ...``) to
    stderr: failures reach the user as our one line. Only takes effect when gRPC
    is not imported yet, and never overrides a ``GRPC_VERBOSITY`` the user set."""
    if "grpc" not in sys.modules:
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")


@functools.cache
def _grpc_request_exporter() -> type[SpanExporter] | None:
    """The gRPC exporter whose ``_translate_data`` (which turns what its ``_export``
    is given into the request) passes an encoded request through, and whose stub
    (made by ``_initialize_channel_and_stub``, again on reconnection) sends it as
    it is, without the stub's serializer."""
    _quiet_grpc()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    hooks = ("_export", "_translate_data", "_count_data", "_initialize_channel_and_stub")
    if not all(callable(getattr(OTLPSpanExporter, hook, None)) for hook in hooks):
        return None

    class GrpcRequestExporter(OTLPSpanExporter):
        partial: list[tuple[int, str]]

        def export_request(self, request: bytes, spans: int) -> bool:
            """Send an encoded ExportTraceServiceRequest of ``spans`` spans; what a
            partial success answer said is in ``partial``."""
            self.partial = []
            return self._export(_Request(request, spans)) is SpanExportResult.SUCCESS

        def _answered(self, response: ExportTraceServiceResponse) -> None:
            answer = response.partial_success
            if answer.rejected_spans or answer.error_message:
                self.partial.append((answer.rejected_spans, answer.error_message))

        def _translate_data(self, data: _Request) -> bytes:
            return data.request

        def _count_data(self, data: _Request) -> int:
            return data.spans

        def _initialize_channel_and_stub(self) -> None:
            super()._initialize_channel_and_stub()
            export = self._channel.unary_unary(
                TRACE_EXPORT_METHOD,
                request_serializer=None,  # the request is serialized already
                response_deserializer=ExportTraceServiceResponse.FromString,
            )

            def answered(**call: Any) -> ExportTraceServiceResponse:
                response = export(**call)
                self._answered(response)
                return response

            self._client = types.SimpleNamespace(Export=answered)

    return GrpcRequestExporter


@functools.cache
def _http_request_exporter() -> type[SpanExporter] | None:
    """The HTTP exporter that posts a request through its ``_client``: the SDK's
    ``_OTLPHTTPClient``, whose ``export(bytes)`` compresses, posts and retries."""
    from opentelemetry.exporter.otlp.proto.http import trace_exporter

    client_class = getattr(getattr(trace_exporter, "_http", None), "_OTLPHTTPClient", None)
    if not callable(getattr(client_class, "export", None)):
        return None

    class HttpRequestExporter(trace_exporter.OTLPSpanExporter):
        partial: list[tuple[int, str]]

        def export_request(self, request: bytes, spans: int) -> bool:
            """Send an encoded ExportTraceServiceRequest of ``spans`` spans (protobuf,
            or JSON for http/json); what a partial success answer said is in
            ``partial``."""
            self.partial = []
            transport = self._client._transport
            post = transport.request

            def answered(*args: Any, **kwargs: Any) -> Any:
                result = post(*args, **kwargs)
                status = getattr(result, "status_code", None)
                if status is not None and 200 <= status < 300:
                    self.partial += _partial_success(result.content())
                return result

            transport.request = answered
            try:
                return bool(self._client.export(request).success)
            finally:
                transport.request = post

    return HttpRequestExporter


def _partial_success(body: bytes) -> list[tuple[int, str]]:
    """(rejected spans, message) of an OTLP/HTTP answer's ``partial_success``, in
    protobuf or JSON (an empty body is full success)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    if not body:
        return []
    try:
        if body.lstrip().startswith(b"{"):
            answer = json.loads(body).get("partialSuccess") or {}
            rejected, message = int(answer.get("rejectedSpans") or 0), answer.get("errorMessage")
        else:
            partial = ExportTraceServiceResponse.FromString(body).partial_success
            rejected, message = partial.rejected_spans, partial.error_message
    except (ValueError, AttributeError, TypeError):
        return []
    return [(rejected, str(message or ""))] if rejected or message else []


@dataclass(frozen=True)
class _Request:
    """An encoded request on its way through the gRPC exporter's ``_export``."""

    request: bytes  # a serialized ExportTraceServiceRequest
    spans: int


def _batches(spans: Iterable[ReadableSpan]) -> Iterator[list[ReadableSpan]]:
    """Lists of at most BATCH_SPANS spans and about BATCH_BYTES of encoded size
    (a span bigger than that goes alone)."""
    batch: list[ReadableSpan] = []
    size = 0
    for span in spans:
        cost = _approximate_size(span)
        if batch and (len(batch) == BATCH_SPANS or size + cost > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(span)
        size += cost
    if batch:
        yield batch


def _approximate_size(span: ReadableSpan) -> int:
    """A cheap estimate of a span's protobuf size: ids, times and framing, plus
    its name, attributes and events (stack traces can make it large)."""
    size = 80 + len(span.name) + _attributes_size(span.attributes)
    for event in span.events:
        size += 24 + len(event.name) + _attributes_size(event.attributes)
    return size


def _attributes_size(attributes: Mapping[str, object] | None) -> int:
    """Estimated encoded size of an attribute map (strings by length, others 12)."""
    if not attributes:
        return 0
    return sum(
        8 + len(key) + (len(value) if isinstance(value, str) else 12)
        for key, value in attributes.items()
    )


@contextmanager
def sdk_log_records() -> Iterator[list[logging.LogRecord]]:
    """Collect the warnings and errors the SDK logs meanwhile, instead of letting
    them reach the terminal or the traced program's logging configuration. The
    SDK loggers' own filters (one drops a repeat of the last message) are lifted
    so that every failure is seen."""
    records: list[logging.LogRecord] = []
    handler = _ListHandler(records)
    root = logging.getLogger("opentelemetry")
    saved = root.level, root.propagate
    filtered = {
        logger: logger.filters
        for name, logger in logging.Logger.manager.loggerDict.items()
        if name.startswith("opentelemetry.") and isinstance(logger, logging.Logger)
    }
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    root.propagate = False
    for logger in filtered:
        logger.filters = []
    try:
        yield records
    finally:
        root.removeHandler(handler)
        root.level, root.propagate = saved
        for logger, filters in filtered.items():
            logger.filters = filters


class _ListHandler(logging.Handler):
    """A logging handler that appends records to a list."""

    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.WARNING)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record."""
        self.records.append(record)


@contextmanager
def _progress_bar(total: int, progress: bool) -> Iterator[tqdm]:
    """A tqdm bar on stderr, shown only for a long export to a terminal."""
    shown = progress and total >= PROGRESS_MIN_SPANS and sys.stderr.isatty()
    bar = tqdm(
        total=total,
        unit="span",
        unit_scale=True,
        desc="OTLP export",
        leave=False,
        file=sys.stderr,
        disable=not shown,
    )
    try:
        yield bar
    finally:
        bar.close()


def _failure(target: OtlpTarget, sent: int, total: int, reason: str) -> str:
    """The one-line error of a failed export."""
    return (
        f"OTLP export to {target.shown} ({target.protocol}) failed after "
        f"{sent} of {total} spans: {target.scrub(reason)}"
    )


def _exception_text(error: Exception) -> str:
    """``Type: message`` of an exception, on one line."""
    text = _one_line(str(error))
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _reason(records: list[logging.LogRecord], target: OtlpTarget) -> str:
    """Why the exporter failed, from the SDK's log records: a refused connection, an
    unknown host, else the last answer of the collector that is not a timeout (gRPC
    status or HTTP status), else a timeout, else the SDK's last message."""
    messages = [record.getMessage() for record in records]
    text = "\n".join(messages)
    if re.search(r"connection refused|ECONNREFUSED", text, re.IGNORECASE):
        return "collector unavailable (connection refused)"
    if re.search(r"NameResolutionError|Name or service not known|errors resolving", text):
        return f"collector unavailable (cannot resolve {urlsplit(target.endpoint).hostname})"
    causes = [cause for cause in map(_cause, messages) if cause is not None]
    answers = [cause for cause in causes if not _is_timeout(cause)]
    if answers:
        return answers[-1]
    if causes or re.search(r"Read timed out|ReadTimeout|DEADLINE_EXCEEDED|due to timeout", text):
        return f"{NO_ANSWER} within {target.timeout:g} s"
    return _one_line(messages[-1]) if messages else "the exporter reported a failure"


def _cause(message: str) -> str | None:
    """The collector's answer in one SDK log message, if it names one."""
    grpc_status = re.search(r"StatusCode\.(\w+)\b.*?[Ee]rror details: (.*)", message)
    if grpc_status:
        code, details = grpc_status[1], _one_line(grpc_status[2])
        summary = "collector unavailable" if code == "UNAVAILABLE" else f"collector answered {code}"
        return f"{summary} ({details})" if details else summary
    http_status = re.search(r"batch code: (\d+), reason: (.*)", message)
    if http_status:
        return f"collector answered HTTP {http_status[1]} {_one_line(http_status[2])}"
    transient = re.search(r"Transient error (.*?) encountered while exporting", message)
    if transient:
        return f"collector unavailable ({_one_line(transient[1])})"
    return None


def _is_timeout(cause: str) -> bool:
    """Whether a cause is the exporter giving up waiting rather than an answer."""
    return "DEADLINE_EXCEEDED" in cause or "timed out" in cause.lower()


def _one_line(text: str, limit: int = 200) -> str:
    """The first line of ``text``, stripped and cut to ``limit`` characters."""
    line = text.strip().split("\n", 1)[0].strip()
    return line if len(line) <= limit else line[: limit - 3] + "..."
