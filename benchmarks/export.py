"""Benchmark the exporters: time and peak memory to export 10^5 and 10^6 calls
to each format.

    python benchmarks/export.py                      # 1e5 and 1e6 calls, every format, 3 runs
    python benchmarks/export.py --sizes 1e5 --formats perfetto,otlp-grpc --repeat 5

The workload is a real program (a small training loop with arguments, below)
traced once per size with the CLI (patterns on, as by default); the trace is
pickled. Each export then runs in a fresh child process, which loads the pickle
and times the export alone: ``json`` (our own trace file, for reference),
``otlp-json`` (``write_otlp_json``), ``perfetto`` (``write_perfetto``),
``otlp-grpc`` and ``otlp-http`` (``send_trace``, what the CLI uses, to a sink
receiver in this process on 127.0.0.1 that decodes and counts the spans), and
``otlp-json-folded`` (``--fold-patterns``). Peak memory is the child's peak
RSS during the export (VmHWM, reset once the trace is loaded) minus its RSS
then. Medians over ``--repeat`` runs, against the targets: Perfetto and
OTLP/JSON files for 10^6 calls in under 15 s, OTLP over gRPC at 10^5 spans/s
or more. See benchmarks/README.md, "Exporters".
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _path in (HERE, REPO):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from fold import git_head, parse_sizes, size_label  # noqa: E402  (benchmarks/fold.py)

FORMATS = ("json", "otlp-json", "perfetto", "otlp-grpc", "otlp-http", "otlp-json-folded")
FILE_TARGET_S = 15.0  # 10^6 calls to a Perfetto or OTLP/JSON file
GRPC_TARGET = 100_000  # spans/s to a local receiver
PER_STEP = 20  # calls per step of the program below

PROGRAM = """
import sys

class Linear:
    def __init__(self, size):
        self.size = size

    def forward(self, x, scale=1.0):
        return self.activation(x * scale) + self.size

    def activation(self, x):
        return max(x, 0.0)

def layer_name(layer, prefix="layer"):
    return f"{prefix}{layer.size}"

def load_batch(index, batch_size=32):
    return float(index % batch_size)

def train_step(model, batch, lr=0.01):
    x = batch
    for layer in model:
        x = layer.forward(x, scale=lr)
        layer_name(layer)
    return x

def train(steps):
    model = [Linear(i) for i in range(6)]
    loss = 0.0
    for step in range(steps):
        loss += train_step(model, load_batch(step))
    return loss

print(train(int(sys.argv[1])))
"""


def traced(calls: int, workdir: Path) -> Path:
    """The program traced to about ``calls`` calls, pickled (cached in ``workdir``)."""
    pickled = workdir / f"trace-{calls}.pickle"
    if pickled.exists():
        return pickled
    program = workdir / "train.py"
    program.write_text(PROGRAM)
    out = workdir / f"trace-{calls}.json"
    steps = max(1, calls // PER_STEP)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(
        [sys.executable, "-m", "cli.main", str(program), str(steps), "-q", "-o", str(out)],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    import otel_tracer

    trace = otel_tracer.load(out)
    pickled.write_bytes(pickle.dumps(trace, protocol=pickle.HIGHEST_PROTOCOL))
    out.unlink()
    return pickled


def _status_mb(field: str) -> float:
    """A ``VmRSS``/``VmHWM`` line of /proc/self/status, in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def _reset_peak() -> None:
    """Start the peak RSS (VmHWM) over from the current RSS (Linux 4.0+)."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def child(fmt: str, pickled: str, endpoint: str | None) -> dict[str, Any]:
    """One export in this (fresh) process: seconds, spans and memory."""
    trace = pickle.loads(Path(pickled).read_bytes())
    out = Path(tempfile.mkdtemp(prefix="export-bench-"))
    gc.collect()
    _reset_peak()
    loaded = _status_mb("VmRSS")
    start = time.perf_counter()
    spans = len(trace) + 1
    if fmt == "json":
        from otel_tracer.trace.save import save

        save(trace, out / "t.json")
    elif fmt in ("otlp-json", "otlp-json-folded"):
        from exporters.otlp_json import write_otlp_json
        from otel_tracer.spans.plan import span_plan

        spans = write_otlp_json(trace, out / "t.otlp.json", span_plan(trace, fmt != "otlp-json"))
    elif fmt == "perfetto":
        from exporters.perfetto import write_perfetto

        write_perfetto(trace, out / "t.pftrace")
    else:
        from exporters.otlp import otlp_target, send_trace
        from otel_tracer.spans.plan import span_plan

        protocol = "grpc" if fmt == "otlp-grpc" else "http/protobuf"
        target = otlp_target(endpoint, protocol, {})
        result = send_trace(trace, span_plan(trace), target, progress=False)
        if result.error:
            raise SystemExit(result.error)
    seconds = time.perf_counter() - start
    size = sum(f.stat().st_size for f in out.iterdir())
    for f in out.iterdir():
        f.unlink()
    out.rmdir()
    peak = _status_mb("VmHWM")
    return {"seconds": seconds, "spans": spans, "bytes": size, "peak_mb": peak - loaded}


class _Sink:
    """Counts the spans of the OTLP requests it receives (gRPC and HTTP)."""

    def __init__(self) -> None:
        self.spans = 0
        self.lock = threading.Lock()

    def count(self, request: Any) -> None:
        """Add the spans of an ``ExportTraceServiceRequest``."""
        n = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        with self.lock:
            self.spans += n


@contextmanager
def receivers(sink: _Sink):
    """A gRPC and an HTTP OTLP receiver on 127.0.0.1: yields their endpoints."""
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    class Service(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):  # noqa: N802 - the gRPC method name
            sink.count(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), server)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server method name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                import gzip

                body = gzip.decompress(body)
            sink.count(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        yield {
            "otlp-grpc": f"http://127.0.0.1:{grpc_port}",
            "otlp-http": f"http://127.0.0.1:{http.server_address[1]}/v1/traces",
        }
    finally:
        http.shutdown()
        server.stop(None)


def measure(fmt: str, pickled: Path, endpoint: str | None) -> dict[str, Any]:
    """One export in a fresh child process."""
    command = [sys.executable, __file__, "--child", fmt, str(pickled)]
    if endpoint:
        command += ["--endpoint", endpoint]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{fmt}: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout)


def verdict(fmt: str, calls: int, row: dict[str, Any]) -> str:
    if fmt in ("otlp-json", "perfetto") and calls >= 10**6:
        target = FILE_TARGET_S * calls / 10**6
        return f"{'PASS' if row['seconds'] < target else 'MISS'} (< {target:.0f} s)"
    if fmt == "otlp-grpc":
        rate = row["spans"] / row["seconds"]
        return f"{'PASS' if rate >= GRPC_TARGET else 'MISS'} (>= {GRPC_TARGET:,} spans/s)"
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1e5,1e6", help="calls per trace (default 1e5,1e6)")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma list of formats")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median)")
    parser.add_argument("--workdir", help="where traces are cached (default: a temp dir)")
    parser.add_argument("--json", help="also write the results as JSON here")
    parser.add_argument("--child", nargs=2, metavar=("FORMAT", "PICKLE"), help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child, args.endpoint)))
        return 0
    formats = [f for f in args.formats.split(",") if f]
    unknown = set(formats) - set(FORMATS)
    if unknown:
        parser.error(f"unknown formats {sorted(unknown)}; choose from {','.join(FORMATS)}")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="export-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    sink = _Sink()
    with receivers(sink) as endpoints:
        for calls in parse_sizes(args.sizes):
            print(f"tracing {size_label(calls)} calls ...", file=sys.stderr, flush=True)
            pickled = traced(calls, workdir)
            for fmt in formats:
                runs = []
                for _ in range(args.repeat):
                    before = sink.spans
                    run = measure(fmt, pickled, endpoints.get(fmt))
                    if fmt.startswith("otlp-") and fmt in endpoints:
                        assert sink.spans - before == run["spans"], "spans lost on the way"
                    runs.append(run)
                row = {
                    "format": fmt,
                    "calls": calls,
                    "spans": runs[0]["spans"],
                    "seconds": statistics.median(r["seconds"] for r in runs),
                    "peak_mb": statistics.median(r["peak_mb"] for r in runs),
                    "bytes": runs[0]["bytes"],
                    "runs": [r["seconds"] for r in runs],
                }
                row["verdict"] = verdict(fmt, calls, row)
                results.append(row)
                print(f"  {fmt}: {row['seconds']:.2f} s", file=sys.stderr, flush=True)
    print(
        f"commit {git_head(('exporters', 'otel_tracer'))}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, medians of {args.repeat}\n"
    )
    print("| format | calls | spans | time | spans/s | peak memory | file | target |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for row in results:
        size = f"{row['bytes'] / 2**20:.0f} MB" if row["bytes"] else "-"
        print(
            f"| {row['format']} | {size_label(row['calls'])} | {row['spans']:,} | "
            f"{row['seconds']:.2f} s | {row['spans'] / row['seconds']:,.0f} | "
            f"{row['peak_mb']:.0f} MB | {size} | {row['verdict']} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
