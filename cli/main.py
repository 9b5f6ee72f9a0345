"""``python -m cli.main``: trace a Python program and write or print its trace."""

from __future__ import annotations

# First of all, as a command: a Ctrl-C from now on waits for the program's first line.
from otel_tracer.run import interrupts

if __name__ == "__main__":
    interrupts.hold()

import contextlib
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
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
from otel_tracer.record.options import RecordOptions
from otel_tracer.record.recorder import CoreUnavailable, Recorder, core_class, tool_version
from otel_tracer.record.scope import Scope, default_scope, library_dirs
from otel_tracer.run import execs, follow, frozen, imports, streams
from otel_tracer.run.imports import tool_imports
from otel_tracer.run.runner import (
    Outcome,
    ProgramNotFound,
    module_origin,
    run_module,
    run_script,
)
from otel_tracer.run.streams import tool_streams
from otel_tracer.stream.spool import Spool
from otel_tracer.trace.collection import collection_paused
from otel_tracer.trace.context import BadTraceParent, TraceParent, inherited_traceparent
from otel_tracer.trace.numpy_threads import import_numpy
from otel_tracer.trace.redact import SecretNames, redact, redact_argv, secret_names
from otel_tracer.trace.spool_file import SUFFIX as SPOOL_SUFFIX
from otel_tracer.trace.text import printable

if TYPE_CHECKING:
    from exporters.collector import SpanExport


class BadInput(Exception):
    """Input rejected before the program runs: one line, exit status 2."""


@dataclass
class Plan:
    """What to run and where its trace goes, checked before the program runs."""

    program: str
    scope: list[str]
    outputs: list[Output]
    spans: SpanExport | None
    secrets: SecretNames | None  # None with --no-redact


def check_inputs(opts: Options) -> Plan:
    """Validate everything before the program runs."""
    try:
        outputs = [checked_output(path, opts.format) for path in opts.outputs]
    except OutputError as error:
        raise BadInput(str(error)) from None
    spans = _span_export(opts)
    if opts.fold_patterns and not opts.patterns:
        raise BadInput("--fold-patterns needs the pattern groups: drop --no-patterns")
    core_class(opts.core)  # raises CoreUnavailable before anything is created
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
    if (opts.redact or opts.show) and not opts.redaction:
        raise BadInput("--redact and --show cannot go with --no-redact")
    try:
        secrets = secret_names(opts.redact, opts.show) if opts.redaction else None
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
    return Plan(program, scope, outputs, spans, secrets)


def _span_export(opts: Options) -> SpanExport | None:
    """Where spans go beyond the files, if ``--otlp-endpoint`` or
    ``OTEL_TRACES_EXPORTER`` asks (the OpenTelemetry SDK is only imported then);
    a bad ``OTEL_*`` value is a warning line, a bad option an error."""
    if opts.otlp_endpoint is None and not os.environ.get("OTEL_TRACES_EXPORTER"):
        return None
    import_numpy()  # the exporters need it: its threads and warning filters kept quiet
    from exporters.collector import span_export
    from exporters.otlp import OtlpConfigError

    try:
        export = span_export(opts.otlp_endpoint, opts.otlp_protocol)
    except OtlpConfigError as error:
        raise BadInput(str(error)) from None
    for warning in export.warnings:
        _warn(warning)
    return export


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
    interrupts.hold()
    try:
        return _command(argv)
    finally:
        interrupts.release()  # when the program never started


def _command(argv: list[str] | None) -> int:
    """Check the command line, then trace the program."""
    imports.remember()
    streams.remember()
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
        argv_run = redact_argv(
            [opts.module and f"-m {opts.module}" or program, *opts.script_args], plan.secrets
        )
        spool = (
            None
            if opts.ring_buffer
            else Spool(
                f"{base}.{os.getpid()}{SPOOL_SUFFIX}",
                {"script": program, "module": opts.module, "argv": argv_run},
            )
        )
        recorder = Recorder(
            Scope(plan.scope),
            record_options,
            opts.core,
            parent=_traceparent(),
            spool=spool,
            secrets=plan.secrets,
        )
    except HelpRequested as help_request:
        print(help_request.text)
        return 0
    except VersionRequested:
        print(f"{VERSION_TEXT_PREFIX} {tool_version()}")
        return 0
    except UsageError as error:
        print(f"otel-tracer: error: {printable(str(error))}\n{USAGE}", file=sys.stderr)
        return 2
    except (BadInput, CoreUnavailable) as error:
        print(f"otel-tracer: error: {printable(str(error))}", file=sys.stderr)
        return 2

    temporary = None if any(out.path != "-" for out in plan.outputs) else os.path.dirname(base)
    try:
        return _run_and_write(opts, plan, recorder, base, argv_run)
    finally:  # every way out, a failure of the tracer's own included
        if temporary is not None and not recorder.forked:
            shutil.rmtree(temporary, ignore_errors=True)


def _run_and_write(
    opts: Options, plan: Plan, recorder: Recorder, base: str, argv_run: list[str]
) -> int:
    """Run the program under ``recorder``, then write every output; the exit status."""
    program = plan.program
    record_options = recorder.options
    status = status_printer("otel-tracer", opts.quiet)
    status(f"tracing {opts.module or program} (scope: {', '.join(recorder.scope.roots)})")
    parts = _follow_config(base, plan, opts, record_options) if opts.follow else None
    saved_environment = follow.enable(parts, recorder) if parts else None
    execs.install(
        partial(
            _write_before_exec,
            opts,
            plan,
            recorder,
            parts,
            saved_environment,
            status,
            argv_run,
            base,
        ),
        (follow.ENV_VAR,),
    )
    if opts.module is not None:
        outcome = run_module(opts.module, opts.script_args, recorder.start)
    else:
        outcome = run_script(program, opts.script_args, recorder.start)
    execs.uninstall()
    try:
        if frozen.daemon_threads_alive():  # frozen soon: until then, seldom run
            sys.setswitchinterval(100.0)
        recorder.stop()
        if recorder.forked:  # a forked child of the program returned here: never write
            return outcome.exit_code
        with tool_imports(numpy=False), tool_streams():  # the program sees neither
            return _after_run(
                opts, plan, recorder, outcome, parts, saved_environment, status, argv_run, base
            )
    except KeyboardInterrupt:  # a (second) Ctrl-C while the trace was being built
        with tool_streams():
            _interrupted_while_writing(recorder)
        return 130


def _write_before_exec(
    opts: Options,
    plan: Plan,
    recorder: Recorder,
    parts: follow.FollowConfig | None,
    saved_environment: dict[str, str | None] | None,
    status: Callable[[str], None],
    argv_run: list[str],
    base: str,
) -> None:
    """The program calls ``os.exec*``: write the trace of what it ran until then
    (the process is about to become another program, untraced; run/execs.py)."""
    if recorder.forked:  # a forked child: it writes its own part (follow)
        follow.before_exec()
        return
    recorder.stop()
    try:
        with tool_imports(numpy=False), tool_streams():
            _warn(
                "the program replaced itself by another program (os.exec*): the trace "
                "ends there, and the new program is not traced"
            )
            if saved_environment is not None:
                follow.disable(saved_environment)
            _finish(recorder, plan, opts, Outcome(0, execed=True), parts, base, argv_run, status)
    except Exception as error:  # the program goes on to its exec all the same
        _warn(f"the trace was not written before the exec ({type(error).__name__}: {error})")
    if not any(out.path != "-" for out in plan.outputs):  # no -o: files in a temporary directory
        shutil.rmtree(os.path.dirname(base), ignore_errors=True)


def _interrupted_while_writing(recorder: Recorder) -> None:
    """Say where the recording is, then die of SIGINT as Python would."""
    spool = recorder.spool.path if recorder.spool is not None else None
    if spool is not None and os.path.exists(spool):
        kept = (
            f"the recording is kept in {spool} "
            f"(python -m exporters {spool} --to json turns it into a trace)"
        )
    else:
        kept = "the recording is lost"
    print(f"otel-tracer: interrupted while writing the trace; {kept}", file=sys.stderr)
    _die_of(signal.SIGINT)


def _after_run(
    opts: Options,
    plan: Plan,
    recorder: Recorder,
    outcome: Outcome,
    parts: follow.FollowConfig | None,
    saved_environment: dict[str, str | None] | None,
    status: Callable[[str], None],
    argv_run: list[str],
    base: str,
) -> int:
    """Build the trace of the program that ended, write and export it; the exit status."""
    if saved_environment is not None:
        follow.disable(saved_environment)
    die_of = signal.SIGINT if outcome.interrupted else None
    die_of = signal.SIGTERM if outcome.terminated else die_of
    finish = partial(
        _interruptible,
        recorder,
        partial(_finish, recorder, plan, opts, outcome, parts, base, argv_run, status),
    )
    if frozen.daemon_threads_alive():  # they stop now, as at interpreter exit
        frozen.finish_then_exit(finish, outcome.exit_code, die_of)
    finish()
    if die_of is not None:
        _die_of(die_of)
    return outcome.exit_code


def _interruptible(recorder: Recorder, finish: Callable[[], None]) -> None:
    """``finish()``; a Ctrl-C meanwhile keeps the recording and says where, and
    so does running out of memory while building or writing the trace."""
    try:
        with collection_paused():
            finish()
    except KeyboardInterrupt:
        _interrupted_while_writing(recorder)
    except MemoryError:
        _out_of_memory(recorder)


def _out_of_memory(recorder: Recorder) -> None:
    """Say that the trace could not be built and where the recording is; the
    run keeps the program's exit status, as when an output cannot be written."""
    spool = recorder.spool.path if recorder.spool is not None else None
    if spool is not None and recorder.spool.on_disk():
        kept = (
            f"the recording is kept in {spool} (python -m exporters {spool} --to json "
            "turns it into a trace, on a machine with more memory)"
        )
    else:
        kept = "the recording is lost"
    print(
        printable(f"otel-tracer: error: not enough memory to build the trace; {kept}"),
        file=sys.stderr,
    )


def _finish(recorder, plan, opts, outcome, parts, base, argv_run, status) -> None:
    """Build the trace of the run that ended, write its outputs and say so."""
    import_numpy()  # only now: the daemon threads are frozen by then (run/frozen.py)
    program = plan.program
    trace = recorder.build(
        script=program,
        module=opts.module,
        argv=argv_run,
        exit_code=None if outcome.execed else outcome.exit_code,
        uncaught_exception=_describe(outcome.exception),
    )
    redact(trace, plan.secrets)
    if opts.module is not None and not opts.scopes and _only_module_bodies(trace, program):
        _warn(
            f"{len(trace)} calls recorded: -m {opts.module} runs an installed module whose "
            "code is outside the default scope; pass --scope DIR (the code to trace) before -m"
        )
    merged: list[str] = []
    if parts is not None:
        trace, merged = follow.merge_parts(trace, parts.parts, _warn)
        if merged:
            status(f"merged the traces of {len(merged)} more processes")
        lost = follow.children_without_trace(trace, parts.parts)
        if lost:
            _warn(
                f"{len(lost)} Python process{'es' if len(lost) != 1 else ''} the program "
                "started left no trace "
                f"(pids {', '.join(map(str, lost))}): they ended before their recording "
                "began (killed while starting?), or ran with python -E/-I"
            )
    folding = None
    if opts.patterns:
        from patterns.annotate import annotate
        from patterns.cli import summary_line
        from patterns.engine import FoldingTooSlow
        from patterns.fold import FoldOptions

        budget = _fold_budget(opts.fold_budget, trace.meta.get("duration_ns", 0))
        started = time.perf_counter()
        try:
            folding = annotate(
                trace,
                FoldOptions(match=opts.match, near=opts.near),
                started + budget if budget else None,
            )
        except FoldingTooSlow:
            trace.patterns = None
            print(
                f"otel-tracer: patterns: folding stopped after {time.perf_counter() - started:.1f}"
                f" s (budget {budget:g} s, --fold-budget); the trace is written without "
                "pattern groups: python -m patterns TRACE folds it",
                file=sys.stderr,
            )
        except Exception as error:  # a bug in folding must not cost the user the trace
            trace.patterns = None
            print(
                f"otel-tracer: warning: pattern folding failed ({type(error).__name__}: "
                f"{error}); writing the trace without pattern groups",
                file=sys.stderr,
            )
        else:
            status(f"patterns: {summary_line(trace.patterns.section['statistics'])}")
    written, failed = _write_outputs(trace, folding, plan.outputs, opts.fold_patterns, status)
    spool_path = [recorder.spool.path] if recorder.spool is not None else []
    if failed:
        _warn(_kept(trace, recorder.spool))
    else:
        _remove([*merged, *spool_path], base if not written else None)
    if written:
        dropped, discarded = trace.meta["dropped_calls"], trace.meta.get("discarded_calls", 0)
        status(
            f"{len(trace)} calls recorded"
            + (f", {dropped} dropped" if dropped else "")
            + (f", {discarded} older calls discarded (--ring-buffer)" if discarded else "")
        )
    if plan.spans is not None:
        from exporters.collector import export_spans

        export_spans(trace, plan.spans, opts.fold_patterns, status)


def _only_module_bodies(trace, origin: str) -> bool:
    """Whether the module run by -m is installed (in the standard library or a
    site-packages) and no function of the default scope ran, only module bodies
    (``python -m pytest``: the scope is ``pytest/``, its code is in ``_pytest/``)."""
    path = os.path.realpath(origin)
    if not any(path.startswith(os.path.join(d, "")) for d in library_dirs()):
        return False
    return all(f.external or f.name == "<module>" for f in trace.functions)


def _describe(error: BaseException | None) -> dict[str, str] | None:
    if error is None:
        return None
    from otel_tracer.record.summary import summarize_exception

    kind, message = summarize_exception(error)
    return {"type": kind, "message": message}


MIN_FOLD_BUDGET_S = 10.0


def _fold_budget(asked: float | None, program_ns: int) -> float:
    """Seconds folding may take (0: no limit): ``--fold-budget``, else the
    program's own run time, at least ``MIN_FOLD_BUDGET_S``."""
    if asked is not None:
        return asked
    return max(MIN_FOLD_BUDGET_S, program_ns / 1e9)


def _write_outputs(
    trace, folding, outputs: list[Output], fold_patterns: bool, status
) -> tuple[bool, int]:
    """Write every output (the text view on stdout when there is none). Returns
    whether there were file outputs, and how many failed: a failed output costs
    a message, not the others."""
    if not outputs:
        try:
            sys.stdout.flush()
            render_text(trace, folding, sys.stdout)
            sys.stdout.flush()
        except BrokenPipeError:  # piped into head: it has read what it wanted
            streams.reader_gone()
        return False, 0
    failed = 0
    for out in outputs:
        try:
            write_output(trace, folding, out, fold_patterns)
            if out.path == "-":
                sys.stdout.flush()
        except OSError as error:
            if out.path == "-" and isinstance(error, BrokenPipeError):
                streams.reader_gone()  # piped into head
                continue
            print(
                printable(f"otel-tracer: error: cannot write {out.name or out.path}: {error}"),
                file=sys.stderr,
            )
            failed += 1
            continue
        if out.path != "-":
            status(written_line(trace, out))
    return True, failed


def _kept(trace, spool: Spool | None) -> str:
    """Where the recording is, after an output failed: the spool when it holds it
    all, else a copy of the trace in a new temporary directory (checked: every
    word of the message is true)."""
    if spool is not None and spool.on_disk():
        return f"the recording is kept in {spool.path} (python -m exporters reads it)"
    from otel_tracer.trace.save import save

    try:
        rescue = os.path.join(mkdtemp("-otel-tracer"), "trace.json")
        save(trace, rescue)
    except OSError as error:
        return f"the trace was not kept anywhere ({error.strerror or error})"
    return f"the trace is kept in {rescue}"


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
        redact=plan.secrets.to_json() if plan.secrets is not None else None,
    )


def _remove(files: list[str], temporary: str | None) -> None:
    """Remove the merged per-process files (and the temporary directory that held them)."""
    for path in files:
        with contextlib.suppress(OSError):
            os.unlink(path)
    if temporary is not None:
        shutil.rmtree(os.path.dirname(temporary), ignore_errors=True)


def _warn(message: str) -> None:
    print(f"otel-tracer: warning: {printable(message)}", file=sys.stderr)


def _die_of(signum: signal.Signals) -> None:
    """End as the untraced program would have: killed by ``signum`` (SIGINT: as
    Python does after an uncaught KeyboardInterrupt)."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


if __name__ == "__main__":
    sys.exit(main())
