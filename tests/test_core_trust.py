"""What the recording cores must get right for a trace to be trusted (issue 19):
the exception recorded for a call is the one it raised, even when C code
swallowed it; calls made through builtins into library code that calls back
into scope are recorded; garbage-collector and finalizer callbacks are marked
as such. Each program runs under every core, with its library part out of
scope, and its calls are compared with the expected ones."""

from __future__ import annotations

import gc
import io
import re
import runpy
import sys
import textwrap
import weakref
from pathlib import Path
from typing import Any

import conftest
import orjson
import pytest

import otel_tracer
from otel_tracer.record.options import RecordOptions
from otel_tracer.record.recorder import Recorder
from otel_tracer.record.scope import Scope
from otel_tracer.trace.model import EXTERNAL, FINALIZER, RAISED, Trace

CORES = pytest.mark.parametrize("core", conftest.CORES)


def record(tmp_path: Path, program: str, library: str, core: str, **options: Any) -> Trace:
    """Run ``program`` as __main__ from ``tmp_path/app`` (the scope), with
    ``library`` importable as ``lib`` from outside the scope, under ``core``."""
    app, lib = tmp_path / "app", tmp_path / "libs"
    app.mkdir()
    lib.mkdir()
    (lib / "lib.py").write_text(textwrap.dedent(library))
    main = app / "main.py"
    main.write_text(textwrap.dedent(program))
    sys.path.insert(0, str(lib))
    sys.modules.pop("lib", None)
    recorder = Recorder(Scope([str(app)]), RecordOptions(**options), core=core)
    try:
        import lib as _  # noqa: F401  (imported untraced: its import is not the point)

        gc.collect()  # no finalizer of an earlier test's objects runs while recording
        # an earlier test that ran the runner in this process ran the atexit
        # handlers, weakref.finalize's among them: finalizers are off after that
        weakref.finalize._shutdown = False  # type: ignore[attr-defined]
        recorder.start()
        try:
            runpy.run_path(str(main), run_name="__main__")
        finally:
            recorder.stop()
    finally:
        sys.path.remove(str(lib))
        sys.modules.pop("lib", None)
    return recorder.build()


def tree(trace: Trace, below: str = "main") -> list[tuple[Any, ...]]:
    """(depth below ``below``'s first call, qualname, flags, value, exception) of
    the calls inside that call, in order."""
    start = next(r for r in range(len(trace)) if trace.function_of(r).qualname == below)
    base = int(trace.calls.depth[start])
    rows = []
    for row in range(start + 1, len(trace)):
        depth = int(trace.calls.depth[row]) - base
        if depth <= 0:
            break
        rows.append(
            (
                depth,
                trace.function_of(row).qualname,
                int(trace.calls.flags[row]),
                trace.value_of(row),
                trace.exception_of(row),
            )
        )
    return rows


def prop(qualname: str) -> str:
    """A property getter's qualified name: Python 3.10 (no ``co_qualname``) finds
    methods through their class, but not property getters."""
    return qualname if sys.version_info >= (3, 11) else qualname.rpartition(".")[2]


SWALLOWING_LIBRARY = """
    class Fallback:
        @property
        def value(self):
            raise AttributeError("no value yet")

        def __getattr__(self, name):
            return "fallback"

    class Strict:
        def __getattribute__(self, name):
            raise AttributeError(name)

        def __getattr__(self, name):
            return "strict-fallback"
"""


@CORES
def test_an_exception_swallowed_in_c_is_not_borrowed(tmp_path: Path, core: str) -> None:
    """A library function called from scope (by the import system, or by the
    attribute lookup that then tries ``__getattr__``) whose exception C code
    swallows ends with its own exception, not with the next one raised by
    unrelated code (or ``<unknown>``)."""
    trace = record(
        tmp_path,
        """
        import lib

        def probe():
            from io import BytesIO  # the import system asks io for __path__
            return BytesIO.__name__

        def read(obj):
            return obj.value

        def later():
            try:
                {}["late"]
            except KeyError:
                pass
            raise ValueError("unrelated")

        def main():
            probe()
            read(lib.Fallback())
            read(lib.Strict())
            try:
                later()
            except ValueError:
                pass

        main()
        """,
        SWALLOWING_LIBRARY,
        core,
    )
    io_getattr = []
    if hasattr(io, "__getattr__"):  # Python 3.10 and 3.11
        try:
            io.__getattr__("__path__")
        except AttributeError as exc:
            raised = ("AttributeError", str(exc))
        io_getattr = [(2, "__getattr__", EXTERNAL | RAISED, None, raised)]
    assert tree(trace) == [
        (1, "probe", 0, "'BytesIO'", None),
        *io_getattr,
        (1, "read", 0, "'fallback'", None),
        (2, prop("Fallback.value"), EXTERNAL | RAISED, None, ("AttributeError", "no value yet")),
        (2, "Fallback.__getattr__", EXTERNAL, "'fallback'", None),
        (1, "read", 0, "'strict-fallback'", None),
        (2, "Strict.__getattribute__", EXTERNAL | RAISED, None, ("AttributeError", "value")),
        (2, "Strict.__getattr__", EXTERNAL, "'strict-fallback'", None),
        (1, "later", RAISED, None, ("ValueError", "unrelated")),
    ]


ITERATING_LIBRARY = """
    def produce(items, convert):
        for item in items:
            yield convert(item)

    class Loader:
        def __init__(self, items, convert):
            self.items, self.convert = items, convert

        def __iter__(self):
            return produce(self.items, self.convert)
"""


@CORES
def test_builtins_running_library_code_that_calls_back_are_recorded(
    tmp_path: Path, core: str
) -> None:
    """``next()`` of a library generator (a data loader's iterator, ``heapq.merge``)
    that calls back into scope is recorded as an external call, the callbacks
    nested under it; the generator's close when it is freed ends with its own
    GeneratorExit."""
    trace = record(
        tmp_path,
        """
        import heapq
        import lib

        def double(x):
            return 2 * x

        def key(x):
            return -x

        def step(it):
            return next(it)

        def train():
            it = iter(lib.Loader([1, 2, 3], double))
            step(it)
            step(it)

        def first():
            return next(heapq.merge([3, 1], [2], key=key))

        def main():
            train()
            first()
            return sorted([2, 1])

        main()
        """,
        ITERATING_LIBRARY,
        core,
    )

    def closed(depth: int, name: str, in_try: bool) -> list[tuple[Any, ...]]:
        """A library generator closed when freed: Python 3.13 does not run one
        that is suspended outside any try block."""
        if sys.version_info >= (3, 13) and not in_try:
            return []
        return [(depth, name, EXTERNAL | RAISED, None, ("GeneratorExit", ""))]

    assert tree(trace) == [
        (1, "train", 0, "None", None),
        (2, "Loader.__init__", EXTERNAL, "None", None),
        (2, "step", 0, "2", None),
        (3, "next", EXTERNAL, None, None),
        (4, "double", 0, "2", None),
        (2, "step", 0, "4", None),
        (3, "next", EXTERNAL, None, None),
        (4, "double", 0, "4", None),
        *closed(1, "produce", in_try=False),  # freed unfinished
        (1, "first", 0, "3", None),
        (2, "next", EXTERNAL, None, None),
        (3, "key", 0, "-3", None),
        (3, "key", 0, "-2", None),
        *closed(2, "merge", in_try=True),  # freed in first()
    ]


# the WeakValueDictionary's removal callback (Python 3.10 has no co_qualname)
REMOVE = "WeakValueDictionary.__init__.<locals>.remove" if sys.version_info >= (3, 11) else "remove"
FINALIZERS = """
    import gc
    import weakref

    class Resource:
        def __init__(self, name):
            self.name = name

        def __del__(self):
            release(self.name)

    class Node:
        pass

    class Watcher:
        def on_gone(self, ref):
            return "gone"

    def release(name):
        return name

    def on_dead(ref):
        return "dead"

    def cleanup(tag):
        return tag

    def on_gc(phase, info):
        return phase

    def work():
        resource = Resource("a")
        del resource  # its __del__ runs here
        node = Node()
        watch = weakref.ref(node, on_dead)
        del node  # the weakref callback runs here
        watcher = Watcher()
        gone = Node()
        watches = [weakref.ref(gone, watcher.on_gone)]
        del gone  # a bound method as the callback
        other = Node()
        weakref.finalize(other, cleanup, "fin")
        del other
        cache = weakref.WeakValueDictionary()
        value = Node()
        cache["k"] = value
        del value  # the dictionary's removal callback
        on_dead(watch)  # called by the program itself: the same function, no finalizer
        return len(cache) + len(watches)

    def main():
        gc.callbacks.append(on_gc)
        try:
            gc.collect()
        finally:
            gc.callbacks.remove(on_gc)
        work()

    main()
"""


@CORES
def test_finalizer_callbacks_are_marked(tmp_path: Path, core: str) -> None:
    """``__del__``, weakref callbacks, ``weakref.finalize`` and ``gc.callbacks``
    hooks run inside whatever in-scope call was running: recorded there (that is
    where they ran), but marked as finalizer calls, not the program's own."""
    trace = record(tmp_path, FINALIZERS, "", core)
    assert tree(trace) == [
        (1, "collect", EXTERNAL, None, None),
        (2, "on_gc", FINALIZER, "'start'", None),
        (2, "on_gc", FINALIZER, "'stop'", None),
        (1, "work", 0, "1", None),
        (2, "Resource.__init__", 0, "None", None),
        (2, "Resource.__del__", FINALIZER, "None", None),
        (3, "release", 0, "'a'", None),
        (2, "on_dead", FINALIZER, "'dead'", None),
        (2, "Watcher.on_gone", FINALIZER, "'gone'", None),
        (2, "finalize.__init__", EXTERNAL, "None", None),
        (2, "finalize.__call__", EXTERNAL | FINALIZER, "'fin'", None),
        (3, "cleanup", 0, "'fin'", None),
        (2, "WeakValueDictionary.__init__", EXTERNAL, "None", None),
        (2, "WeakValueDictionary.__setitem__", EXTERNAL, "None", None),
        (2, REMOVE, EXTERNAL | FINALIZER, "None", None),
        (2, "on_dead", FINALIZER, "'dead'", None),  # the function is one (decided once)
    ]


def test_finalizer_calls_in_the_outputs(tmp_path: Path) -> None:
    """The finalizer flag is in the JSON trace (flag 32, read back), the text
    view tags the call, its span has ``otel_tracer.call.finalizer``."""
    conftest.write_files(tmp_path, {"prog.py": FINALIZERS})
    outputs = ["trace.json", "trace.txt", "trace.otlp.jsonl"]
    args = ["-q", "--no-patterns", "prog.py"] + [a for o in outputs for a in ("-o", o)]
    result = conftest.run_tracer(args, tmp_path)
    assert result.returncode == 0, result.stderr
    doc = orjson.loads((tmp_path / "trace.json").read_bytes())
    flags_at = doc["call_fields"].index("flags")
    names = {
        doc["functions"][row[1]]["qualname"]
        for row in doc["calls"]
        if len(row) > flags_at and row[flags_at] & FINALIZER
    }
    assert names == {
        "on_gc",
        "Resource.__del__",
        "on_dead",
        "Watcher.on_gone",
        "finalize.__call__",
        REMOVE,
    }
    trace = otel_tracer.load(tmp_path / "trace.json")
    marked = [r for r in range(len(trace)) if trace.calls.flags[r] & FINALIZER]
    assert {trace.function_of(r).qualname for r in marked} == names
    text = (tmp_path / "trace.txt").read_text()
    assert re.search(r"Resource.__del__ \[prog.py:\d+\] \(finalizer\)", text), text
    spans = (tmp_path / "trace.otlp.jsonl").read_text()
    assert spans.count('"otel_tracer.call.finalizer"') == len(marked)


LIBRARY_GC_HOOK = """
    def on_collect(phase, info):
        return phase
"""

PROGRAM_WITH_A_LIBRARY_GC_HOOK = """
    import gc

    import lib

    def allocate():
        return [[] for _ in range(50)]  # collections start in the middle of this

    def main():
        threshold = gc.get_threshold()
        gc.callbacks.append(lib.on_collect)
        gc.set_threshold(1)
        try:
            allocate()
        finally:
            gc.set_threshold(*threshold)
            gc.callbacks.remove(lib.on_collect)

    main()
"""


@CORES
def test_a_librarys_gc_hook_is_marked(tmp_path: Path, core: str) -> None:
    """A ``gc.callbacks`` hook of a library (hypothesis installs one) is found in
    the list, its frame's locals unread: where a core records it (as an external
    call of the in-scope code the collector interrupted), it is marked."""
    trace = record(tmp_path, PROGRAM_WITH_A_LIBRARY_GC_HOOK, LIBRARY_GC_HOOK, core)
    rows = tree(trace)
    hooks = [row for row in rows if row[1] == "on_collect"]
    assert all(row[2] == EXTERNAL | FINALIZER for row in hooks), rows
    if core in ("python", "c"):  # the hook-based cores record external Python calls
        assert {row[3] for row in hooks} == {"'start'", "'stop'"}, rows
