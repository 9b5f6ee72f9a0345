"""Edge cases both recording cores must get right, and the same way: generators
resumed by throw() and close(), exceptions thrown into them, C calls whose
c_return is never seen, builtin methods bound to classes, code objects the
registry hides, and hooks interrupted by a signal handler at any point."""

from __future__ import annotations

import gc
import runpy
import sys
import textwrap
import time
import weakref
from array import array
from pathlib import Path
from typing import Any

import conftest
import pytest

from otel_tracer.record import pycore
from otel_tracer.record.options import RecordOptions
from otel_tracer.record.recorder import Recorder
from otel_tracer.record.registry import Registry
from otel_tracer.record.scope import Scope
from otel_tracer.trace.model import EXTERNAL, FINALIZER, RAISED, RESUMED, YIELDED, Trace

# The cores that must record the same traces, which these tests are about: the
# monitoring cores too where sys.monitoring exists (Python 3.12+).
CORES = pytest.mark.parametrize("core", conftest.CORES)


def record(tmp_path: Path, source: str, core: str, **options: Any) -> Trace:
    """Run ``source`` as __main__ from ``tmp_path`` (the scope) under ``core``."""
    main = tmp_path / "main.py"
    main.write_text(textwrap.dedent(source))
    recorder = Recorder(Scope([str(tmp_path)]), RecordOptions(**options), core=core)
    gc.collect()  # no finalizer of an earlier test's objects runs while recording
    recorder.start()
    try:
        runpy.run_path(str(main), run_name="__main__")
    finally:
        recorder.stop()
    return recorder.build()


def calls(trace: Trace, name: str) -> list[tuple[Any, ...]]:
    """(parent, flags, args, value, exception) of each call of the functions named
    ``name``, in order; the parent by its name too."""
    rows = []
    for row in range(len(trace)):
        if trace.function_of(row).name != name:
            continue
        parent = int(trace.calls.parent[row])
        rows.append(
            (
                trace.function_of(parent).name if parent >= 0 else None,
                int(trace.calls.flags[row]),
                trace.args_of(row),
                trace.value_of(row),
                trace.exception_of(row),
            )
        )
    return rows


GENERATOR_EXIT = ("GeneratorExit", "")


@CORES
def test_throw_and_close_resume_the_generator(tmp_path: Path, core: str) -> None:
    """A generator resumed by throw() or close(), explicit or when an unfinished
    one is freed, is resumed, not called again with its arguments."""
    trace = record(
        tmp_path,
        """
        def guarded(n):
            try:
                yield n
            except ValueError:
                yield "caught"

        def closing(n):
            try:
                yield n
            finally:
                pass

        def fresh(n):
            yield n

        def main():
            g = guarded(1)
            next(g)
            g.throw(ValueError("v"))
            g.close()
            c = closing(2)
            next(c)
            c.close()
            next(closing(3))  # then freed unfinished
            any(x > 0 for x in range(5))  # the expression is freed unfinished
            f = fresh(4)
            try:  # thrown into a generator that has not started: its first run
                f.throw(KeyError("fresh"))
            except KeyError:
                pass

        main()
        """,
        core,
    )
    closed = (RESUMED | RAISED, {}, None, GENERATOR_EXIT)
    assert calls(trace, "guarded") == [
        ("next", YIELDED, {"n": "1"}, "1", None),
        ("throw", RESUMED | YIELDED, {}, "'caught'", None),
        ("close", *closed),
    ]
    assert calls(trace, "closing") == [
        ("next", YIELDED, {"n": "2"}, "2", None),
        ("close", *closed),
        ("next", YIELDED, {"n": "3"}, "3", None),
        ("main", *closed),
    ]
    expression = calls(trace, "<genexpr>")
    assert expression[:2] == [
        ("any", YIELDED, {}, "False", None),
        ("any", RESUMED | YIELDED, {}, "True", None),
    ]
    # Python 3.13 does not run a generator closed outside any try block.
    assert expression[2:] == ([] if sys.version_info >= (3, 13) else [("main", *closed)])
    assert calls(trace, "fresh") == [("throw", RAISED, {"n": "4"}, None, ("KeyError", "'fresh'"))]


@CORES
def test_exception_thrown_through_a_generator_is_a_raise(tmp_path: Path, core: str) -> None:
    """An exception thrown into a generator and not caught there ends the call
    with that exception (CPython reports that exit from the suspension point,
    like a yield); one caught there does not make its next ``yield None`` a raise."""
    trace = record(
        tmp_path,
        """
        def gen(n):
            yield n
            yield n + 1

        def parse(items):
            for item in items:
                try:
                    value = int(item)
                except ValueError:
                    value = None
                yield value

        def retry():
            while True:
                try:
                    yield
                except KeyError:
                    pass

        def main():
            g = gen(1)
            next(g)
            try:
                g.throw(KeyError("k"))
            except KeyError:
                pass
            list(parse(["x", "2"]))
            r = retry()
            next(r)
            r.throw(KeyError("again"))
            r.close()

        main()
        """,
        core,
    )
    assert calls(trace, "gen") == [
        ("next", YIELDED, {"n": "1"}, "1", None),
        ("throw", RESUMED | RAISED, {}, None, ("KeyError", "'k'")),
    ]
    assert calls(trace, "parse") == [
        ("main", YIELDED, {"items": "list(len=2)['x', '2']"}, "None", None),
        ("main", RESUMED | YIELDED, {}, "2", None),
        ("main", RESUMED, {}, "None", None),
    ]
    assert calls(trace, "retry") == [
        ("next", YIELDED, {}, "None", None),
        ("throw", RESUMED | YIELDED, {}, "None", None),
        ("close", RESUMED | RAISED, {}, None, GENERATOR_EXIT),
    ]


@CORES
def test_suspensions_in_yield_from_and_await_are_yields(tmp_path: Path, core: str) -> None:
    """Python 3.10 leaves a frame suspended in ``yield from`` or ``await`` one
    instruction before its YIELD_FROM: still a yield."""
    trace = record(
        tmp_path,
        """
        import asyncio

        def count(n):
            yield n
            yield n + 1

        def delegate():
            return (yield from count(2))

        async def child():
            await asyncio.sleep(0)
            return 1

        list(delegate())
        asyncio.run(child())
        """,
        core,
    )
    flags_values = [row[1:4:2] for row in calls(trace, "delegate")]
    assert flags_values == [(YIELDED, "2"), (RESUMED | YIELDED, "3"), (RESUMED, "None")]
    assert [row[1:4:2] for row in calls(trace, "child")] == [(YIELDED, "None"), (RESUMED, "1")]


@CORES
def test_a_lost_c_return_does_not_keep_its_caller_open(tmp_path: Path, core: str) -> None:
    """A C call's entry belongs to its caller's frame: when its c_return is lost
    (here the program removes the hook in it), the caller's next C call or its
    return closes it first."""
    if core in conftest.MONITORING_CORES:
        pytest.skip(
            "sys.setprofile() does not reach a sys.monitoring tool: nothing is lost, "
            "restore()'s setprofile is recorded too (the monitoring core's healing of "
            "a lost C_RETURN: test_moncore.py::test_a_lost_c_return_is_closed_by_the_"
            "frames_next_call)"
        )
    trace = record(
        tmp_path,
        """
        import math
        import sys

        def restore(profile):
            sys.setprofile(profile)

        def helper():
            return 1

        def then_call(profile):
            sys.setprofile(None)  # its c_return is not seen
            restore(profile)  # nor anything else until the hook is back
            math.floor(1.5)
            return helper()

        def then_return(profile):
            sys.setprofile(None)
            restore(profile)
            return 2

        then_call(sys.getprofile())
        then_return(sys.getprofile())
        helper()
        """,
        core,
    )
    rows = {name: calls(trace, name) for name in ("then_call", "then_return", "setprofile")}
    assert [row[0] for row in rows["setprofile"]] == ["then_call", "then_return"]
    assert all(row[1] == EXTERNAL for row in rows["setprofile"])
    assert [row[0] for row in calls(trace, "floor")] == ["then_call"]
    assert [row[0] for row in calls(trace, "helper")] == ["then_call", "<module>"]
    assert [(row[0], row[1], row[3]) for row in rows["then_call"]] == [("<module>", 0, "1")]
    assert [(row[0], row[1], row[3]) for row in rows["then_return"]] == [("<module>", 0, "2")]


@CORES
def test_builtin_methods_bound_to_classes_are_told_apart(tmp_path: Path, core: str) -> None:
    """Builtin methods bound to a class (classmethods, __new__) are named after it:
    the cores' caches tell them apart by that class."""
    trace = record(
        tmp_path,
        """
        class Raw(bytes):
            pass

        class Thing:
            pass

        def convert():
            for _ in range(2):
                bytes.fromhex("00")
                bytearray.fromhex("01")
                Raw.fromhex("02")
                object.__new__(Thing)
                int.__new__(int, 3)
                b"".hex()
                bytes.hex(b"")

        convert()
        """,
        core,
        include_builtins=True,
    )
    names = [
        trace.function_of(row).qualname
        for row in range(len(trace))
        if trace.function_of(row).external and trace.calls.parent[row] >= 0
    ]
    once = [
        "bytes.fromhex",
        "bytearray.fromhex",
        "Raw.fromhex",
        "object.__new__",
        "int.__new__",
        "bytes.hex",
        "bytes.hex",
    ]
    assert [n for n in names if n != "range"] == once * 2


@CORES
def test_hidden_code_objects_stay_alive_while_cached(tmp_path: Path, core: str) -> None:
    """The cores cache code objects by address: one the registry hides (import
    machinery) must be kept alive too, or a new code object could take its
    address and be hidden as well. It is called from scope, where the monitoring
    core (which looks at library code only there) caches it too."""
    hidden = compile("def f():\n    return 1\n", "<frozen importlib._bootstrap_test>", "exec")
    namespace: dict[str, Any] = {}
    exec(hidden, namespace)
    code = weakref.ref(namespace["f"].__code__)
    main = tmp_path / "main.py"
    main.write_text("def call(f):\n    return f()\n")
    scoped: dict[str, Any] = {}
    exec(compile(main.read_text(), str(main), "exec"), scoped)
    recorder = Recorder(Scope([str(tmp_path)]), RecordOptions(), core=core)
    recorder.start()
    try:
        scoped["call"](namespace["f"])
    finally:
        recorder.stop()
    assert [recorder.build().function_of(0).name] == ["call"]  # f is never shown
    del hidden, namespace
    gc.collect()
    assert code() is not None


def test_registry_keeps_hidden_code_objects() -> None:
    registry = Registry(Scope(["/nowhere"]))
    hidden = compile("1", "<frozen importlib._bootstrap_test>", "eval")
    assert registry.code(hidden, sys._getframe()) == (-1, False)
    assert any(kept is hidden for kept in registry.keep)


class Tick(BaseException):
    """The exception of a signal handler that runs inside a hook."""


INTERRUPTED = """
    import json
    import math

    def leaf(i):
        return i + 1

    def items(n):
        for i in range(n):
            yield leaf(i)

    def work(i):
        sorted([i, 1], key=leaf)
        json.dumps([i])
        len([i])
        try:
            math.sqrt(-1)
        except ValueError:
            pass
        return sum(items(2)) + leaf(i)

    for i in range(4):
        try:
            started.append(i)
            work(i)
        except Tick:
            pass
"""

PARENTS = {
    "<module>": {None},
    "work": {"<module>"},
    "leaf": {"work", "items", "sorted"},
    "items": {"work", "sum"},
    "sorted": {"work"},
    "dumps": {"work"},
    "sum": {"work"},
    "sqrt": {"work"},
}


class _Interrupter:
    """Raises Tick right after the ``at``-th call of the functions it wraps, as a
    signal handler does when it runs at the end of a call inside the hook."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.count = 0
        self.armed = False

    def wrap(self, func: Any) -> Any:
        def interrupted(*args: Any) -> Any:
            result = func(*args)
            if self.armed:
                self.count += 1
                if self.count == self.at:
                    raise Tick
            return result

        return interrupted


class _InterruptedRegistry(Registry):
    interrupter: _Interrupter

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if name in ("code", "cfunction", "string", "args", "new_exception_slot"):
            return super().__getattribute__("interrupter").wrap(value)
        return value


class _InterruptedEvents(array):
    interrupter: _Interrupter

    def extend(self, words: Any) -> None:
        self.interrupter.wrap(super().extend)(words)


def _interrupted_run(
    tmp_path: Path, core: str, at: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[Trace, int, int]:
    """Record INTERRUPTED with a Tick raised after the at-th call the hooks make
    (to the registry, and for the Python core to its clock and event buffer).
    Returns the trace, the number of such calls, and of work() calls started."""
    interrupter = _Interrupter(at)
    started: list[int] = []
    recorder = Recorder(Scope([str(tmp_path)]), RecordOptions(), core=core)
    registry = _InterruptedRegistry(recorder.scope)
    registry.interrupter = interrupter
    recorder.registry = registry
    with monkeypatch.context() as patch:
        if core == "python":
            patch.setattr(pycore.time, "perf_counter_ns", interrupter.wrap(time.perf_counter_ns))
        recorder.core = type(recorder.core)(registry, recorder.options)
        if core == "python":
            recorder.core.events = _InterruptedEvents("q")
            recorder.core.events.interrupter = interrupter
        recorder.start()
    try:
        interrupter.armed = True
        runpy.run_path(str(tmp_path / "main.py"), {"Tick": Tick, "started": started}, "__main__")
    except Tick:
        pass  # raised where the program does not catch it
    finally:
        interrupter.armed = False
        recorder.stop()
    return recorder.build(), interrupter.count, len(started)


@CORES
def test_interrupted_hooks_stay_sound(
    tmp_path: Path, core: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However a hook is interrupted, it raises nothing of its own, the program
    gets the handler's exception, and every recorded call keeps its true parent."""
    (tmp_path / "main.py").write_text(textwrap.dedent(INTERRUPTED))
    _, points, _ = _interrupted_run(tmp_path, core, 0, monkeypatch)
    # the C monitoring core caches values and sees library code only where called
    # from scope: it makes the fewest registry calls
    assert points > (25 if core == "monitoring" else 50)
    for at in range(1, points + 1):
        trace, _, started = _interrupted_run(tmp_path, core, at, monkeypatch)
        names = [trace.function_of(row).name for row in range(len(trace))]
        for row, name in enumerate(names):
            if _in_a_collection(trace, row):
                continue  # the collector ran a callback meanwhile (hypothesis installs one)
            parent = int(trace.calls.parent[row])
            assert (names[parent] if parent >= 0 else None) in PARENTS[name], (at, row)
        # Recording goes on after the interruption (at most the call it hit is lost).
        assert names.count("work") >= started - 1, at


def _in_a_collection(trace: Trace, row: int) -> bool:
    """Whether ``row`` is, or runs in, a finalizer or a garbage-collector callback
    (flagged FINALIZER): hypothesis's ``gc.callbacks`` hook, installed by other
    tests of this process, runs where a collection starts."""
    while row >= 0:
        if trace.calls.flags[row] & FINALIZER:
            return True
        row = int(trace.calls.parent[row])
    return False


class _Interrupting(list):
    """A table whose next append is interrupted before it happens, as by a
    signal handler that raises when CPython checks for pending work."""

    interrupt = True

    def append(self, item: object) -> None:
        if self.interrupt:
            self.interrupt = False
            raise KeyboardInterrupt
        super().append(item)


@pytest.mark.parametrize("table", ["strings", "arg_tuples", "exceptions"])
def test_an_interrupted_registry_hands_out_only_indices_it_holds(table):
    """A handler raising in the middle of interning must not leave an index
    without its entry (the JSON writer then failed on the whole trace)."""
    registry = Registry(Scope([]))
    setattr(registry, table, _Interrupting())
    intern = {
        "strings": lambda: registry.string("'step-7'"),
        "arg_tuples": lambda: registry.args((1, 2)),
        "exceptions": lambda: registry.fill_exception_slots(
            [registry.new_exception_slot()], KeyError("k")
        ),
    }[table]
    with pytest.raises(KeyboardInterrupt):
        intern()
    intern()
    intern()
    entries = getattr(registry, table)
    assert len(entries) == 1
    if table == "strings":
        assert registry.string("'step-7'") == 0 and entries == ["'step-7'"]
    elif table == "arg_tuples":
        assert registry.args((1, 2)) == 0 and entries == [(1, 2)]
    else:
        assert registry.exception_slots[-2:] == [0, 0]
