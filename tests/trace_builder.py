"""Build small Trace objects from nested call specifications, for pattern tests.

A call is ``"name"`` (a leaf) or ``("name", [children...])``; a thread is a list
of root calls. ``name`` may be ``"file.py:line:name"`` to pick the file and
line; an ``!`` prefix marks an external call.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from otel_tracer.trace.model import EXTERNAL, Calls, Function, ThreadInfo, Trace

Spec = Any
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def _function(label: str) -> Function:
    external = label.startswith("!")
    label = label.lstrip("!")
    if label.count(":") == 2:
        file, line, name = label.split(":")
    else:
        file, line, name = "mod.py", "1", label
    if external:
        return Function(name, name, "lib", "", 0, True)
    return Function(name, name, "mod", f"/src/{file}", int(line), False)


def build_trace(*threads: list[Spec]) -> Trace:
    """A trace whose threads run the given call trees, in order, one after another."""
    functions: list[Function] = []
    function_ids: dict[Function, int] = {}
    rows: dict[str, list[int]] = {k: [] for k in ("parent", "depth", "function", "thread")}
    flags: list[int] = []
    clock = [0]
    starts: list[int] = []
    ends: list[int] = []

    def visit(spec: Spec, parent: int, depth: int, thread: int) -> None:
        label, children = (spec, []) if isinstance(spec, str) else spec
        function = _function(label)
        fid = function_ids.setdefault(function, len(functions))
        if fid == len(functions):
            functions.append(function)
        row = len(rows["parent"])
        for key, value in zip(rows, (parent, depth, fid, thread), strict=True):
            rows[key].append(value)
        flags.append(EXTERNAL if function.external else 0)
        clock[0] += 10
        starts.append(clock[0])
        ends.append(0)
        for child in children:
            visit(child, row, depth + 1, thread)
        clock[0] += 10
        ends[row] = clock[0]

    for t, roots in enumerate(threads):
        for root in roots:
            visit(root, -1, 0, t)
    return trace_from_columns(
        functions,
        parent=np.array(rows["parent"], dtype=np.int64),
        depth=np.array(rows["depth"], dtype=np.int32),
        function=np.array(rows["function"], dtype=np.int32),
        thread=np.array(rows["thread"], dtype=np.int32),
        start=np.array(starts, dtype=np.int64),
        end=np.array(ends, dtype=np.int64),
        flags=np.array(flags, dtype=np.uint8),
        threads=len(threads),
    )


def trace_from_columns(
    functions: list[Function],
    parent: np.ndarray,
    depth: np.ndarray,
    function: np.ndarray,
    thread: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    flags: np.ndarray,
    threads: int = 1,
) -> Trace:
    """A trace from its structural columns; no arguments, values or exceptions."""
    n = len(parent)
    return Trace(
        meta={"call_count": n, "trace_id": TRACE_ID},
        functions=functions,
        threads=[
            ThreadInfo(100 + t, 200 + t, "MainThread" if t == 0 else f"T{t}")
            for t in range(threads)
        ],
        strings=[],
        arg_tuples=[],
        exceptions=[],
        calls=Calls(
            parent=parent,
            depth=depth,
            function=function,
            thread=thread,
            start=start,
            end=end,
            args=np.full(n, -1, dtype=np.int32),
            value=np.full(n, -1, dtype=np.int32),
            exception=np.full(n, -1, dtype=np.int32),
            flags=flags,
            span_id=np.arange(1, n + 1, dtype=np.uint64),
            raise_line=np.zeros(n, dtype=np.int32),
            task=np.full(n, -1, dtype=np.int32),
        ),
    )
