"""The pure-Python recording core, on ``sys.setprofile``.

Each thread gets its own hook closure holding a stack of *markers*, one per
open Python frame (and per recorded C call), saying how that frame is treated:

* ``IGNORED``: out of scope and not recorded (library internals);
* ``IN_SCOPE``: a recorded in-scope call;
* ``EXTERNAL_PY`` / ``EXTERNAL_C``: a recorded external call (a leaf: calls
  inside it are ignored unless they come back into scope);
* ``TRIVIAL_C``: a trivial builtin (``len``, ``sorted``) called from scope, not
  recorded unless it calls back into scope (``sorted(key=f)``);
* ``SUPPRESSED``: in scope but beyond ``max_depth`` (nothing below is recorded);
* ``DROPPED``: in scope but past ``max_calls`` (counted, not recorded).

The profile hook appends three integers per event to one shared ``array('q')`` (see
``events.py``) and nothing else; tables are filled on first sight only.
"""

from __future__ import annotations

import dis
import sys
import threading
import time
from array import array
from collections.abc import Callable
from types import FrameType, ModuleType

from otel_tracer import events
from otel_tracer.options import RecordOptions
from otel_tracer.registry import CO_RESUMABLE, Registry
from otel_tracer.summary import summarize, summarize_self

IGNORED, IN_SCOPE, EXTERNAL_PY, EXTERNAL_C, TRIVIAL_C, SUPPRESSED, DROPPED = range(7)
_RETURN_OPS = frozenset(dis.opmap[n] for n in ("RETURN_VALUE", "RETURN_CONST") if n in dis.opmap)
_YIELD_OP = dis.opmap["YIELD_VALUE"]
_RESUME_OP = dis.opmap.get("RESUME")
_SELF_NAMES = ("self", "cls")


def is_resumption(frame: FrameType) -> bool:
    """True when a 'call' event resumes a suspended generator or coroutine."""
    if not frame.f_code.co_flags & CO_RESUMABLE:
        return False
    lasti = frame.f_lasti
    if _RESUME_OP is None:  # Python 3.10: a fresh generator has not run yet
        return lasti >= 0
    code = frame.f_code.co_code
    return lasti >= 0 and code[lasti] == _RESUME_OP and code[lasti + 1] != 0


def exit_kind(frame: FrameType) -> int:
    """How a frame is leaving, from its last instruction: RETURN, YIELD or RAISE.
    (Up to 3.12 a suspended frame's last instruction is YIELD_VALUE; from 3.13
    it is the RESUME that follows it.)"""
    lasti = frame.f_lasti
    if lasti < 0:
        return events.RAISE
    code = frame.f_code.co_code
    op = code[lasti]
    if op in _RETURN_OPS:
        return events.RETURN
    if op == _YIELD_OP or (op == _RESUME_OP and code[lasti + 1] != 0):
        return events.YIELD
    return events.RAISE


class PythonCore:
    """Records into an ``array('q')`` with a per-thread ``sys.setprofile`` hook."""

    name = "python"

    def __init__(self, registry: Registry, options: RecordOptions) -> None:
        self.registry = registry
        self.options = options
        self.events = array("q")
        self.dropped = 0
        self._recorded = 0
        self._active = False

    def clock(self) -> int:
        """The core's monotonic clock in ns."""
        return time.perf_counter_ns()

    def start(self) -> None:
        """Install the hooks on this thread and on threads started from now on."""
        self._active = True
        threading.setprofile(self._bootstrap)
        self._install()

    def stop(self) -> int:
        """Remove the hooks; returns the number of event words recorded."""
        self._active = False
        sys.setprofile(None)
        sys.settrace(None)
        threading.setprofile(None)
        return len(self.events)

    def _install(self) -> tuple[Callable, Callable]:
        profile, trace = self._make_hooks()
        sys.settrace(trace)
        sys.setprofile(profile)
        return profile, trace

    def _bootstrap(self, frame: FrameType, event: str, arg: object) -> None:
        """First event of a new thread: give it its own hooks."""
        profile, _ = self._install()
        profile(frame, event, arg)

    def _make_hooks(self) -> tuple[Callable, Callable]:  # noqa: C901 - hot path in locals
        """The (profile, trace) hooks of one thread, sharing its state.

        The profile hook records calls; the trace hook only watches in-scope frames
        for 'exception' events, which are the one place Python < 3.12 shows the
        exception that ends a call."""
        core = self
        registry = self.registry
        options = self.options
        thread = registry.thread()
        emit = self.events.extend
        clock = time.perf_counter_ns
        scope_cache: dict[int, tuple[int, bool]] = _shared_code_cache(registry)
        cfunc_cache: dict[object, tuple[int, bool]] = {}
        function_args = _ArgLayouts(registry)
        string = registry.string
        new_slot = registry.new_exception_slot
        fill_slots = registry.fill_exception_slots
        record_externals = options.external_calls
        capture = options.capture_args
        max_depth = options.max_depth or 1 << 62
        max_calls = options.max_calls or 1 << 62
        call_head = events.head(events.CALL, thread)
        resume_head = events.head(events.RESUME, thread)
        external_head = events.head(events.EXTERNAL, thread)
        shift = events.REF_SHIFT
        close_heads = {k: events.head(k, thread) for k in (events.RETURN, events.YIELD)}
        raise_head = events.head(events.RAISE, thread)

        stack: list[int] = []  # markers of the open frames and recorded C calls
        frames: list[FrameType] = []  # the frame each marker belongs to
        push, pop = stack.append, stack.pop
        push_frame, pop_frame = frames.append, frames.pop
        broken = [False]  # a hook raised (a signal handler ran in it) and CPython removed it
        deferred: list[tuple[int, int]] = []  # (function, time) of open trivial C calls
        depth = 0  # open recorded calls
        suppressed = 0  # open SUPPRESSED frames
        current: list[BaseException | None] = [None]  # exception now unwinding, if any
        pending: list[int] = []  # slots of externals that raised, awaiting the exception

        def heal() -> None:
            """Re-install whichever hook CPython removed after it raised."""
            broken[0] = False
            if core._active:
                if sys.getprofile() is not profile:
                    sys.setprofile(profile)
                if sys.gettrace() is not trace:
                    sys.settrace(trace)

        def local_trace(frame: FrameType, event: str, arg: object) -> Callable | None:
            try:
                if event == "exception":
                    current[0] = arg[1]  # type: ignore[index]
                    if pending:
                        fill_slots(pending, arg[1])  # type: ignore[index]
                        pending.clear()
                return local_trace
            except BaseException:
                broken[0] = True
                raise

        def trace(frame: FrameType, event: str, arg: object) -> Callable | None:
            try:
                if broken[0]:
                    heal()
                code = frame.f_code
                info = scope_cache.get(id(code))
                if info is None:  # the trace hook sees a call before the profile hook
                    info = scope_cache[id(code)] = registry.code(code, frame)
                if info[1]:
                    frame.f_trace_lines = False
                    return local_trace
                return None
            except BaseException:
                broken[0] = True
                raise

        def raised(frame: FrameType, marker: int) -> int:
            slot = new_slot()
            if marker == IN_SCOPE and current[0] is not None:
                fill_slots([slot], current[0])
            else:
                pending.append(slot)
            return slot

        def open_deferred() -> None:
            """An in-scope callback reached from a trivial builtin: record the builtin."""
            nonlocal depth
            fid, started = deferred.pop()
            stack[-1] = EXTERNAL_C
            core._recorded += 1
            depth += 1
            emit((external_head | fid << shift, started, -1))

        def unwind_to(frame: FrameType) -> bool:
            """Close the entries above ``frame`` whose closing events were lost (a
            signal handler raised inside the hook, or another tool replaced it for a
            while); False when ``frame`` itself is not on the stack."""
            nonlocal depth, suppressed
            for index in range(len(frames) - 1, -1, -1):
                if frames[index] is frame:
                    break
            else:
                return False
            now = clock()
            while len(frames) > index + 1:
                pop_frame()
                marker = pop()
                if marker in (IN_SCOPE, EXTERNAL_C) or (marker == EXTERNAL_PY and record_externals):
                    depth -= 1
                    emit((close_heads[events.RETURN], now, -1))
                elif marker == SUPPRESSED:
                    suppressed -= 1
                elif marker == TRIVIAL_C:
                    deferred.pop()
            return True

        def profile(frame: FrameType, event: str, arg: object) -> None:
            try:
                if broken[0]:
                    heal()
                on_event(frame, event, arg)
            except BaseException:
                broken[0] = True  # CPython removes a hook that raises; the other heals it
                raise

        def on_event(frame: FrameType, event: str, arg: object) -> None:
            nonlocal depth, suppressed
            if not core._active:
                sys.setprofile(None)
                sys.settrace(None)
                return
            if event == "call":
                if frames and frames[-1] is not frame.f_back:
                    unwind_to(frame.f_back)  # returns were lost: close what they ended
                current[0] = None
                caller = stack[-1] if stack else IGNORED
                code = frame.f_code
                info = scope_cache.get(id(code))
                if info is None:
                    info = scope_cache[id(code)] = registry.code(code, frame)
                fid, in_scope = info
                if in_scope:
                    if caller == TRIVIAL_C and not suppressed and core._recorded < max_calls:
                        open_deferred()
                    if suppressed or depth >= max_depth:
                        suppressed += 1
                        push(SUPPRESSED)
                    elif core._recorded >= max_calls:
                        core.dropped += 1
                        push(DROPPED)
                    else:
                        if is_resumption(frame):
                            head, aux = resume_head, -1
                        else:
                            head = call_head
                            aux = function_args.capture(fid, frame) if capture else -1
                        core._recorded += 1
                        depth += 1
                        push(IN_SCOPE)
                        emit((head | fid << shift, clock(), aux))
                elif fid < 0 or (caller != IN_SCOPE and caller != DROPPED):
                    push(IGNORED)
                elif not record_externals:
                    push(EXTERNAL_PY)  # marks the external region; nothing recorded
                elif caller == DROPPED or core._recorded >= max_calls:
                    core.dropped += 1
                    push(IGNORED)
                elif depth >= max_depth:
                    push(IGNORED)
                else:
                    core._recorded += 1
                    depth += 1
                    push(EXTERNAL_PY)
                    emit((external_head | fid << shift, clock(), -1))
                push_frame(frame)
            elif event == "return":
                if (not frames or frames[-1] is not frame) and not unwind_to(frame):
                    return  # its call event was not seen
                marker = stack[-1]
                if marker == IN_SCOPE or (marker == EXTERNAL_PY and record_externals):
                    now = clock()
                    resumable = frame.f_code.co_flags & CO_RESUMABLE
                    kind = exit_kind(frame) if arg is None or resumable else events.RETURN
                    if kind == events.RAISE:
                        head, aux = raise_head, raised(frame, marker)
                    else:
                        head = close_heads[kind]
                        aux = string(summarize(arg)) if capture else -1
                    # No Python-level call from here on: a signal handler raising in the
                    # hook can only do so before any state changed.
                    depth -= 1
                    emit((head, now, aux))
                elif marker == SUPPRESSED:
                    suppressed -= 1
                pop()
                pop_frame()
                current[0] = None
            elif event == "c_call":
                caller = stack[-1] if stack else IGNORED
                if (caller == IN_SCOPE or caller == DROPPED) and record_externals:
                    key = cfunction_key(arg)
                    info = cfunc_cache.get(key)
                    if info is None:
                        info = cfunc_cache[key] = registry.cfunction(arg)
                    fid, trivial = info
                    if fid < 0:
                        pass
                    elif caller == DROPPED or core._recorded >= max_calls:
                        if not trivial:
                            core.dropped += 1
                    elif depth >= max_depth:
                        pass
                    elif trivial:
                        push(TRIVIAL_C)
                        push_frame(frame)
                        deferred.append((fid, clock()))
                    else:
                        core._recorded += 1
                        depth += 1
                        push(EXTERNAL_C)
                        push_frame(frame)
                        emit((external_head | fid << shift, clock(), -1))
            elif stack:  # c_return / c_exception
                if frames[-1] is not frame and not unwind_to(frame):
                    return
                top = stack[-1]
                if top == EXTERNAL_C:
                    if event == "c_return":
                        head, aux = close_heads[events.RETURN], -1
                    else:
                        head, aux = raise_head, raised(frame, EXTERNAL_C)
                    pop()
                    pop_frame()
                    depth -= 1
                    emit((head, clock(), aux))
                elif top == TRIVIAL_C:
                    pop()
                    pop_frame()
                    deferred.pop()

        return profile, trace


def cfunction_key(func: object) -> object:
    """Cache key of a C function: itself when module-level, else (owner type, name),
    since bound methods like ``items.append`` are new objects at each access."""
    owner = getattr(func, "__self__", None)
    if owner is None or type(owner) is ModuleType:
        return func
    return (type(owner), getattr(func, "__name__", None))


class _ArgLayouts:
    """Per-function argument capture: names, which is ``self``, interning."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.layouts: dict[int, tuple[str, ...]] = {}

    def capture(self, fid: int, frame: FrameType) -> int:
        names = self.layouts.get(fid)
        if names is None:
            names = self.layouts[fid] = self.registry.functions[fid].argnames
        if not names:
            return -1
        local = frame.f_locals
        string = self.registry.string
        ids = tuple(
            string(summarize_self(local[n]) if n in _SELF_NAMES else summarize(local.get(n)))
            if n in local
            else -1
            for n in names
        )
        return self.registry.args(ids)


def _shared_code_cache(registry: Registry) -> dict[int, tuple[int, bool]]:
    """One code-object cache per registry, shared by every thread's hook."""
    cache = getattr(registry, "_code_cache", None)
    if cache is None:
        cache = registry._code_cache = {}  # type: ignore[attr-defined]
    return cache
