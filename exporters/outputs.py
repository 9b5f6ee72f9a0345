"""The output formats of a trace, chosen by file name or ``--format``, and writing
one of them; shared by the tracer (``python -m cli.main``) and the converter
(``python -m exporters``)."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from otel_tracer.trace.files import output_problem
from otel_tracer.trace.text import printable

if TYPE_CHECKING:
    from otel_tracer.trace.model import Trace
    from patterns.engine import Folding

FORMATS = ("json", "json.gz", "text", "html", "otlp-json", "perfetto")
SUFFIXES = (
    (".otlp.jsonl", "otlp-json"),  # the extension the OTLP file format prefers
    (".otlp.json", "otlp-json"),
    (".jsonl", "otlp-json"),
    (".json.gz", "json.gz"),
    (".json", "json"),
    (".txt", "text"),
    (".html", "html"),
    (".htm", "html"),
    (".pftrace", "perfetto"),
    (".perfetto-trace", "perfetto"),
)
FILE_ONLY = {  # formats that cannot go to stdout
    "html": "the HTML viewer needs a file name: -o trace.html",
    "perfetto": "the Perfetto trace needs a file name: -o trace.pftrace",
}


class OutputError(ValueError):
    """An output that cannot be written: one line for the user."""


@dataclass(frozen=True)
class Output:
    """One place the trace goes, and in which format."""

    path: str  # "-" for stdout; absolute for a file (the program may change directory)
    format: str
    name: str = ""  # the path as the user gave it, for messages


def output_format(path: str, forced: str | None) -> str:
    """The format for ``path``: ``forced`` (``--format``) if given, else from the name."""
    if forced is not None:
        if forced not in FORMATS:
            raise OutputError(f"unknown --format {forced!r} (choose from {', '.join(FORMATS)})")
        return forced
    if path == "-":
        return "json"
    for suffix, fmt in SUFFIXES:
        if path.endswith(suffix):
            return fmt
    names = ", ".join(suffix for suffix, _ in SUFFIXES if suffix != ".htm")
    raise OutputError(
        f"cannot tell the output format of {path!r} from its name "
        f"(use {names}, or --format {{{','.join(FORMATS)}}})"
    )


def stem(path: str) -> str:
    """``path`` without its format suffix (``trace.json.gz`` -> ``trace``)."""
    for suffix, _ in SUFFIXES:
        if path.endswith(suffix) and len(path) > len(suffix):
            return path[: -len(suffix)]
    return path


def checked_output(path: str, forced: str | None) -> Output:
    """The output for ``-o path``, checked before anything runs; a relative path
    is taken from the directory the command runs in, now."""
    out = Output(path if path == "-" else os.path.abspath(path), output_format(path, forced), path)
    if path == "-":
        if out.format in FILE_ONLY:
            raise OutputError(FILE_ONLY[out.format])
        return out
    problem = output_problem(path)
    if problem is not None:
        raise OutputError(problem)
    return out


def render_text(trace: Trace, folding: Folding | None, stream: TextIO) -> None:
    """The grouped view when patterns ran, else the plain call tree."""
    discarded = trace.meta.get("discarded_calls", 0)
    if discarded:
        stream.write(
            f"(ring buffer: the last {trace.meta.get('ring_buffer')} calls of each process, "
            f"with the calls they ran in; {discarded} older calls discarded)\n"
        )
    if folding is not None:
        from patterns.render import render_grouped

        render_grouped(folding, stream)
    else:
        from otel_tracer.trace.tree import render_tree

        render_tree(trace, stream)


def write_output(
    trace: Trace, folding: Folding | None, out: Output, fold_patterns: bool = False
) -> None:
    """Write ``trace`` to ``out`` (raises OSError). ``fold_patterns`` keeps one
    repetition per pattern group in the span formats (OTLP JSON)."""
    if out.format == "html":
        from exporters.viewer import write_standalone

        write_standalone(trace, folding, out.path)
    elif out.format == "perfetto":
        from exporters.perfetto import write_perfetto

        write_perfetto(trace, out.path)
    elif out.format == "otlp-json":
        from exporters.otlp_json import otlp_json_lines, write_otlp_json
        from otel_tracer.spans.plan import span_plan

        plan = span_plan(trace, fold_patterns)
        if out.path == "-":
            sys.stdout.flush()
            sys.stdout.buffer.writelines(otlp_json_lines(trace, plan))
            sys.stdout.flush()
        else:
            write_otlp_json(trace, out.path, plan)
    elif out.format == "text":
        if out.path == "-":
            render_text(trace, folding, sys.stdout)
        else:
            from otel_tracer.trace.save import atomic_output

            with atomic_output(Path(out.path)) as raw:
                stream = io.TextIOWrapper(raw, encoding="utf-8")
                render_text(trace, folding, stream)
                stream.flush()
                stream.detach()
    else:
        from otel_tracer.trace.save import save

        save(trace, out.path, compress=out.format == "json.gz")


def written_line(trace: Trace, out: Output) -> str:
    """``trace written to PATH (N bytes, B bytes/call)`` for the status line."""
    size = os.path.getsize(out.path)
    per_call = f", {size / len(trace):.0f} bytes/call" if len(trace) else ""
    return f"trace written to {out.name or out.path} ({size} bytes{per_call})"


def status_printer(label: str, quiet: bool) -> Callable[[str], None]:
    """A function printing ``LABEL: message`` status lines on stderr (none if ``quiet``)."""

    def status(message: str) -> None:
        if not quiet:
            print(f"{label}: {printable(message)}", file=sys.stderr, flush=True)

    return status
