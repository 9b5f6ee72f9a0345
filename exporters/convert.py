"""``python -m exporters trace.json --to perfetto|otlp-json|otlp|... [-o OUT]``:
convert a saved trace without rerunning the program. Bad input gives one line on
stderr and exit status 2; a collector that is down gives one line and status 1."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from exporters.collector import SpanExport, span_export
from exporters.otlp import OtlpConfigError
from exporters.outputs import (
    FORMATS,
    SUFFIXES,
    Output,
    OutputError,
    checked_output,
    status_printer,
    write_output,
    written_line,
)
from otel_tracer.cli_parser import OneLineParser
from otel_tracer.run.streams import trace_command
from otel_tracer.trace.format import TraceFormatError, load_noting_truncation
from otel_tracer.trace.text import printable

PROG = "exporters"
TARGETS = (*FORMATS, "otlp")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        label=PROG,
        prog="python -m exporters",
        description="Convert a saved trace (.json or .json.gz, as written by the tracer) to "
        "another format, or send it to an OTLP collector, without rerunning the program.",
        epilog="Examples: python -m exporters trace.json --to perfetto (writes trace.pftrace); "
        "python -m exporters trace.json -o trace.otlp.json; python -m exporters trace.json "
        "--to otlp --otlp-endpoint http://localhost:4317",
    )
    parser.add_argument("trace", help="a JSON trace written by the tracer")
    parser.add_argument(
        "--to",
        choices=TARGETS,
        help="the format (default: from the -o file name); otlp sends the spans to a collector",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write (default: the trace's name with the format's suffix; '-' is "
        "stdout for json, text and otlp-json)",
    )
    parser.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help="the collector for --to otlp (default: the OTEL_EXPORTER_OTLP_* variables, "
        "else http://localhost:4317)",
    )
    parser.add_argument(
        "--otlp-protocol",
        choices=("grpc", "http/protobuf", "http/json"),
        help="grpc, http/protobuf or http/json (default: OTEL_EXPORTER_OTLP_PROTOCOL, else "
        "from the URL)",
    )
    parser.add_argument(
        "--fold-patterns",
        action="store_true",
        help="span outputs (otlp, otlp-json) keep one repetition per pattern group, under a "
        "group span with the counts",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no status line")
    return parser


def default_output(trace_path: str, fmt: str) -> str:
    """``run.json`` -> ``run.pftrace`` (the first suffix of ``fmt``), next to the trace."""
    name = Path(trace_path).name
    for suffix in (".json.gz", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    suffix = next(s for s, f in SUFFIXES if f == fmt)
    return str(Path(trace_path).with_name(name + suffix))


def main(argv: list[str] | None = None) -> int:
    return trace_command(PROG, _main, argv)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    status = status_printer(PROG, args.quiet)
    try:
        output, target = _destination(args)
        trace = load_noting_truncation(args.trace, PROG)
    except (OutputError, OtlpConfigError, TraceFormatError) as error:
        print(f"{PROG}: error: {printable(str(error))}", file=sys.stderr)
        return 2
    if args.fold_patterns and trace.patterns is None:
        from patterns.annotate import annotate

        annotate(trace)
    if target is not None:
        from exporters.collector import export_spans

        for warning in target.warnings:
            print(f"{PROG}: warning: {warning}", file=sys.stderr)
        sent = export_spans(trace, target, args.fold_patterns, status, PROG)
        return 0 if sent else 1
    assert output is not None
    folding = None
    if output.format in ("text", "html"):
        from exporters.viewer.site import fold_for_viewer

        folding = fold_for_viewer(trace)
    try:
        write_output(trace, folding, output, args.fold_patterns)
    except OSError as error:
        print(printable(f"{PROG}: error: cannot write {output.path}: {error}"), file=sys.stderr)
        return 1
    if output.path != "-":
        status(written_line(trace, output))
    return 0


def _destination(args: argparse.Namespace) -> tuple[Output | None, SpanExport | None]:
    """The file output, or the OTLP target for ``--to otlp``."""
    if args.to == "otlp":
        if args.output is not None:
            raise OutputError("--to otlp sends to a collector: use --otlp-endpoint, not -o")
        environ = {**os.environ, "OTEL_TRACES_EXPORTER": "otlp"}  # --to otlp asks for it
        return None, span_export(args.otlp_endpoint, args.otlp_protocol, environ)
    if args.otlp_endpoint is not None or args.otlp_protocol is not None:
        raise OutputError("--otlp-endpoint and --otlp-protocol go with --to otlp")
    if args.output is None:
        if args.to is None:
            raise OutputError("say what to write: --to FORMAT or -o FILE")
        return checked_output(default_output(args.trace, args.to), args.to), None
    return checked_output(args.output, args.to), None
