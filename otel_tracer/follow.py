"""Following the processes a traced program starts, each into its own file.

While the program runs, the tracer gives the processes it starts three
environment variables: ``TRACEPARENT`` (the run's trace and the starting
process's root span, ``otel_tracer.context``), ``OTEL_TRACER_FOLLOW`` (what to
record and where to write it) and ``PYTHONPATH`` with ``otel_tracer/bootstrap``
first, whose ``sitecustomize`` starts recording in every Python process started
from then on (``subprocess``, ``multiprocessing`` spawn and forkserver). A fork
(``os.fork``, ``multiprocessing`` fork, ``ProcessPoolExecutor``) starts a fresh
recording in the child at once.

A followed process writes its trace to ``<parts>.<pid>.json`` when it ends:
at interpreter exit (normally, ``sys.exit``, an uncaught exception, Ctrl-C), at
``os._exit`` (how ``multiprocessing`` children end) and on SIGTERM (how
``Pool.terminate`` ends them); a process that recorded nothing writes nothing.
The tracer merges these files into its own trace at the end of the run
(``otel_tracer.merge``).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from otel_tracer import context, sigterm
from otel_tracer.context import TraceParent
from otel_tracer.merge import merge_traces
from otel_tracer.model import Trace
from otel_tracer.options import RecordOptions
from otel_tracer.recorder import Recorder
from otel_tracer.runner import raise_terminated
from otel_tracer.scope import Scope, program_modules_named_like_ours
from otel_tracer.spool import SUFFIX as SPOOL_SUFFIX
from otel_tracer.spool import Spool
from otel_tracer.trace_format import TraceFormatError, load

ENV_VAR = "OTEL_TRACER_FOLLOW"
BOOTSTRAP_DIR = str(Path(__file__).resolve().parent / "bootstrap")
TOOL_ROOT = str(Path(__file__).resolve().parent.parent)
PART_SUFFIX = ".json"
SIGTERM_EXIT = 128 + signal.SIGTERM


@dataclass(frozen=True)
class FollowConfig:
    """What followed processes record, and where they write it."""

    scope: list[str]
    options: dict[str, Any]  # RecordOptions fields
    core: str
    parts: str  # absolute path prefix of the per-process files
    redact: str | None  # the redaction pattern, None when redaction is off
    tool_root: str = TOOL_ROOT

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, text: str) -> FollowConfig:
        return cls(**json.loads(text))


def part_path(parts: str, pid: int) -> str:
    """The file a followed process writes its trace to."""
    return f"{parts}.{pid}{PART_SUFFIX}"


def part_files(parts: str) -> list[str]:
    """The per-process files written so far under the prefix ``parts``, by pid."""
    prefix = Path(parts)
    found = []
    for path in prefix.parent.glob(f"{prefix.name}.*{PART_SUFFIX}"):
        middle = path.name[len(prefix.name) + 1 : -len(PART_SUFFIX)]
        if middle.isdigit():
            found.append((int(middle), str(path)))
    return [path for _, path in sorted(found)]


class ProcessRecording:
    """The recording of one followed process, written to its file when it ends."""

    def __init__(self, config: FollowConfig, parent: TraceParent) -> None:
        self.config = config
        pid = os.getpid()
        self.spool = Spool(f"{config.parts}.{pid}{SPOOL_SUFFIX}", {"argv": list(sys.argv)})
        self.recorder = Recorder(
            Scope(config.scope), RecordOptions(**config.options), config.core, parent, self.spool
        )
        with tool_imports():  # now: an import at the end could meet one left half-done
            from exporters.json_trace import save
            from otel_tracer.redact import redact
        self._save, self._redact = save, redact
        self.finished = False
        self.writing = False
        self.terminated = False  # SIGTERM came while writing: die of it after

    def finish(self, exit_code: int | None) -> None:
        """Stop recording and write the trace (once; never raises)."""
        if self.finished or self.recorder.forked:
            return
        self.finished = self.writing = True
        try:
            self._write(exit_code)
        except Exception as error:  # the process must end as it would untraced
            print(
                f"otel-tracer: warning: the trace of process {os.getpid()} was not written "
                f"({type(error).__name__}: {error})",
                file=sys.stderr,
            )
        finally:
            self.writing = False
        if self.terminated:
            _die_of_sigterm()

    def _write(self, exit_code: int | None) -> None:
        self.recorder.stop()
        trace = self.recorder.build(
            script=sys.argv[0] if sys.argv else "",
            module=None,
            argv=list(sys.argv),
            exit_code=exit_code,
            uncaught_exception=None,
            parent_pid=os.getppid(),
        )
        if not len(trace):
            self.spool.remove()
            return
        pattern = self.config.redact
        self._redact(trace, re.compile(pattern, re.IGNORECASE) if pattern is not None else None)
        self._save(trace, part_path(self.config.parts, os.getpid()), compress=False)
        self.spool.remove()


_config: FollowConfig | None = None
_children_parent: TraceParent | None = None  # TRACEPARENT of the processes started here
_current: ProcessRecording | None = None  # this process's recording, when it is followed
_main: Recorder | None = None  # the tracer's own recording, in the tracer's process
_real_exit = os._exit


def enable(config: FollowConfig, recorder: Recorder) -> dict[str, str | None]:
    """Follow the processes started from now on, as children of ``recorder``'s
    run. Returns the environment variables it replaced, for ``disable``."""
    global _config, _main
    saved = {name: os.environ.get(name) for name in (ENV_VAR, context.ENV_VAR, "PYTHONPATH")}
    _config, _main = config, recorder
    _advertise(recorder)
    os._exit = _exit
    return saved


def disable(saved: dict[str, str | None]) -> None:
    """Stop following; the environment as it was before ``enable``."""
    global _config, _main
    _config = _main = None
    os._exit = _real_exit
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def discard_inherited() -> None:
    """Stop a recording the bootstrap started in this process: the tracer's
    command line, run by a traced program, records on its own."""
    global _current, _config
    if _current is not None:
        _current.finished = True
        recorder = _current.recorder
        recorder.stop()
        _current.spool.remove()
        _current = _config = None
        os._exit = _real_exit
        os.environ.pop(ENV_VAR, None)
        paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        if BOOTSTRAP_DIR in paths:
            paths.remove(BOOTSTRAP_DIR)
            os.environ["PYTHONPATH"] = os.pathsep.join(paths)
        if recorder.parent_span_id is not None:  # the TRACEPARENT this process got
            os.environ[context.ENV_VAR] = TraceParent(
                recorder.trace_id, recorder.parent_span_id
            ).header()


def start_from_environment(text: str) -> None:
    """Start recording this process, as ``OTEL_TRACER_FOLLOW`` (``text``) and
    ``TRACEPARENT`` say (called by the bootstrap ``sitecustomize``)."""
    parent = context.inherited_traceparent()
    if parent is None:
        return
    _start(FollowConfig.loads(text), parent)
    atexit.register(_finish_at_exit)


def _start(config: FollowConfig, parent: TraceParent) -> None:
    """Start recording this (new, single-threaded) process. A SIGTERM that comes
    meanwhile (``Pool.terminate`` right after the fork) waits until it can be
    handled: the recording then ends at once, with its files in order."""
    global _config, _current
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        _config = config
        _current = ProcessRecording(config, parent)
        _advertise(_current.recorder)
        os._exit = _exit
        handler = signal.getsignal(signal.SIGTERM)
        if handler in (signal.SIG_DFL, raise_terminated):
            sigterm.install(_finish_on_sigterm)
        _current.recorder.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _advertise(recorder: Recorder) -> None:
    """Tell the processes started from now on where to record, and under which span."""
    global _children_parent
    assert _config is not None
    _children_parent = TraceParent(recorder.trace_id, recorder.root_span_id)
    os.environ[ENV_VAR] = _config.dumps()
    os.environ[context.ENV_VAR] = _children_parent.header()
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if BOOTSTRAP_DIR not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([BOOTSTRAP_DIR, *paths])


def _after_fork_in_child() -> None:
    """A forked child of a followed process records from here on, on its own."""
    if _config is not None and _children_parent is not None:
        if _current is None:  # the tracer's own process: its exit path is the CLI's
            atexit.register(_finish_at_exit)
        _start(_config, _children_parent)


def _exit(code: int) -> None:
    """``os._exit`` while following: write this process's trace first."""
    if _current is not None:
        _current.finish(code)
    elif _main is not None and not _main.forked:
        _main.stop()  # the whole recording is in the spool, but no trace is built
        kept = f"the recording is in {_main.spool.path}" if _main.spool else "it is lost"
        print(
            f"otel-tracer: warning: the program called os._exit({code}): no trace was "
            f"written; {kept}",
            file=sys.stderr,
        )
    _real_exit(code)


def _finish_at_exit() -> None:
    if _current is not None:
        _current.finish(None)


def _finish_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM in a followed process: write its trace, then die of SIGTERM (once
    the trace is written, when it came while the process was writing it)."""
    sigterm.handled()
    if _current is not None:
        if _current.writing:
            _current.terminated = True
            return
        _current.finish(SIGTERM_EXIT)
    _die_of_sigterm()


def _die_of_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


@contextmanager
def tool_imports() -> Iterator[None]:
    """This tool's packages importable by name, whatever modules of the same
    names (``cli``, ``exporters``, ``patterns``) the program imported."""
    theirs = program_modules_named_like_ours()
    for name in theirs:
        del sys.modules[name]
    sys.path.insert(0, TOOL_ROOT)
    try:
        yield
    finally:
        sys.path.remove(TOOL_ROOT)
        sys.modules.update(theirs)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def merge_parts(trace: Trace, parts: str, warn: Callable[[str], None]) -> tuple[Trace, list[str]]:
    """``trace`` merged with the per-process files of its run found under
    ``parts``, and those files; a file that cannot be read costs a warning."""
    found, merged = [], []
    for path in part_files(parts):
        try:
            part = load(path)
        except TraceFormatError as error:
            warn(f"not merged: {error}")
            continue
        if part.meta["trace_id"] == trace.meta["trace_id"]:
            found.append(part)
            merged.append(path)
    if not found:
        return trace, []
    return merge_traces([trace, *found]), merged
