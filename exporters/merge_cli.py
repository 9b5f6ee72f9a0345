"""``python -m exporters merge TRACE... [-o OUT]``: combine the per-process
traces of one run (``trace.json`` and ``trace.<pid>.json``, see
``otel_tracer.run.follow``) into one trace whose processes are separate roots."""

from __future__ import annotations

import argparse
import sys

from exporters.outputs import (
    OutputError,
    checked_output,
    status_printer,
    stem,
    write_output,
    written_line,
)
from otel_tracer.cli_parser import OneLineParser
from otel_tracer.run.streams import trace_command
from otel_tracer.trace.format import TraceFormatError, load_noting_truncation
from otel_tracer.trace.merge import MergeError, merge_traces
from otel_tracer.trace.text import printable

PROG = "exporters merge"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        label=PROG,
        prog="python -m exporters merge",
        description="Merge the traces of the processes of one run (the tracer's trace.json "
        "and the trace.<pid>.json files of processes it did not merge itself) into one "
        "trace, each process a separate root, pattern groups found again.",
        epilog="Example: python -m exporters merge trace.json trace.*.json -o all.json",
    )
    parser.add_argument("traces", nargs="+", metavar="TRACE", help="JSON traces of one run")
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write, in the format its name says (default: FIRST.merged.json)",
    )
    parser.add_argument(
        "--no-patterns", action="store_true", help="write the trace without pattern groups"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no status line")
    return parser


def main(argv: list[str] | None = None) -> int:
    return trace_command(PROG, _main, argv)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    status = status_printer(PROG, args.quiet)
    try:
        target = args.output or f"{stem(args.traces[0])}.merged.json"
        output = checked_output(target, None)
        traces = [load_noting_truncation(path, PROG) for path in args.traces]
        trace = merge_traces(traces)
    except (OutputError, TraceFormatError, MergeError) as error:
        print(f"{PROG}: error: {printable(str(error))}", file=sys.stderr)
        return 2
    folding = None
    if not args.no_patterns:
        from patterns.annotate import annotate

        folding = annotate(trace)
    try:
        write_output(trace, folding, output, False)
    except OSError as error:
        print(printable(f"{PROG}: error: cannot write {output.path}: {error}"), file=sys.stderr)
        return 1
    processes = len(trace.meta["processes"])
    if output.path != "-":
        status(f"{processes} processes: {written_line(trace, output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
