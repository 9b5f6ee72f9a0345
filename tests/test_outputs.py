"""Several outputs from one run: every file format and a collector at once, all
describing the same calls with the same ids."""

from __future__ import annotations

import json

from conftest import run_tracer, write_files
from otlp_receivers import GrpcReceiver
from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import Trace as PerfettoTrace

import otel_tracer

PROGRAM = """
    import sys

    def step(i, api_key):
        return i + 1

    def main():
        for i in range(4):
            step(i, api_key="k-42")
        sys.exit(3)

    main()
"""


def test_every_output_at_once(tmp_path):
    write_files(tmp_path, {"prog.py": PROGRAM})
    outputs = ["t.json", "t.json.gz", "t.txt", "t.html", "t.otlp.json", "t.pftrace"]
    with GrpcReceiver() as receiver:
        args = ["prog.py", "--otlp-endpoint", receiver.endpoint]
        result = run_tracer([*args, *(x for o in outputs for x in ("-o", o))], tmp_path)
    assert result.returncode == 3, result.stderr  # the program's own exit status
    for name in outputs:
        assert (tmp_path / name).stat().st_size > 0, name
        assert f"trace written to {name} " in result.stderr
    assert "spans sent to " in result.stderr
    trace = otel_tracer.load(tmp_path / "t.json")
    ids = set(trace.calls.span_id.tolist())
    assert len(trace) == 7  # <module>, main, 4 x step, sys.exit
    received = {int.from_bytes(s.span_id, "big") for s in receiver.spans()}
    document = json.loads((tmp_path / "t.otlp.json").read_bytes())
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    written = {int(s["spanId"], 16) for s in spans}
    assert received == written and ids < written and len(written) == len(trace) + 1
    assert "k-42" not in json.dumps(document)
    assert "k-42" not in (tmp_path / "t.txt").read_text()
    perfetto = PerfettoTrace.FromString((tmp_path / "t.pftrace").read_bytes())
    begins = [p for p in perfetto.packet if p.track_event.type == p.track_event.TYPE_SLICE_BEGIN]
    assert len(begins) >= len(trace)  # one per call, plus the pattern track's slices
