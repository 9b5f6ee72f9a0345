"""A program that installs tracing hooks of its own, as debuggers, profilers and
coverage tools do: a call counter on sys.setprofile, a scripted bdb debugger
(set_trace and runcall), a line counter on sys.settrace, cProfile and a
coverage.py measurement (with a thread). Everything it prints is deterministic.

Usage: python own_hooks.py [SECTION ...]   (default: every section, in this order:
setprofile bdb settrace cprofile coverage); writes hooks-done.txt.
"""

import bdb
import cProfile
import os
import sys
from collections import Counter
from types import FrameType

import covered


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def work(n: int) -> int:
    """A loop, a call per iteration and an exception caught per odd number."""
    total = 0
    for i in range(n):
        try:
            if i % 2:
                raise ValueError(i)
            total += fib(i)
        except ValueError:
            total -= 1
    return total


def line_counter() -> None:
    """sys.settrace: count the line events of work() and fib(), then put back the hook."""
    counts: Counter[tuple[str, int]] = Counter()

    def tracer(frame: FrameType, event: str, arg: object):
        if event == "line":
            code = frame.f_code
            counts[(code.co_name, frame.f_lineno - code.co_firstlineno)] += 1
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        result = work(6)
    finally:
        sys.settrace(previous)
    print("settrace: work(6) =", result, "lines:", sorted(counts.items()))


def call_counter() -> None:
    """sys.setprofile: count the calls (Python and C) under fib(7), then put back the hook."""
    calls: Counter[str] = Counter()

    def profiler(frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            calls[frame.f_code.co_name] += 1
        elif event == "c_call":
            calls[getattr(arg, "__name__", "?")] += 1

    previous = sys.getprofile()
    sys.setprofile(profiler)
    try:
        result = fib(7) + len(sorted([3, 1, 2]))
    finally:
        sys.setprofile(previous)
    print("setprofile: result =", result, "calls:", sorted(calls.items()))


def profiled() -> None:
    """cProfile (its disable() removes the profile hook for good, as it does untraced)."""
    profile = cProfile.Profile()
    profile.enable()
    fib(9)
    profile.disable()
    profile.create_stats()
    rows = {
        name: (primitive, total)
        for (filename, _, name), (primitive, total, *_) in profile.stats.items()
        if filename == __file__
    }
    print("cProfile:", sorted(rows.items()))


class Stepper(bdb.Bdb):
    """A scripted debugger: steps through every line, noting (function, line offset)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, int]] = []

    def user_line(self, frame: FrameType) -> None:
        code = frame.f_code
        if code.co_filename == __file__:
            self.lines.append((code.co_name, frame.f_lineno - code.co_firstlineno))
        self.set_step()


def stepped_here(dbg: Stepper) -> int:
    """Starts the debugger in this running frame (as pdb.set_trace() does) and
    stops it a few lines later."""
    dbg.set_trace()
    a = fib(2)
    b = a + 1
    dbg.set_continue()
    return b


def debugged() -> None:
    """bdb: set_trace() steps the frame it is called from, runcall() a fresh call."""
    dbg = Stepper()
    result = stepped_here(dbg)
    print("bdb set_trace: result =", result, "lines:", dbg.lines)
    dbg = Stepper()
    result = dbg.runcall(work, 3)
    print("bdb runcall: work(3) =", result, "lines:", dbg.lines)


def measured() -> None:
    """coverage.py: which lines of covered.py ran, in this thread and in a thread."""
    import coverage

    cov = coverage.Coverage(data_file=None, include=[covered.__file__])
    cov.start()
    labels = [covered.classify(n) for n in (-1, 2)]
    numbers = covered.parse_all(["1", "x", "3"])
    scaled = covered.in_a_thread([1, 2])
    cov.stop()
    _, statements, _, missing, _ = cov.analysis2(covered.__file__)
    executed = sorted(set(statements) - set(missing))
    print("coverage: results", labels, numbers, scaled)
    print("coverage: executed lines", executed)
    print("coverage: missing lines", sorted(missing))


def after_hooks() -> int:
    """In-scope calls after the program's hooks are gone."""
    return work(4)


SECTIONS = {
    "setprofile": call_counter,
    "bdb": debugged,
    "settrace": line_counter,
    "cprofile": profiled,
    "coverage": measured,
}


def main() -> None:
    for name in sys.argv[1:] or SECTIONS:
        SECTIONS[name]()
    print("after:", after_hooks())
    with open("hooks-done.txt", "w") as done:
        done.write(f"done {os.path.basename(__file__)} {' '.join(sys.argv[1:])}\n")


if __name__ == "__main__":
    main()
