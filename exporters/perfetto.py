"""Writing a trace for Perfetto (``-o trace.pftrace`` / ``.perfetto-trace``).

The file is a Perfetto ``Trace`` protobuf built with the ``perfetto`` package's
``TraceProtoBuilder`` and streamed in chunks of packets (serialized ``Trace``
messages concatenate into one). Every call is a TrackEvent slice (a BEGIN and
an END packet) on its thread's track under the process; names, categories,
annotation names, function names and file paths are interned. Pattern groups
are slices on a ``patterns`` track under each thread that has any. Timestamps
are the recorded Unix ns. See docs/perfetto.md.

Speed: the calls' order and timestamps are computed with numpy; per call, the
BEGIN packet is parsed from bytes serialized once per distinct content (thread,
function, flags, arguments, value, exception; rare contents are completed per
call instead), then only the timestamp and the call id are set.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import (
    DebugAnnotationName,
    EventCategory,
    EventName,
    InternedData,
    InternedString,
    ProcessDescriptor,
    ThreadDescriptor,
    TracePacket,
    TrackDescriptor,
    TrackEvent,
)
from perfetto.trace_builder.proto_builder import TraceProtoBuilder

from exporters import perfetto_wire as wire
from otel_tracer.spans.plan import group_label
from otel_tracer.trace.model import EXTERNAL, FINALIZER, RAISED, RESUMED, UNFINISHED, YIELDED, Trace
from otel_tracer.trace.save import atomic_output

CHUNK_PACKETS = 100_000  # packets per serialized chunk
CALL_SEQUENCE = 1  # trusted_packet_sequence_id of the call slices
PATTERN_SEQUENCE = 2  # ... of the pattern slices
SPAN_SEQUENCE = 3  # ... of PerfettoFileExporter's slices
EXCEPTION_SEQUENCE = 4  # ... of the exception instants
CLOCK_SEQUENCE = 5  # ... of the clock snapshot and the process tree
# Perfetto's builtin clocks (protos/perfetto/common/builtin_clock.proto): the
# recorded times are Unix ns, REALTIME; BOOTTIME is what system traces use.
REALTIME, BOOTTIME = 1, 6
PROCESS_UUID = 1
SCOPE, EXTERNAL_CATEGORY = "scope", "external"
PATTERN_CATEGORY, EXCEPTION_CATEGORY = "pattern", "exception"
CLEARED = TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
NEEDS_STATE = TracePacket.SEQ_NEEDS_INCREMENTAL_STATE
BEGIN, END = TrackEvent.TYPE_SLICE_BEGIN, TrackEvent.TYPE_SLICE_END
INSTANT = TrackEvent.TYPE_INSTANT
CALL_ID = "otel_tracer.call.id"
FIXED_ANNOTATIONS = (
    CALL_ID,
    "code.function.name",
    "code.file.path",
    "code.line.number",
    "otel_tracer.call.external",
    "otel_tracer.call.resumed",
    "otel_tracer.call.unfinished",
    "otel_tracer.call.finalizer",
    "otel_tracer.return_value",
    "otel_tracer.yielded_value",
    "otel_tracer.async.task",
    "exception.type",
    "exception.message",
)
UNKNOWN_EXCEPTION = ("<unknown>", "")
Parts = tuple[bytes, bytes]  # a packet's fields but its TrackEvent, and that TrackEvent's


class _Packets:
    """Packets added to a ``TraceProtoBuilder`` and written out every
    ``CHUNK_PACKETS`` packets, so memory stays bounded."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._builder = TraceProtoBuilder()
        self._count = 0

    def add(self) -> TracePacket:
        """A new packet (the packets before it may have been written already)."""
        if self._count >= CHUNK_PACKETS:
            self.flush()
        self._count += 1
        return self._builder.add_packet()

    def write(self, serialized: bytes) -> None:
        """Write packets already serialized (after the packets added so far)."""
        self.flush()
        self._out.write(serialized)

    def flush(self) -> None:
        """Write the packets added so far."""
        if self._count:
            self._out.write(self._builder.serialize())
            self._builder = TraceProtoBuilder()
            self._count = 0


class _Interner:
    """Interning tables of one packet sequence: name -> iid per table."""

    def __init__(self) -> None:
        self.names: dict[str, int] = {}
        self.categories: dict[str, int] = {}
        self.keys: dict[str, int] = {}
        self.strings: dict[str, int] = {}

    @staticmethod
    def iid(table: dict[str, int], text: str) -> int:
        """The iid of ``text`` in ``table``, added if new (iids start at 1)."""
        return table.setdefault(text, len(table) + 1)

    def start(self, packets: _Packets, sequence: int) -> None:
        """The sequence's first packet: clears the incremental state and carries
        every interned entry."""
        packet = packets.add()
        packet.trusted_packet_sequence_id = sequence
        packet.sequence_flags = CLEARED | NEEDS_STATE
        packet.trace_packet_defaults.timestamp_clock_id = REALTIME  # Unix ns
        packet.interned_data.CopyFrom(
            InternedData(
                event_names=[EventName(iid=i, name=n) for n, i in self.names.items()],
                event_categories=[EventCategory(iid=i, name=n) for n, i in self.categories.items()],
                debug_annotation_names=[
                    DebugAnnotationName(iid=i, name=n) for n, i in self.keys.items()
                ],
                debug_annotation_string_values=[
                    InternedString(iid=i, str=n.encode()) for n, i in self.strings.items()
                ],
            )
        )


def _annotate(event: TrackEvent, key: int, value: Any) -> None:
    """Add a debug annotation (name iid ``key``) to ``event``; strings are not
    interned."""
    add = event.debug_annotations.add
    if isinstance(value, bool):
        add(name_iid=key, bool_value=value)
    elif isinstance(value, int):
        add(name_iid=key, int_value=value)
    elif isinstance(value, float):
        add(name_iid=key, double_value=value)
    else:
        add(name_iid=key, string_value=str(value))


# --- tracks ------------------------------------------------------------------


def _thread_uuid(thread: int) -> int:
    return 2 + 2 * thread


def _pattern_uuid(thread: int) -> int:
    return 3 + 2 * thread


def _process_track(uuid: int, pid: int, name: str, cmdline: list[str]) -> TrackDescriptor:
    return TrackDescriptor(
        uuid=uuid, process=ProcessDescriptor(pid=pid, process_name=name, cmdline=cmdline)
    )


def _thread_tids(trace: Trace) -> list[int]:
    """OS thread ids; made-up distinct ones where the recorded ids are missing or
    repeated (a thread track needs its own tid)."""
    tids = [t.native_id for t in trace.threads]
    if all(tid > 0 for tid in tids) and len(set(tids)) == len(tids):
        return tids
    return [(1 << 22) + index for index in range(len(tids))]


def _call_tracks(trace: Trace) -> list[TrackDescriptor]:
    """A track per process, one thread track per thread and a pattern track (a
    child of the thread's) per thread that has pattern groups."""
    main_pid = int(trace.meta.get("pid") or 1)
    processes = _processes(trace)
    tracks, process_uuids = [], {}
    for index, (process, name) in enumerate(
        zip(processes, _process_names(trace, processes), strict=True)
    ):
        pid = int(process["pid"])
        process_uuids[pid] = PROCESS_UUID if index == 0 else (1 << 40) + index
        argv = [str(a) for a in process["argv"]]
        tracks.append(_process_track(process_uuids[pid], pid, name, argv))
    for index, (thread, tid) in enumerate(zip(trace.threads, _thread_tids(trace), strict=True)):
        pid = thread.pid or main_pid
        tracks.append(
            TrackDescriptor(
                uuid=_thread_uuid(index),
                parent_uuid=process_uuids.get(pid, PROCESS_UUID),
                thread=ThreadDescriptor(pid=pid, tid=tid, thread_name=thread.name),
            )
        )
    groups = trace.patterns.section["groups"] if trace.patterns is not None else []
    for index in sorted({int(group["thread"]) for group in groups}):
        thread = trace.threads[index]
        tracks.append(  # a process-scoped track: per-thread SQL sees only calls
            TrackDescriptor(
                uuid=_pattern_uuid(index),
                parent_uuid=process_uuids.get(thread.pid or main_pid, PROCESS_UUID),
                name=f"{thread.name} {_thread_tids(trace)[index]} patterns",
            )
        )
    return tracks


def _processes(trace: Trace) -> list[dict[str, Any]]:
    """``metadata.processes``, or the one process of the trace."""
    main_pid = int(trace.meta.get("pid") or 1)
    return trace.meta.get("processes") or [
        {
            "pid": main_pid,
            "parent_pid": int(trace.meta.get("parent_pid") or 0),
            "argv": trace.meta.get("argv") or [trace.meta.get("script") or ""],
        }
    ]


def _process_names(trace: Trace, processes: list[dict[str, Any]]) -> list[str]:
    """The program's file name per process; a child named like another process
    gets ``(child of <parent pid>)`` (multiprocessing workers run the parent's
    script), so the tracks read apart."""
    names = []
    for index, process in enumerate(processes):
        argv = [str(a) for a in process["argv"]]
        program = trace.meta.get("script") if index == 0 else None
        program = str(program or (argv[0] if argv else "") or "python")
        names.append(os.path.basename(program) or program)
    seen = [names.count(name) > 1 for name in names]
    return [
        f"{name} (child of {process['parent_pid']})" if index and repeated else name
        for index, (name, process, repeated) in enumerate(zip(names, processes, seen, strict=True))
    ]


def _write_clock_and_processes(packets: _Packets, trace: Trace) -> None:
    """A clock snapshot making REALTIME (the recorded Unix ns) the trace's clock,
    tied to BOOTTIME when the recording noted it (so the file merges with a system
    trace of that machine), and the process tree: each process's command line
    and parent, where the trace processor reads them (``process.cmdline``,
    ``process.parent_upid``)."""
    start = int(trace.meta.get("start_time_unix_nano") or 0)
    packet = packets.add()
    packet.trusted_packet_sequence_id = CLOCK_SEQUENCE
    snapshot = packet.clock_snapshot
    snapshot.primary_trace_clock = REALTIME
    snapshot.clocks.add(clock_id=REALTIME, timestamp=start)
    boottime = trace.meta.get("start_boottime_ns")
    snapshot.clocks.add(clock_id=BOOTTIME, timestamp=int(boottime if boottime else start))
    packet = packets.add()
    packet.trusted_packet_sequence_id = CLOCK_SEQUENCE
    packet.timestamp = start
    packet.timestamp_clock_id = REALTIME
    for process in _processes(trace):
        packet.process_tree.processes.add(
            pid=int(process["pid"]),
            ppid=int(process.get("parent_pid") or 0),
            cmdline=[str(a) for a in process["argv"]],
        )


def _write_tracks(packets: _Packets, sequence: int, tracks: Sequence[TrackDescriptor]) -> None:
    for track in tracks:
        packet = packets.add()
        packet.trusted_packet_sequence_id = sequence
        packet.track_descriptor.CopyFrom(track)


# --- call slices ---------------------------------------------------------------


def _event_order(trace: Trace) -> tuple[np.ndarray, np.ndarray]:
    """The 2n slice events (``2 * row`` begins call ``row``, ``2 * row + 1`` ends
    it) in writing order, and their timestamps.

    Each thread's events are in nesting order (a call's END after its children's,
    before its next sibling's BEGIN, even at equal timestamps); each thread's
    times are made non-decreasing in that order, then the threads are merged by
    time (stable, so ties keep the nesting order)."""
    calls = trace.calls
    n = len(calls)
    thread = calls.thread.astype(np.int64)
    depth = calls.depth.astype(np.int64)
    counts = np.bincount(thread, minlength=len(trace.threads))
    first_of_thread = np.concatenate(([0], np.cumsum(counts)[:-1]))
    by_thread = np.argsort(thread, kind="stable")
    position = np.empty(n, dtype=np.int64)  # rank of a call among its thread's calls
    position[by_thread] = np.arange(n) - np.repeat(first_of_thread, counts)
    size = trace.subtree_sizes
    offset = 2 * first_of_thread[thread]
    slot_event = np.full(2 * n, -1, dtype=np.int64)
    slot_event[offset + 2 * position - depth] = 2 * np.arange(n)
    slot_event[offset + 2 * (position + size) - 1 - depth] = 2 * np.arange(n) + 1
    if n and slot_event.min() < 0:
        raise ValueError("the calls of a thread are not in nesting order")
    times = np.empty(2 * n, dtype=np.int64)
    times[0::2], times[1::2] = calls.start, calls.end
    slot_time = times[slot_event]
    for lo, count in zip((2 * first_of_thread).tolist(), (2 * counts).tolist(), strict=True):
        np.maximum.accumulate(slot_time[lo : lo + count], out=slot_time[lo : lo + count])
    order = np.argsort(slot_time, kind="stable")
    return slot_event[order], slot_time[order]


def _dense_ids(*columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the id of its distinct combination of ``columns`` (each >= -1), and
    the first row of each combination."""
    ids = np.zeros(len(columns[0]), dtype=np.int64)
    for column in columns:
        combined = ids * (int(column.max(initial=0)) + 2) + (column.astype(np.int64) + 1)
        _, ids = np.unique(combined, return_inverse=True)
        ids = ids.reshape(-1)
    _, first = np.unique(ids, return_index=True)
    return ids, first


class _CallPackets:
    """Serialized BEGIN/END packets of the call sequence (without timestamp and
    call id), built once per distinct content."""

    def __init__(self, trace: Trace, interner: _Interner) -> None:
        self.trace = trace
        self.interner = interner
        self._heads: dict[tuple[int, int, int], Parts] = {}
        for key in FIXED_ANNOTATIONS:
            interner.iid(interner.keys, key)
        interner.iid(interner.categories, SCOPE)
        interner.iid(interner.categories, EXTERNAL_CATEGORY)
        self._value_keys = [
            interner.keys[key]
            for key in (
                "exception.type",
                "exception.message",
                "otel_tracer.return_value",
                "otel_tracer.yielded_value",
                "otel_tracer.async.task",
            )
        ]
        self._arg_keys = [
            [interner.iid(interner.keys, f"otel_tracer.args.{name}") for name in f.argnames]
            for f in trace.functions
        ]

    def begin(
        self,
        thread: int,
        function: int,
        flags: int,
        args: int,
        value: int,
        exception: int,
        task: int,
    ) -> Parts:
        """A BEGIN packet: its head's parts, its TrackEvent followed by the
        annotations of ``annotations``."""
        other, event = self.head(thread, function, flags)
        return other, event + self.annotations(function, flags, args, value, exception, task)

    def annotations(
        self, function: int, flags: int, args: int, value: int, exception: int, task: int
    ) -> bytes:
        """The arguments, then the returned or yielded value, or the exception,
        then a coroutine resumption's asyncio task, as TrackEvent fields."""
        trace, pieces = self.trace, []
        if args >= 0:
            strings = trace.strings
            for key, string in zip(self._arg_keys[function], trace.arg_tuples[args], strict=False):
                if string >= 0:
                    pieces.append(wire.string_annotation(key, strings[string]))
        if flags & RAISED:
            kind, message = trace.exceptions[exception] if exception >= 0 else UNKNOWN_EXCEPTION
            pieces.append(wire.string_annotation(self._value_keys[0], kind))
            pieces.append(wire.string_annotation(self._value_keys[1], message))
        elif value >= 0:
            key = self._value_keys[3 if flags & YIELDED else 2]
            pieces.append(wire.string_annotation(key, trace.strings[value]))
        if task >= 0:
            pieces.append(wire.string_annotation(self._value_keys[4], trace.strings[task]))
        return b"".join(pieces)

    def end(self, thread: int) -> Parts:
        """The END packet on a thread's track."""
        return _packet_parts(TrackEvent(type=END, track_uuid=_thread_uuid(thread)))

    def head(self, thread: int, function: int, flags: int) -> Parts:
        """The part of a BEGIN packet fixed by thread, function and flags."""
        key = (thread, function, flags)
        if key not in self._heads:
            self._heads[key] = self._new_head(thread, function, flags)
        return self._heads[key]

    def _new_head(self, thread: int, index: int, flags: int) -> Parts:
        """Track, name, category and the annotations fixed by function and flags."""
        interner, function = self.interner, self.trace.functions[index]
        keys, strings = interner.keys, interner.strings
        external = bool(flags & EXTERNAL)
        qualified = (
            f"{function.module}.{function.qualname}" if function.module else function.qualname
        )
        event = TrackEvent(
            type=BEGIN,
            track_uuid=_thread_uuid(thread),
            name_iid=interner.iid(interner.names, qualified if external else function.qualname),
            category_iids=[interner.categories[EXTERNAL_CATEGORY if external else SCOPE]],
        )
        add = event.debug_annotations.add
        add(name_iid=keys["code.function.name"], string_value_iid=interner.iid(strings, qualified))
        if function.file:
            add(
                name_iid=keys["code.file.path"],
                string_value_iid=interner.iid(strings, function.file),
            )
            _annotate(event, keys["code.line.number"], function.line)
        _annotate(event, keys["otel_tracer.call.external"], external)
        for bit, key in (
            (RESUMED, "resumed"),
            (UNFINISHED, "unfinished"),
            (FINALIZER, "finalizer"),
        ):
            if flags & bit:
                _annotate(event, keys[f"otel_tracer.call.{key}"], True)
        return _packet_parts(event)


def _packet_parts(event: TrackEvent) -> Parts:
    """The parts of a packet of the call sequence holding ``event``."""
    packet = TracePacket(
        track_event=event, trusted_packet_sequence_id=CALL_SEQUENCE, sequence_flags=NEEDS_STATE
    )
    return wire.split_packet(packet)


@dataclass
class _Begins:
    """The BEGIN packets of the calls: the parts of each distinct content, and
    per call the index of its content."""

    contents: list[Parts]
    index: np.ndarray


def _begins(trace: Trace, builder: _CallPackets) -> _Begins:
    """Group the calls by distinct BEGIN content and build the contents."""
    calls = trace.calls
    raised = (calls.flags & RAISED) != 0
    columns = (
        calls.thread,
        calls.function,
        calls.flags,
        calls.args,
        np.where(raised, -1, calls.value),
        np.where(raised, calls.exception, -1),  # -1 also for an unknown one: see flags
        calls.task,
    )
    index, first_rows = _dense_ids(*columns)
    keys = zip(*(column[first_rows].tolist() for column in columns), strict=True)
    return _Begins([builder.begin(*key) for key in keys], index)


def _write_call_events(
    trace: Trace, packets: _Packets, begins: _Begins, builder: _CallPackets
) -> np.ndarray:
    """Every call's BEGIN and END in time order, framed as bytes a chunk at a
    time (``perfetto_wire``). Returns each event's (possibly adjusted) timestamp,
    indexed by event."""
    events, times = _event_order(trace)
    rows = events >> 1
    is_end = (events & 1).astype(bool)
    contents = begins.contents + [builder.end(t) for t in range(len(trace.threads))]
    content_of = np.where(
        is_end, len(begins.contents) + trace.calls.thread[rows], begins.index[rows]
    )
    framer = wire.EventFramer(contents, wire.call_id_annotation(builder.interner.keys[CALL_ID]))
    call_ids = np.where(is_end, 0, rows + 1)
    packets.flush()  # the packets before these, in order
    for lo in range(0, len(events), CHUNK_PACKETS):
        part = slice(lo, lo + CHUNK_PACKETS)
        packets.write(framer.frame(content_of[part], times[part], call_ids[part]))
    event_times = np.empty_like(times)
    event_times[events] = times
    return event_times


# --- generic slices: pattern groups and OpenTelemetry spans ---------------------


@dataclass
class _Slice:
    """A slice to place on a track (nested slices on one track must nest in time)."""

    track: int  # track uuid
    name: str
    start: int
    end: int
    annotations: dict[str, Any]
    category: str | None = None


def _nesting_events(slices: Sequence[_Slice]) -> list[tuple[int, int, int, int]]:
    """(time, track, order, slice index or ~index for its END) for every BEGIN and
    END, in nesting order per track, sorted by time across tracks."""
    events: list[tuple[int, int, int, int]] = []
    stacks: dict[int, list[int]] = {}
    ranked = sorted(range(len(slices)), key=lambda i: (slices[i].start, -slices[i].end))
    for index in ranked:
        item = slices[index]
        stack = stacks.setdefault(item.track, [])
        while stack and slices[stack[-1]].end <= item.start:
            events.append((slices[stack[-1]].end, item.track, len(events), ~stack.pop()))
        events.append((item.start, item.track, len(events), index))
        stack.append(index)
    for track, stack in stacks.items():
        while stack:
            events.append((slices[stack[-1]].end, track, len(events), ~stack.pop()))
    events.sort()
    return events


def _write_slices(
    packets: _Packets,
    sequence: int,
    slices: list[_Slice],
    tracks: Sequence[TrackDescriptor] = (),
) -> None:
    """One sequence: its interned names, the ``tracks``, then the slices' BEGIN
    and END events."""
    interner = _Interner()
    for item in slices:
        interner.iid(interner.names, item.name)
        if item.category:
            interner.iid(interner.categories, item.category)
        for key in item.annotations:
            interner.iid(interner.keys, key)
    interner.start(packets, sequence)
    _write_tracks(packets, sequence, tracks)
    keys = interner.keys
    for time, track, _, index in _nesting_events(slices):
        if index < 0 and slices[~index].category == EXCEPTION_CATEGORY:
            continue  # an instant has no END
        packet = packets.add()
        packet.timestamp = time
        packet.trusted_packet_sequence_id = sequence
        packet.sequence_flags = NEEDS_STATE
        event = packet.track_event
        event.track_uuid = track
        if index < 0:
            event.type = END
            continue
        item = slices[index]
        event.type = (
            INSTANT if item.start == item.end and item.category == EXCEPTION_CATEGORY else BEGIN
        )
        event.name_iid = interner.names[item.name]
        if item.category:
            event.category_iids.append(interner.categories[item.category])
        add = event.debug_annotations.add
        for key, value in item.annotations.items():
            if type(value) is int:  # the common case, without _annotate's dispatch
                add(name_iid=keys[key], int_value=value)
            else:
                _annotate(event, keys[key], value)


def _pattern_slices(trace: Trace, event_times: np.ndarray) -> list[_Slice]:
    """One slice per pattern group instance, from the start of its first call to
    the end of its last, on its thread's pattern track."""
    if trace.patterns is None:
        return []
    groups = trace.patterns.section["groups"]
    first = np.array([group["first"] for group in groups], dtype=np.int64)
    last = np.array([group["last"] for group in groups], dtype=np.int64)
    starts = event_times[2 * (first - 1)].tolist()
    ends = event_times[2 * (last - 1) + 1].tolist()
    slices = []
    for group, start, end in zip(groups, starts, ends, strict=True):
        annotations = {"pattern.id": group["id"]}
        if group["parent"] is not None:
            annotations["pattern.parent_id"] = group["parent"]
        annotations["pattern.repetitions"] = group["repetitions"]
        annotations["pattern.calls_per_repetition"] = group["calls_per_repetition"]
        annotations["pattern.total_calls"] = group["total_calls"]
        annotations["pattern.first_call"] = group["first"]
        annotations["pattern.last_call"] = group["last"]
        name = group_label(trace, group, groups)
        track = _pattern_uuid(group["thread"])
        slices.append(_Slice(track, name, start, end, annotations, PATTERN_CATEGORY))
    return slices


def _exception_instants(trace: Trace, event_times: np.ndarray) -> list[_Slice]:
    """An instant on the thread's track where each exception was raised: at the
    end of the innermost call that ended with it (its callers that it unwound
    end with it too, and get none)."""
    calls = trace.calls
    raised = (calls.flags & RAISED) != 0
    unwound = np.zeros(len(calls), dtype=bool)
    parents = calls.parent[raised & (calls.parent >= 0)]
    unwound[parents] = True
    instants = []
    for row in np.flatnonzero(raised & ~unwound).tolist():
        kind, message = trace.exception_of(row) or UNKNOWN_EXCEPTION
        when = int(event_times[2 * row + 1])
        annotations = {"exception.type": kind, "exception.message": message, CALL_ID: row + 1}
        line, file = int(calls.raise_line[row]), trace.function_of(row).file
        if line and file:
            annotations.update({"code.file.path": file, "code.line.number": line})
        track = _thread_uuid(int(calls.thread[row]))
        instants.append(_Slice(track, kind, when, when, annotations, EXCEPTION_CATEGORY))
    return instants


def write_perfetto(trace: Trace, path: str | os.PathLike[str]) -> None:
    """Write ``trace`` as a Perfetto trace, atomically (never a partial file under
    the final name)."""
    builder = _CallPackets(trace, _Interner())
    begins = _begins(trace, builder)
    with atomic_output(Path(path)) as out:
        packets = _Packets(out)
        _write_clock_and_processes(packets, trace)
        builder.interner.start(packets, CALL_SEQUENCE)
        _write_tracks(packets, CALL_SEQUENCE, _call_tracks(trace))
        event_times = _write_call_events(trace, packets, begins, builder)
        slices = _pattern_slices(trace, event_times)
        if slices:
            _write_slices(packets, PATTERN_SEQUENCE, slices)
        instants = _exception_instants(trace, event_times)
        if instants:
            _write_slices(packets, EXCEPTION_SEQUENCE, instants)
        packets.flush()


# --- OpenTelemetry SDK exporter ---------------------------------------------------


class PerfettoFileExporter(SpanExporter):
    """A ``SpanExporter`` that collects the finished spans of any OpenTelemetry
    program and, at ``shutdown()``, writes them to a Perfetto file: one track per
    ``thread.id`` attribute (one track for spans without), plus extra tracks for
    spans that overlap without nesting."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._spans: list[ReadableSpan] = []
        self._written = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Keep the spans for ``shutdown()``."""
        self._spans.extend(spans)
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing to flush: the file is written at shutdown."""
        return True

    def shutdown(self) -> None:
        """Write the collected spans (once)."""
        if self._written:
            return
        self._written = True
        spans = [s for s in self._spans if s.start_time is not None and s.end_time is not None]
        resource = spans[0].resource.attributes if spans else {}
        pid = int(resource.get("process.pid") or os.getpid())
        service = str(resource.get("service.name", "otel"))
        tracks, slices = _span_tracks(spans, _process_track(PROCESS_UUID, pid, service, []))
        with atomic_output(self.path) as out:
            packets = _Packets(out)
            _write_slices(packets, SPAN_SEQUENCE, slices, tracks)
            packets.flush()


def _span_tracks(
    spans: list[ReadableSpan], process: TrackDescriptor
) -> tuple[list[TrackDescriptor], list[_Slice]]:
    """The tracks (the process, one per thread, one more per extra lane where
    spans overlap without nesting) and the spans as slices on them."""
    threads: dict[Any, list[ReadableSpan]] = {}
    for span in spans:
        threads.setdefault((span.attributes or {}).get("thread.id"), []).append(span)
    tracks, slices = [process], []
    for thread, members in threads.items():
        name = str((members[0].attributes or {}).get("thread.name", thread or "spans"))
        for lane, lane_spans in enumerate(_nesting_lanes(members)):
            track = TrackDescriptor(uuid=PROCESS_UUID + len(tracks), parent_uuid=PROCESS_UUID)
            if isinstance(thread, int) and lane == 0:
                pid = process.process.pid
                track.thread.CopyFrom(ThreadDescriptor(pid=pid, tid=thread, thread_name=name))
            else:
                track.name = name if lane == 0 else f"{name} ({lane + 1})"
            tracks.append(track)
            slices += [_span_slice(track.uuid, span) for span in lane_spans]
    return tracks, slices


def _nesting_lanes(spans: list[ReadableSpan]) -> list[list[ReadableSpan]]:
    """The spans split into lanes in which they nest (the first lane that fits)."""
    lanes: list[list[ReadableSpan]] = []
    open_ends: list[list[int]] = []
    for span in sorted(spans, key=lambda s: (s.start_time, -s.end_time)):
        for ends in open_ends:
            while ends and ends[-1] <= span.start_time:
                ends.pop()
        fits = (i for i, ends in enumerate(open_ends) if not ends or span.end_time <= ends[-1])
        lane = next(fits, len(lanes))
        if lane == len(lanes):
            lanes.append([])
            open_ends.append([])
        lanes[lane].append(span)
        open_ends[lane].append(span.end_time)
    return lanes


def _span_slice(track: int, span: ReadableSpan) -> _Slice:
    """A span as a slice: its attributes (non-scalars as text) and ids as annotations."""
    annotations = {
        key: value if isinstance(value, (bool, int, float, str)) else str(value)
        for key, value in (span.attributes or {}).items()
    }
    annotations["otel.span_id"] = f"{span.context.span_id:016x}"
    if span.parent is not None:
        annotations["otel.parent_span_id"] = f"{span.parent.span_id:016x}"
    return _Slice(track, span.name, span.start_time, span.end_time, annotations)
