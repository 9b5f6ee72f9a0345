"""``python -m exporters.viewer trace.json [PORT]``: build the viewer for a saved
trace and serve it (what ``scripts/serve_visualization.sh`` runs), or write it as
one standalone HTML file with ``-o trace.html``. Bad input gives one line on
stderr and exit status 2."""

from __future__ import annotations

import argparse
import getpass
import signal
import socket
import sys
import tempfile
from pathlib import Path

from exporters.json_trace import output_problem
from exporters.viewer.server import PortBusy, ViewerServer
from exporters.viewer.site import fold_for_viewer, page_name, write_served, write_standalone
from otel_tracer.cli_parser import OneLineParser
from otel_tracer.trace_format import TraceFormatError, load_noting_truncation
from patterns.fold import FoldOptions

DEFAULT_PORT = 8080
PROG = "serve_visualization"


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad port number {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"bad port number {text!r} (use 1-65535, or 0: any)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        label=PROG,
        prog="python -m exporters.viewer",
        description="Open a saved trace in the browser: the call tree with repeated call "
        "sequences folded into pattern boxes. Serves the viewer on PORT (default 8080) "
        "until Ctrl-C, or writes one standalone HTML file with -o.",
    )
    parser.add_argument("trace", help="a JSON trace written by the tracer (.json or .json.gz)")
    parser.add_argument(
        "port",
        nargs="?",
        type=_port,
        default=DEFAULT_PORT,
        help=f"port to serve on (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--no-patterns", action="store_true", help="show the plain call tree, without grouping"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine only; an SSH tunnel needs "
        "nothing more. 0.0.0.0 exposes the trace to the network)",
    )
    parser.add_argument(
        "--match",
        choices=("structure", "function"),
        help="how sibling calls compare when folding (default: as the trace was annotated, "
        "else 'structure')",
    )
    parser.add_argument(
        "--exact", action="store_true", help="only groups whose repetitions are identical"
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE.html",
        help="write one standalone HTML file (data inside, opens from disk) instead of serving",
    )
    return parser


def _options(trace, args) -> FoldOptions | None:
    if args.match is None and not args.exact:
        return None
    saved = trace.patterns.section.get("options", {}) if trace.patterns is not None else {}
    return FoldOptions(
        match=args.match or saved.get("match", "structure"),
        near=not args.exact and saved.get("near", True),
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.output is not None and (problem := output_problem(args.output)) is not None:
            raise ValueError(problem)
        trace = load_noting_truncation(args.trace, PROG)
    except (TraceFormatError, ValueError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    folding = fold_for_viewer(trace, not args.no_patterns, _options(trace, args))
    if args.output is not None:
        try:
            write_standalone(trace, folding, args.output)
        except OSError as error:
            print(f"{PROG}: error: cannot write {args.output}: {error}", file=sys.stderr)
            return 1
        print(f"{PROG}: wrote {args.output} ({len(trace)} calls); open it in a browser")
        return 0
    previous = signal.signal(signal.SIGTERM, _interrupt)  # stop on SIGTERM as on Ctrl-C
    try:
        return _serve(args, trace, folding)
    except KeyboardInterrupt:
        print(f"{PROG}: stopped", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _serve(args, trace, folding) -> int:
    """Build the viewer in a private temporary directory and serve it until Ctrl-C."""
    name = page_name(args.trace)
    with tempfile.TemporaryDirectory(prefix="otel-tracer-viewer-") as directory:
        write_served(trace, folding, Path(directory), name)
        try:
            server = ViewerServer(Path(directory), f"{name}.html", args.host, args.port)
        except PortBusy as error:
            print(f"{PROG}: error: {error}", file=sys.stderr)
            return 2
        except OSError as error:
            where = f"{args.host}:{args.port}"
            print(f"{PROG}: error: cannot serve on {where}: {error}", file=sys.stderr)
            return 2
        _announce(args, trace, folding, name, server.port)
        server.serve_until_stopped()
    print(f"{PROG}: stopped", flush=True)
    return 0


def _announce(args, trace, folding, name: str, port: int) -> None:
    groups = ""
    if folding is not None:
        count = len(folding.instances)
        groups = f", {count} pattern group{'s' * (count != 1)}"
    shown = "localhost" if args.host in ("127.0.0.1", "0.0.0.0", "::", "localhost") else args.host
    lines = [
        f"{PROG}: serving {args.trace} ({len(trace)} calls{groups})",
        f"  open  http://{shown}:{port}/{name}.html",
        f"  remote machine? on your own computer run: "
        f"ssh -L {port}:localhost:{port} {getpass.getuser()}@{socket.gethostname()}",
        "  then open the address above. Ctrl-C stops the server.",
    ]
    print("\n".join(lines), flush=True)
