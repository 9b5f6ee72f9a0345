"""The plain call tree, as printed to the terminal when no output file is given."""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import islice
from typing import TextIO

from otel_tracer.trace.model import EXTERNAL, FINALIZER, RESUMED, UNFINISHED, YIELDED, Trace
from otel_tracer.trace.text import printable

MAX_ARGS_TEXT = 80
MAX_INDENT = 256  # characters of tree drawing before a row; deeper rows cut it short


def call_label(trace: Trace, row: int, with_args: bool = True) -> str:
    """``name [file.py:line]`` of a call, marked when external, resumed or run by a
    finalizer (the garbage collector, ``__del__``, a weakref callback), plus a brief
    argument list, the returned value or the exception; control characters escaped."""
    function = trace.function_of(row)
    flags = int(trace.calls.flags[row])
    if flags & EXTERNAL:
        module = f"{function.module}." if function.module else ""
        text = f"{module}{function.qualname} [external]"
    else:
        text = f"{function.qualname} [{os.path.basename(function.file)}:{function.line}]"
    if flags & RESUMED:
        task = trace.task_of(row)
        text += f" (resumed in task {task})" if task is not None else " (resumed)"
    if flags & FINALIZER:
        text += " (finalizer)"
    if with_args:
        args = ", ".join(f"{k}={v}" for k, v in trace.args_of(row).items())
        if args:
            text += f" ({args[:MAX_ARGS_TEXT]}{'...' if len(args) > MAX_ARGS_TEXT else ''})"
        exception = trace.exception_of(row)
        value = trace.value_of(row)
        if exception is not None:
            text += f" !! {exception[0]}: {exception[1][:MAX_ARGS_TEXT]}"
        elif flags & YIELDED:
            text += f" yielded {value}"
        elif value is not None and value != "None":
            text += f" -> {value}"
    if flags & UNFINISHED:
        text += " (unfinished)"
    return printable(text)


def indent(prefix: str, part: str) -> str:
    """``prefix + part``, the indentation of the next level; past ``MAX_INDENT``
    characters cut to its last half behind ``… ``, so that the rows of a very deep
    call tree stay short and the view grows linearly with the calls."""
    text = prefix + part
    if len(text) > MAX_INDENT:
        return "… " + text[-(MAX_INDENT // 2) :]
    return text


def duration_text(ns: int) -> str:
    """A short human duration."""
    if ns < 1_000_000:
        return f"{ns / 1000:.1f} us"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.2f} s"


def tree_lines(
    trace: Trace, depth: int | None = None, threads: list[int] | None = None
) -> Iterator[str]:
    """Lines of the indented call tree, thread by thread; calls deeper than
    ``depth`` levels are summarised, and only ``threads`` (indices) shown if given."""
    calls = trace.calls
    by_thread: dict[int, list[int]] = {}
    for row in trace.children_of(-1).tolist():
        by_thread.setdefault(int(calls.thread[row]), []).append(row)
    for thread, roots in sorted(by_thread.items()):
        if threads is not None and thread not in threads:
            continue
        yield f"Thread {printable(trace.thread_label(thread))}"
        stack = [(row, "", i == len(roots) - 1) for i, row in enumerate(roots)][::-1]
        while stack:
            row, prefix, last = stack.pop()
            duration = duration_text(int(calls.end[row] - calls.start[row]))
            branch = "└── " if last else "├── "
            yield f"{prefix}{branch}#{row + 1} {call_label(trace, row)}  ({duration})"
            children = trace.children_of(row).tolist()
            child_prefix = indent(prefix, "    " if last else "│   ")
            if children and depth is not None and int(calls.depth[row]) + 1 >= depth:
                yield f"{child_prefix}└── {more_below(subtree_size(trace, row) - 1)}"
                continue
            for i in range(len(children) - 1, -1, -1):
                stack.append((children[i], child_prefix, i == len(children) - 1))


def more_below(count: int) -> str:
    """The line that stands for calls hidden by ``--depth``."""
    return f"… {count} more call{'s' * (count != 1)} below (--depth)"


def subtree_size(trace: Trace, row: int) -> int:
    """Calls in the subtree of ``row``, the call included."""
    size, stack = 0, [row]
    while stack:
        size += 1
        stack.extend(trace.children_of(stack.pop()).tolist())
    return size


def write_lines(lines: Iterator[str], out: TextIO, max_rows: int | None = None) -> None:
    """Write ``lines`` to ``out``, at most ``max_rows`` of them (then a note)."""
    written = 0
    for chunk in iter(lambda: list(islice(lines, 4096)), []):
        if max_rows is not None and written + len(chunk) > max_rows:
            chunk = chunk[: max_rows - written]
            if chunk:
                out.write("\n".join(chunk) + "\n")
            out.write(f"… output stopped at {max_rows} rows (--max-rows)\n")
            return
        out.write("\n".join(chunk) + "\n")
        written += len(chunk)


def render_tree(
    trace: Trace,
    out: TextIO,
    max_rows: int | None = None,
    depth: int | None = None,
    threads: list[int] | None = None,
) -> None:
    """Write the call tree to ``out`` (see ``tree_lines`` and ``write_lines``)."""
    if not len(trace):
        out.write("(no calls recorded in scope)\n")
        return
    write_lines(tree_lines(trace, depth, threads), out, max_rows)
