"""Real OTLP trace receivers on 127.0.0.1 for the tests: a gRPC one and an HTTP/protobuf
one, built on the service definitions of ``opentelemetry-proto``.

Each is a context manager that listens on a free port while open, keeps every
``ExportTraceServiceRequest`` it receives and the request's headers (gRPC metadata),
and with ``refuse=True`` answers UNAVAILABLE / HTTP 503 instead (with
``refuse_first=n``, to its first ``n`` requests only: a collector that comes back).
``reject=(n, message)`` answers every request with a ``partial_success`` of ``n``
rejected spans; ``delay=s`` stores a request, then answers only ``s`` seconds later
(a slow collector). The HTTP receiver takes protobuf and, with ``Content-Type:
application/json``, OTLP/JSON bodies (hex ids, as the OTLP/JSON encoding says).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import sys
import threading
import time
import zlib
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # as exporters.otlp does before gRPC loads
import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

Request = trace_service_pb2.ExportTraceServiceRequest


class OtlpReceiver:
    """What a receiver got: requests, their headers, and the spans in them."""

    endpoint: str  # the URL to give an exporter

    def __init__(
        self,
        refuse: bool = False,
        refuse_first: int = 0,
        reject: tuple[int, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.refuse = refuse
        self.refuse_first = refuse_first
        self.reject = reject
        self.delay = delay
        self.content_types: list[str] = []
        self.requests: list[Request] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def _refusing(self) -> bool:
        """Whether to refuse the request being answered."""
        with self._lock:
            first = self.refuse_first > 0
            self.refuse_first -= first
        return self.refuse or first

    def _received(self, request: Request, headers: dict[str, str]) -> None:
        """Record one request and its headers (keys lower-cased)."""
        with self._lock:
            self.requests.append(request)
            self.headers.append({key.lower(): value for key, value in headers.items()})

    def _response(self) -> trace_service_pb2.ExportTraceServiceResponse:
        """The answer to a stored request: after ``delay``, with ``reject``."""
        time.sleep(self.delay)
        response = trace_service_pb2.ExportTraceServiceResponse()
        if self.reject is not None:
            response.partial_success.rejected_spans = self.reject[0]
            response.partial_success.error_message = self.reject[1]
        return response

    def spans(self) -> list[Span]:
        """Every span received, in arrival order."""
        return [span for _, span in self.resource_spans()]

    def resource_spans(self) -> list[tuple[Resource, Span]]:
        """Every span received with its resource."""
        with self._lock:
            requests = list(self.requests)
        return [
            (resource_spans.resource, span)
            for request in requests
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]


class GrpcReceiver(OtlpReceiver, trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC TraceService on 127.0.0.1 (default 4 MiB receive limit, like collectors)."""

    def __enter__(self) -> GrpcReceiver:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.endpoint = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop(grace=None)

    def Export(
        self, request: Request, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        """The TraceService RPC: keep the request, or refuse with UNAVAILABLE."""
        if self._refusing():
            context.abort(grpc.StatusCode.UNAVAILABLE, "receiver refuses (test)")
        self._received(request, dict(context.invocation_metadata()))
        return self._response()


class HttpReceiver(OtlpReceiver):
    """An OTLP/HTTP receiver on 127.0.0.1: POST /v1/traces with a protobuf body,
    gzip or deflate ``Content-Encoding`` honoured."""

    def __enter__(self) -> HttpReceiver:
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self.endpoint = f"http://127.0.0.1:{self._server.server_port}/v1/traces"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class _Server(ThreadingHTTPServer):
    """Closing waits for the requests being answered (a delayed answer too), so
    nothing of a receiver outlives its test; a client that gave up before the
    answer (a slow-collector test) is not an error to print."""

    daemon_threads = False
    block_on_close = True

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler_for(receiver: HttpReceiver) -> type[BaseHTTPRequestHandler]:
    """A request handler class that reports to ``receiver``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            """Decode an ExportTraceServiceRequest and answer as a collector does."""
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path != "/v1/traces":
                self._answer(404, b"not found", "text/plain")
                return
            if receiver._refusing():
                self._answer(503, b"receiver refuses (test)", "text/plain")
                return
            body = _decoded(body, self.headers.get("Content-Encoding", ""))
            content_type = self.headers.get("Content-Type", "")
            receiver.content_types.append(content_type)
            if content_type == "application/json":
                request = _from_json(body)
            else:
                request = Request()
                request.ParseFromString(body)
            receiver._received(request, dict(self.headers.items()))
            response = receiver._response()
            if content_type == "application/json":
                answer = json_format.MessageToJson(response, indent=None).encode()
                self._answer(200, answer, content_type)
            else:
                self._answer(200, response.SerializeToString(), "application/x-protobuf")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: no access log on stderr."""

    return Handler


def _from_json(body: bytes) -> Request:
    """An OTLP/JSON request: its hex trace and span ids become bytes (protobuf's
    JSON mapping reads bytes as base64), then the standard parser."""
    document = json.loads(body)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if span.get(key):
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    return json_format.ParseDict(document, Request())


def _decoded(body: bytes, encoding: str) -> bytes:
    """The body without its Content-Encoding."""
    encoding = encoding.strip().lower()
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    return body
