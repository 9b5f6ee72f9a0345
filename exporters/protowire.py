"""Protobuf wire-format primitives shared by the encoders that write messages as
bytes (``otlp_proto``: OTLP requests; ``perfetto_wire``: Perfetto packets)."""

from __future__ import annotations

import numpy as np

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5
SMALL = 1 << 14  # values whose varint is kept ready: the lengths of most fields
_LIMITS = np.array([1 << (7 * size) for size in range(1, 10)], dtype=np.uint64)


def _encode(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL_VARINTS = [_encode(value) for value in range(SMALL)]


def varint(value: int) -> bytes:
    """A protobuf base-128 varint (``value`` >= 0)."""
    return _SMALL_VARINTS[value] if value < SMALL else _encode(value)


def key(number: int, wire_type: int = LENGTH_DELIMITED) -> bytes:
    """A field's key."""
    return varint(number << 3 | wire_type)


def varint_sizes(values: np.ndarray) -> np.ndarray:
    """The number of bytes of each value's varint (values >= 0; int64)."""
    return np.searchsorted(_LIMITS, np.asarray(values, dtype=np.uint64), side="right") + 1


def varints(values: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Every value (>= 0) as a varint, all in one bytes object; item i is
    ``blob[offsets[i] : offsets[i + 1]]``."""
    rest = np.asarray(values, dtype=np.uint64)
    sizes = varint_sizes(rest)
    offsets = np.zeros(len(rest) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.uint8)
    for k in range(int(sizes.max(initial=0))):
        present = sizes > k
        low = (rest[present] & np.uint64(0x7F)).astype(np.uint8)
        more = (sizes[present] > k + 1).astype(np.uint8) << 7
        out[offsets[:-1][present] + k] = low | more
        rest = rest >> np.uint64(7)
    return out.tobytes(), offsets
