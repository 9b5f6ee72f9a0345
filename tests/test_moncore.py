"""The sys.monitoring recording cores, in Python (otel_tracer/record/moncore.py,
``pymonitoring``) and in C (otel_tracer/record/_cmoncore.h, ``monitoring``), record
what the pure-Python core (otel_tracer/record/pycore.py) records.

Every program below runs under every core with the same options; the traces
must have the same calls, per thread and in order, with the same function,
parent, depth, flags, arguments, return value and exception (times differ).
The one allowed difference is where PythonCore is wrong and the monitoring
cores are right (see ``core_equivalence.pycore_misreads``), which
``test_generator_throw_and_close`` pins down; the two monitoring cores agree
exactly. The programs' scope is ``app/``; ``lib/vendorlib.py`` stands for an
installed library (out of scope). The tests of monitoring behaviour run on
both monitoring cores.
"""

from __future__ import annotations

import asyncio  # noqa: F401 - imported before recording, as the programs use them
import difflib  # noqa: F401
import functools  # noqa: F401
import json
import math  # noqa: F401
import runpy
import signal
import sys
import textwrap
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import programs
import pytest

if sys.version_info < (3, 12):
    pytest.skip("sys.monitoring (PEP 669) needs Python 3.12+", allow_module_level=True)

from conftest import c_core_built, run_python
from core_equivalence import OPTIONS, assert_cores_agree, assert_same_calls, cases, record

from otel_tracer.record.moncore import MonitoringUnavailable
from otel_tracer.record.options import RecordOptions
from otel_tracer.record.recorder import CoreUnavailable, Recorder, core_class
from otel_tracer.record.scope import Scope
from otel_tracer.trace.model import EXTERNAL, RAISED, RESUMED, YIELDED, Trace

# The sys.monitoring cores: in Python, and in C (when built: else "monitoring"
# is the Python one too).
MON_CORES = pytest.mark.parametrize(
    "core", ["pymonitoring", *(["monitoring"] if c_core_built() else [])]
)

VENDORLIB = """
    import functools

    class Box:
        def __init__(self, v):
            self.v = v

        @property
        def value(self):
            return self.v

        def __add__(self, other):
            return Box(self.v + other.v)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def __iter__(self):
            yield from range(self.v)

    def apply(func, items):
        return [func(i) for i in items]

    def twice(func, x):
        return func(func(x))

    def fail(message):
        raise ValueError(message)

    def deep(n):
        return 0 if n == 0 else deep(n - 1) + 1

    def gen(n):
        for i in range(n):
            yield i

    def sort_by(items, key):
        return sorted(items, key=key)

    def key_via_library(func):
        def key(item):
            return func(item)
        return key

    @functools.lru_cache
    def cached(x):
        return x * 2

    async def lib_sleep(x):
        return x
"""

PROGRAMS: dict[str, str] = {
    "recursion": programs.RECURSION,
    "classes": programs.CLASSES,
    "arguments": """
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
        f(*[1, 2], **{"c": 3, "z": 0})
        g(1, y=2)
        h(only=None)
        closure(10)
        lam(3)
        [lam(i) for i in range(3)]
        {k: lam(k) for k in "ab"}
        {lam(k) for k in range(2)}
        list(lam(i) for i in range(2))
        f("s" * 100, [1, 2], c={"k": (1, 2)}, big=2**200, fl=1.5, by=b"x", none=None,
          t=True, st={1}, ty=int, fn=f, m=math)
    """,
    "generators": """
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
        s3 = simple()
        try:
            s3.throw(KeyError("fresh"))
        except KeyError:
            pass
        sum(x * x for x in range(4))
    """,
    "async": """
        import asyncio
        import vendorlib

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
            c = await vendorlib.lib_sleep(5)
            return a, b, items, c

        asyncio.run(main())
    """,
    "exceptions": """
        import json
        import math
        import vendorlib

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

        def bad_key(v):
            raise KeyError(v)

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
            try:
                vendorlib.fail("from the library")
            except ValueError:
                pass
            try:
                sorted([2, 1], key=bad_key)
            except KeyError:
                pass
            try:
                "".join([1])
            except TypeError:
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
    "callbacks": """
        import functools
        import json
        import vendorlib

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
        vendorlib.apply(double, [1, 2])
        vendorlib.twice(double, 3)
        vendorlib.sort_by([3, 1], key)
        sorted([3, 1], key=vendorlib.key_via_library(key))
        vendorlib.cached(4)
        vendorlib.cached(4)
    """,
    "library": """
        import os
        import threading
        import vendorlib

        def main():
            a = vendorlib.Box(1)
            b = vendorlib.Box(2)
            total = (a + b).value
            with vendorlib.Box(3) as box:
                items = [i for i in box]
            for i in vendorlib.gen(2):
                total += i
            g = vendorlib.gen(2)
            next(g)
            vendorlib.deep(4)
            vendorlib.deep(2)
            threading.Thread(target=len, args=([],))
            os.path.join("a", "b")
            return total, items

        main()
        main()
    """,
    "threads": programs.THREADS,
    "modules": """
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
}

HELPER = """
    class Counter:
        def __init__(self, n):
            self.n = n

        def run(self):
            return [self.step(i) for i in range(self.n)]

        def step(self, i):
            return i + self.n
"""


@pytest.fixture(scope="module")
def lib_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory outside every program's scope holding ``vendorlib``, importable."""
    directory = tmp_path_factory.mktemp("lib")
    (directory / "vendorlib.py").write_text(textwrap.dedent(VENDORLIB))
    sys.path.insert(0, str(directory))
    import vendorlib  # type: ignore[import-not-found]  # noqa: F401 - before recording

    yield directory
    sys.path.remove(str(directory))
    sys.modules.pop("vendorlib", None)


def write_program(directory: Path, name: str) -> Path:
    app = directory / "app"
    app.mkdir(exist_ok=True)
    (app / "main.py").write_text(textwrap.dedent(PROGRAMS[name]))
    (app / "helper.py").write_text(textwrap.dedent(HELPER))
    return app / "main.py"


def record_app(main: Path, core: str, **options: Any) -> tuple[Recorder, Trace]:
    """Run the program ``main`` (in ``app/``, the scope) under ``core``."""
    return record(main.parent, main, core, **options)


@pytest.mark.parametrize(("program", "option"), cases(list(PROGRAMS)))
def test_same_trace_as_python_core(
    tmp_path: Path, lib_dir: Path, program: str, option: str
) -> None:
    """Every core records what the Python core records (see tests/core_equivalence.py)."""
    main = write_program(tmp_path, program)
    assert_cores_agree(main.parent, main, option, monitoring_like_python=True)


def calls_of(trace: Trace, qualname: str) -> list[int]:
    return [r for r in range(len(trace)) if trace.function_of(r).qualname == qualname]


@MON_CORES
def test_generator_throw_and_close(tmp_path: Path, lib_dir: Path, core: str) -> None:
    """Where PythonCore misreads throw()/close(), the monitoring core is right:
    a throw resumes a suspended generator, a throw into a generator that never
    ran is its call, and an exception it does not handle is what ends it."""
    _, trace = record_app(write_program(tmp_path, "generators"), core)
    guarded = [
        (int(trace.calls.flags[r]), trace.exception_of(r)) for r in calls_of(trace, "guarded")
    ]
    assert guarded == [
        (YIELDED, None),  # next()
        (RESUMED | YIELDED, None),  # throw(ValueError) handled: yields its message
        (RESUMED | RAISED, ("GeneratorExit", "")),  # close() runs the finally
    ]
    simple = [
        (int(trace.calls.flags[r]), trace.value_of(r), trace.exception_of(r))
        for r in calls_of(trace, "simple")
    ]
    closed = (
        [] if sys.version_info >= (3, 13) else [(RESUMED | RAISED, None, ("GeneratorExit", ""))]
    )
    assert simple == [
        (YIELDED, "1", None),
        *closed,  # 3.13 closes a generator with no handler around its yield without running it
        (YIELDED, "1", None),
        (RESUMED | RAISED, None, ("KeyError", "'k'")),
        (RAISED, None, ("KeyError", "'fresh'")),  # never ran: the throw is its call
    ]
    throws = calls_of(trace, "generator.throw")
    assert [trace.exception_of(r) for r in throws[1:]] == [
        ("KeyError", "'k'"),
        ("KeyError", "'fresh'"),
    ]


@MON_CORES
def test_a_lost_c_return_is_closed_by_the_frames_next_call(tmp_path: Path, core: str) -> None:
    """sys.monitoring loses a C call's closing event only when callbacks are
    interrupted (a signal handler raising in C_RETURN, then in the RAISE that
    follows) or taken away. Then, as in PythonCore, the calling frame's next C
    call or its return closes the C call. Here the program unregisters the
    C_RETURN callback in a C call, whose C_RETURN is thus lost."""
    main = tmp_path / "main.py"
    main.write_text(
        textwrap.dedent(
            """
            import math
            import sys

            mon = sys.monitoring
            C_RETURN = mon.events.C_RETURN

            def helper():
                return 1

            def then_call():
                mon.register_callback(TOOL, C_RETURN, None)  # its C_RETURN is lost
                mon.register_callback(TOOL, C_RETURN, CALLBACK)
                math.floor(1.5)
                return helper()

            def then_return():
                mon.register_callback(TOOL, C_RETURN, None)
                return 2

            then_call()
            then_return()
            mon.register_callback(TOOL, C_RETURN, CALLBACK)
            helper()
            """
        )
    )
    recorder = Recorder(Scope([str(tmp_path)]), RecordOptions(), core=core)
    recorder.start()
    tool, C_RETURN = recorder.core._tool, sys.monitoring.events.C_RETURN
    callback = sys.monitoring.register_callback(tool, C_RETURN, None)  # gives the one replaced
    sys.monitoring.register_callback(tool, C_RETURN, callback)
    names = {"TOOL": tool, "CALLBACK": callback}
    try:
        runpy.run_path(str(main), names, "__main__")
    finally:
        recorder.stop()
    trace = recorder.build()
    rows = []
    for row in range(len(trace)):
        parent = int(trace.calls.parent[row])
        name = trace.function_of(row).name
        rows.append((name, trace.function_of(parent).name if parent >= 0 else None))
    assert rows == [
        ("<module>", None),
        ("then_call", "<module>"),
        ("register_callback", "then_call"),
        ("register_callback", "then_call"),
        ("floor", "then_call"),
        ("helper", "then_call"),
        ("then_return", "<module>"),
        ("register_callback", "then_return"),
        ("register_callback", "<module>"),
        ("helper", "<module>"),
    ]
    closed = [(int(trace.calls.flags[r]), trace.value_of(r)) for r in range(len(trace))]
    assert closed[1] == (0, "1") and closed[6] == (0, "2")  # then_call, then_return
    assert all(flags == EXTERNAL for flags, _ in closed[2:5] + closed[7:9])


@MON_CORES
def test_exceptions_are_exact(tmp_path: Path, lib_dir: Path, core: str) -> None:
    main = write_program(tmp_path, "exceptions")
    _, trace = record_app(main, core, include_builtins=True)
    raised = defaultdict(list)
    for row in range(len(trace)):
        if trace.calls.flags[row] & RAISED:
            raised[trace.function_of(row).qualname].append(trace.exception_of(row))
    assert raised["sqrt"] == [("ValueError", "math domain error")]
    assert raised["divmod"] == [("ZeroDivisionError", "integer division or modulo by zero")]
    assert raised["loads"] == [
        (
            "json.decoder.JSONDecodeError",
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        )
    ]
    assert raised["fail"] == [("ValueError", "from the library")]
    assert raised["sorted"] == [("KeyError", "2")]
    assert raised["str.join"] == [
        ("TypeError", "sequence item 0: expected str instance, int found")
    ]
    assert raised["inner"] == [("__main__.AppError", f"too big: {x}") for x in (3, 4, 10, 99)]
    assert raised["chained"] == raised["reraise"] == [("RuntimeError", "wrapped")]
    assert raised["uncaught"] == raised["<module>"] == [("__main__.AppError", "too big: 99")]


@MON_CORES
def test_external_calls_and_implicit_ones(tmp_path: Path, lib_dir: Path, core: str) -> None:
    """Library code reached from scope is an external call whether called or
    reached implicitly (operator, property, with, for, class instantiation)."""
    _, trace = record_app(write_program(tmp_path, "library"), core)
    main = calls_of(trace, "main")[0]
    children = [trace.function_of(int(r)).qualname for r in trace.children_of(main)]
    children = [c for c in children if not c.startswith("WeakSet")]  # a weakref callback
    assert children == [
        *("Box.__init__", "Box.__init__", "Box.__add__", "Box.value"),  # a + b, .value
        *("Box.__init__", "Box.__enter__", "Box.__iter__", "Box.__iter__", "Box.__iter__"),
        *("Box.__iter__", "Box.__exit__"),  # with ... as box: [i for i in box]
        *("gen", "gen", "gen"),  # for over a library generator: one call per resumption
        *("deep", "deep", "Thread.__init__", "join"),  # next(g) on it is not recorded
    ]
    assert all(trace.calls.flags[int(r)] & EXTERNAL for r in trace.children_of(main))
    deep = calls_of(trace, "deep")
    assert [trace.value_of(r) for r in deep] == ["4", "2"] * 2
    assert all(len(trace.children_of(r)) == 0 for r in deep)


@MON_CORES
def test_library_code_runs_without_return_and_call_events(
    tmp_path: Path, lib_dir: Path, core: str
) -> None:
    """Only library code called from scope gets (return/yield) events; its
    internals and their call sites get none."""
    import vendorlib

    main = write_program(tmp_path, "library")
    recorder = Recorder(Scope([str(main.parent)]), core=core)
    recorder.start()
    try:
        runpy.run_path(str(main), run_name="__main__")
        tool = recorder.core._tool
        local = sys.monitoring.get_local_events
        E = sys.monitoring.events
        assert local(tool, vendorlib.deep.__code__) == E.PY_RETURN | E.PY_YIELD
        assert local(tool, vendorlib.apply.__code__) == 0  # never called from scope
        assert local(tool, json.encoder.JSONEncoder.iterencode.__code__) == 0
        assert sys.monitoring.get_events(tool) & (E.CALL | E.PY_RETURN | E.LINE) == 0
    finally:
        recorder.stop()
    assert sys.monitoring.get_tool(tool) is None
    assert sys.monitoring.get_events(tool) == 0
    assert sys.monitoring.get_local_events(tool, vendorlib.deep.__code__) == 0


@MON_CORES
@pytest.mark.parametrize("first", ["no_externals", "default"])
def test_recording_twice_in_one_process(
    tmp_path: Path, lib_dir: Path, first: str, core: str
) -> None:
    """A recording without external calls DISABLEs every library location; the
    next recording must see them again (restart_events)."""
    main = write_program(tmp_path, "callbacks")
    runpy.run_path(str(main), run_name="__main__")
    _, py_trace = record_app(main, "python")
    record_app(main, core, **OPTIONS[first])
    _, again = record_app(main, core)
    assert_same_calls(py_trace, again)


@MON_CORES
def test_interface(tmp_path: Path, lib_dir: Path, core: str) -> None:
    main = write_program(tmp_path, "recursion")
    recorder, trace = record_app(main, core)
    mon = recorder.core
    assert type(mon) is core_class(core)
    assert mon.registry is recorder.registry
    assert mon.options is recorder.options
    assert mon.dropped == 0
    words = np.frombuffer(mon.events, dtype=np.int64)
    assert len(words) == len(mon.events) == 2 * 3 * len(trace)
    times = words[1::3]
    assert np.all(np.diff(times) >= 0)  # one thread: event times never go back
    assert recorder._clock_base[0] <= times[0] and times[-1] <= recorder._stop_time
    assert abs(mon.clock() - time.perf_counter_ns()) < 10**9
    assert mon.stop() == len(mon.events)  # idempotent
    assert mon._tool is None


@MON_CORES
def test_tool_ids_taken(core: str) -> None:
    """The profiler's tool id is preferred, another free one is taken when it is
    in use, and MonitoringUnavailable says when none is free."""
    registry = Recorder(Scope(["."]), core="python").registry
    MonitoringCore = core_class(core)
    mine = []
    try:
        sys.monitoring.use_tool_id(sys.monitoring.PROFILER_ID, "test")
        mine.append(sys.monitoring.PROFILER_ID)
        mon = MonitoringCore(registry, RecordOptions())
        mon.start()
        assert mon._tool in (3, 4, 5)
        assert sys.monitoring.get_tool(mon._tool) == "otel-tracer"
        for tool in (3, 4, 5):
            if sys.monitoring.get_tool(tool) is None:
                sys.monitoring.use_tool_id(tool, "test")
                mine.append(tool)
        other = MonitoringCore(registry, RecordOptions())
        with pytest.raises(MonitoringUnavailable, match="tool id"):
            other.start()
        tool = mon._tool
        mon.stop()
        assert sys.monitoring.get_tool(tool) is None
    finally:
        for tool in mine:
            sys.monitoring.free_tool_id(tool)


MIDWAY = """
    import json

    def helper(x):
        return json.dumps([x])

    def run(start, stop):
        len("before")
        start()
        helper(1)
        len("during")
        json.loads("[2]")
        stop()
        return helper(3)
"""


@pytest.mark.parametrize("core", ["python", "pymonitoring", "monitoring"])
def test_recording_started_inside_a_running_frame(tmp_path: Path, core: str) -> None:
    """Started from in-scope code (as ``with Tracer():`` does), the frames already
    running are not recorded, and neither are the calls they make directly."""
    (tmp_path / "midway.py").write_text(textwrap.dedent(MIDWAY))
    namespace = runpy.run_path(str(tmp_path / "midway.py"))
    recorder = Recorder(Scope([str(tmp_path)]), core=core)
    namespace["run"](recorder.start, recorder.stop)
    trace = recorder.build()
    rows = [(trace.function_of(r).qualname, int(trace.calls.parent[r])) for r in range(len(trace))]
    assert rows == [("helper", -1), ("dumps", 0)]


@MON_CORES
def test_threads_started_before_recording_are_not_recorded(tmp_path: Path, core: str) -> None:
    """As with PythonCore: the starting thread and threads started later only."""
    (tmp_path / "work.py").write_text("def step(i):\n    return i\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import work  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
        sys.modules.pop("work", None)
    go, stop = threading.Event(), threading.Event()

    def spin() -> None:
        go.wait(5)
        while not stop.is_set():
            work.step(0)
            time.sleep(0.001)

    early = threading.Thread(target=spin, name="early")
    early.start()
    recorder = Recorder(Scope([str(tmp_path)]), core=core)
    recorder.start()
    go.set()
    late = threading.Thread(target=work.step, args=(7,), name="late")
    late.start()
    late.join()
    time.sleep(0.02)
    work.step(1)
    recorder.stop()
    stop.set()
    early.join()
    trace = recorder.build()
    seen = sorted(
        (trace.threads[int(trace.calls.thread[r])].name, trace.args_of(r)["i"])
        for r in range(len(trace))
    )
    assert seen == [(threading.current_thread().name, "1"), ("late", "7")]


@MON_CORES
def test_other_threads_stop_recording(tmp_path: Path, core: str) -> None:
    """A thread still running at stop() records nothing more."""
    (tmp_path / "late.py").write_text(
        textwrap.dedent(
            """
            def step(i):
                return i

            def body(go_on, done):
                step(1)
                go_on.wait()
                step(2)
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
    go_on, done = threading.Event(), threading.Event()
    recorder = Recorder(Scope([str(tmp_path)]), core=core)
    recorder.start()
    thread = threading.Thread(target=late.body, args=(go_on, done), name="late")
    thread.start()
    time.sleep(0.05)
    recorder.stop()
    words = len(recorder.core.events)
    go_on.set()
    done.wait(5)
    thread.join(5)
    assert len(recorder.core.events) == words
    trace = recorder.build()
    steps = [trace.function_of(r).qualname for r in range(len(trace))]
    assert steps.count("step") == 1 and "body" in steps


TICKS_PROGRAM = """
    import json
    import signal

    class Tick(Exception):
        pass

    ARMED = [False]

    def on_alarm(signum, frame):
        if ARMED[0]:
            raise Tick()

    def leaf(i):
        return i + 1

    def work(i):
        return leaf(i) + len(json.dumps([i])) + leaf(i)

    def main():
        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
        done = ticks = 0
        while done < 5000:
            try:
                ARMED[0] = True
                work(done)
                ARMED[0] = False
                done += 1
            except Tick:
                ARMED[0] = False
                ticks += 1
        signal.setitimer(signal.ITIMER_REAL, 0)
        return ticks

    TICKS = main()
"""

TICKS_DRIVER = """
    import json
    import runpy
    import sys

    from otel_tracer.record.options import RecordOptions
    from otel_tracer.record.recorder import Recorder
    from otel_tracer.record.scope import Scope

    recorder = Recorder(Scope([sys.argv[1]]), RecordOptions(), core=sys.argv[2])
    recorder.start()
    try:
        ticks = runpy.run_path(sys.argv[1] + "/ticks.py")["TICKS"]
    finally:
        recorder.stop()
    trace = recorder.build()
    rows = []
    for row in range(len(trace)):
        parent = int(trace.calls.parent[row])
        parent_name = trace.function_of(parent).qualname if parent >= 0 else None
        rows.append((trace.function_of(row).qualname, parent_name))
    print(json.dumps({"ticks": ticks, "rows": rows}))
"""


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
@MON_CORES
def test_signal_handlers_raising_in_callbacks_keep_the_tree_sound(
    tmp_path: Path, core: str
) -> None:
    """A SIGALRM handler raising every 0.2 ms also runs inside the callbacks;
    the exception reaches the program and the tree stays consistent. (In a
    subprocess: ticks must not land in this process's own machinery.)"""
    (tmp_path / "ticks.py").write_text(textwrap.dedent(TICKS_PROGRAM))
    (tmp_path / "driver.py").write_text(textwrap.dedent(TICKS_DRIVER))
    result = run_python([str(tmp_path / "driver.py"), str(tmp_path), core], tmp_path)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["ticks"] > 0
    parents = {"main": {"<module>"}, "work": {"main"}, "leaf": {"work"}, "dumps": {"work"}}
    counts: dict[str, int] = defaultdict(int)
    for name, parent in outcome["rows"]:
        counts[name] += 1
        if name in parents:
            assert parent in parents[name], (name, parent)
    assert counts["work"] >= 5000 and counts["leaf"] >= 2 * 5000


SPEED_PROGRAM = """
    import copy
    import difflib
    import json
    import pprint

    def work(items):
        clone = copy.deepcopy(items)
        a = pprint.pformat(clone, width=60).splitlines()
        b = [line.replace("1", "2") for line in a]
        ratio = difflib.SequenceMatcher(None, a, b).ratio()
        return json.loads(json.dumps(clone)), ratio

    def main():
        items = [{"row": i, "values": [i, str(i)], "meta": {"k": (i, i % 7)}} for i in range(300)]
        for _ in range(3):
            work(items)

    main()
"""


def test_speed_report(tmp_path: Path) -> None:
    """Not a limit: prints how library-heavy code called from scope (a few dozen
    recorded calls, a quarter million library calls) runs under each core."""
    (tmp_path / "speed.py").write_text(textwrap.dedent(SPEED_PROGRAM))
    runpy.run_path(str(tmp_path / "speed.py"))
    cores = ["python", "pymonitoring"]
    try:
        Recorder(Scope([str(tmp_path)]), core="c")
        cores[1:1] = ["c"]
        cores.append("monitoring")
    except CoreUnavailable:
        pass

    def best(run: Any) -> float:
        times = []
        for _ in range(3):
            begin = time.perf_counter()
            run()
            times.append(time.perf_counter() - begin)
        return min(times)

    def traced(core: str) -> None:
        recorder = Recorder(Scope([str(tmp_path)]), core=core)
        recorder.start()
        try:
            runpy.run_path(str(tmp_path / "speed.py"))
        finally:
            recorder.stop()

    untraced = best(lambda: runpy.run_path(str(tmp_path / "speed.py")))
    report = [f"untraced {untraced * 1e3:.1f} ms"]
    for core in cores:
        elapsed = best(lambda core=core: traced(core))
        report.append(f"{core} {elapsed * 1e3:.1f} ms ({elapsed / untraced:.2f}x)")
    print(f"\n{sys.version.split()[0]}: " + "; ".join(report))
