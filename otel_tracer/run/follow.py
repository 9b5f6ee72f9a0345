"""Following the processes a traced program starts, each into its own file.

While the program runs, the tracer gives the processes it starts three
environment variables: ``TRACEPARENT`` (the run's trace and the starting
process's root span, ``otel_tracer.trace.context``), ``OTEL_TRACER_FOLLOW`` (what to
record and where to write it) and ``PYTHONPATH`` with ``otel_tracer/run/bootstrap``
first, whose ``sitecustomize`` starts recording in every Python process started
from then on (``subprocess``, ``multiprocessing`` spawn and forkserver). A fork
(``os.fork``, ``multiprocessing`` fork, ``ProcessPoolExecutor``) starts a fresh
recording in the child at once.

A followed process writes its trace to ``<parts>.<pid>.json`` when it ends:
at interpreter exit (normally, ``sys.exit``, an uncaught exception, Ctrl-C), at
``os._exit`` (how ``multiprocessing`` children end) and on SIGTERM (how
``Pool.terminate`` ends them); a process that recorded nothing writes nothing.
The tracer merges these files into its own trace at the end of the run
(``otel_tracer.trace.merge``).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otel_tracer.record.options import RecordOptions
from otel_tracer.record.recorder import Recorder
from otel_tracer.record.scope import TOOL_PACKAGES, Scope
from otel_tracer.run import execs, imports, sigterm, streams
from otel_tracer.run.imports import TOOL_ROOT, tool_imports
from otel_tracer.run.runner import raise_terminated
from otel_tracer.run.streams import tool_streams
from otel_tracer.stream.spool import Spool
from otel_tracer.trace import context
from otel_tracer.trace.context import TraceParent
from otel_tracer.trace.redact import SecretNames, redact_argv
from otel_tracer.trace.spool_file import MAGIC as SPOOL_MAGIC
from otel_tracer.trace.spool_file import SUFFIX as SPOOL_SUFFIX

if TYPE_CHECKING:
    from otel_tracer.trace.model import Trace

ENV_VAR = "OTEL_TRACER_FOLLOW"
BOOTSTRAP_DIR = str(Path(__file__).resolve().parent / "bootstrap")
PART_SUFFIX = ".json"
SIGTERM_EXIT = 128 + signal.SIGTERM


@dataclass(frozen=True)
class FollowConfig:
    """What followed processes record, and where they write it."""

    scope: list[str]
    options: dict[str, Any]  # RecordOptions fields
    core: str
    parts: str  # absolute path prefix of the per-process files
    redact: dict[str, list[str]] | None  # SecretNames.to_json(), None when redaction is off
    tool_root: str = TOOL_ROOT

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, text: str) -> FollowConfig:
        return cls(**json.loads(text))


def part_path(parts: str, pid: int) -> str:
    """The file a followed process writes its trace to."""
    return f"{parts}.{pid}{PART_SUFFIX}"


def part_files(parts: str, suffix: str = PART_SUFFIX) -> list[str]:
    """The per-process files written so far under the prefix ``parts``, by pid."""
    return [path for _, path in _files_by_pid(parts, suffix)]


def _files_by_pid(parts: str, suffix: str) -> list[tuple[int, str]]:
    prefix = Path(parts)
    found = []
    for path in prefix.parent.glob(f"{prefix.name}.*{suffix}"):
        middle = path.name[len(prefix.name) + 1 : -len(suffix)]
        if middle.isdigit():
            found.append((int(middle), str(path)))
    return sorted(found)


def killed_spools(parts: str) -> list[str]:
    """The spools under ``parts`` of processes that ended without writing their
    trace (killed: SIGKILL, the OOM killer); those of running processes aside."""
    written = {pid for pid, _ in _files_by_pid(parts, PART_SUFFIX)}
    return [
        path
        for pid, path in _files_by_pid(parts, SPOOL_SUFFIX)
        if pid != os.getpid() and pid not in written and not _running(pid) and _is_spool(path)
    ]


def _is_spool(path: str) -> bool:
    """Whether ``path`` starts as a spool does (not a file of the program's own)."""
    try:
        with open(path, "rb") as file:
            return file.read(len(SPOOL_MAGIC)) == SPOOL_MAGIC
    except OSError:
        return False


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True


class ProcessRecording:
    """The recording of one followed process, written to its file when it ends."""

    def __init__(self, config: FollowConfig, parent: TraceParent) -> None:
        self.config = config
        pid = os.getpid()
        self.secrets = None if config.redact is None else SecretNames.from_json(config.redact)
        argv = redact_argv(sys.argv, self.secrets)
        self.spool = Spool(f"{config.parts}.{pid}{SPOOL_SUFFIX}", {"argv": argv})
        self.recorder = Recorder(
            Scope(config.scope),
            RecordOptions(**config.options),
            config.core,
            parent,
            self.spool,
            secrets=self.secrets,
        )
        self.parent_pid = os.getppid()
        self.finished = False
        self.writing = False
        self.terminated = False  # SIGTERM came while writing: die of it after

    def finish(self, exit_code: int | None) -> None:
        """Stop recording and write the trace (once; never raises)."""
        if self.finished or self.recorder.forked:
            return
        self.finished = self.writing = True
        try:
            with tool_streams():
                self._write_or_warn(exit_code)
        finally:
            self.writing = False
        if self.terminated:
            _die_of_sigterm()

    def _write_or_warn(self, exit_code: int | None) -> None:
        try:
            self._write(exit_code)
        except Exception as error:  # the process must end as it would untraced
            print(
                f"otel-tracer: warning: the trace of process {os.getpid()} was not written "
                f"({type(error).__name__}: {error})",
                file=sys.stderr,
            )

    def _write(self, exit_code: int | None) -> None:
        self.recorder.stop()
        with tool_imports():  # the program has ended: building needs numpy and more
            self._build_and_save(exit_code)

    def _build_and_save(self, exit_code: int | None) -> None:
        from otel_tracer.trace.redact import redact
        from otel_tracer.trace.save import save

        trace = self.recorder.build(
            script=sys.argv[0] if sys.argv else "",
            module=None,
            argv=redact_argv(sys.argv, self.secrets),
            exit_code=exit_code,
            uncaught_exception=None,
            parent_pid=os.getppid(),
        )
        if not len(trace) and (os.getppid() != self.parent_pid or _multiprocessing_helper()):
            # no call in scope, and it outlives the program's process (a resource
            # tracker or fork server, which stops when that process does, which
            # it may see before its parent has ended): its file would come after
            # the merge, and say nothing
            self.spool.remove()
            return
        # kept when it made no call in scope (an idle Pool worker): it ran all the same
        redact(trace, self.secrets)
        save(trace, part_path(self.config.parts, os.getpid()), compress=False)
        self.spool.remove()


# How multiprocessing starts its fork server and resource tracker (``python -c``).
_HELPER_COMMANDS = (
    "from multiprocessing.forkserver import main",
    "from multiprocessing.resource_tracker import main",
)


def _multiprocessing_helper() -> bool:
    """Whether this process is multiprocessing's fork server or resource tracker."""
    command = getattr(sys, "orig_argv", [])
    return any(helper in word for word in command for helper in _HELPER_COMMANDS)


_config: FollowConfig | None = None
_children_parent: TraceParent | None = None  # TRACEPARENT of the processes started here
_current: ProcessRecording | None = None  # this process's recording, when it is followed
_main: Recorder | None = None  # the tracer's own recording, in the tracer's process
_real_exit = os._exit


def enable(config: FollowConfig, recorder: Recorder) -> dict[str, str | None]:
    """Follow the processes started from now on, as children of ``recorder``'s
    run. Returns the environment variables it replaced, for ``disable``."""
    global _config, _main
    names = (ENV_VAR, context.ENV_VAR, context.STATE_VAR, "PYTHONPATH")
    saved = {name: os.environ.get(name) for name in names}
    _config, _main = config, recorder
    _advertise(recorder)
    os._exit = _exit
    _note_python_children()
    return saved


_started: list[int] = []  # the Python processes the tracer's process started
_real_fork_exec: Any = None


def _note_python_children() -> None:
    """Note the pid of every Python process the program starts (subprocess and
    multiprocessing's spawn both start them by ``_posixsubprocess.fork_exec``),
    to say at the end which left no trace at all (killed while starting)."""
    global _real_fork_exec
    try:
        import _posixsubprocess
    except ImportError:
        return
    if _real_fork_exec is not None:
        return
    real = _real_fork_exec = _posixsubprocess.fork_exec
    python = os.path.realpath(sys.executable)

    def fork_exec(*args: Any, **kwargs: Any) -> Any:
        pid = real(*args, **kwargs)
        try:
            executables = [os.fsdecode(p) for p in (args[1] if len(args) > 1 else ()) or ()]
            argv = [os.fsdecode(a) for a in args[0] or ()]
            if any(os.path.realpath(p) == python for p in executables) and not _runs_tracer(argv):
                _started.append(pid)
        except Exception:  # noting is a nicety: the program's start never fails for it
            pass
        return pid

    _posixsubprocess.fork_exec = fork_exec


def _runs_tracer(argv: list[str]) -> bool:
    """Whether ``argv`` runs this tool (``python -m cli.main``): it records on its own."""
    return any(a == "-m" and b in TOOL_MODULES for a, b in zip(argv, argv[1:], strict=False))


TOOL_MODULES = ("cli", "cli.main", "otel_tracer")


def _stop_noting_children() -> None:
    global _real_fork_exec
    if _real_fork_exec is not None:
        import _posixsubprocess

        _posixsubprocess.fork_exec = _real_fork_exec
        _real_fork_exec = None


def children_without_trace(trace: Trace, parts: str) -> list[int]:
    """The Python processes the tracer's process started that are not in
    ``trace`` and left no file, and no longer run: killed before their
    recording started (``Pool.terminate()`` right after ``Pool()``), or run
    with ``-E``/``-I`` (not followed)."""
    merged = {p.get("pid") for p in trace.meta.get("processes") or ()}
    return [
        pid
        for pid in dict.fromkeys(_started)
        if pid not in merged
        and not os.path.exists(part_path(parts, pid))
        and not os.path.exists(f"{parts}.{pid}{SPOOL_SUFFIX}")
        and not _running(pid)
    ]


def disable(saved: dict[str, str | None]) -> None:
    """Stop following; the environment as it was before ``enable``."""
    global _config, _main
    _config = _main = None
    os._exit = _real_exit
    _stop_noting_children()
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
            got = TraceParent(
                recorder.trace_id,
                recorder.parent_span_id,
                recorder.parent_sampled is not False,
                recorder.trace_state,
            )
            os.environ.update(got.environment())


def start_from_environment(text: str) -> None:
    """Start recording this process, as ``OTEL_TRACER_FOLLOW`` (``text``) and
    ``TRACEPARENT`` say (called by the bootstrap ``sitecustomize``)."""
    parent = context.inherited_traceparent()
    if parent is None:
        return
    imports.remember()
    streams.remember()
    # What writing the trace needs, imported now, before the program: a followed
    # process may end in its SIGTERM handler, which can run in the middle of one
    # of the program's imports, where an import of ours could meet a module left
    # half-initialised. (A forked child imports at its end instead: importing at
    # the fork would start numpy's threads in every process the program forks.)
    with tool_imports():
        from otel_tracer.trace import build, redact, save  # noqa: F401
    _start(FollowConfig.loads(text), parent)
    atexit.register(_finish_at_exit)
    if not _runs_this_tool():
        imports.hide_tool_modules()


def _runs_this_tool() -> bool:
    """Whether this process runs this tool's own command (``python -m cli.main``,
    ``otel-tracer``): it then needs the modules already loaded (``discard_inherited``)."""
    argv = getattr(sys, "orig_argv", [])[1:]
    if "-m" in argv[:-1]:
        return argv[argv.index("-m") + 1].split(".")[0] in TOOL_PACKAGES
    return bool(argv) and os.path.basename(argv[0]) == "otel-tracer"


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
        execs.install(before_exec, (ENV_VAR,))
        _current.recorder.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def before_exec() -> None:
    """This followed process calls ``os.exec*``: its trace is written now, and
    the new program, with the same pid, is not followed (run/execs.py)."""
    if _current is not None:
        _current.finish(None)


def _advertise(recorder: Recorder) -> None:
    """Tell the processes started from now on where to record, and under which span."""
    global _children_parent
    assert _config is not None
    _children_parent = TraceParent(
        recorder.trace_id,
        recorder.root_span_id,
        recorder.parent_sampled is not False,  # an unsampled parent: children too
        recorder.trace_state,
    )
    os.environ[ENV_VAR] = _config.dumps()
    os.environ.pop(context.STATE_VAR, None)
    os.environ.update(_children_parent.environment())
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if BOOTSTRAP_DIR not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([BOOTSTRAP_DIR, *paths])


def _after_fork_in_child() -> None:
    """A forked child of a followed process records from here on, on its own."""
    if _config is not None and _children_parent is not None:
        if _current is None:  # the tracer's own process: its exit path is the CLI's
            atexit.register(_finish_at_exit)
        with tool_imports(numpy=False):  # no numpy threads in every forked process
            _start(_config, _children_parent)


def _exit(code: int) -> None:
    """``os._exit`` while following: write this process's trace first."""
    if _current is not None:
        _current.finish(code)
    elif _main is not None and not _main.forked:
        _main.stop()  # the whole recording is in the spool, but no trace is built
        on_disk = _main.spool is not None and _main.spool.on_disk()
        kept = f"the recording is in {_main.spool.path}" if on_disk else "it is lost"
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


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def merge_parts(trace: Trace, parts: str, warn: Callable[[str], None]) -> tuple[Trace, list[str]]:
    """``trace`` merged with the per-process files of its run found under
    ``parts`` (the spools of killed processes too, truncated), and those files; a
    file that cannot be read costs a warning."""
    from otel_tracer.trace.format import TraceFormatError, load
    from otel_tracer.trace.merge import merge_traces

    found, merged = [], []
    for path in part_files(parts) + killed_spools(parts):
        try:
            part = load(path)
        except TraceFormatError as error:
            warn(f"not merged: {error}")
            continue
        if part.meta["trace_id"] == trace.meta["trace_id"]:
            found.append(part)
            merged.append(path)
            if part.meta.get("truncated"):
                warn(
                    f"process {part.meta.get('pid')} ended without writing its trace (killed?): "
                    f"merged the {len(part)} calls its spool held, the last ones unfinished"
                )
    if not found:
        return trace, []
    return merge_traces([trace, *found]), merged
