"""The small tables a recording refers to while it runs (functions, threads)
and the call flags: plain Python, so the recording needs no numpy before the
program starts. ``otel_tracer.trace.model`` builds the columnar Trace on them."""

from __future__ import annotations

from dataclasses import dataclass

EXTERNAL = 1  # a call out of the scope, recorded as a leaf
RESUMED = 2  # a generator/coroutine resumption
RAISED = 4  # ended by an exception
YIELDED = 8  # a generator/coroutine suspension (yield/await)
UNFINISHED = 16  # still open when recording stopped
# run by the garbage collector or a finalizer (``__del__``, a weakref callback,
# ``weakref.finalize``, a ``gc.callbacks`` hook), not called by the code it runs in
FINALIZER = 32


@dataclass(frozen=True)
class Function:
    """One distinct function (in scope, or external Python/C)."""

    name: str
    qualname: str
    module: str
    file: str
    line: int
    external: bool
    argnames: tuple[str, ...] = ()
    # a finalizer (see FINALIZER): its calls get that flag; not written to trace
    # files, where the calls' flags carry it
    finalizer: bool = False


@dataclass(frozen=True)
class ThreadInfo:
    """A thread that made recorded calls."""

    id: int
    native_id: int
    name: str
    pid: int = 0  # the process the thread belongs to (0: the trace's ``pid``)
