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

VARINT, LENGTH_DELIMITED = 0, 2
MAX_BYTES = 10  # of a 64-bit varint


def varint(value: int) -> bytes:
    """``value`` (>= 0) as a protobuf varint."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


SMALL = 1 << 14
SMALL_VARINTS = [varint(n) for n in range(SMALL)]  # the lengths of most fields


def _tag(message: type, field: str, wire_type: int) -> bytes:
    return varint((message.DESCRIPTOR.fields_by_name[field].number << 3) | wire_type)


PACKET = _tag(Trace, "packet", LENGTH_DELIMITED)
TIMESTAMP = _tag(TracePacket, "timestamp", VARINT)
TRACK_EVENT = _tag(TracePacket, "track_event", LENGTH_DELIMITED)
ANNOTATION = _tag(TrackEvent, "debug_annotations", LENGTH_DELIMITED)
NAME_IID = _tag(DebugAnnotation, "name_iid", VARINT)
UINT_VALUE = _tag(DebugAnnotation, "uint_value", VARINT)
STRING_VALUE = _tag(DebugAnnotation, "string_value", LENGTH_DELIMITED)


def varints(values: np.ndarray) -> tuple[bytes, list[int]]:
    """Every value (>= 0) as a varint, all in one bytes object; item i is
    ``blob[offsets[i] : offsets[i + 1]]``."""
    rest = np.asarray(values, dtype=np.uint64)
    sizes = np.ones(len(rest), dtype=np.int64)
    for k in range(1, MAX_BYTES):
        sizes += rest >= np.uint64(1) << np.uint64(7 * k)
    offsets = np.zeros(len(rest) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.uint8)
    for k in range(int(sizes.max(initial=0))):
        present = sizes > k
        low = (rest[present] & np.uint64(0x7F)).astype(np.uint8)
        more = (sizes[present] > k + 1).astype(np.uint8) << 7
        out[offsets[:-1][present] + k] = low | more
        rest = rest >> np.uint64(7)
    return out.tobytes(), offsets.tolist()


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
    length = SMALL_VARINTS[len(value)] if len(value) < SMALL else varint(len(value))
    inner = len(prefix) + len(length) + len(value)
    size = SMALL_VARINTS[inner] if inner < SMALL else varint(inner)
    return b"".join((ANNOTATION, size, prefix, length, value))


@functools.lru_cache(maxsize=4096)
def _name_prefix(name_iid: int) -> bytes:
    """A string annotation's fields before its value's length."""
    return NAME_IID + varint(name_iid) + STRING_VALUE
