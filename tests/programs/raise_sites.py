"""Exceptions that leave frames in awkward ways (issue 18: the real raise site).

Runs each case, catches what it raises and writes, per case, the frames of
Python's own traceback below the catching function: ``[file, line, function]``,
to the JSON file named by argv[1]. A trace of this run must give the same lines
(``raise_line``) for the calls the exception ended."""

import asyncio
import json
import sys
import traceback


def fail(message):
    raise ValueError(message)


def cleanup():
    try:
        {}["missing"]  # an exception caught inside: a later event in another frame
    except KeyError:
        pass


def bare_reraise():
    try:
        fail("bare")
    except ValueError:
        cleanup()
        raise


def through_finally():
    try:
        fail("finally")
    finally:
        cleanup()


def raise_from():
    try:
        fail("inner")
    except ValueError as error:
        raise KeyError("outer") from error


def multi_line():
    return max(
        1,
        int("x"),
    )


class Guard:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        cleanup()
        return False


def in_with():
    with Guard():
        fail("with")


def gen():
    yield 1
    yield 2


def thrown_into_generator():
    g = gen()
    next(g)
    g.throw(RuntimeError("thrown"))


def caught_then_other():
    try:
        fail("first")
    except ValueError:
        pass
    fail("second")


def recursive(n):
    if n == 0:
        fail("deep")
    return recursive(n - 1)


def through_a_builtin():
    return sorted([3, 1, 2], key=lambda item: fail(str(item)))


def comprehension():
    return [fail(str(i)) for i in range(2)]


async def leaf():
    await asyncio.sleep(0)
    raise LookupError("async")


async def awaiting():
    await leaf()


def coroutine():
    asyncio.run(awaiting())


CASES = [
    bare_reraise, through_finally, raise_from, multi_line, in_with,
    thrown_into_generator, caught_then_other, lambda: recursive(3), through_a_builtin,
    comprehension, coroutine,
]  # fmt: skip


def run(case):
    try:
        case()
    except Exception as error:
        frames = traceback.extract_tb(error.__traceback__)[1:]
        return [[f.filename, f.lineno, f.name] for f in frames]
    raise AssertionError("the case did not raise")


with open(sys.argv[1], "w") as out:
    json.dump([run(case) for case in CASES], out)
