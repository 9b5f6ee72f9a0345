"""The C recording core (otel_tracer/record/_ctracer.c) records exactly what the
pure-Python core (otel_tracer/record/pycore.py) records.

Every program below runs under both cores with the same options; the traces
must have the same calls, per thread and in order, with the same function,
parent, depth, flags, arguments, return value and exception (times differ).

The C core must build wherever these tests run (gcc is there in CI): a missing
extension fails this module unless OTEL_TRACER_ALLOW_NO_C=1 is set.
"""

from __future__ import annotations

import asyncio  # noqa: F401 - imported before recording, as the programs use them
import functools  # noqa: F401
import json  # noqa: F401
import math  # noqa: F401
import os
import runpy
import sys
import textwrap
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import programs
import pytest
from core_equivalence import MONITORING, assert_cores_agree, cases, record, structure

from otel_tracer.record.options import RecordOptions
from otel_tracer.record.recorder import Recorder, core_class
from otel_tracer.record.registry import Registry
from otel_tracer.record.scope import Scope
from otel_tracer.trace.model import RAISED, UNFINISHED

try:
    from otel_tracer.record._ctracer import CCore
except ImportError as error:
    if os.environ.get("OTEL_TRACER_ALLOW_NO_C") != "1":
        raise ImportError(
            f"the C core otel_tracer.record._ctracer is not built ({error}); build it with "
            "`pip install -e .`, or set OTEL_TRACER_ALLOW_NO_C=1 to skip these tests"
        ) from error
    pytest.skip("C core not built (OTEL_TRACER_ALLOW_NO_C=1)", allow_module_level=True)


PROGRAMS: dict[str, dict[str, str]] = {
    "recursion": {
        "main.py": programs.RECURSION,
    },
    "classes": {
        "main.py": programs.CLASSES,
    },
    "arguments": {
        "main.py": """
            import math

            def f(a, b=2, *args, c, d=4, **kwargs):
                return a

            def g(x, /, y):
                return x

            def h(*, only):
                return only

            def closure(v):
                def inner(w):
                    return v + w
                return inner(1)

            lam = lambda q, r=1: q * r  # noqa: E731

            f(1, c=3)
            f(1, 2, 3, 4, c=5, e=6)
            g(1, y=2)
            h(only=None)
            closure(10)
            lam(3)
            [lam(i) for i in range(3)]
            {k: lam(k) for k in "ab"}
            list(lam(i) for i in range(2))
            f("s" * 100, [1, 2], c={"k": (1, 2)}, big=2**200, neg=-2**70, fl=1.5, by=b"x",
              none=None, t=True, cx=1j, st={1}, fs=frozenset(), ty=int, fn=f, m=math)
            f(-3, 10**5, "x", "", 0.1, float("nan"), -0.0, c=False)
        """,
    },
    "generators": {
        "main.py": """
            def count(n):
                for i in range(n):
                    received = yield i
                    if received:
                        yield received

            def delegate():
                result = yield from count(2)
                return result

            def guarded():
                try:
                    yield 1
                    yield 2
                except ValueError as e:
                    yield str(e)
                finally:
                    pass

            def simple():
                yield 1
                yield 2

            list(count(3))
            g = count(3)
            next(g)
            g.send("hello")
            next(g)
            g.close()
            list(delegate())
            gg = guarded()
            next(gg)
            gg.throw(ValueError("thrown"))
            gg.close()
            s = simple()
            next(s)
            s.close()
            s2 = simple()
            next(s2)
            try:
                s2.throw(KeyError("k"))
            except KeyError:
                pass
            sum(x * x for x in range(4))
        """,
    },
    "async": {
        "main.py": """
            import asyncio

            async def leaf(x):
                await asyncio.sleep(0)
                return x * 2

            async def failing():
                await asyncio.sleep(0)
                raise ValueError("async fail")

            async def agen(n):
                for i in range(n):
                    await asyncio.sleep(0)
                    yield i

            async def main():
                a = await leaf(1)
                b = await asyncio.gather(leaf(2), leaf(3))
                try:
                    await failing()
                except ValueError:
                    pass
                items = [i async for i in agen(2)]
                return a, b, items

            asyncio.run(main())
        """,
    },
    "exceptions": {
        "main.py": """
            import json
            import math

            class AppError(Exception):
                pass

            def inner(x):
                if x > 2:
                    raise AppError(f"too big: {x}")
                return x

            def middle(x):
                try:
                    return inner(x)
                finally:
                    pass

            def outer():
                results = []
                for x in range(5):
                    try:
                        results.append(middle(x))
                    except AppError as e:
                        results.append(str(e))
                return len(results)

            def c_errors():
                try:
                    math.sqrt(-1)
                except ValueError:
                    pass
                try:
                    divmod(1, 0)
                except ZeroDivisionError:
                    pass
                try:
                    {}["missing"]
                except KeyError:
                    pass
                try:
                    json.loads("{bad")
                except json.JSONDecodeError:
                    pass

            def chained():
                try:
                    inner(10)
                except AppError as e:
                    raise RuntimeError("wrapped") from e

            def reraise():
                try:
                    chained()
                except RuntimeError:
                    raise

            def uncaught():
                inner(99)

            outer()
            c_errors()
            try:
                reraise()
            except RuntimeError:
                pass
            uncaught()
        """,
    },
    "callbacks": {
        "main.py": """
            import functools
            import json

            def key(x):
                return -x

            def double(x):
                return x * 2

            def default(o):
                return sorted(o)

            def add(a, b):
                return a + b

            sorted([3, 1, 2], key=key)
            list(map(double, [1, 2]))
            json.dumps({"s": {1, 2}}, default=default)
            functools.reduce(add, [1, 2, 3])
            min([4, 5], key=key)
            max(range(3), key=lambda v: v % 2)
            any(double(x) for x in range(2))
            sorted([[2], [1]], key=lambda item: sorted(item, key=key))
        """,
    },
    "threads": {
        "main.py": programs.THREADS,
    },
    "modules": {
        "main.py": """
            import os
            import sys

            sys.path.insert(0, os.path.dirname(__file__))
            try:
                import helper

                helper.Counter(2).run()
            finally:
                sys.path.pop(0)
                sys.modules.pop("helper", None)
        """,
        "helper.py": """
            class Counter:
                def __init__(self, n):
                    self.n = n

                def run(self):
                    return [self.step(i) for i in range(self.n)]

                def step(self, i):
                    return i + self.n
        """,
    },
}

PROGRAMS["hook_swap"] = {  # code that saves, replaces and restores the hooks
    "main.py": """
        import sys

        def quiet():
            return 1

        def loud(x):
            return x

        def swap():
            profile, trace = sys.getprofile(), sys.gettrace()
            sys.setprofile(None)
            sys.settrace(None)
            quiet()
            sys.settrace(trace)
            sys.setprofile(profile)
            return loud(2)

        def swap_profile():
            profile = sys.getprofile()
            sys.setprofile(None)
            quiet()
            sys.setprofile(profile)
            return loud(3)

        swap()
        swap_profile()
        loud(4)
    """,
}

PROGRAMS["lost_c_return"] = {  # a C call's c_return is never seen
    "main.py": """
        import math
        import sys

        saved = []

        def restore():
            sys.setprofile(saved.pop())

        def helper():
            return 1

        def then_call():
            saved.append(sys.getprofile())
            sys.setprofile(None)
            restore()
            math.floor(1.5)
            return helper()

        def then_return():
            saved.append(sys.getprofile())
            sys.setprofile(None)
            restore()
            return 2

        then_call()
        then_return()
        helper()
    """,
}

PROGRAMS["throw_close"] = {  # generators resumed by throw() and close()
    "main.py": """
        def gen(n):
            yield n
            yield n + 1

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

        def delegate():
            return (yield from gen(1))

        def main():
            g = guarded(1)
            next(g)
            g.throw(ValueError("v"))
            g.close()
            next(closing(2))
            any(x > 0 for x in range(5))
            try:
                gen(3).throw(KeyError("fresh"))
            except KeyError:
                pass
            g = gen(4)
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
            d = delegate()
            next(d)
            try:
                d.throw(KeyError("through"))
            except KeyError:
                pass

        main()
    """,
}

PROGRAMS["class_methods"] = {  # builtin methods bound to classes
    "main.py": """
        class Raw(bytes):
            pass

        def convert():
            for _ in range(2):
                bytes.fromhex("00")
                bytearray.fromhex("01")
                Raw.fromhex("02")
                object.__new__(Raw)
                int.__new__(int, 3)
                dict.fromkeys("ab")

        convert()
    """,
}

PROGRAMS["value_kinds"] = {  # summaries cached per type and interned in C
    "main.py": """
        import enum

        class Point:
            def __init__(self, x, y):
                self.x, self.y = x, y

        class Point3(Point):
            pass

        class Color(enum.IntEnum):
            RED = 1

        class Name(str):
            pass

        class Grid:
            shape = (2, 3)
            dtype = "float32"

        class Later:
            pass

        def take(a, b=None, c=None, d=None, *rest):
            return a

        def run():
            for i in range(300):
                take(Point(i, -i), Point3(i / 7, 1.5))
                take(i * 1.1, f"unique-{i}", i * 2**40, -i * 2**70)
                take(Color.RED, Name("n"), Grid(), Later())
                take("x" * (60 + i % 10), "\\x00" * (i % 70), b"b" * i, 2**130 + i)
                take([Point(0, 0)], (i,), {"k": Point}, {i}, frozenset(), take, Point)
                if i == 100:
                    Later.__qualname__ = "Renamed"
                if i == 150:
                    Later.__module__ = "elsewhere"
                if i == 200:
                    Later.shape = [4]
                    Later.dtype = "int8"
                if i == 250:
                    Point.__qualname__ = "Base"  # Point3 is not renamed

        run()
    """,
}

PROGRAMS["trust"] = {  # issue 19: swallowed exceptions, builtins calling back, finalizers
    "main.py": """
        import heapq
        import weakref

        class Resource:
            def __del__(self):
                note("del")

        class Node:
            pass

        def note(x):
            return x

        def key(x):
            return -x

        def on_dead(ref):
            return "dead"

        def steps():
            it = heapq.merge([3, 1], [2], key=key)
            next(it)
            return next(it)  # closed as the frame is freed

        def main():
            from io import BytesIO  # io.__getattr__('__path__') raises, C swallows it
            steps()
            first = next(iter(heapq.merge([5], [4], key=key)))
            resource = Resource()
            del resource
            node = Node()
            watch = weakref.ref(node, on_dead)
            del node
            other = Node()
            weakref.finalize(other, note, "fin")
            del other
            try:
                {}["late"]
            except KeyError:
                pass
            return BytesIO, first, watch

        main()
    """,
}


def write_program(directory: Path, name: str) -> Path:
    for filename, source in PROGRAMS[name].items():
        (directory / filename).write_text(textwrap.dedent(source))
    return directory / "main.py"


# Programs that replace the profile and trace hooks: the sys.monitoring cores
# never see that, and are compared with each other only.
HOOK_PROGRAMS = ("hook_swap", "lost_c_return")


@pytest.mark.parametrize(("program", "option"), cases(list(PROGRAMS)))
def test_same_trace_as_python_core(tmp_path: Path, program: str, option: str) -> None:
    """Every core (c; from 3.12 pymonitoring and monitoring too) records what
    the Python core records (see tests/core_equivalence.py)."""
    main = write_program(tmp_path, program)
    assert_cores_agree(tmp_path, main, option, program not in HOOK_PROGRAMS)


def test_string_table_shared_with_python(tmp_path: Path) -> None:
    """The C core interns new texts into the registry's own table: Registry.string
    (called directly, or by the Python core on the same registry) agrees with it."""
    main = write_program(tmp_path, "value_kinds")
    (tmp_path / "more.py").write_text(
        "def f(x):\n    return x\n\nf('more')\nf(1.25)\n"
        "for n in (10**12, 2**63, -(2**63), 10**12, 2**63, 4096, 7, 4096):\n    f(n)\n"
    )
    registry = Registry(Scope([str(tmp_path)]))
    first = registry.string("'unique-7'")
    for core, program in ((CCore, main), (core_class("python"), main), (CCore, "more.py")):
        recorder = core(registry, RecordOptions())
        recorder.start()
        try:
            runpy.run_path(str(tmp_path / program), run_name="__main__")
        finally:
            recorder.stop()
        registry.string(f"between {core.name}")
    assert registry.string("'unique-7'") == first == 0
    assert registry.string("a text never seen") == len(registry.strings) - 1
    assert len(registry.strings) == len(registry._string_ids) > 1500
    assert all(registry.strings[i] == text for text, i in registry._string_ids.items())
    assert {"<__main__.Renamed>", "<elsewhere.Renamed>", "'more'", "1.25"} <= set(registry.strings)
    # ints, cached by value in C (those that fit in 64 bits): one entry per text
    numbers = [str(n) for n in (10**12, 2**63, -(2**63), 4096, 7)]
    assert all(registry.strings.count(text) == 1 for text in numbers)
    # argument tuples: the C core appends to the registry's own table too
    assert len(registry.arg_tuples) == len(registry._arg_ids) > 10
    assert all(registry.arg_tuples[i] == ids for ids, i in registry._arg_ids.items())
    assert registry.args((registry.string("10**99 never"),)) == len(registry.arg_tuples) - 1
    assert registry.args((registry._string_ids["4096"],)) < len(registry.arg_tuples) - 1


# The cores in C: on the profile API, and from 3.12 on sys.monitoring.
C_CORES = ["c", *(["monitoring"] if MONITORING else [])]
# Every core, to compare the C ones with.
ALL_CORES = ["python", "c", *(["pymonitoring", "monitoring"] if MONITORING else [])]


def test_c_core_is_selected() -> None:
    assert core_class("c") is CCore
    assert CCore.name == "c"
    if not MONITORING:
        assert core_class("auto") is CCore
        return
    from otel_tracer.record._ctracer import MonCore  # type: ignore[attr-defined]

    from otel_tracer.record.moncore import MonitoringCore

    # from 3.12, "auto" is the sys.monitoring core, in C
    assert core_class("auto") is core_class("monitoring") is MonCore
    assert core_class("pymonitoring") is MonitoringCore
    assert (MonCore.name, MonitoringCore.name) == ("c-monitoring", "monitoring")


def test_interface(tmp_path: Path) -> None:
    main = write_program(tmp_path, "recursion")
    recorder, trace = record(tmp_path, main, "c")
    core = recorder.core
    assert isinstance(core, CCore)
    assert core.registry is recorder.registry
    assert core.options is recorder.options
    assert core.dropped == 0
    words = np.frombuffer(core.events, dtype=np.int64)
    assert len(words) == len(core.events) == 2 * 3 * len(trace)
    view = memoryview(core.events)
    assert (view.format, view.itemsize, view.ndim) == ("q", 8, 1)
    assert view.tolist() == words.tolist()
    times = words[1::3]
    assert np.all(np.diff(times) >= 0)  # one thread: event times never go back
    assert recorder._clock_base[0] <= times[0] and times[-1] <= recorder._stop_time
    assert recorder._stop_time <= core.clock()  # events are on the core's clock


def test_clock_follows_clock_monotonic(tmp_path: Path) -> None:
    """The core's clock (from the TSC once calibrated, where the kernel's clock
    source is the TSC) never goes back and stays on CLOCK_MONOTONIC's time, across
    many calibrations (one per 65,536 reads)."""
    main = write_program(tmp_path, "recursion")
    core = record(tmp_path, main, "c")[0].core
    clock = core.clock
    previous = clock()
    worst = 0
    for _ in range(40):
        readings = [clock() for _ in range(20_000)]
        reference = time.monotonic_ns()
        after = clock()
        assert previous <= readings[0] and all(np.diff(readings) >= 0) and readings[-1] <= after
        worst = max(worst, abs(after - reference))
        previous = after
    assert worst < 1_000_000  # 1 ms: the readings are ns apart, the calibration's error us


def test_buffer_views_survive_growth(tmp_path: Path) -> None:
    """A view taken while recording keeps its memory valid when the buffer
    grows under it, and the recording is unaffected."""
    loop = tmp_path / "loop.py"
    loop.write_text("def f(i):\n    return i\n\nfor i in range(5000):\n    f(i)\n")
    recorder = Recorder(Scope([str(tmp_path)]), RecordOptions(), core="c")
    recorder.start()
    runpy.run_path(str(loop))
    view = memoryview(recorder.core.events)
    runpy.run_path(str(loop))  # the buffer grows while the view is held
    early = np.frombuffer(view, dtype=np.int64).copy()
    view.release()
    recorder.stop()
    trace = recorder.build()
    assert len(trace) == 2 * 5001
    assert len(early) == 5001 * 2 * 3
    words = np.frombuffer(recorder.core.events, dtype=np.int64)
    assert early.tolist() == words[: len(early)].tolist()


def test_stop_removes_hooks(tmp_path: Path) -> None:
    main = write_program(tmp_path, "recursion")
    record(tmp_path, main, "c")
    assert sys.getprofile() is None
    assert sys.gettrace() is None
    assert threading.getprofile() is None


def test_other_threads_stop_recording(tmp_path: Path) -> None:
    """A thread still running at stop() records nothing more and drops its hooks."""
    (tmp_path / "late.py").write_text(
        textwrap.dedent(
            """
            import sys

            def step(i):
                return i

            def body(started, go_on, done, result):
                step(1)
                started.set()
                go_on.wait()
                step(2)
                result.append(sys.getprofile())
                done.set()
            """
        )
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import late  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
        sys.modules.pop("late", None)
    started, go_on, done, result = threading.Event(), threading.Event(), threading.Event(), []
    recorder = Recorder(Scope([str(tmp_path)]), RecordOptions(), core="c")
    recorder.start()
    thread = threading.Thread(target=late.body, args=(started, go_on, done, result), name="late")
    thread.start()
    started.wait(5)
    recorder.stop()
    words = len(recorder.core.events)
    go_on.set()
    done.wait(5)
    thread.join(5)
    assert result == [None]
    assert len(recorder.core.events) == words
    trace = recorder.build()
    steps = [trace.function_of(r).qualname for r in range(len(trace))]
    assert steps.count("step") == 1 and "body" in steps


@pytest.mark.parametrize("core", ALL_CORES)
def test_exceptions_are_not_kept_alive(tmp_path: Path, core: str) -> None:
    (tmp_path / "keep.py").write_text(
        textwrap.dedent(
            """
            import gc
            import json
            import weakref

            class Boom(Exception):
                pass

            def fail():
                raise Boom("x")

            def catch():
                try:
                    fail()
                except Boom as e:
                    return weakref.ref(e)

            def external():
                try:
                    json.loads("{")
                except ValueError as e:
                    return weakref.ref(e)

            gc.disable()
            try:
                refs = [catch(), external()]
                ALIVE = [ref() is not None for ref in refs]
            finally:
                gc.enable()
            """
        )
    )
    recorder = Recorder(Scope([str(tmp_path)]), RecordOptions(), core=core)
    recorder.start()
    try:
        namespace = runpy.run_path(str(tmp_path / "keep.py"))
    finally:
        recorder.stop()
    assert namespace["ALIVE"] == [False, False]
    trace = recorder.build()
    raised = {
        trace.function_of(r).qualname: trace.exception_of(r)
        for r in range(len(trace))
        if trace.exception_of(r) is not None
    }
    assert raised["fail"] == ("<run_path>.Boom", "x")
    assert raised["loads"][0] == "json.decoder.JSONDecodeError"


class _FailingRegistry(Registry):
    """A registry whose string/args tables always fail."""

    def string(self, text: str) -> int:
        raise RuntimeError("string table broken")

    def args(self, summary_ids: tuple[int, ...]) -> int:
        raise RuntimeError("args table broken")


@pytest.mark.parametrize("name", C_CORES)
def test_registry_failures_stay_out_of_the_program(tmp_path: Path, name: str) -> None:
    main = write_program(tmp_path, "exceptions")
    registry = _FailingRegistry(Scope([str(tmp_path)]))
    core = core_class(name)(registry, RecordOptions())
    core.start()
    try:
        with pytest.raises(Exception, match="too big: 99"):
            runpy.run_path(str(main), run_name="__main__")
    finally:
        words = core.stop()
    events = np.frombuffer(core.events, dtype=np.int64)[:words].reshape(-1, 3)
    assert len(events) > 10
    assert (events[:, 0] & 15 == 1).any()  # calls recorded, their arguments unknown
    assert (events[events[:, 0] & 15 == 1, 2] == -1).all()


def test_speed_report(tmp_path: Path) -> None:
    """Not a limit: prints what one recorded call costs with each core."""
    (tmp_path / "fib.py").write_text(
        "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\nfib(18)\n"
    )
    runpy.run_path(str(tmp_path / "fib.py"))
    begin = time.perf_counter_ns()
    runpy.run_path(str(tmp_path / "fib.py"))
    untraced = time.perf_counter_ns() - begin
    report = [f"untraced {untraced / 1e6:.1f} ms"]
    for core in ("python", "c"):
        recorder, trace = record(tmp_path, tmp_path / "fib.py", core)
        elapsed = recorder._stop_time - recorder._clock_base[0]
        report.append(f"{core}: {elapsed / 1e6:.1f} ms, {elapsed / len(trace):.0f} ns/call")
    print("; ".join(report))


@pytest.mark.parametrize("core", C_CORES)
def test_recorder_does_not_keep_the_core_alive(tmp_path: Path, core: str) -> None:
    main = write_program(tmp_path, "recursion")
    recorder, _ = record(tmp_path, main, core)
    ref = weakref.ref(recorder.core)
    del recorder
    assert ref() is None


class _InterruptingRegistry(Registry):
    """Raises KeyboardInterrupt while interning one text, as a signal handler
    running inside the hook's call would."""

    def string(self, text: str) -> int:
        if text == "'interrupt'":
            raise KeyboardInterrupt
        return super().string(text)


@pytest.mark.parametrize("core", ALL_CORES)
def test_interrupt_inside_a_hook_reaches_the_program(tmp_path: Path, core: str) -> None:
    (tmp_path / "ctrl_c.py").write_text(
        textwrap.dedent(
            """
            def echo(x):
                return x

            def after(y):
                return echo(y)

            try:
                echo("interrupt")
                INTERRUPTED = False
            except KeyboardInterrupt:
                INTERRUPTED = True
            after(1)
            """
        )
    )
    recorder = Recorder(Scope([str(tmp_path)]), RecordOptions(), core=core)
    recorder.registry = _InterruptingRegistry(recorder.scope)
    recorder.core = core_class(core)(recorder.registry, recorder.options)
    recorder.start()
    try:
        namespace = runpy.run_path(str(tmp_path / "ctrl_c.py"))
    finally:
        recorder.stop()
    assert namespace["INTERRUPTED"] is True
    calls = structure(recorder.build())["MainThread"]
    assert calls[-1][0] == "echo" and calls[-1][7:9] == ({"x": "1"}, "1")  # recording went on
    if core == "c":  # the C core raises it once the event is recorded: nothing is lost
        echo, after = calls[1], calls[2]
        assert echo[0] == "echo" and echo[4:10] == (1, 0, 0, {}, None, None)
        assert after[0] == "after" and after[4:10] == (1, 0, 0, {"y": "1"}, "1", None)
        assert not calls[0][6] & 16  # the module call finished
    if core == "monitoring":  # raised from echo's PY_START once recorded: echo ends with it
        assert calls[1][0] == "echo"
        assert calls[1][4:10] == (1, 0, RAISED, {}, None, ("KeyboardInterrupt", ""))
        assert calls[2][0] == "after" and not calls[0][6] & UNFINISHED
