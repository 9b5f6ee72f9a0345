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
import os
import sys
import threading
import time
from array import array
from collections.abc import Callable
from types import FrameType, ModuleType, TracebackType

from otel_tracer.record import displaced
from otel_tracer.record.options import RecordOptions
from otel_tracer.record.registry import CO_ASYNC, CO_RESUMABLE, Registry
from otel_tracer.record.summary import summarize, summarize_self
from otel_tracer.trace import events

IGNORED, IN_SCOPE, EXTERNAL_PY, EXTERNAL_C, TRIVIAL_C, SUPPRESSED, DROPPED = range(7)
_C_CALLS = (EXTERNAL_C, TRIVIAL_C)  # markers of C calls' entries
_NO_ENTRY = (IGNORED, None)  # the stack's top when it is empty
_RETURN_OPS = frozenset(dis.opmap[n] for n in ("RETURN_VALUE", "RETURN_CONST") if n in dis.opmap)
_YIELD_OP = dis.opmap["YIELD_VALUE"]
_YIELD_FROM_OP = dis.opmap.get("YIELD_FROM")  # Python 3.10 only
_RESUME_OP = dis.opmap.get("RESUME")
_SELF_NAMES = ("self", "cls")
# A profile hook installed by the trace hook on a call event gets that event too
# up to 3.11; from 3.12 sys.monitoring has picked the hooks an event goes to first.
_HEALED_PROFILE_MISSES_CALL = sys.version_info >= (3, 12)
_THIS_FILE = __file__


def raised_in_a_hook(tb: TracebackType | None) -> bool:
    """Whether a traceback runs through this module: an exception a signal
    handler raised inside a hook, even at its first instruction (before its
    ``try``), after which CPython removed that hook."""
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _THIS_FILE:
            return True
        tb = tb.tb_next
    return False


def is_resumption(frame: FrameType) -> bool:
    """True when a 'call' event is for a generator or coroutine that has already
    started: resumed by next()/send(), or by throw()/close() (close() also runs
    when an unfinished generator is freed)."""
    if not frame.f_code.co_flags & CO_RESUMABLE:
        return False
    lasti = frame.f_lasti
    if _RESUME_OP is None:  # Python 3.10: a generator that has not run has f_lasti -1
        return lasti >= 0
    if lasti < 0:
        return False
    # 3.11+: the code opens with a prologue (RETURN_GENERATOR, POP_TOP, cell set-up)
    # ending in RESUME 0; every other RESUME follows a yield or an await (oparg > 0).
    # next() and send() resume at one of those; throw() and close() leave f_lasti
    # where the frame was suspended (its YIELD_VALUE, or the end of a yield-from
    # loop), and in the prologue when the generator has not started.
    code = frame.f_code.co_code
    if code[lasti] == _RESUME_OP:
        return code[lasti + 1] != 0
    return _RESUME_OP in code[:lasti:2]  # opcodes are at even offsets


def exit_kind(frame: FrameType) -> int:
    """How a frame is leaving, from its last instruction: RETURN, YIELD or RAISE.
    (Up to 3.12 a suspended frame's last instruction is YIELD_VALUE; from 3.13
    it is the RESUME that follows it. On 3.10 a frame suspended in ``yield from``
    or ``await`` is one instruction before its YIELD_FROM, which it runs again
    when resumed.) An exception thrown into a suspended generator that does not
    catch it leaves from where the frame was suspended too (see ``thrown`` in
    ``PythonCore._make_hooks``)."""
    lasti = frame.f_lasti
    if lasti < 0:
        return events.RAISE
    code = frame.f_code.co_code
    op = code[lasti]
    if op in _RETURN_OPS:
        return events.RETURN
    if (
        op == _YIELD_OP
        or (op == _RESUME_OP and code[lasti + 1] != 0)
        or (lasti + 2 < len(code) and code[lasti + 2] == _YIELD_FROM_OP)
    ):
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
        # threads whose hook the program replaced, per hook (see displaced.py)
        self.displaced = {displaced.PROFILE: 0, displaced.TRACE: 0}
        self._pid = os.getpid()
        self._start_thread = 0
        self._check_start_thread: Callable[[], None] | None = None

    def clock(self) -> int:
        """The core's monotonic clock in ns."""
        return time.perf_counter_ns()

    def start(self) -> None:
        """Install the hooks on this thread and on threads started from now on."""
        self._active = True
        self._pid = os.getpid()
        self._start_thread = threading.get_ident()
        threading.setprofile(self._bootstrap)
        profile, trace, self._check_start_thread = self._make_hooks()
        sys.settrace(trace)
        sys.setprofile(profile)

    def stop(self) -> int:
        """Remove the hooks; returns the number of event words recorded. Warns
        (once) about the hooks the program replaced."""
        check, self._check_start_thread = self._check_start_thread, None
        if check is not None and threading.get_ident() == self._start_thread:
            check()  # are the starting thread's hooks still ours? (while _active: its
            # call event would otherwise remove them)
        self._active = False
        sys.setprofile(None)
        sys.settrace(None)
        threading.setprofile(None)
        if check is not None:
            displaced.warn(self.displaced, self._pid)
        return len(self.events)

    def _bootstrap(self, frame: FrameType, event: str, arg: object) -> None:
        """First event of a new thread: give it its own hooks. A trace function
        the thread already has is the program's (``threading.settrace``; coverage.py
        measures threads so): it stays, and counts as replacing ours."""
        profile, trace, check = self._make_hooks()
        if sys.gettrace() is None:
            sys.settrace(trace)
        sys.setprofile(profile)
        check()
        profile(frame, event, arg)

    def _make_hooks(self) -> tuple[Callable, Callable, Callable[[], None]]:  # noqa: C901
        """The (profile, trace) hooks of one thread, sharing its state, and the
        thread's check that notes which of them the program has replaced.

        The profile hook records calls; the trace hook only watches in-scope frames
        for 'exception' events, which are the one place Python < 3.12 shows the
        exception that ends a call. At an in-scope call each checks that the other
        is still installed (see displaced.py).

        CPython may run a signal handler, which may raise, inside a hook: as one of
        its functions or loop iterations starts, or right after any call it makes.
        So each event changes the state in plain statements with no call among them
        (``stack += ...``, ``del stack[-1]``, counters), after every call but the
        final ``emit``: an interrupted hook leaves the state as it was before the
        event or as it is after, and its next events find it consistent."""
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
        task = registry.task
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

        # One entry per open frame and recorded C call: (marker, frame), a C call's
        # frame being its caller's. A TRIVIAL_C entry also holds the function and
        # start time to record it with if it calls back into scope.
        stack: list[tuple] = []
        broken = [False]  # a hook raised, so CPython removed it: the other puts it back
        depth = 0  # open recorded calls
        suppressed = 0  # open SUPPRESSED frames
        current: list[BaseException | None] = [None]  # exception now unwinding, if any
        # Whether the last exception event was in a generator frame at its suspension
        # point (thrown in by throw() or close()) and, as no line event came since,
        # the frame has not caught it: until the next return event.
        thrown = [False]
        # (stack level, id of the frame, its line) at the last exception event of
        # each open frame that had one, by level: a bare ``raise`` or a ``finally``
        # re-raises with no event, and the line Python shows then is the first
        # raise's. Only ids are kept, never frames; deeper entries are stale.
        raise_seen: list[tuple[int, int, int]] = []
        pending: list[int] = []  # slots of calls that raised, awaiting the exception
        # How many stack entries lie below the innermost call that raised into
        # ``pending``: the exception reaches the frame of the entry just below
        # it (its receiver) next, if it propagates at all. A frame at or below that
        # level running on (a call, a normal return) shows it was swallowed in C
        # (``hasattr``, the import system): its slots stay unknown rather than take
        # the next, unrelated exception.
        pending_level = [0]
        noted: set[str] = set()  # this thread's hooks found replaced by the program
        getprofile, gettrace = sys.getprofile, sys.gettrace
        profile_key, trace_key = displaced.PROFILE, displaced.TRACE  # the hooks by name

        def note(hook: str) -> None:
            if hook not in noted:
                noted.add(hook)
                core.displaced[hook] += 1

        def check() -> None:
            # A hook found removed is not the program's doing: CPython removed the
            # profile hook after it raised, and the trace hook is put back at the
            # next in-scope call.
            if getprofile() is not profile and not (broken[0] and getprofile() is None):
                note(profile_key)
            if gettrace() not in (trace, None):
                note(trace_key)

        def heal() -> bool:
            """Re-install whichever hook CPython removed after it raised; True when
            that was the profile hook."""
            broken[0] = False
            if not core._active:
                return False
            if sys.gettrace() is not trace:
                sys.settrace(trace)
            if sys.getprofile() is not profile:
                sys.setprofile(profile)
                return True
            return False

        # CPython removes a hook that raises (a signal handler raised in it). Before
        # it does, the hook makes sure the other one is installed, to heal it at its
        # next event: else a second handler raising there would leave neither.
        def keep_trace() -> None:
            if core._active and sys.gettrace() is not trace:
                sys.settrace(trace)

        def keep_profile() -> None:
            if core._active and sys.getprofile() is not profile:
                sys.setprofile(profile)

        def local_trace(frame: FrameType, event: str, arg: object) -> Callable | None:
            try:
                if event == "exception":
                    current[0] = arg[1]  # type: ignore[index]
                    level = len(stack)
                    while raise_seen and raise_seen[-1][0] >= level:
                        del raise_seen[-1]
                    raise_seen.append((level, id(frame), frame.f_lineno or 0))
                    if raised_in_a_hook(arg[2]):  # type: ignore[index]
                        broken[0] = True  # the profile hook: this hook puts it back
                    if frame.f_code.co_flags & CO_RESUMABLE and exit_kind(frame) == events.YIELD:
                        # Thrown in where the frame was suspended. If not caught, the
                        # frame leaves from there, which profile hooks see as a yield
                        # of None; if caught, it first runs on to another line (the
                        # except clause), reported once line events are on.
                        thrown[0] = True
                        frame.f_trace_lines = True
                    if pending and len(stack) <= pending_level[0]:
                        fill_slots(pending, arg[1])  # type: ignore[index]
                        pending.clear()
                elif event == "line":
                    thrown[0] = False
                    frame.f_trace_lines = False
                return local_trace
            except BaseException:
                broken[0] = True
                keep_profile()
                raise

        def external_trace(frame: FrameType, event: str, arg: object) -> Callable | None:
            """The local trace function of a library frame called from scope: the
            exception ending a recorded external call is seen in its own frame,
            as C code that calls it may swallow the exception (the import system
            reading ``module.__path__``, ``obj.attr`` trying ``__getattr__``)."""
            try:
                if event == "return":
                    return None
                if event == "line" or (
                    stack and stack[-1][1] is frame and stack[-1][0] == EXTERNAL_PY
                ):
                    return local_trace(frame, event, arg)
                return external_trace
            except BaseException:
                broken[0] = True
                keep_profile()
                raise

        def trace(frame: FrameType, event: str, arg: object) -> Callable | None:
            try:
                if broken[0] and heal() and _HEALED_PROFILE_MISSES_CALL:
                    on_event(frame, event, arg)
                code = frame.f_code
                info = scope_cache.get(id(code))
                if info is None:  # the trace hook sees a call before the profile hook
                    info = scope_cache[id(code)] = registry.code(code, frame)
                if info[1]:
                    if profile_key not in noted and getprofile() is not profile:
                        note(profile_key)
                    frame.f_trace_lines = False
                    return local_trace
                if record_externals and stack and stack[-1][0] == IN_SCOPE:
                    if stack[-1][1] is frame.f_back and info[0] >= 0:  # an external call
                        frame.f_trace_lines = False
                        return external_trace
                return None
            except BaseException:
                broken[0] = True
                keep_profile()
                raise

        def raised(frame: FrameType, marker: int) -> int:
            """The exception slot of the call of the top entry, which raised
            (``frame`` is its own, or for a C call its caller's)."""
            if marker == EXTERNAL_C:
                slot = new_slot()
            else:
                level, seen = len(stack), 0
                while raise_seen and raise_seen[-1][0] > level:
                    del raise_seen[-1]
                if raise_seen and raise_seen[-1][:2] == (level, id(frame)):
                    seen = raise_seen.pop()[2]
                slot = new_slot(frame, current[0], seen)
            if marker != EXTERNAL_C and current[0] is not None:
                fill_slots([slot], current[0])
            else:
                pending.append(slot)
                pending_level[0] = len(stack) - 1
            return slot

        def open_deferred(index: int = -1) -> None:
            """An in-scope callback reached from a trivial builtin (the entry at
            ``index``): record the builtin."""
            nonlocal depth
            _, frame, fid, started = stack[index]
            stack[index] = (EXTERNAL_C, frame)
            core._recorded += 1
            depth += 1
            emit((external_head | fid << shift, started, -1))

        def close_above(index: int) -> None:
            """Close the entries above ``stack[index]``: their closing events were lost."""
            nonlocal depth, suppressed
            now = clock()
            while len(stack) > index + 1:
                marker = stack[-1][0]
                del stack[-1]
                if marker in (IN_SCOPE, EXTERNAL_C) or (marker == EXTERNAL_PY and record_externals):
                    depth -= 1
                    emit((close_heads[events.RETURN], now, -1))
                elif marker == SUPPRESSED:
                    suppressed -= 1

        def unwind_to(frame: FrameType, own: bool) -> bool:
            """Close the entries above the top one of ``frame`` whose closing events
            were lost (a signal handler raised inside the hook, or the program removed
            it for a while); False when ``frame`` has none. With ``own``, the frame's
            own entry: the entries of its C calls above it are closed too."""
            for index in range(len(stack) - 1, -1, -1):
                entry = stack[index]
                if entry[1] is frame and not (own and entry[0] in _C_CALLS):
                    break
            else:
                return False
            close_above(index)
            return True

        def profile(frame: FrameType, event: str, arg: object) -> None:
            try:
                if broken[0]:
                    heal()
                on_event(frame, event, arg)
            except BaseException:
                broken[0] = True
                keep_trace()
                raise

        def on_event(frame: FrameType, event: str, arg: object) -> None:
            nonlocal stack, depth, suppressed
            if not core._active:
                sys.setprofile(None)
                sys.settrace(None)
                return
            top = stack[-1] if stack else _NO_ENTRY
            if event == "call":
                if top[1] is not frame.f_back and stack:
                    unwind_to(frame.f_back, False)  # returns were lost: close what they ended
                    top = stack[-1]
                if pending and len(stack) <= pending_level[0]:
                    del pending[:]  # the receiver runs on: the exception was swallowed
                current[0] = None
                caller = top[0]
                code = frame.f_code
                info = scope_cache.get(id(code))
                if info is None:
                    info = scope_cache[id(code)] = registry.code(code, frame)
                fid, in_scope = info
                if in_scope:
                    if caller == TRIVIAL_C and not suppressed and core._recorded < max_calls:
                        open_deferred()
                    elif caller == IGNORED and not suppressed and core._recorded < max_calls:
                        # Reached through library code that a trivial builtin runs
                        # (next() of a library generator, a library __getattr__)?
                        below = len(stack) - 2
                        while below >= 0 and stack[below][0] == IGNORED:
                            below -= 1
                        if below >= 0 and stack[below][0] == TRIVIAL_C:
                            open_deferred(below)
                    if suppressed or depth >= max_depth:
                        suppressed += 1
                        stack += ((SUPPRESSED, frame),)
                    elif core._recorded >= max_calls:
                        core.dropped += 1
                        stack += ((DROPPED, frame),)
                    else:
                        installed = gettrace()
                        if installed is None:  # removed by CPython after it raised
                            keep_trace()
                        elif installed is not trace and trace_key not in noted:
                            note(trace_key)
                        if is_resumption(frame):
                            head = resume_head
                            aux = task() if frame.f_code.co_flags & CO_ASYNC else -1
                        else:
                            head = call_head
                            aux = function_args.capture(fid, frame) if capture else -1
                        now = clock()
                        core._recorded += 1
                        depth += 1
                        stack += ((IN_SCOPE, frame),)
                        emit((head | fid << shift, now, aux))
                elif fid < 0 or (caller != IN_SCOPE and caller != DROPPED):
                    stack += ((IGNORED, frame),)
                elif not record_externals:
                    stack += ((EXTERNAL_PY, frame),)  # marks the external region; nothing recorded
                elif caller == DROPPED or core._recorded >= max_calls:
                    core.dropped += 1
                    stack += ((IGNORED, frame),)
                elif depth >= max_depth:
                    stack += ((IGNORED, frame),)
                else:
                    now = clock()
                    core._recorded += 1
                    depth += 1
                    stack += ((EXTERNAL_PY, frame),)
                    emit((external_head | fid << shift, now, -1))
            elif event == "return":
                if top[1] is not frame or top[0] in _C_CALLS:
                    if not unwind_to(frame, True):
                        return  # its call event was not seen
                    top = stack[-1]
                if pending and len(stack) <= pending_level[0]:
                    if exit_kind(frame) == events.RAISE:
                        pending_level[0] = len(stack) - 1  # passed on to its caller
                    else:
                        del pending[:]  # the receiver returns: the exception was swallowed
                marker = top[0]
                if marker == IN_SCOPE or (marker == EXTERNAL_PY and record_externals):
                    now = clock()
                    resumable = frame.f_code.co_flags & CO_RESUMABLE
                    kind = exit_kind(frame) if arg is None or resumable else events.RETURN
                    if kind == events.YIELD and arg is None and thrown[0]:
                        kind = events.RAISE  # the exception thrown in was not caught
                    if kind == events.RAISE:
                        head, aux = raise_head, raised(frame, marker)
                    else:
                        head = close_heads[kind]
                        aux = string(summarize(arg)) if capture else -1
                    del stack[-1]
                    depth -= 1
                    current[0] = None
                    thrown[0] = False
                    emit((head, now, aux))
                else:
                    del stack[-1]
                    if marker == SUPPRESSED:
                        suppressed -= 1
                    current[0] = None
                    thrown[0] = False
            elif event == "c_call":
                if top[1] is frame and top[0] in _C_CALLS:
                    close_above(len(stack) - 2)  # a C call of this frame whose c_return was lost
                    top = stack[-1] if stack else _NO_ENTRY
                if pending and len(stack) <= pending_level[0]:
                    del pending[:]  # the receiver runs on: the exception was swallowed
                caller = top[0]
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
                        stack += ((TRIVIAL_C, frame, fid, clock()),)
                    else:
                        now = clock()
                        core._recorded += 1
                        depth += 1
                        stack += ((EXTERNAL_C, frame),)
                        emit((external_head | fid << shift, now, -1))
            elif stack:  # c_return / c_exception
                if top[1] is not frame:
                    if not unwind_to(frame, False):
                        return
                    top = stack[-1]
                marker = top[0]
                if marker == EXTERNAL_C:
                    if event == "c_return":
                        head, aux = close_heads[events.RETURN], -1
                    else:
                        head, aux = raise_head, raised(frame, EXTERNAL_C)
                    now = clock()
                    del stack[-1]
                    depth -= 1
                    emit((head, now, aux))
                elif marker == TRIVIAL_C:
                    del stack[-1]

        return profile, trace, check


def cfunction_key(func: object) -> object:
    """Cache key of a C function, one per function as the C core's (method
    definition, owner): the function itself when bound to a module; else its name
    with the class it is bound to (``bytes.fromhex``, ``bytearray.fromhex``: their
    owners' type is ``type`` for both) or with its owner's type (bound methods like
    ``items.append`` are new objects at each access)."""
    owner = getattr(func, "__self__", None)
    if owner is None or type(owner) is ModuleType:
        return func
    return (owner if isinstance(owner, type) else type(owner), getattr(func, "__name__", None))


class _ArgLayouts:
    """Per-function argument capture: names, which is ``self``, which is a
    secret (recorded as ``[redacted]``, never summarized), interning."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.layouts: dict[int, tuple[tuple[str, bool], ...]] = {}

    def capture(self, fid: int, frame: FrameType) -> int:
        layout = self.layouts.get(fid)
        if layout is None:
            names = self.registry.functions[fid].argnames
            layout = self.layouts[fid] = tuple((n, self.registry.is_secret(n)) for n in names)
        if not layout:
            return -1
        local = frame.f_locals
        string = self.registry.string
        ids = tuple(
            -1
            if n not in local
            else self.registry.redacted()
            if secret
            else string(summarize_self(local[n]) if n in _SELF_NAMES else summarize(local.get(n)))
            for n, secret in layout
        )
        return self.registry.args(ids)


def _shared_code_cache(registry: Registry) -> dict[int, tuple[int, bool]]:
    """One code-object cache per registry, shared by every thread's hook."""
    cache = getattr(registry, "_code_cache", None)
    if cache is None:
        cache = registry._code_cache = {}  # type: ignore[attr-defined]
    return cache
