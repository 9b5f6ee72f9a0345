"""Tables the recording cores fill on first sight: functions, strings, argument
tuples, threads and exceptions. Only cache misses reach this module; the hot
path works with the integer indices it hands out."""

from __future__ import annotations

import builtins
import gc
import os
import sys
import threading
import weakref
from dataclasses import dataclass, field
from types import CodeType, FrameType, FunctionType, MethodType
from typing import Any

from otel_tracer.record.program_errors import from_signal_handler
from otel_tracer.record.scope import Scope
from otel_tracer.record.summary import summarize_exception
from otel_tracer.trace.redact import REDACTED, SecretNames
from otel_tracer.trace.tables import Function

CO_VARARGS = 0x04
CO_VARKEYWORDS = 0x08
CO_RESUMABLE = 0x20 | 0x80 | 0x200  # generator, coroutine, async generator
CO_ASYNC = 0x80 | 0x100 | 0x200  # coroutine, generator-based coroutine, async generator
MAX_TASK_NAME = 200  # characters of a task's name kept
HIDDEN_FILES = ("<frozen importlib", "<frozen zipimport")
HIDDEN_BUILTINS = frozenset({"__build_class__", "__import__"})
_BUILTIN_TYPES = frozenset(
    v for v in vars(builtins).values() if isinstance(v, type) and v.__module__ == "builtins"
)


def argument_names(code: CodeType) -> tuple[str, ...]:
    """Names of a code object's parameters, ``*args`` and ``**kwargs`` included;
    the hidden ``.0`` iterator parameter of comprehensions is left out."""
    count = code.co_argcount + code.co_kwonlyargcount
    count += bool(code.co_flags & CO_VARARGS) + bool(code.co_flags & CO_VARKEYWORDS)
    return tuple(name for name in code.co_varnames[:count] if not name.startswith("."))


def _is_builtin(func: object) -> bool:
    return getattr(func, "__self__", None) is builtins


# Library functions that run finalizers: weakref.finalize and multiprocessing's
# Finalize objects, called by the weakref callback of the object they watch.
FINALIZER_FUNCTIONS = frozenset(
    {("weakref", "finalize.__call__"), ("multiprocessing.util", "Finalize.__call__")}
)
GC_PHASES = ("start", "stop")
# Library modules whose functions are looked at as possible weakref callbacks
# (their dictionaries' and sets' removals): the arguments of other library code
# are never read, as reading them gives the frame a snapshot of its locals.
WEAKREF_MODULES = ("weakref", "_weakrefset")


def is_finalizer(
    code: CodeType, frame: FrameType, module: str, qualname: str, in_scope: bool
) -> bool:
    """Whether a function, seen first in ``frame`` as it starts, is run by the
    garbage collector or a finalizer rather than called by the code it runs in:
    ``__del__``; a weakref callback (its first argument, after ``self``, a dead weak reference:
    ``WeakValueDictionary``'s and ``WeakSet``'s removals too); ``weakref.finalize``;
    a ``gc.callbacks`` hook (one of the list's, or in scope ``(phase, info)`` with
    ``info["generation"]``). Decided
    once per function, at its first call, with no cost on the recording's hot path."""
    if code.co_name == "__del__" or (module, qualname) in FINALIZER_FUNCTIONS:
        return True
    if code.co_argcount >= 2 and _in_gc_callbacks(code):
        return True
    if not code.co_argcount or not (in_scope or module in WEAKREF_MODULES):
        return False
    try:
        local = frame.f_locals
        names = code.co_varnames[: code.co_argcount]
        if names[0] in ("self", "cls"):  # a bound method given as the callback
            names = names[1:]
        first = local.get(names[0]) if names else None
        if isinstance(first, weakref.ReferenceType):
            return first() is None
        if len(names) >= 2 and type(first) is str and first in GC_PHASES:
            info = local.get(names[1])
            return type(info) is dict and "generation" in info and "collected" in info
    except Exception:  # an odd frame: not a finalizer we can tell
        pass
    return False


def _in_gc_callbacks(code: CodeType) -> bool:
    """Whether ``code`` is that of a function, or bound method, in ``gc.callbacks``:
    found there rather than in the frame, so that a library's hook is told too
    without reading its locals."""
    for callback in gc.callbacks:
        function = callback.__func__ if type(callback) is MethodType else callback
        if type(function) is FunctionType and function.__code__ is code:
            return True
    return False


def _qualname(code: CodeType, frame: FrameType) -> str:
    """The qualified name of the function running ``code``. Python 3.10 has no
    ``co_qualname``: methods are then found through ``self``/``cls``'s classes."""
    qualname = getattr(code, "co_qualname", None)
    if qualname is not None:
        return qualname
    if code.co_argcount and code.co_varnames[0] in ("self", "cls"):
        owner = frame.f_locals.get(code.co_varnames[0])
        for klass in (owner if isinstance(owner, type) else type(owner)).__mro__:
            member = vars(klass).get(code.co_name)
            member = getattr(member, "__func__", member)  # classmethod/staticmethod
            if getattr(member, "__code__", None) is code:
                return f"{klass.__qualname__}.{code.co_name}"
    return code.co_name


@dataclass
class Registry:
    """Interning tables shared by both cores."""

    scope: Scope
    include_builtins: bool = False
    secrets: SecretNames | None = None  # argument names whose values are never summarized
    functions: list[Function] = field(default_factory=list)
    strings: list[str] = field(default_factory=list)
    arg_tuples: list[tuple[int, ...]] = field(default_factory=list)
    threads: list[tuple[int, int, str]] = field(default_factory=list)
    exceptions: list[tuple[str, str]] = field(default_factory=list)
    exception_slots: list[int] = field(default_factory=list)
    # per slot: the line the call's frame was at when the exception left it (0: unknown)
    exception_lines: list[int] = field(default_factory=list)
    keep: list[object] = field(default_factory=list)
    # Index of strings[0] / arg_tuples[0]: the entries below were streamed to the
    # spool and let go of (``forget``); their indices stay valid in the trace.
    strings_base: int = 0
    args_base: int = 0

    def __post_init__(self) -> None:
        self._string_ids: dict[str, int] = {}
        self._arg_ids: dict[tuple[int, ...], int] = {}
        self._cfunc_ids: dict[tuple[str, str], int] = {}
        self._exc_ids: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def code(self, code: CodeType, frame: FrameType) -> tuple[int, bool]:
        """Register a Python code object: (function index, in scope). The index is
        -1 for import machinery, which is never shown as an external call. The
        cores cache the answer by the code object's address: every code object
        passed here is kept alive, so that no other one takes its address."""
        if code.co_filename.startswith(HIDDEN_FILES):
            with self._lock:
                self.keep.append(code)
            return -1, False
        in_scope = code.co_filename in self.scope
        module = frame.f_globals.get("__name__") or ""
        module = module if isinstance(module, str) else ""
        qualname = _qualname(code, frame)
        info = Function(
            name=code.co_name,
            qualname=qualname,
            module=module,
            file=code.co_filename,
            line=code.co_firstlineno,
            external=not in_scope,
            argnames=argument_names(code) if in_scope else (),
            finalizer=is_finalizer(code, frame, module, qualname, in_scope),
        )
        with self._lock:
            self.keep.append(code)
            self.functions.append(info)
            return len(self.functions) - 1, in_scope

    def cfunction(self, func: object) -> tuple[int, bool]:
        """Register a C function called from scope: (function index, trivial builtin).
        The index is -1 for machinery never shown (``__build_class__``, whose class
        body then appears as a call of the module that defines the class)."""
        if getattr(func, "__name__", None) in HIDDEN_BUILTINS and _is_builtin(func):
            return -1, True
        owner = getattr(func, "__self__", None)
        qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", "?")
        module = getattr(func, "__module__", None)
        if module is None:
            module = type(owner).__module__ if owner is not None else ""
        trivial = not self.include_builtins and (
            module == "builtins" or type(owner) in _BUILTIN_TYPES
        )
        key = (module, qualname)
        with self._lock:
            index = self._cfunc_ids.get(key)
            if index is None:
                name = getattr(func, "__name__", qualname)
                self.functions.append(Function(name, qualname, module, "", 0, True))
                index = self._cfunc_ids[key] = len(self.functions) - 1
            return index, trivial

    def string(self, text: str) -> int:
        """Intern a summary string."""
        index = self._string_ids.get(text)
        if index is None:
            with self._lock:
                index = _intern(text, self._string_ids, self.strings, self.strings_base)
        return index

    def args(self, summary_ids: tuple[int, ...]) -> int:
        """Intern a tuple of argument summary string indices."""
        index = self._arg_ids.get(summary_ids)
        if index is None:
            with self._lock:
                index = _intern(summary_ids, self._arg_ids, self.arg_tuples, self.args_base)
        return index

    def forget(self, strings: int, args: int, core: object) -> None:
        """Let go of the strings below index ``strings`` and the argument tuples
        below ``args`` (streamed to the spool), and of the tables that find an
        entry again: a value seen again is interned anew. ``core`` empties its
        own caches meanwhile (the C core's ``forget``), so that no index is
        handed out between the two."""
        with self._lock:
            del self.strings[: strings - self.strings_base]
            self.strings_base = strings
            self._string_ids.clear()
            del self.arg_tuples[: args - self.args_base]
            self.args_base = args
            self._arg_ids.clear()
            forget_caches = getattr(core, "forget", None)
            if forget_caches is not None:
                forget_caches(strings, args)

    def is_secret(self, name: str) -> bool:
        """Whether the cores record the values of arguments named ``name`` as
        ``[redacted]`` (``redacted``), without summarizing them."""
        return self.secrets is not None and self.secrets.is_secret(name)

    def task(self) -> int:
        """The string index of the name of the asyncio task running now (a
        resumption of a coroutine records it), -1 when there is none. Reads the
        program's asyncio only if it imported it, never runs the program's code."""
        asyncio = sys.modules.get("asyncio")
        try:
            loop = asyncio._get_running_loop() if asyncio is not None else None
            task = asyncio.current_task(loop) if loop is not None else None
            if task is None:
                return -1
            if isinstance(task, asyncio.Task):
                name = asyncio.Task.get_name(task)  # not an override of the program's
            else:
                name = f"<{type(task).__qualname__}>"
        except Exception as error:  # an odd asyncio (replaced, patched): no task
            if from_signal_handler(error):
                raise
            return -1
        return self.string(name[:MAX_TASK_NAME] if type(name) is str else "<task>")

    def redacted(self) -> int:
        """The string index of ``[redacted]``."""
        return self.string(REDACTED)

    def thread(self) -> int:
        """Register the calling thread, by the ids it has now: in a forked child,
        ``Thread.native_id`` may still hold the parent's thread's (seen on 3.11)."""
        name = threading.current_thread().name
        native_id = threading.get_native_id() if hasattr(threading, "get_native_id") else 0
        with self._lock:
            self.threads.append((threading.get_ident(), native_id, name, os.getpid()))
            return len(self.threads) - 1

    def new_exception_slot(
        self, frame: FrameType | None = None, exc: object = None, seen: int = 0
    ) -> int:
        """A slot for an exception whose details are not yet known (-1 = unknown),
        that ended the call of ``frame`` (None: a C function's call), ``exc`` when
        it is known, with the line the frame was at (``unwind_line``)."""
        line = 0 if frame is None else unwind_line(frame, exc, seen)
        with self._lock:
            self.exception_slots.append(-1)
            self.exception_lines.append(line)
            return len(self.exception_slots) - 1

    def fill_exception_slots(self, slots: list[int], exc: BaseException) -> None:
        """Record ``exc`` as the exception that ended the calls owning ``slots``.

        Only its summary is kept, never the object: holding it would keep its
        traceback's frames (and their locals) alive."""
        summary = summarize_exception(exc)
        with self._lock:
            index = _intern(summary, self._exc_ids, self.exceptions, 0)
            for slot in slots:
                self.exception_slots[slot] = index


def unwind_line(frame: FrameType, exc: object, seen: int = 0) -> int:
    """The line ``frame`` shows in the traceback of ``exc`` as it leaves the frame:
    the traceback's newest entry when it is the frame's (a re-raise keeps the
    line of the first raise, as Python prints it); else ``seen``, the line of the
    frame's last exception event (a legacy core that no longer knows ``exc``: a
    bare ``raise`` or a ``finally`` re-raises without an event), else the
    frame's line now."""
    tb = getattr(exc, "__traceback__", None) if isinstance(exc, BaseException) else None
    if tb is not None and tb.tb_frame is frame:
        return tb.tb_lineno or 0
    return seen or frame.f_lineno or 0


def _intern(key: Any, ids: dict[Any, int], table: list[Any], base: int) -> int:
    """The index of ``key`` in ``table`` (numbered from ``base``), appended when new
    (holding the registry's lock). The entry goes into ``table`` before ``ids``:
    a signal handler that raises between the two (CPython runs handlers after
    C calls too) leaves an unused entry, never an index without its entry."""
    index = ids.get(key)
    if index is None:
        index = base + len(table)
        table.append(key)
        ids[key] = index
    return index
