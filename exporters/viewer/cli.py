"""``python -m exporters.viewer trace.json [PORT]``: build the viewer for a saved
trace and serve it (what ``scripts/serve_visualization.sh`` runs), or write it as
one standalone HTML file with ``-o trace.html``. Bad input gives one line on
stderr and exit status 2."""

from __future__ import annotations

import argparse
import faulthandler
import getpass
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from exporters.viewer.server import Pending, PortBusy, ViewerServer
from exporters.viewer.site import (
    SERVED_BLOBS,
    blob_path,
    build_served,
    fold_for_viewer,
    page_name,
    page_url,
    write_blob,
    write_page,
    write_standalone,
)
from otel_tracer.cli_parser import OneLineParser
from otel_tracer.run.streams import out_of_memory
from otel_tracer.trace.collection import collection_paused
from otel_tracer.trace.format import TraceFormatError, load_noting_truncation
from otel_tracer.trace.save import output_problem
from otel_tracer.trace.text import printable
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
    try:
        return _main(argv)
    except MemoryError:
        return out_of_memory(PROG)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.output is not None and (problem := output_problem(args.output)) is not None:
            raise ValueError(problem)
        with collection_paused():
            trace = load_noting_truncation(args.trace, PROG)
    except (TraceFormatError, ValueError) as error:
        print(f"{PROG}: error: {printable(str(error))}", file=sys.stderr)
        return 2
    options = _options(trace, args)
    if args.output is not None:
        try:
            with collection_paused():
                write_standalone(
                    trace, fold_for_viewer(trace, not args.no_patterns, options), args.output
                )
        except OSError as error:
            print(printable(f"{PROG}: error: cannot write {args.output}: {error}"), file=sys.stderr)
            return 1
        print(printable(f"{PROG}: wrote {args.output} ({len(trace)} calls); open it in a browser"))
        return 0
    previous = signal.signal(signal.SIGTERM, _interrupt)  # stop on SIGTERM as on Ctrl-C
    try:
        return _serve(args, trace, options)
    except KeyboardInterrupt:
        _stopping()
        print(f"{PROG}: stopped", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


BUILDER_STOP_WAIT = 5.0  # seconds Ctrl-C waits for the builder thread's next write
STOP_LIMIT = 15.0  # seconds after Ctrl-C before a server that has not ended is ended


def _stopping() -> None:
    """The server is stopping: if it has not ended within ``STOP_LIMIT`` seconds
    (a rare hang after Ctrl-C, not understood yet), every thread's stack is
    printed to stderr, to find it, and the process ends with status 1."""
    try:
        faulthandler.dump_traceback_later(STOP_LIMIT, exit=True)
    except (RuntimeError, ValueError, OSError):  # no stderr to write to: no limit
        pass


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _serve(args, trace, options: FoldOptions | None) -> int:
    """Serve the viewer from a private temporary directory until Ctrl-C. The server
    listens once the page is written; the trace is folded and the data written
    meanwhile, in a thread (requests for the data wait for it)."""
    name = page_name(args.trace)
    with tempfile.TemporaryDirectory(prefix="otel-tracer-viewer-") as directory:
        directory = Path(directory)
        write_page(trace, directory, name)
        pending = Pending(blob_path(name, blob) for blob in SERVED_BLOBS)
        try:
            server = ViewerServer(directory, f"{name}.html", args.host, args.port, pending)
        except PortBusy as error:
            print(f"{PROG}: error: {printable(str(error))}", file=sys.stderr)
            return 2
        except OSError as error:
            where = f"{args.host}:{args.port}"
            print(f"{PROG}: error: cannot serve on {where}: {error}", file=sys.stderr)
            return 2
        _announce(args, trace, name, server.port)
        failed: list[BaseException] = []
        builder = threading.Thread(
            target=_build,
            args=(args, trace, options, directory, name, pending, server, failed),
            name="viewer-build",
            daemon=True,
        )
        builder.start()
        try:
            server.serve_until_stopped()
        finally:
            _stopping()
            pending.stop()  # no more writes: the directory can go
            # it stops at its next write; a daemon thread still folding after
            # that long is left to end with the process, so Ctrl-C always stops
            builder.join(timeout=BUILDER_STOP_WAIT)
        if failed:
            error = failed[0]
            print(printable(f"{PROG}: error: cannot build the viewer: {error!r}"), file=sys.stderr)
            return 1
    print(f"{PROG}: stopped", flush=True)
    return 0


def _build(args, trace, options, directory: Path, name: str, pending, server, failed) -> None:
    """Fold the trace and write the served blobs (the builder thread)."""
    began = time.perf_counter()
    folded: list = []

    def fold():
        folded.append(fold_for_viewer(trace, not args.no_patterns, options))
        return folded[0]

    def write(blob_name: str, blob: bytes) -> None:
        with pending.lock:
            if pending.stopped:
                raise _Stopped
            write_blob(directory, name, blob_name, blob)
            pending.done(blob_path(name, blob_name))
        if blob_name == "calls.bin":
            groups = ""
            if folded[0] is not None:
                count = len(folded[0].instances)
                groups = f", {count} pattern group{'s' * (count != 1)}"
            seconds = time.perf_counter() - began
            try:
                print(
                    f"{PROG}: view ready ({len(trace)} calls{groups}; {seconds:.1f} s)", flush=True
                )
            except (OSError, ValueError):  # stdout closed: the page still works
                pass

    try:
        with collection_paused():
            build_served(trace, fold, write)
    except _Stopped:
        return
    except BaseException as error:  # reported by the main thread, which stops serving
        failed.append(error)
        pending.fail_all()
        server.httpd.shutdown()


class _Stopped(Exception):
    """The server stopped while the viewer was still being built."""


def _announce(args, trace, name: str, port: int) -> None:
    shown = "localhost" if args.host in ("127.0.0.1", "0.0.0.0", "::", "localhost") else args.host
    lines = [
        printable(f"{PROG}: serving {args.trace} ({len(trace)} calls)"),
        f"  open  http://{shown}:{port}/{page_url(name)}",
        f"  remote machine? on your own computer run: "
        f"ssh -L {port}:localhost:{port} {getpass.getuser()}@{socket.gethostname()}",
        "  then open the address above. Ctrl-C stops the server.",
    ]
    print("\n".join(lines), flush=True)
