"""Protobuf wire pieces for the Perfetto writer's call events, which are framed
as bytes (each packet's fixed fields, its timestamp, its TrackEvent) instead of
being built as protobuf objects one by one. Field numbers come from the
generated descriptors; every field is written once per message, as Perfetto's
own decoder expects."""

from __future__ import annotations

import functools

import numpy as np
from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import (
    DebugAnnotation,
    Trace,
    TracePacket,
    TrackEvent,
)

from exporters.protowire import LENGTH_DELIMITED, VARINT, key, varint, varint_sizes, varints


def _tag(message: type, field: str, wire_type: int) -> bytes:
    return key(message.DESCRIPTOR.fields_by_name[field].number, wire_type)


PACKET = _tag(Trace, "packet", LENGTH_DELIMITED)
TIMESTAMP = _tag(TracePacket, "timestamp", VARINT)
TRACK_EVENT = _tag(TracePacket, "track_event", LENGTH_DELIMITED)
ANNOTATION = _tag(TrackEvent, "debug_annotations", LENGTH_DELIMITED)
NAME_IID = _tag(DebugAnnotation, "name_iid", VARINT)
UINT_VALUE = _tag(DebugAnnotation, "uint_value", VARINT)
STRING_VALUE = _tag(DebugAnnotation, "string_value", LENGTH_DELIMITED)


def split_packet(packet: TracePacket) -> tuple[bytes, bytes]:
    """(the packet's fields but its TrackEvent, that TrackEvent's fields), serialized."""
    event = packet.track_event.SerializeToString()
    packet.ClearField("track_event")
    return packet.SerializeToString(), event


def call_id_annotation(name_iid: int) -> bytes:
    """The start of a call-id debug annotation's fields (its value follows)."""
    return NAME_IID + varint(name_iid) + UINT_VALUE


def string_annotation(name_iid: int, text: str) -> bytes:
    """A TrackEvent's debug annotation field: the interned name, a string value."""
    value = text.encode()
    prefix = _name_prefix(name_iid)
    length = varint(len(value))
    return b"".join(
        (ANNOTATION, varint(len(prefix) + len(length) + len(value)), prefix, length, value)
    )


@functools.lru_cache(maxsize=4096)
def _name_prefix(name_iid: int) -> bytes:
    """A string annotation's fields before its value's length."""
    return NAME_IID + varint(name_iid) + STRING_VALUE


class EventFramer:
    """Frames the packets of call events, many at a time, with numpy: each packet
    is one of a few contents (a packet's fields but its TrackEvent, and that
    TrackEvent's fields), its timestamp, and for a BEGIN its call id as one more
    debug annotation (``call_id_head`` then the id)."""

    def __init__(self, contents: list[tuple[bytes, bytes]], call_id_head: bytes) -> None:
        constants = [PACKET, TIMESTAMP, TRACK_EVENT, ANNOTATION, call_id_head]
        pieces = constants + [other for other, _ in contents] + [event for _, event in contents]
        sizes = np.array([len(piece) for piece in pieces], dtype=np.int64)
        starts = np.zeros(len(pieces), dtype=np.int64)
        np.cumsum(sizes[:-1], out=starts[1:])
        self._source = b"".join(pieces)
        self._constant_at, self._constant_size = starts[:5], sizes[:5]
        n = len(contents)
        self._other_at, self._other_size = starts[5 : 5 + n], sizes[5 : 5 + n]
        self._event_at, self._event_size = starts[5 + n :], sizes[5 + n :]

    def frame(self, content: np.ndarray, times: np.ndarray, call_ids: np.ndarray) -> bytes:
        """The packets (``Trace.packet`` fields) of events of ``content`` (index
        into the contents) at ``times``; ``call_ids`` 0: no call id (an END)."""
        begin = call_ids > 0
        id_size = np.where(begin, varint_sizes(call_ids), 0)
        annotation = np.where(begin, self._constant_size[4] + id_size, 0)
        annotation_size = np.where(begin, varint_sizes(annotation), 0)
        event = self._event_size[content] + np.where(
            begin, self._constant_size[3] + annotation_size + annotation, 0
        )
        event_size = varint_sizes(event)
        time_size = varint_sizes(times)
        packet = (
            self._other_size[content]
            + self._constant_size[1]
            + time_size
            + self._constant_size[2]
            + event_size
            + event
        )
        numbers = np.concatenate((packet, times, event, annotation, call_ids))
        blob, at = varints(numbers)
        at = at[:-1] + len(self._source)
        m = len(content)
        packet_at, time_at, event_at, annotation_at, id_at = at.reshape(5, m)
        c = self._constant_at
        segments = [  # (source offset, size) of each piece of a packet, in order
            (np.full(m, c[0]), np.full(m, self._constant_size[0])),
            (packet_at, varint_sizes(packet)),
            (self._other_at[content], self._other_size[content]),
            (np.full(m, c[1]), np.full(m, self._constant_size[1])),
            (time_at, time_size),
            (np.full(m, c[2]), np.full(m, self._constant_size[2])),
            (event_at, event_size),
            (self._event_at[content], self._event_size[content]),
            (np.full(m, c[3]), np.where(begin, self._constant_size[3], 0)),
            (annotation_at, annotation_size),
            (np.full(m, c[4]), np.where(begin, self._constant_size[4], 0)),
            (id_at, id_size),
        ]
        offsets = np.stack([offset for offset, _ in segments], axis=1).ravel()
        sizes = np.stack([size for _, size in segments], axis=1).ravel()
        return _join_slices(self._source, blob, offsets, sizes)


def _join_slices_numpy(
    first: bytes, second: bytes, offsets: np.ndarray, sizes: np.ndarray
) -> bytes:
    """``(first + second)[offsets[i] : offsets[i] + sizes[i]]`` for every i, joined."""
    source = first + second
    ends = np.cumsum(sizes)
    total = int(ends[-1]) if len(ends) else 0
    gather = np.repeat(offsets - (ends - sizes), sizes) + np.arange(total)
    return np.frombuffer(source, dtype=np.uint8)[gather].tobytes()


try:  # the same in C
    from otel_tracer.trace._speedups import join_slices as _join_slices
except ImportError:  # not built
    _join_slices = _join_slices_numpy
