"""``python -m cli.main``: trace a Python program and write or print its trace."""

from __future__ import annotations

import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from cli.args import (
    USAGE,
    VERSION_TEXT_PREFIX,
    HelpRequested,
    Options,
    UsageError,
    VersionRequested,
    parse_args,
)
from exporters.json_trace import output_problem
from otel_tracer.options import RecordOptions
from otel_tracer.recorder import CoreUnavailable, Recorder, tool_version
from otel_tracer.redact import redact, secret_pattern
from otel_tracer.runner import ProgramNotFound, module_origin, run_module, run_script
from otel_tracer.scope import Scope, default_scope

FORMATS = ("json", "json.gz", "text", "html")
_SUFFIX_FORMATS = (
    (".json.gz", "json.gz"),
    (".json", "json"),
    (".txt", "text"),
    (".html", "html"),
    (".htm", "html"),
)


class BadInput(Exception):
    """Input rejected before the program runs: one line, exit status 2."""


@dataclass
class Output:
    """One place the trace goes, and in which format."""

    path: str  # "-" for stdout
    format: str


def output_format(path: str, forced: str | None) -> str:
    """The format for ``path``: ``--format`` if given, else from the file name."""
    if forced is not None:
        return forced
    if path == "-":
        return "json"
    for suffix, fmt in _SUFFIX_FORMATS:
        if path.endswith(suffix):
            return fmt
    raise BadInput(
        f"cannot tell the output format of {path!r} from its name "
        f"(use .json, .json.gz, .txt or .html, or --format {{{','.join(FORMATS)}}})"
    )


def check_inputs(opts: Options) -> tuple[str, list[str], list[Output]]:
    """Validate everything before the program runs: (program file, scope, outputs)."""
    if opts.format is not None and opts.format not in FORMATS:
        raise BadInput(f"unknown --format {opts.format!r} (choose from {', '.join(FORMATS)})")
    if opts.module is not None:
        try:
            program = module_origin(opts.module)
        except ProgramNotFound as error:
            raise BadInput(str(error)) from None
    else:
        program = str(opts.script)
        if not os.path.exists(program):
            raise BadInput(f"script not found: {program}")
        if not os.path.isfile(program):
            raise BadInput(f"not a file: {program}")
        if not os.access(program, os.R_OK):
            raise BadInput(f"script is not readable: {program}")
    if opts.redact and not opts.redaction:
        raise BadInput("--redact and --no-redact cannot go together")
    try:
        secret_pattern(opts.redact)
    except re.error as error:
        raise BadInput(f"--redact: not a valid regular expression ({error})") from None
    for root in opts.scopes:
        if not os.path.isdir(root):
            raise BadInput(f"--scope {root}: no such directory")
    if opts.scopes:
        scope = opts.scopes
    elif opts.module is not None:
        scope = [_package_root(program, opts.module)]
    else:
        scope = default_scope(program)
    outputs = [Output(path, output_format(path, opts.format)) for path in opts.outputs]
    for out in outputs:
        if out.path == "-":
            if out.format == "html":
                raise BadInput("the HTML viewer needs a file name: -o trace.html")
            continue
        problem = output_problem(out.path)
        if problem is not None:
            raise BadInput(problem)
    return program, scope, outputs


def _package_root(origin: str, module: str) -> str:
    """Default scope for ``-m pkg.sub``: the directory of the top-level package."""
    directory = Path(origin).resolve().parent
    levels = module.count(".") + (Path(origin).name == "__main__.py")
    for _ in range(levels):
        directory = directory.parent
    top = directory / module.split(".")[0]
    return str(top if top.is_dir() else directory)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m cli.main`` and the ``otel-tracer`` command."""
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
        program, scope_roots, outputs = check_inputs(opts)
        recorder = Recorder(
            Scope(scope_roots),
            RecordOptions(
                external_calls=opts.external_calls,
                include_builtins=opts.include_builtins,
                capture_args=opts.capture_args,
                max_depth=opts.max_depth,
                max_calls=opts.max_calls,
            ),
            core=opts.core,
        )
    except HelpRequested as help_request:
        print(help_request.text)
        return 0
    except VersionRequested:
        print(f"{VERSION_TEXT_PREFIX} {tool_version()}")
        return 0
    except UsageError as error:
        print(f"otel-tracer: error: {error}\n{USAGE}", file=sys.stderr)
        return 2
    except (BadInput, CoreUnavailable) as error:
        print(f"otel-tracer: error: {error}", file=sys.stderr)
        return 2

    status = _status_printer(opts.quiet)
    status(f"tracing {opts.module or program} (scope: {', '.join(recorder.scope.roots)})")
    if opts.module is not None:
        outcome = run_module(opts.module, opts.script_args, recorder.start)
    else:
        outcome = run_script(program, opts.script_args, recorder.start)
    recorder.stop()
    if recorder.forked:  # a forked child of the program returned here: never write
        return outcome.exit_code
    argv_run = [opts.module and f"-m {opts.module}" or program, *opts.script_args]
    trace = recorder.build(
        script=program,
        module=opts.module,
        argv=argv_run,
        exit_code=outcome.exit_code,
        uncaught_exception=_describe(outcome.exception),
    )
    redact(trace, secret_pattern(opts.redact) if opts.redaction else None)
    folding = None
    if opts.patterns:
        from patterns.annotate import annotate
        from patterns.cli import summary_line
        from patterns.fold import FoldOptions

        try:
            folding = annotate(trace, FoldOptions(match=opts.match, near=opts.near))
        except Exception as error:  # a bug in folding must not cost the user the trace
            trace.patterns = None
            print(
                f"otel-tracer: warning: pattern folding failed ({type(error).__name__}: "
                f"{error}); writing the trace without pattern groups",
                file=sys.stderr,
            )
        else:
            status(f"patterns: {summary_line(folding)}")
    written = _write_outputs(trace, folding, outputs, status)
    if written:
        dropped = trace.meta["dropped_calls"]
        status(f"{len(trace)} calls recorded" + (f", {dropped} dropped" if dropped else ""))
    if outcome.interrupted:
        _die_of_sigint()
    return outcome.exit_code


def _describe(error: BaseException | None) -> dict[str, str] | None:
    if error is None:
        return None
    from otel_tracer.summary import summarize_exception

    kind, message = summarize_exception(error)
    return {"type": kind, "message": message}


def _render_text(trace, folding, stream) -> None:
    """The grouped view when patterns ran, else the plain call tree."""
    if folding is not None:
        from patterns.render import render_grouped

        render_grouped(folding, stream)
    else:
        from otel_tracer.tree import render_tree

        render_tree(trace, stream)


def _write_outputs(trace, folding, outputs: list[Output], status) -> bool:
    """Write every output (the text view on stdout when there is none); False if
    nothing was written to a file."""
    from exporters.json_trace import save

    if not outputs:
        sys.stdout.flush()
        _render_text(trace, folding, sys.stdout)
        return False
    for out in outputs:
        try:
            if out.format == "html":
                from exporters.viewer import write_standalone

                write_standalone(trace, folding, out.path)
            elif out.format == "text":
                if out.path == "-":
                    _render_text(trace, folding, sys.stdout)
                else:
                    with open(out.path, "w", encoding="utf-8") as stream:
                        _render_text(trace, folding, stream)
            else:
                save(trace, out.path, compress=out.format == "json.gz")
        except OSError as error:
            print(f"otel-tracer: error: cannot write {out.path}: {error}", file=sys.stderr)
            continue
        if out.path != "-":
            size = os.path.getsize(out.path)
            per_call = f", {size / len(trace):.0f} bytes/call" if len(trace) else ""
            status(f"trace written to {out.path} ({size} bytes{per_call})")
    return True


def _status_printer(quiet: bool):
    def status(message: str) -> None:
        if not quiet:
            print(f"otel-tracer: {message}", file=sys.stderr, flush=True)

    return status


def _die_of_sigint() -> None:
    """End as Python does after an uncaught KeyboardInterrupt: killed by SIGINT."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())
