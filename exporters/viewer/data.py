"""The viewer's data: a trace (and its folding) in the compact form the page loads.

The page loads three gzip-compressed blobs (docs/viewer.md):

* ``meta.json``: run metadata, the function and thread tables, the statistics and
  the folded structure (one entry per distinct child sequence, see ``_group``);
* ``calls.bin``: one little-endian column per call field, back to back, laid out
  as ``meta["columns"]`` says (start and duration in ns as float64 first, so the
  float64 views are aligned, then int32 columns, then the uint8 flags);
* ``details.json``: arguments, values, exceptions and span ids, loaded only when
  a call's details are first shown.

The page builds the children lists, subtree sizes and everything else it needs
from these, so nothing per call is sent twice.
"""

from __future__ import annotations

import os
import threading
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from otel_tracer.trace.model import EXTERNAL, Trace
from patterns.annotate import statistics as folding_statistics
from patterns.engine import Folding
from patterns.groups import LocalGroup

TOP_FUNCTIONS = 25
COMPRESS_LEVEL = 1  # 8x faster than 6 on 10^6 calls, 8% bigger

# name, numpy dtype: the columns of calls.bin, in order
COLUMNS = (
    ("start", "<f8"),
    ("duration", "<f8"),
    ("parent", "<i4"),
    ("function", "<i4"),
    ("thread", "<i4"),
    ("sequence", "<i4"),
    ("flags", "u1"),
)


@dataclass
class ViewerData:
    """The gzip-compressed blobs of one trace, by name."""

    blobs: dict[str, bytes]
    calls: int


def _gzip(*pieces: bytes | np.ndarray) -> bytes:
    """The pieces, one after the other, gzip-compressed (without joining them first)."""
    compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, 31)  # 31: gzip container
    return b"".join([*(compressor.compress(piece) for piece in pieces), compressor.flush()])


def build_data(trace: Trace, folding: Folding | None) -> ViewerData:
    """The viewer blobs of ``trace``; ``folding`` is None for the unfolded view."""
    blobs = view_blobs(trace, folding)
    blobs["details.json"] = details_blob(trace)
    return ViewerData(blobs=blobs, calls=len(trace))


def view_blobs(trace: Trace, folding: Folding | None) -> dict[str, bytes]:
    """``meta.json`` and ``calls.bin``, gzipped: what the page needs to draw the tree."""
    return ViewBuilder(trace).finish(folding)


class ViewBuilder:
    """``view_blobs`` in two steps, so that the columns of calls.bin that do not
    depend on the folding are gzipped (in a thread: zlib lets go of the GIL) while
    the trace is folded: ``ViewBuilder(trace)``, fold, then ``finish(folding)``."""

    def __init__(self, trace: Trace, background: bool = False) -> None:
        self.trace = trace
        self.origin = int(trace.calls.start.min()) if len(trace) else 0  # ns; starts are offsets
        self.compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, 31)  # gzip container
        self.parts: list[bytes] = []
        self.layout: list[dict[str, Any]] = []
        self.offset = 0
        calls = trace.calls
        early = {  # the columns before "sequence", converted to the COLUMNS types
            "start": lambda: calls.start - self.origin,
            "duration": lambda: calls.end - calls.start,
            "parent": lambda: calls.parent,
            "function": lambda: calls.function,
            "thread": lambda: calls.thread,
        }
        self.early = [(name, dtype, early[name]) for name, dtype in COLUMNS if name in early]
        self.late = [(name, dtype) for name, dtype in COLUMNS if name not in early]
        self.error: BaseException | None = None
        self.thread = None
        if background:
            self.thread = threading.Thread(target=self._compress_early, daemon=True)
            self.thread.start()
        else:
            self._compress_early()

    def _add(self, name: str, dtype: str, values: np.ndarray) -> None:
        data = np.ascontiguousarray(values, dtype=dtype)
        self.layout.append(
            {"name": name, "type": dtype, "offset": self.offset, "length": len(data)}
        )
        self.offset += data.nbytes
        self.parts.append(self.compressor.compress(data))

    def _compress_early(self) -> None:
        try:
            for name, dtype, values in self.early:
                self._add(name, dtype, values())
        except BaseException as error:  # raised again by finish
            self.error = error

    def wait(self) -> None:
        """Until the columns before "sequence" are compressed."""
        if self.thread is not None:
            self.thread.join()

    def finish(self, folding: Folding | None) -> dict[str, bytes]:
        trace = self.trace
        sequence = np.full(len(trace), -1, dtype=np.int32)
        if folding is not None:
            for s, seq in enumerate(folding.sequences):
                owners = seq.owners[seq.owners >= 0]
                sequence[owners] = s
        late = {"sequence": sequence, "flags": trace.calls.flags}
        self.wait()
        if self.error is not None:
            raise self.error
        for name, dtype in self.late:
            self._add(name, dtype, late[name])
        calls_bin = b"".join([*self.parts, self.compressor.flush()])
        meta = _meta(trace, folding, self.layout, self.origin)
        return {"meta.json": _gzip(orjson.dumps(meta)), "calls.bin": calls_bin}


def details_blob(trace: Trace) -> bytes:
    """``details.json``, gzipped: loaded by the page when it first shows a call's details."""
    return _gzip(*_details_json(trace))


def _meta(
    trace: Trace, folding: Folding | None, layout: list[dict[str, Any]], origin: int
) -> dict[str, Any]:
    n = len(trace)
    thread_sequences = [-1] * len(trace.threads)
    sequences: list[dict[str, Any]] = []
    if folding is not None:
        for s, seq in enumerate(folding.sequences):
            sequences.append({"groups": [_group(g) for g in seq.groups]})
            for owner in seq.owners[seq.owners < 0].tolist():
                thread_sequences[-1 - owner] = s
    return {
        "calls": n,
        "origin_ns": origin,
        "metadata": trace.meta,
        "columns": layout,
        "functions": [
            {
                "name": f.name,
                "qualname": f.qualname,
                "module": f.module,
                "file": f.file,
                "basename": os.path.basename(f.file),
                "line": f.line,
                "external": f.external,
                "argnames": list(f.argnames),
            }
            for f in trace.functions
        ],
        "threads": [
            {
                "id": t.id,
                "native_id": t.native_id,
                "name": t.name,
                "pid": t.pid,
                "label": trace.thread_label(i),
                "sequence": thread_sequences[i],
            }
            for i, t in enumerate(trace.threads)
        ],
        "patterns": None
        if folding is None
        else {"options": {"match": folding.options.match, "near": folding.options.near}},
        "sequences": sequences,
        "statistics": statistics(trace, folding),
    }


def _group(group: LocalGroup) -> dict[str, Any]:
    """A group by sibling positions: iteration bounds (``start``/``period`` when all
    iterations have the same length), the variant of each iteration (omitted when
    there is one variant) and each variant's iterations and nested groups."""
    lengths = np.diff(group.bounds)
    entry: dict[str, Any] = {"start": group.start, "repetitions": group.repetitions}
    if np.all(lengths == lengths[0]):
        entry["period"] = int(lengths[0])
    else:
        entry["bounds"] = group.bounds.tolist()
    if len(group.variants) > 1:
        entry["variant_of"] = group.variant_of.tolist()
    entry["near"] = group.near
    entry["variants"] = [
        {
            "iterations": v.iterations.tolist() if len(group.variants) > 1 else None,
            "representative": v.representative,
            "nested": [_group(g) for g in v.nested],
        }
        for v in group.variants
    ]
    return entry


def _details_json(trace: Trace) -> list[bytes | np.ndarray]:
    """``details.json``: the tables, and per call the argument tuple, value,
    exception, raise line, asyncio task and span id, written from the numpy
    columns without a Python object per call."""
    calls = trace.calls
    numpy = orjson.OPT_SERIALIZE_NUMPY
    head = orjson.dumps(
        {
            "strings": trace.strings,
            "arg_tuples": trace.arg_tuples,
            "exceptions": trace.exceptions,
        }
    )
    pieces = [head[:-1]]
    for name, column in (
        ("args", calls.args),
        ("value", calls.value),
        ("exception", calls.exception),
        ("raise_line", calls.raise_line),
        ("task", calls.task),
    ):
        pieces += [
            b',"%s":' % name.encode(),
            orjson.dumps(np.ascontiguousarray(column, dtype=np.int32), option=numpy),
        ]
    pieces += [b',"span_id":', _hex_strings(calls.span_id), b"}"]
    return pieces


def _hex_strings(values: np.ndarray) -> np.ndarray:
    """The bytes of a JSON array of 16-hex-digit strings, one per uint64 value."""
    n = len(values)
    if not n:
        return np.frombuffer(b"[]", dtype=np.uint8)
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    out = np.empty(1 + 19 * n, dtype=np.uint8)
    out[0] = ord("[")
    text = out[1:].reshape(n, 19)  # "0123456789abcdef",
    text[:, 0] = text[:, 17] = ord('"')
    text[:, 18] = ord(",")
    chunk = 1 << 16
    for lo in range(0, n, chunk):  # in chunks: small temporaries
        octets = np.ascontiguousarray(values[lo : lo + chunk], dtype=">u8").view(np.uint8)
        octets = octets.reshape(-1, 8)
        text[lo : lo + chunk, 1:17:2] = digits[octets >> 4]
        text[lo : lo + chunk, 2:17:2] = digits[octets & 15]
    out[-1] = ord("]")
    return out


def statistics(trace: Trace, folding: Folding | None) -> dict[str, Any]:
    """The statistics panel: counts, duration, pattern groups and top functions.

    A function's total time counts a call only when its parent is not a call of
    the same function, so direct recursion is not counted twice; self time is a
    call's duration minus its children's."""
    calls = trace.calls
    n = len(trace)
    functions = len(trace.functions)
    duration = (calls.end - calls.start).astype(np.int64)
    parent = calls.parent
    has_parent = parent >= 0
    child_time = np.bincount(parent[has_parent], weights=duration[has_parent], minlength=n)
    self_time = duration - child_time[:n] if n else duration
    same_as_parent = np.zeros(n, dtype=bool)
    same_as_parent[has_parent] = calls.function[parent[has_parent]] == calls.function[has_parent]
    count = np.bincount(calls.function, minlength=functions)
    total = np.bincount(calls.function[~same_as_parent], duration[~same_as_parent], functions)
    own = np.bincount(calls.function, weights=self_time, minlength=functions)

    def top(values: np.ndarray) -> list[dict[str, Any]]:
        order = np.lexsort((np.arange(functions), -values))[:TOP_FUNCTIONS]
        return [
            {
                "function": int(f),
                "count": int(count[f]),
                "total_ns": int(total[f]),
                "self_ns": int(own[f]),
            }
            for f in order
            if count[f]
        ]

    stats: dict[str, Any] = {
        "calls": n,
        "functions": int(np.count_nonzero(count)),
        "external_calls": int(np.count_nonzero(calls.flags & EXTERNAL)),
        "max_depth": int(calls.depth.max()) + 1 if n else 0,
        "threads": int(np.count_nonzero(np.bincount(calls.thread, minlength=1))),  # with calls
        "duration_ns": int(calls.end.max() - calls.start.min()) if n else 0,
        "top_by_count": top(count.astype(np.float64)),
        "top_by_total": top(total),
        "top_by_self": top(own),
    }
    if folding is not None:
        counts = folding_statistics(folding)
        shown = ("groups", "top_level_groups", "calls_in_groups", "rows_unfolded", "rows_folded")
        stats["patterns"] = {key: counts[key] for key in shown}
        stats["patterns"]["rows_saved"] = n - counts["rows_folded"]
    return stats
