"""``python -m cli.main``: trace a Python program and write or print its trace."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from tempfile import mkdtemp
from typing import TYPE_CHECKING

from cli.args import (
    USAGE,
    VERSION_TEXT_PREFIX,
    HelpRequested,
    Options,
    UsageError,
    VersionRequested,
    parse_args,
)
from exporters.outputs import (
    Output,
    OutputError,
    checked_output,
    render_text,
    status_printer,
    stem,
    write_output,
    written_line,
)
from otel_tracer import follow
from otel_tracer.context import BadTraceParent, TraceParent, inherited_traceparent
from otel_tracer.options import RecordOptions
from otel_tracer.recorder import CoreUnavailable, Recorder, tool_version
from otel_tracer.redact import redact, secret_pattern
from otel_tracer.runner import ProgramNotFound, module_origin, run_module, run_script
from otel_tracer.scope import Scope, default_scope
from otel_tracer.spool import SUFFIX as SPOOL_SUFFIX
from otel_tracer.spool import Spool

if TYPE_CHECKING:
    from exporters.otlp import OtlpTarget


class BadInput(Exception):
    """Input rejected before the program runs: one line, exit status 2."""


@dataclass
class Plan:
    """What to run and where its trace goes, checked before the program runs."""

    program: str
    scope: list[str]
    outputs: list[Output]
    otlp: OtlpTarget | None


def check_inputs(opts: Options) -> Plan:
    """Validate everything before the program runs."""
    try:
        outputs = [checked_output(path, opts.format) for path in opts.outputs]
    except OutputError as error:
        raise BadInput(str(error)) from None
    otlp = _otlp_target(opts)
    if opts.fold_patterns and not opts.patterns:
        raise BadInput("--fold-patterns needs the pattern groups: drop --no-patterns")
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
    return Plan(program, scope, outputs, otlp)


def _otlp_target(opts: Options) -> OtlpTarget | None:
    """Where to send spans, if ``--otlp-endpoint`` or ``OTEL_TRACES_EXPORTER`` asks;
    the OpenTelemetry SDK is only imported then."""
    if opts.otlp_endpoint is None and not os.environ.get("OTEL_TRACES_EXPORTER"):
        return None
    from exporters.otlp import OtlpConfigError, otlp_target

    try:
        return otlp_target(opts.otlp_endpoint, opts.otlp_protocol)
    except OtlpConfigError as error:
        raise BadInput(str(error)) from None


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
    follow.discard_inherited()  # run by a traced program: this command records on its own
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
        plan = check_inputs(opts)
        program = plan.program
        record_options = RecordOptions(
            external_calls=opts.external_calls,
            include_builtins=opts.include_builtins,
            capture_args=opts.capture_args,
            max_depth=opts.max_depth,
            max_calls=opts.max_calls,
            ring_buffer=opts.ring_buffer,
        )
        base = _files_base(plan)
        argv_run = [opts.module and f"-m {opts.module}" or program, *opts.script_args]
        spool = (
            None
            if opts.ring_buffer
            else Spool(
                f"{base}.{os.getpid()}{SPOOL_SUFFIX}",
                {"script": program, "module": opts.module, "argv": argv_run},
            )
        )
        recorder = Recorder(
            Scope(plan.scope), record_options, opts.core, parent=_traceparent(), spool=spool
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

    status = status_printer("otel-tracer", opts.quiet)
    status(f"tracing {opts.module or program} (scope: {', '.join(recorder.scope.roots)})")
    parts = _follow_config(base, plan, opts, record_options) if opts.follow else None
    saved_environment = follow.enable(parts, recorder) if parts else None
    if opts.module is not None:
        outcome = run_module(opts.module, opts.script_args, recorder.start)
    else:
        outcome = run_script(program, opts.script_args, recorder.start)
    recorder.stop()
    if recorder.forked:  # a forked child of the program returned here: never write
        return outcome.exit_code
    if saved_environment is not None:
        follow.disable(saved_environment)
    trace = recorder.build(
        script=program,
        module=opts.module,
        argv=argv_run,
        exit_code=outcome.exit_code,
        uncaught_exception=_describe(outcome.exception),
    )
    redact(trace, secret_pattern(opts.redact) if opts.redaction else None)
    merged: list[str] = []
    if parts is not None:
        trace, merged = follow.merge_parts(trace, parts.parts, _warn)
        if merged:
            status(f"merged the traces of {len(merged)} more processes")
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
    written, failed = _write_outputs(trace, folding, plan.outputs, opts.fold_patterns, status)
    spool_path = [recorder.spool.path] if recorder.spool is not None else []
    if failed and spool_path:
        _warn(f"the recording is kept in {spool_path[0]} (python -m exporters reads it)")
    elif not failed:
        _remove([*merged, *spool_path], base if not written else None)
    if written:
        dropped, discarded = trace.meta["dropped_calls"], trace.meta.get("discarded_calls", 0)
        status(
            f"{len(trace)} calls recorded"
            + (f", {dropped} dropped" if dropped else "")
            + (f", {discarded} older calls discarded (--ring-buffer)" if discarded else "")
        )
    if plan.otlp is not None:
        from exporters.collector import export_to_collector

        export_to_collector(trace, plan.otlp, opts.fold_patterns, status)
    if outcome.interrupted:
        _die_of(signal.SIGINT)
    if outcome.terminated:
        _die_of(signal.SIGTERM)
    return outcome.exit_code


def _describe(error: BaseException | None) -> dict[str, str] | None:
    if error is None:
        return None
    from otel_tracer.summary import summarize_exception

    kind, message = summarize_exception(error)
    return {"type": kind, "message": message}


def _write_outputs(
    trace, folding, outputs: list[Output], fold_patterns: bool, status
) -> tuple[bool, int]:
    """Write every output (the text view on stdout when there is none). Returns
    whether there were file outputs, and how many failed: a failed output costs
    a message, not the others."""
    if not outputs:
        sys.stdout.flush()
        render_text(trace, folding, sys.stdout)
        return False, 0
    failed = 0
    for out in outputs:
        try:
            write_output(trace, folding, out, fold_patterns)
        except OSError as error:
            print(f"otel-tracer: error: cannot write {out.path}: {error}", file=sys.stderr)
            failed += 1
            continue
        if out.path != "-":
            status(written_line(trace, out))
    return True, failed


def _traceparent() -> TraceParent | None:
    """The ``TRACEPARENT`` to record under; a malformed one is ignored, with a warning."""
    try:
        return inherited_traceparent()
    except BadTraceParent as error:
        _warn(f"{error}; starting a new trace")
        return None


def _files_base(plan: Plan) -> str:
    """Where the run's own files go: ``trace`` for ``-o trace.json`` (the
    recording streams to ``trace.<pid>.spool``, followed processes write
    ``trace.<pid>.json``), else a temporary directory."""
    files = [out.path for out in plan.outputs if out.path != "-"]
    if files:
        return stem(os.path.abspath(files[0]))
    return os.path.join(mkdtemp("-otel-tracer"), "trace")


def _follow_config(
    base: str, plan: Plan, opts: Options, record_options: RecordOptions
) -> follow.FollowConfig:
    """What the processes the program starts record, and where."""
    return follow.FollowConfig(
        scope=list(plan.scope),
        options=asdict(record_options),
        core=opts.core,
        parts=base,
        redact=secret_pattern(opts.redact).pattern if opts.redaction else None,
    )


def _remove(files: list[str], temporary: str | None) -> None:
    """Remove the merged per-process files (and the temporary directory that held them)."""
    for path in files:
        with contextlib.suppress(OSError):
            os.unlink(path)
    if temporary is not None:
        shutil.rmtree(os.path.dirname(temporary), ignore_errors=True)


def _warn(message: str) -> None:
    print(f"otel-tracer: warning: {message}", file=sys.stderr)


def _die_of(signum: signal.Signals) -> None:
    """End as the untraced program would have: killed by ``signum`` (SIGINT: as
    Python does after an uncaught KeyboardInterrupt)."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


if __name__ == "__main__":
    sys.exit(main())
