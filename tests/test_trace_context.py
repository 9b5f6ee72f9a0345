"""W3C trace context: a tracer started under ``TRACEPARENT`` records into that
trace, so the ranks of a multi-node job, each started under the tracer, reach
one collector as one trace; a followed run is one trace too."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO, run_tracer, write_files
from otlp_receivers import GrpcReceiver

import otel_tracer
from otel_tracer.trace.context import BadTraceParent, TraceParent, parse_traceparent

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
HEADER = f"00-{TRACE_ID}-{SPAN_ID}-01"

RANK = """
    import os

    def all_reduce(values):
        return sum(values)

    def train(rank):
        return [all_reduce([rank, step]) for step in range(3)]

    print(train(int(os.environ["RANK"])))
"""


def test_parse_traceparent():
    assert parse_traceparent(HEADER) == TraceParent(TRACE_ID, SPAN_ID, True)
    assert parse_traceparent(f"00-{TRACE_ID}-{SPAN_ID}-00").sampled is False
    assert parse_traceparent(f"01-{TRACE_ID}-{SPAN_ID}-01-future").span_id == SPAN_ID
    assert parse_traceparent(HEADER).header() == HEADER


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        f"ff-{TRACE_ID}-{SPAN_ID}-01",
        f"00-{'0' * 32}-{SPAN_ID}-01",
        f"00-{TRACE_ID}-{'0' * 16}-01",
        f"00-{TRACE_ID.upper()}-{SPAN_ID}-01",
        f"00-{TRACE_ID}-{SPAN_ID}-01-extra",
        f"00-{TRACE_ID[:-1]}-{SPAN_ID}-01",
    ],
)
def test_malformed_traceparent(value):
    with pytest.raises(BadTraceParent):
        parse_traceparent(value)


def test_two_ranks_started_under_one_traceparent_are_one_trace(tmp_path):
    """Like ``torchrun`` on two machines, each rank started under the tracer:
    both send to one collector, and it receives one trace with both runs under
    the job's span."""
    write_files(tmp_path, {"rank.py": RANK})
    with GrpcReceiver() as receiver:
        ranks = [
            subprocess.Popen(
                [sys.executable, "-m", "cli.main", "-q", "--otlp-endpoint", receiver.endpoint]
                + ["-o", f"rank{rank}.json", "rank.py"],
                cwd=tmp_path,
                env=dict(os.environ, PYTHONPATH=str(REPO), TRACEPARENT=HEADER, RANK=str(rank)),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for rank in (0, 1)
        ]
        outputs = [rank.communicate(timeout=120) for rank in ranks]
        assert [rank.returncode for rank in ranks] == [0, 0], outputs
        spans = receiver.spans()
        resources = [resource for resource, _ in receiver.resource_spans()]
    assert [out for out, _ in outputs] == ["[0, 1, 2]\n", "[1, 2, 3]\n"]
    assert {span.trace_id.hex() for span in spans} == {TRACE_ID}
    instances = {
        a.value.string_value
        for r in resources
        for a in r.attributes
        if a.key == "service.instance.id"
    }
    assert len(instances) == 2  # one per rank, though both ran under one TRACEPARENT
    roots = [span for span in spans if span.name == "rank.py"]
    assert len(roots) == 2
    assert {span.parent_span_id.hex() for span in roots} == {SPAN_ID}
    by_id = {span.span_id: span for span in spans}
    for span in spans:  # every call span reaches one of the two roots
        while span.name != "rank.py":
            span = by_id[span.parent_span_id]
    traces = [otel_tracer.load(tmp_path / f"rank{rank}.json") for rank in (0, 1)]
    for trace in traces:
        assert (trace.meta["trace_id"], trace.meta["parent_span_id"]) == (TRACE_ID, SPAN_ID)
    assert len(spans) == len(traces[0]) + 1 + len(traces[1]) + 1


FAMILY = """
    import multiprocessing as mp

    def work(n):
        return n * n

    def main():
        with mp.get_context("spawn").Pool(2) as pool:
            return pool.map(work, range(4))

    if __name__ == "__main__":
        print(main())
"""


def test_a_followed_run_is_one_trace_at_the_collector(tmp_path):
    write_files(tmp_path, {"prog.py": FAMILY})
    with GrpcReceiver() as receiver:
        result = run_tracer(
            ["-q", "-o", "trace.json", "--otlp-endpoint", receiver.endpoint, "prog.py"],
            tmp_path,
            env={"TRACEPARENT": HEADER},
        )
        assert result.returncode == 0, result.stderr
        spans = receiver.spans()
    trace = otel_tracer.load(tmp_path / "trace.json")
    assert len(trace.meta["processes"]) >= 2
    assert {span.trace_id.hex() for span in spans} == {TRACE_ID}
    by_id = {span.span_id: span for span in spans}
    (root,) = [span for span in spans if span.parent_span_id.hex() == SPAN_ID]
    assert root.span_id.hex() == trace.meta["root_span_id"]
    processes = [span for span in spans if span.parent_span_id == root.span_id]
    calls = {int(span_id) for span_id in trace.calls.span_id}
    processes = [span for span in processes if int.from_bytes(span.span_id, "big") not in calls]
    assert len(processes) == len(trace.meta["processes"]) - 1  # the workers' root spans
    work = [span for span in spans if span.name == "work"]
    assert len(work) == 4
    for span in work:  # each call of a worker sits under its process's root span
        assert by_id[span.parent_span_id] in processes
    assert len(spans) == len(trace) + 1 + len(processes)


def test_a_malformed_traceparent_is_ignored_with_a_warning(tmp_path):
    write_files(tmp_path, {"rank.py": RANK})
    result = run_tracer(
        ["-q", "-o", "t.json", "rank.py"], tmp_path, env={"TRACEPARENT": "00-xyz", "RANK": "0"}
    )
    assert result.returncode == 0
    assert result.stderr.startswith("otel-tracer: warning: TRACEPARENT='00-xyz'")
    assert len(result.stderr.splitlines()) == 1
    trace = otel_tracer.load(tmp_path / "t.json")
    assert trace.meta["parent_span_id"] is None and trace.meta["trace_id"] != TRACE_ID
