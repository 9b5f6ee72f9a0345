"""The ``sys.monitoring`` (PEP 669) recording core, for CPython 3.12+.

It records what ``PythonCore`` records (the same calls, through the same
Registry methods), with far less work for code outside the scope:

* Global events are only those that cannot be local: ``PY_START``/
  ``PY_RESUME`` (to find code), ``PY_THROW``, ``PY_UNWIND`` and ``RAISE``. The
  rest is set per code object with ``set_local_events``: in-scope code gets
  returns, yields and calls (``CALL``/``C_RETURN``/``C_RAISE``); library code
  gets returns and yields once it has been called from scope, since an external
  call ends with its return value. Library call sites, returns and C calls
  never reach Python.
* Library ``PY_START``/``PY_RESUME`` cannot be disabled: in-scope code reaches
  library code implicitly too (properties, operators, a class's ``__init__``,
  ``for`` over a library generator, ``await``), and the profile API reports
  those as external calls as well. Their callback is a set lookup of the file
  name and a read of a counter of the threads whose innermost entry is an
  in-scope frame; only then does the thread's state matter. Locations that are
  never an external call return ``sys.monitoring.DISABLE``: all library code
  when external calls are not recorded, the import machinery always.

Each thread keeps a stack of *entries* ``(marker, frame)``, PythonCore's
markers except that unrecorded library frames are not pushed at all: a frame
whose ``f_back`` is not the frame of the innermost entry was started by one of
those, which is what PythonCore calls an ``IGNORED`` caller. C-call entries
carry the frame that made the call.

Exceptions are exact: ``PY_UNWIND`` gives the exception ending a Python call,
and a C call that raised (``C_RAISE`` has no exception argument) gets that of
the ``RAISE`` event that follows at once in its calling frame.
"""

from __future__ import annotations

import dis
import sys
import threading
import time
from array import array
from collections.abc import Callable
from types import (
    BuiltinFunctionType,
    CodeType,
    FrameType,
    FunctionType,
    MethodDescriptorType,
    ModuleType,
)
from typing import Any

from otel_tracer.record.options import RecordOptions
from otel_tracer.record.pycore import _ArgLayouts
from otel_tracer.record.registry import CO_ASYNC, HIDDEN_FILES, Registry
from otel_tracer.record.summary import summarize
from otel_tracer.trace import events

# Entry markers (PythonCore's; IGNORED only marks the bottom of a stack). Ordered
# so that "open to scope" is ``< EXTERNAL_PY`` and a frame's own entry ``<= SUPPRESSED``.
IN_SCOPE, DROPPED, EXTERNAL_PY, SUPPRESSED, EXTERNAL_C, TRIVIAL_C, IGNORED = range(7)
_IDLE = ((IGNORED, None),)  # the stack of a thread that is not recorded

_mon: Any = getattr(sys, "monitoring", None)
# Tool ids tried in turn: ids no tool is expected to claim, then the optimizer's
# and the profiler's. DEBUGGER_ID (0) and COVERAGE_ID (1) are left to debuggers and
# coverage, and PROFILER_ID (2) to cProfile as long as another is free: from 3.12
# cProfile.Profile.enable() raises when that id is taken.
_TOOL_IDS = (3, 4, 5, 2)
_TOOL_NAME = "otel-tracer"

Entry = tuple[int, FrameType | None]
# plan_unwind's answer: (index of the entry found, closing events of the entries
# above it, how many of those were recorded calls, SUPPRESSED frames, trivial C
# calls, and the code objects of the EXTERNAL_PY ones)
Unwind = tuple[int, tuple[int, ...], int, int, int, tuple[CodeType, ...]]


class MonitoringUnavailable(RuntimeError):
    """``sys.monitoring`` cannot be used: Python < 3.12 (raised by the constructor)
    or every tool id we may take is in use (raised by ``start()``). The recorder
    catches it and records with ``PythonCore`` instead."""


def claim_tool_id() -> int:
    """Take the first free tool id of ``_TOOL_IDS``."""
    for tool in _TOOL_IDS:
        if _mon.get_tool(tool) is None:
            try:
                _mon.use_tool_id(tool, _TOOL_NAME)
            except ValueError:  # taken by another thread just now
                continue
            return tool
    users = ", ".join(f"{t}={_mon.get_tool(t)!r}" for t in _TOOL_IDS)
    raise MonitoringUnavailable(f"every sys.monitoring tool id we may use is taken ({users})")


def file_is_library(name: str, scope: Any) -> bool:
    """Whether code of file ``name`` is out of scope (hidden files too): PythonCore's
    registry.code decides by file the same way."""
    return name.startswith(HIDDEN_FILES) or name not in scope


def threads_before() -> set[threading.Thread]:
    """The threads running when recording starts, but the calling one."""
    return set(threading.enumerate()) - {threading.current_thread()}


def recorded_thread(starter: int, before: set[threading.Thread]) -> bool:
    """Whether the calling thread is recorded: like PythonCore, only the thread that
    started recording (ident ``starter``) and threads started after it."""
    ident = threading.get_ident()
    thread = next((t for t in threading.enumerate() if t.ident == ident), None)
    return ident == starter or (thread is not None and thread not in before)


def first_resume(code: CodeType) -> int:
    """Offset of the ``RESUME`` where a code object's body starts: a ``PY_THROW``
    before it enters a generator that never ran (a call), after it a resumption."""
    return next(i.offset for i in dis.get_instructions(code) if i.opname == "RESUME")


class _Thread:
    """One recorded thread: its entry stack and the handlers that update it."""

    __slots__ = ("stack", "enter", "enter_external", "leave", "unwind", "c_call", "c_leave")

    stack: list[Entry]
    enter: Callable[[FrameType, int, int], None]
    enter_external: Callable[[FrameType, CodeType, int], None]
    leave: Callable[[FrameType, int, object], None]
    unwind: Callable[[FrameType], None]
    c_call: Callable[[int, int, bool], None]
    c_leave: Callable[[FrameType, bool], None]


class _Shared:
    """State the threads share: counters the library fast path reads, the C calls
    that raised, and the hook that gives library code its return events."""

    __slots__ = ("open_threads", "open_codes", "pending", "watch_returns")

    def __init__(self, watch_returns: Callable[[CodeType], None]) -> None:
        # threads whose innermost entry is open to scope (IN_SCOPE or DROPPED)
        self.open_threads = [0]
        self.open_codes: dict[int, int] = {}  # id(code) -> open EXTERNAL_PY entries
        self.pending: dict[int, list[int]] = {}  # thread ident -> slots of raised C calls
        self.watch_returns = watch_returns


class MonitoringCore:
    """Records into an ``array('q')`` with ``sys.monitoring`` callbacks."""

    name = "monitoring"

    def __init__(self, registry: Registry, options: RecordOptions) -> None:
        if _mon is None:
            raise MonitoringUnavailable("sys.monitoring needs Python 3.12 or later")
        self.registry = registry
        self.options = options
        self.events = array("q")
        self.dropped = 0
        self._recorded = 0
        self._tool: int | None = None
        self._callbacks: dict[int, Callable[..., object]] = {}
        self._local_codes: list[CodeType] = []  # code objects given local events

    def clock(self) -> int:
        """The core's monotonic clock in ns."""
        return time.perf_counter_ns()

    def start(self) -> None:
        """Start recording this thread and threads started from now on."""
        tool = claim_tool_id()
        self._tool = tool
        # DISABLE is sticky per location and tool id, even across free_tool_id:
        # locations an earlier recording (or another holder of this id) disabled
        # must fire again. Cheap: set_events re-instruments all code anyway.
        _mon.restart_events()
        self._callbacks = self._make_callbacks(tool)
        mask = 0
        for event, callback in self._callbacks.items():
            _mon.register_callback(tool, event, callback)
            if event not in _LOCAL_EVENTS:
                mask |= event
        _mon.set_events(tool, mask)

    def stop(self) -> int:
        """Stop recording (idempotent); returns the number of event words recorded."""
        tool, self._tool = self._tool, None
        if tool is not None:
            _mon.set_events(tool, 0)
            for code in self._local_codes:
                _mon.set_local_events(tool, code, 0)
            for event in self._callbacks:
                _mon.register_callback(tool, event, None)
            _mon.free_tool_id(tool)
            self._local_codes.clear()
            self._callbacks = {}
        return len(self.events)

    def _make_callbacks(self, tool: int) -> dict[int, Callable[..., object]]:  # noqa: C901
        """The sys.monitoring callbacks, keyed by event."""
        registry = self.registry
        scope = registry.scope
        record_externals = self.options.external_calls
        E = _mon.events
        DISABLE = _mon.DISABLE
        MISSING = _mon.MISSING
        set_local_events = _mon.set_local_events
        getframe = sys._getframe
        get_ident = threading.get_ident
        local_codes = self._local_codes
        tls = threading.local()  # .thread: _Thread | False (not recorded); .stack
        library_files: set[str] = set()  # out of scope, hidden ones included
        scope_files: set[str] = set()
        scope_fids: dict[int, int] = {}  # id(code) -> function index, in-scope code
        library_fids: dict[int, int] = {}  # id(code) -> function index, library code
        watched: set[int] = set()  # ids of library code given return events
        # These caches are keyed by id(code): every code object in them went through
        # registry.code, which keeps it alive (hidden ones too), so ids stay unique.
        cfuncs: dict[object, tuple[int, bool]] = {}
        resumes: dict[int, int] = {}  # id(code) -> offset of its first RESUME
        library_answer = None if record_externals else DISABLE
        scope_events = E.PY_RETURN | E.PY_YIELD
        if record_externals:
            scope_events |= E.CALL | E.C_RETURN | E.C_RAISE
        starter = get_ident()
        before = threads_before()

        def watch_returns(code: CodeType) -> None:
            """Library code called from scope: its returns and yields close the
            external call (set at its PY_START, this holds for that frame too)."""
            if id(code) not in watched:
                set_local_events(tool, code, E.PY_RETURN | E.PY_YIELD)
                local_codes.append(code)
                watched.add(id(code))

        shared = _Shared(watch_returns)
        open_threads = shared.open_threads
        open_codes = shared.open_codes
        pending = shared.pending

        def is_library(code: CodeType) -> bool:
            """Out of scope (PythonCore's registry.code decides by file the same way)."""
            name = code.co_filename
            if name in scope_files:
                return False
            if name in library_files:
                return True
            if file_is_library(name, scope):
                library_files.add(name)
                return True
            scope_files.add(name)
            return False

        def scope_fid(code: CodeType, frame: FrameType) -> int:
            """First sight of an in-scope code object: register it, give it its events."""
            fid = registry.code(code, frame)[0]
            set_local_events(tool, code, scope_events)
            local_codes.append(code)
            scope_fids[id(code)] = fid
            return fid

        def new_thread() -> _Thread | bool:
            """The first in-scope event of a thread: like PythonCore, record only the
            thread that started recording and threads started after it."""
            if not recorded_thread(starter, before):
                tls.stack = _IDLE
                tls.thread = False
                return False
            return self._make_thread(tls, shared)

        def tracked(frame: FrameType | None) -> bool:
            """Whether ``frame`` may have an entry. If it has one that is not the
            innermost, a child starting in it or an exception reaching it shows the
            entries above are over (their closing events were lost to an exception
            that a signal handler raised in one of our callbacks)."""
            return frame is not None and (
                id(frame.f_code) in scope_fids or id(frame.f_code) in open_codes
            )

        def scope_enter(code: CodeType, kind: int) -> None:
            """An in-scope frame starts (CALL) or resumes (RESUME)."""
            frame = getframe(2)
            fid = scope_fids.get(id(code))
            if fid is None:
                fid = scope_fid(code, frame)
            try:
                thread = tls.thread
            except AttributeError:
                thread = new_thread()
            if thread:
                back = frame.f_back
                if back is not thread.stack[-1][1] and tracked(back):
                    thread.unwind(back)
                thread.enter(frame, fid, kind)

        def library_enter(code: CodeType) -> object:
            """A library frame starts or resumes while some thread's innermost entry
            is open to scope: an external call if it is this thread's and that
            frame started it."""
            try:
                stack = tls.stack
            except AttributeError:
                return None
            if stack[-1][0] < EXTERNAL_PY:
                fid = library_fids.get(id(code))
                frame = getframe(2)
                if fid is None:
                    fid = library_fids[id(code)] = registry.code(code, frame)[0]
                if fid < 0:
                    return DISABLE  # the import machinery: never shown
                tls.thread.enter_external(frame, code, fid)
            return None

        def make_enter(kind: int) -> Callable[[CodeType, int], object]:
            def on_enter(code: CodeType, offset: int) -> object:
                name = code.co_filename
                if name in library_files or (name not in scope_files and is_library(code)):
                    if open_threads[0] and record_externals:
                        return library_enter(code)
                    return library_answer
                scope_enter(code, kind)
                return None

            return on_enter

        def on_throw(code: CodeType, offset: int, exc: BaseException) -> None:
            """PY_THROW (cannot be disabled): a call if the generator never ran."""
            if is_library(code):
                if open_threads[0] and record_externals:
                    library_enter(code)
                return
            start = resumes.get(id(code))
            if start is None:
                start = resumes[id(code)] = first_resume(code)
            scope_enter(code, events.CALL if offset < start else events.RESUME)

        def make_leave(kind: int) -> Callable[[CodeType, int, object], None]:
            def on_leave(code: CodeType, offset: int, value: object) -> None:
                key = id(code)
                if key in scope_fids or key in open_codes:
                    try:
                        thread = tls.thread
                    except AttributeError:
                        return  # a thread without in-scope calls
                    if not thread:
                        return
                    if key not in scope_fids:  # library code: its external call may end
                        marker, top = thread.stack[-1]
                        if marker != EXTERNAL_PY or top.f_code is not code:
                            return
                        if top is not getframe(1):
                            return  # a call of the same code inside the external one
                    thread.leave(getframe(1), kind, value)

            return on_leave

        def on_call(code: CodeType, offset: int, func: object, arg0: object) -> None:
            """CALL at an in-scope call site: builtin functions and method descriptors
            are the profile API's 'c_call' (the descriptor bound to its first argument)."""
            # The key is pycore.cfunction_key's for the function the profile API
            # reports: bound methods are new objects at each access, and a method
            # bound to a class is told apart by that class (``bytes.fromhex`` and
            # ``bytearray.fromhex``, ``int.__new__`` and ``object.__new__``).
            kind = type(func)
            if kind is MethodDescriptorType:  # reported bound to its first argument
                if arg0 is MISSING:
                    return
                key: object = (
                    arg0 if isinstance(arg0, type) else type(arg0),
                    func.__name__,  # type: ignore[attr-defined]
                )
            elif kind is BuiltinFunctionType or (
                kind is not FunctionType and isinstance(func, BuiltinFunctionType)
            ):
                owner = func.__self__  # type: ignore[attr-defined]
                if owner is None or type(owner) is ModuleType:
                    key = func
                else:
                    key = (owner if isinstance(owner, type) else type(owner), func.__name__)  # type: ignore[attr-defined]
            else:
                return
            try:
                caller = tls.stack[-1][0]
            except AttributeError:
                return
            if caller >= EXTERNAL_PY:
                if caller != EXTERNAL_C and caller != TRIVIAL_C:
                    return
                frame = getframe(1)
                if tls.stack[-1][1] is not frame:
                    return  # not a C call of this frame (it has no entry)
                # A C call of this very frame is still open: its closing event was
                # lost (interrupted callbacks). Close it, as PythonCore does.
                tls.thread.c_leave(frame, False)
                caller = tls.stack[-1][0]
                if caller >= EXTERNAL_PY:
                    return
            info = cfuncs.get(key)
            if info is None:
                if kind is MethodDescriptorType:
                    try:
                        func = func.__get__(arg0, type(arg0))  # type: ignore[attr-defined]
                    except TypeError:  # wrong self type: the call itself will raise
                        return
                info = cfuncs[key] = registry.cfunction(func)
            tls.thread.c_call(caller, *info)

        def make_c_leave(raised: bool) -> Callable[[CodeType, int, object, object], None]:
            def on_c_leave(code: CodeType, offset: int, func: object, arg0: object) -> None:
                try:
                    marker = tls.stack[-1][0]
                except AttributeError:
                    return
                if marker >= EXTERNAL_C and marker != IGNORED:
                    tls.thread.c_leave(getframe(1), raised)

            return on_c_leave

        def on_raise(code: CodeType, offset: int, exc: BaseException) -> None:
            """RAISE: the exception is in ``code``'s frame, which runs again, so
            entries above its own are over: a C call it made raised (this is its
            exception: C_RAISE does not give it), or the exception came from one
            of our callbacks (a signal handler) and cut an update short."""
            key = id(code)
            if key in scope_fids or key in open_codes:
                try:
                    marker, top = tls.stack[-1]
                except AttributeError:
                    marker, top = IGNORED, None
                if marker != IGNORED:
                    frame = getframe(1)
                    if top is not frame:
                        tls.thread.unwind(frame)
                    elif marker == EXTERNAL_C or marker == TRIVIAL_C:
                        tls.thread.c_leave(frame, True)
            if pending:
                slots = pending.pop(get_ident(), None)
                if slots:
                    registry.fill_exception_slots(slots, exc)

        self._make_thread(tls, shared)  # the starting thread, registered first
        callbacks: dict[int, Callable[..., object]] = {
            E.PY_START: make_enter(events.CALL),
            E.PY_RESUME: make_enter(events.RESUME),
            E.PY_THROW: on_throw,
            E.PY_RETURN: make_leave(events.RETURN),
            E.PY_YIELD: make_leave(events.YIELD),
            E.PY_UNWIND: make_leave(events.RAISE),
            E.RAISE: on_raise,
        }
        if record_externals:
            callbacks[E.CALL] = on_call
            callbacks[E.C_RETURN] = make_c_leave(False)
            callbacks[E.C_RAISE] = make_c_leave(True)
        return callbacks

    def _make_thread(self, tls: threading.local, shared: _Shared) -> _Thread:  # noqa: C901
        """Register the calling thread and build its state and handlers, which
        take PythonCore's decisions.

        A signal handler runs inside a callback only at its start and right after
        a C call in it (the eval breaker), and may raise there. So each handler
        first computes (clock, summaries, registry calls), then updates the state
        with plain bytecode and ends with its one ``emit`` call: the stack, the
        counters and the event stream change together or not at all."""
        core = self
        registry = self.registry
        options = self.options
        thread = registry.thread()
        emit = self.events.extend
        clock = time.perf_counter_ns
        function_args = _ArgLayouts(registry)
        string = registry.string
        new_slot = registry.new_exception_slot
        task = registry.task
        fill_slots = registry.fill_exception_slots
        open_threads = shared.open_threads
        open_codes = shared.open_codes
        pending = shared.pending
        watch_returns = shared.watch_returns
        ident = threading.get_ident()
        capture = options.capture_args
        max_depth = options.max_depth or 1 << 62
        max_calls = options.max_calls or 1 << 62
        call_head = events.head(events.CALL, thread)
        resume_head = events.head(events.RESUME, thread)
        external_head = events.head(events.EXTERNAL, thread)
        shift = events.REF_SHIFT
        close_heads = {k: events.head(k, thread) for k in (events.RETURN, events.YIELD)}
        return_head = close_heads[events.RETURN]
        raise_head = events.head(events.RAISE, thread)

        stack: list[Entry] = [(IGNORED, None)]
        deferred: list[tuple[int, int]] = []  # (function, time) of open trivial C calls
        depth = 0  # open recorded calls
        suppressed = 0  # open SUPPRESSED frames

        def plan_unwind(frame: FrameType, own: bool, now: int) -> Unwind | None:
            """Find ``frame``'s innermost entry (its own Python entry when ``own``)
            and the closing events of the entries above it, which were lost; None
            when ``frame`` has no such entry (it is not recorded)."""
            for at in range(len(stack) - 1, 0, -1):
                marker, entry_frame = stack[at]
                if entry_frame is frame and (marker <= SUPPRESSED or not own):
                    break
            else:
                return None
            words: tuple[int, ...] = ()
            closed = lost_suppressed = lost_trivial = 0
            externals: tuple[CodeType, ...] = ()
            for marker, entry_frame in stack[at + 1 :]:
                if marker == IN_SCOPE or marker == EXTERNAL_PY or marker == EXTERNAL_C:
                    closed += 1
                    words += (return_head, now, -1)
                    if marker == EXTERNAL_PY:
                        externals += (entry_frame.f_code,)  # type: ignore[union-attr]
                elif marker == SUPPRESSED:
                    lost_suppressed += 1
                elif marker == TRIVIAL_C:
                    lost_trivial += 1
            return at, words, closed, lost_suppressed, lost_trivial, externals

        def release(externals: tuple[CodeType, ...]) -> None:
            """Count the unwound external calls out of ``open_codes`` (after the
            update: a count left too high only costs a closer look)."""
            for code in externals:
                if open_codes[id(code)] > 1:
                    open_codes[id(code)] -= 1
                else:
                    del open_codes[id(code)]

        def enter(frame: FrameType, fid: int, kind: int) -> None:
            """An in-scope frame starts (CALL) or resumes (RESUME). Under a trivial
            builtin it records that builtin: called by it, thrown into through the
            ``yield from`` of an in-scope generator by its throw(), or reached through
            library code it runs (next() of a library generator)."""
            nonlocal stack, deferred, depth, suppressed
            marker, top = stack[-1]
            words: tuple[int, ...] = ()
            opened = 0  # 1: an in-scope callback of a trivial builtin records it
            if marker == TRIVIAL_C:
                if not suppressed and core._recorded < max_calls:
                    opened = 1
                    builtin, started = deferred[-1]
                    words = (external_head | builtin << shift, started, -1)
            if suppressed or depth + opened >= max_depth:
                entry = SUPPRESSED
            elif core._recorded + opened >= max_calls:
                entry = DROPPED
            else:
                entry = IN_SCOPE
                if kind == events.CALL:
                    aux = function_args.capture(fid, frame) if capture else -1
                    words += (call_head | fid << shift, clock(), aux)
                else:
                    aux = task() if frame.f_code.co_flags & CO_ASYNC else -1
                    words += (resume_head | fid << shift, clock(), aux)
            if opened:
                del deferred[-1:]
                stack[-1] = (EXTERNAL_C, top)
                core._recorded += 1
                depth += 1
            if entry == IN_SCOPE:
                core._recorded += 1
                depth += 1
            elif entry == SUPPRESSED:
                suppressed += 1
            else:
                core.dropped += 1
            stack += ((entry, frame),)
            open_threads[0] += (entry < EXTERNAL_PY) - (marker < EXTERNAL_PY)
            if words:
                emit(words)

        def enter_external(frame: FrameType, code: CodeType, fid: int) -> None:
            """A library frame starts or resumes while the innermost entry is an
            IN_SCOPE or DROPPED frame: an external call if that frame started it."""
            nonlocal stack, depth
            marker, top = stack[-1]
            if frame.f_back is not top:
                return  # started by an unrecorded library frame
            if marker == DROPPED or core._recorded >= max_calls:
                core.dropped += 1
            elif depth < max_depth:
                key = id(code)
                watch_returns(code)
                words = (external_head | fid << shift, clock(), -1)
                core._recorded += 1
                depth += 1
                stack += ((EXTERNAL_PY, frame),)
                open_threads[0] -= marker < EXTERNAL_PY
                if key in open_codes:
                    open_codes[key] += 1
                else:
                    open_codes[key] = 1
                emit(words)

        def leave(frame: FrameType, kind: int, value: object) -> None:
            """A frame returns, yields or unwinds (``value`` is then the exception)."""
            nonlocal stack, deferred, depth, suppressed
            marker, top = stack[-1]
            was_open = marker < EXTERNAL_PY
            now = clock()
            at = len(stack) - 1
            words: tuple[int, ...] = ()
            closed = lost_suppressed = lost_trivial = 0
            externals: tuple[CodeType, ...] = ()
            if top is not frame or marker > SUPPRESSED:
                plan = plan_unwind(frame, True, now)
                if plan is None:
                    return  # not recorded: started before recording, or a library frame
                at, words, closed, lost_suppressed, lost_trivial, externals = plan
                marker = stack[at][0]
            key = -1  # id of the code of an external call ending here
            if marker == IN_SCOPE or marker == EXTERNAL_PY:
                closed += 1
                if kind == events.RAISE:
                    slot = new_slot(frame, value)
                    fill_slots([slot], value)  # type: ignore[arg-type]
                    words += (raise_head, now, slot)
                else:
                    words += (close_heads[kind], now, string(summarize(value)) if capture else -1)
                if marker == EXTERNAL_PY:
                    key = id(frame.f_code)
            elif marker == SUPPRESSED:
                lost_suppressed += 1
            del stack[at:]
            if lost_trivial:
                del deferred[-lost_trivial:]
            depth -= closed
            suppressed -= lost_suppressed
            open_threads[0] += (stack[-1][0] < EXTERNAL_PY) - was_open
            if key >= 0:
                if open_codes[key] > 1:
                    open_codes[key] -= 1
                else:
                    del open_codes[key]
            if words:
                emit(words)
            if externals:
                release(externals)

        def unwind(frame: FrameType) -> None:
            """``frame`` runs: close the entries above its own, whose closing events
            were lost."""
            nonlocal stack, deferred, depth, suppressed
            was_open = stack[-1][0] < EXTERNAL_PY
            plan = plan_unwind(frame, True, clock())
            if plan is not None:
                at, words, closed, lost_suppressed, lost_trivial, externals = plan
                del stack[at + 1 :]
                if lost_trivial:
                    del deferred[-lost_trivial:]
                depth -= closed
                suppressed -= lost_suppressed
                open_threads[0] += (stack[-1][0] < EXTERNAL_PY) - was_open
                if words:
                    emit(words)
                release(externals)

        def c_call(caller: int, fid: int, trivial: bool) -> None:
            """A builtin called by the frame of the innermost (IN_SCOPE/DROPPED) entry."""
            nonlocal stack, deferred, depth
            if fid < 0:
                return
            if caller == DROPPED or core._recorded >= max_calls:
                if not trivial:
                    core.dropped += 1
            elif depth < max_depth:
                now = clock()
                frame = stack[-1][1]
                if trivial:
                    deferred += ((fid, now),)
                    stack += ((TRIVIAL_C, frame),)
                    open_threads[0] -= caller < EXTERNAL_PY
                else:
                    words = (external_head | fid << shift, now, -1)
                    core._recorded += 1
                    depth += 1
                    stack += ((EXTERNAL_C, frame),)
                    open_threads[0] -= caller < EXTERNAL_PY
                    emit(words)

        def c_leave(frame: FrameType, raised: bool) -> None:
            """The builtin called by ``frame`` returned or raised: close its entry."""
            nonlocal stack, deferred, depth, suppressed
            marker, top = stack[-1]
            if marker == TRIVIAL_C and top is frame:  # the common case, nothing to emit
                del stack[-1:]
                del deferred[-1:]
                open_threads[0] += stack[-1][0] < EXTERNAL_PY
                return
            was_open = marker < EXTERNAL_PY
            now = clock()
            at = len(stack) - 1
            words: tuple[int, ...] = ()
            closed = lost_suppressed = lost_trivial = 0
            externals: tuple[CodeType, ...] = ()
            if top is not frame:
                plan = plan_unwind(frame, False, now)
                if plan is None:
                    return
                at, words, closed, lost_suppressed, lost_trivial, externals = plan
            marker = stack[at][0]
            slot = -1
            if marker == EXTERNAL_C:
                closed += 1
                if raised:
                    slot = new_slot()  # filled by the RAISE event that follows
                    words += (raise_head, now, slot)
                else:
                    words += (return_head, now, -1)
            elif marker == TRIVIAL_C:
                lost_trivial += 1
            else:
                at += 1  # the call was not recorded: keep the frame's own entry
            del stack[at:]
            if lost_trivial:
                del deferred[-lost_trivial:]
            depth -= closed
            suppressed -= lost_suppressed
            open_threads[0] += (stack[-1][0] < EXTERNAL_PY) - was_open
            if slot >= 0:
                if ident in pending:
                    pending[ident] += [slot]
                else:
                    pending[ident] = [slot]
            if words:
                emit(words)
            if externals:
                release(externals)

        state = _Thread()
        state.stack = stack
        state.enter = enter
        state.enter_external = enter_external
        state.leave = leave
        state.unwind = unwind
        state.c_call = c_call
        state.c_leave = c_leave
        tls.stack = stack
        tls.thread = state
        return state


_LOCAL_EVENTS = frozenset(
    ()
    if _mon is None
    else (
        _mon.events.PY_RETURN,
        _mon.events.PY_YIELD,
        _mon.events.CALL,
        _mon.events.C_RETURN,
        _mon.events.C_RAISE,
    )
)
