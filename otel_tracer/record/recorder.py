"""A recording session: picks a core, starts and stops it, builds the Trace."""

from __future__ import annotations

import os
import platform
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

from otel_tracer.record.moncore import MonitoringUnavailable
from otel_tracer.record.options import RecordOptions
from otel_tracer.record.pycore import PythonCore
from otel_tracer.record.registry import Registry
from otel_tracer.record.scope import Scope
from otel_tracer.stream.mover import Mover
from otel_tracer.stream.spool import Spool
from otel_tracer.trace.context import TraceParent, new_span_id
from otel_tracer.trace.numpy_threads import import_numpy
from otel_tracer.trace.redact import SecretNames
from otel_tracer.trace.utf8 import make_valid
from otel_tracer.version import VERSION

if TYPE_CHECKING:
    from otel_tracer.stream.ring import Ring
    from otel_tracer.trace.model import Trace

CORES = ("auto", "c", "python", "monitoring", "pymonitoring")


class CoreUnavailable(Exception):
    """The requested recording core cannot be used here."""


def core_class(name: str = "auto") -> type:
    """The recording core class for ``name``. ``auto``: the sys.monitoring core on
    Python 3.12+ (library code outside the scope then runs almost untraced), else
    the C accelerator when it was built, else the pure-Python core.
    ``monitoring``: the sys.monitoring core in C when it was built, else in Python;
    ``pymonitoring``: the pure-Python one."""
    if name == "python":
        return PythonCore
    if name in ("monitoring", "pymonitoring") or (name == "auto" and sys.version_info >= (3, 12)):
        if sys.version_info < (3, 12):
            raise CoreUnavailable("the monitoring core needs Python 3.12+ (sys.monitoring)")
        if name != "pymonitoring":
            try:
                from otel_tracer.record._ctracer import MonCore  # type: ignore[attr-defined]
            except ImportError:
                pass
            else:
                return MonCore  # type: ignore[no-any-return]
        from otel_tracer.record.moncore import MonitoringCore

        return MonitoringCore
    try:
        from otel_tracer.record._ctracer import CCore  # built by pip install when a compiler exists
    except ImportError as error:
        if name == "c":
            raise CoreUnavailable(f"the C recording core is not built ({error})") from None
        return PythonCore
    return CCore


def _boottime() -> int | None:
    """CLOCK_BOOTTIME now (Linux; what system traces such as Perfetto's use), so
    the run's times can be placed on a system trace of the same machine."""
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime_ns(clock) if clock is not None else None


def tool_version() -> str:
    """This tool's version."""
    return VERSION


def _ring(size: int) -> Ring:
    """The ring buffer of ``--ring-buffer`` (numpy from the start: it works on arrays)."""
    import_numpy()
    from otel_tracer.stream.ring import Ring

    return Ring(size)


_RECORDING: set[Recorder] = set()


def _stop_in_forked_child() -> None:
    """A forked child inherits the hooks: stop them there so the child never
    records into (or writes) the parent's trace."""
    for recorder in list(_RECORDING):
        recorder.core.stop()
        recorder.forked = True
    _RECORDING.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_stop_in_forked_child)


class Recorder:
    """Records calls in ``scope`` between ``start()`` and ``stop()``."""

    def __init__(
        self,
        scope: Scope,
        options: RecordOptions | None = None,
        core: str = "auto",
        parent: TraceParent | None = None,
        spool: Spool | None = None,
        secrets: SecretNames | None = None,
    ):
        """``parent``: the trace and span to record under (a ``TRACEPARENT``);
        by default a new trace. ``spool``: stream the events to that file while
        recording (bounded memory; what a killed run leaves can be loaded); not
        used when ``options.ring_buffer`` keeps the last calls in memory instead.
        ``secrets``: arguments named so are recorded as ``[redacted]``."""
        self.scope = scope
        self.options = options or RecordOptions()
        self.core_name = core
        self.registry = Registry(
            scope, include_builtins=self.options.include_builtins, secrets=secrets
        )
        self.core = core_class(core)(self.registry, self.options)
        self.pid = os.getpid()
        self.trace_id = parent.trace_id if parent else os.urandom(16).hex()
        self.root_span_id = new_span_id()
        self.parent_span_id = parent.span_id if parent else None
        self.trace_state = parent.trace_state if parent else ""
        self.parent_sampled = parent.sampled if parent else None
        # OTel ``service.instance.id``: unique per process per run (semantic
        # conventions, service: "MUST be unique for each instance of the same
        # service.namespace,service.name pair"); random (version 4) UUID.
        self.instance_id = str(uuid.uuid4())
        self.ring = _ring(self.options.ring_buffer) if self.options.ring_buffer else None
        self.spool = spool if self.ring is None else None
        self.mover: Mover | None = self.ring or self.spool
        self._clock_base = (0, 0)
        self._stop_time = 0
        self._boottime: int | None = None
        self._words = 0
        self.forked = False  # True in a forked child of the recording process

    def start(self) -> None:
        """Begin recording in this thread and in threads started from now on."""
        self._clock_base = (self.core.clock(), time.time_ns())
        self._boottime = _boottime()
        _RECORDING.add(self)
        try:
            self.core.start()
        except MonitoringUnavailable:  # every usable sys.monitoring tool id is taken
            self.core = PythonCore(self.registry, self.options)
            self._clock_base = (self.core.clock(), time.time_ns())
            self.core.start()
        if self.mover is not None:
            self.mover.start(self)

    @property
    def clock_base(self) -> tuple[int, int]:
        """(the core's clock, Unix time) in ns, taken together at start."""
        return self._clock_base

    def stop(self) -> None:
        """Stop recording (idempotent)."""
        if not self._stop_time:
            _RECORDING.discard(self)
            self._words = self.core.stop()
            self._stop_time = self.core.clock()
            if self.mover is not None and not self.forked:
                self.mover.close()

    def run_meta(self) -> dict[str, Any]:
        """Metadata every trace carries, before the caller adds run details."""
        duration = self._stop_time - self._clock_base[0]
        return {
            "python_version": platform.python_version(),
            "python_implementation": platform.python_implementation(),
            "pid": self.pid,
            "start_time_unix_nano": self._clock_base[1],
            "start_boottime_ns": self._boottime,  # the same instant on CLOCK_BOOTTIME
            "duration_ns": duration,
            "trace_id": self.trace_id,
            "root_span_id": self.root_span_id,
            "parent_span_id": self.parent_span_id,
            "trace_state": self.trace_state,
            "parent_sampled": self.parent_sampled,
            "service_instance_id": self.instance_id,
            "scope": list(self.scope.roots),
            "external_calls": self.options.external_calls,
            "include_builtins": self.options.include_builtins,
            "args_captured": self.options.capture_args,
            "max_depth": self.options.max_depth,
            "max_calls": self.options.max_calls,
            "dropped_calls": self.core.dropped,
            "ring_buffer": self.options.ring_buffer,
            "discarded_calls": self.ring.discarded if self.ring is not None else 0,
            "core": self.core.name,
            "tool": "otel-tracer",
            "tool_version": tool_version(),
            "executable": sys.executable,
        }

    def build(self, **meta: Any) -> Trace:
        """The Trace of what was recorded; ``meta`` adds or overrides metadata."""
        import numpy as np  # after the run: recording itself needs no numpy

        from otel_tracer.trace.build import build_trace

        self.stop()
        in_memory = np.frombuffer(self.core.events, dtype=np.int64)[: len(self.core.events)]
        tables = self.registry
        if self.mover is not None:
            moved = self.mover.events()
            raw = np.concatenate([moved, in_memory]) if len(in_memory) else moved
            tables = self.mover.tables()
        else:
            raw = in_memory[: self._words].copy()
        info = self.run_meta() | meta
        trace = build_trace(raw, tables, info, self._clock_base, self._stop_time)
        make_valid(trace)  # undecodable bytes of file names and argv: escaped
        trace.meta["call_count"] = len(trace)
        return trace
