"""The C cores' argument summaries (value_index in otel_tracer/record/_ctracer.c,
shared by the profile-API and sys.monitoring C cores) are summary.summarize's
text, byte for byte: on a large generated corpus of values, hostile ones
included, through the test entry point ``CCore._summarize``, and in traces
recorded by every core."""

from __future__ import annotations

import _thread
import enum
import fractions
import functools
import math
import operator
import signal
import sys
import textwrap
from collections import OrderedDict, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import c_core_built
from core_equivalence import MONITORING, record, structure
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_tracer.record import summary
from otel_tracer.record.options import RecordOptions
from otel_tracer.record.registry import Registry
from otel_tracer.record.scope import Scope
from otel_tracer.record.summary import summarize

pytestmark = pytest.mark.skipif(not c_core_built(), reason="the C core is not built")


def c_cores() -> list[type]:
    """The C core classes of this interpreter."""
    from otel_tracer.record import _ctracer

    return [_ctracer.CCore, *([_ctracer.MonCore] if MONITORING else [])]


class Summarizer:
    """A C core's value_index, as text: the summary recorded for a value."""

    def __init__(self, core_class: type) -> None:
        self.registry = Registry(Scope([]))
        self.core = core_class(self.registry, RecordOptions())

    def __call__(self, value: object) -> str | None:
        index = self.core._summarize(value)
        return None if index < 0 else self.registry.strings[index - self.registry.strings_base]


@pytest.fixture(scope="module", params=["c", "monitoring"] if MONITORING else ["c"])
def summarizer(request: pytest.FixtureRequest) -> Summarizer:
    """One core per module: its caches fill up across the corpus, as in a program."""
    classes = c_cores()
    return Summarizer(classes[0] if request.param == "c" else classes[1])


def check(summarizer: Summarizer, value: object) -> None:
    """The C text is summarize's, twice (the second time from the caches)."""
    expected = summarize(value)
    assert summarizer(value) == expected, (value, expected)
    assert summarizer(value) == expected, (value, expected)


# --- hostile objects


class Boom(Exception):
    pass


class RaisingRepr:
    def __repr__(self) -> str:
        raise Boom("repr")

    __str__ = __repr__


class NonStrRepr:
    def __repr__(self) -> Any:
        return 42

    def __str__(self) -> Any:
        return b"bytes"


class BadHash:
    def __hash__(self) -> int:
        raise Boom("hash")

    def __eq__(self, other: object) -> bool:
        raise Boom("eq")


class StrSub(str):
    def __repr__(self) -> str:
        raise Boom("str subclass repr")

    def __len__(self) -> int:
        raise Boom("len")


class IntSub(int):
    def __repr__(self) -> str:
        raise Boom("int subclass repr")


class DictSub(dict):  # type: ignore[type-arg]
    def __len__(self) -> int:
        raise Boom("len")

    def __iter__(self) -> Iterator[Any]:
        raise Boom("iter")

    def items(self) -> Any:
        raise Boom("items")


class ListSub(list):  # type: ignore[type-arg]
    def __getitem__(self, index: Any) -> Any:
        raise Boom("getitem")


class TupleSub(tuple):  # type: ignore[type-arg]
    pass


class Color(enum.IntEnum):
    RED = 1


class FakeArray:
    """An array-like that is neither numpy nor torch: summary.py's generic path."""

    shape = (2, 3)
    dtype = "float32"
    device = "meta"


class RaisingShape:
    @property
    def shape(self) -> Any:
        raise Boom("shape")

    dtype = "int8"


class StrShapeArray(np.ndarray):  # a subclass: summary.py decides
    pass


def recursive_values() -> list[object]:
    """Containers that contain themselves."""
    lst: list[Any] = [1]
    lst.append(lst)
    dct: dict[Any, Any] = {"a": 1}
    dct["self"] = dct
    first: list[Any] = []
    tup = (first,)
    first.append(tup)
    front: list[Any] = []
    front.insert(0, front)
    return [lst, dct, tup, front, [lst, lst, lst, lst]]


def hostile_values() -> list[object]:
    big = 10**100
    return [
        *recursive_values(),
        big,
        -big,
        2**64 - 1,
        2**64,
        -(2**64) + 1,
        -(2**64),
        2**63,
        -(2**63),
        -(2**63) - 1,
        2**128 - 1,
        2**128,
        -(2**128),
        2**10000,
        [2**64 - 1, -(2**64) + 1, 2**64],
        [2**63, -(2**63) - 1],
        "\ud800",
        "a\udfffb" * 40,
        "\x00\x01\x7f\x80\x9f\xa0\xff" * 20,
        "\U0001f600" * 70,
        "\\" * 64,
        "\\" * 65,
        "'" * 64 + '"',
        "\n" * 200,
        b"\x00\xff" * 100,
        b"'\"" * 40,
        bytes(range(256)),
        bytearray(b"abc"),
        memoryview(b"abc"),
        StrSub("hello"),
        IntSub(3),
        Color.RED,
        DictSub(a=1),
        ListSub([1, 2]),
        TupleSub((1, 2)),
        OrderedDict(a=1),
        defaultdict(int, a=1),
        [StrSub("x")],
        {StrSub("x"): 1},
        {IntSub(1): 2},
        [RaisingRepr()],
        RaisingRepr(),
        NonStrRepr(),
        BadHash(),
        {1: BadHash()},
        frozenset({(1, 2), "a", None}),
        {None: None, True: False, 1.5: 2j, b"k": "v", (1,): 1},
        {float("nan"): math.inf, -0.0: -math.inf},
        [float("nan"), -0.0, 1e300, 5e-324],
        [complex(math.inf, math.nan), -0j],
        complex(1e300, -1e-300),
        [1, 2, 3],
        [1, 2, 3, 4],
        (),
        (None,),
        [],
        {},
        set(),
        frozenset(),
        [[]],
        [()],
        ["x" * 22],
        ["x" * 23],
        ["x" * 24],
        ["x" * 25],
        [b"x" * 21],
        [b"x" * 22],
        [b"x" * 24],
        [b"x" * 25],
        [10**23],
        [10**24],
        [-(10**22)],
        [1.0000000000000002e-300],
        [fractions.Fraction(1, 3)],
        range(10),
        FakeArray(),
        RaisingShape(),
        type,
        int,
        Boom,
        sys,
        summarize,
        len,
        [].append,
        str.join,
        object(),
        Ellipsis,
        NotImplemented,
    ]


def array_values() -> list[object]:
    values: list[object] = [
        np.zeros((3, 4)),
        np.zeros(()),
        np.zeros((0,), dtype=np.int8),
        np.zeros((1,) * 10, dtype=np.float32),
        np.zeros((1,) * 8, dtype=np.float32),
        np.zeros((1,) * 9, dtype=np.float32),
        np.zeros(3, dtype=">f8"),
        np.zeros(3, dtype=np.dtype("<U40")),
        np.zeros(3, dtype=[("a", "i4"), ("b", "f8")]),
        np.zeros(3, dtype=[("a" * 40, "i4")]),
        np.zeros(2, dtype="datetime64[ns]"),
        np.zeros(2, dtype=object),
        np.zeros(2, dtype=complex),
        np.zeros((2, 2)).T,
        np.zeros((4, 4))[::2],
        np.float64(1.5),
        np.int64(3),
        np.zeros(3).view(StrShapeArray),
        np.ma.masked_array([1, 2]),
        [np.zeros(2)],
    ]
    try:
        import torch
    except ImportError:
        return values
    return [
        *values,
        torch.zeros(2, 3),
        torch.zeros((), dtype=torch.int64),
        torch.zeros((1,) * 9, dtype=torch.bfloat16),
        torch.zeros(3, dtype=torch.complex64),
        torch.nn.Parameter(torch.zeros(2)),
        torch.zeros(2, 3).T,
        torch.zeros(2, device="meta"),
    ]


def test_hostile_values(summarizer: Summarizer) -> None:
    for value in hostile_values():
        check(summarizer, value)


def test_arrays(summarizer: Summarizer) -> None:
    for value in array_values():
        check(summarizer, value)


def test_structured_dtype_renamed(summarizer: Summarizer) -> None:
    """A structured dtype's text changes when its fields are renamed: never cached."""
    array = np.zeros(2, dtype=[("a", "i4"), ("b", "f8")])
    check(summarizer, array)
    array.dtype.names = ("x", "y")
    check(summarizer, array)


def test_array_type_patched(summarizer: Summarizer) -> None:
    """An ndarray subclass's summary goes through summary.py and reads its class."""
    check(summarizer, np.zeros(2).view(StrShapeArray))
    StrShapeArray.__qualname__ = "Renamed"
    try:
        check(summarizer, np.zeros(2).view(StrShapeArray))
    finally:
        StrShapeArray.__qualname__ = "StrShapeArray"


def test_containers_need_no_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """The values value_index summarizes in C never call summary.summarize."""
    calls: list[object] = []

    def counting(value: object) -> str:
        calls.append(value)
        return summarize(value)

    monkeypatch.setattr(summary, "summarize", counting)
    for core_class in c_cores():
        summarizer = Summarizer(core_class)
        values = [
            [1, "a"],
            (1.5, None),
            {"k": b"v"},
            {1, 2},
            frozenset({3}),
            b"bytes",
            "x" * 100,
            "\\" * 60,
            2**100,
            2**1000,
            1j,
            [object()],
            np.zeros((2, 3)),
        ]
        for value in values:
            summarizer(value)  # the first ndarray reads its type once through summary.py
        calls.clear()
        for value in values:
            assert summarizer(value) == summarize(value)
        assert calls == []


# --- the generated corpus

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.sampled_from([2**63, -(2**63) - 1, 2**64 - 1, -(2**64) + 1, 2**64, 2**128, -(2**128)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.complex_numbers(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.text(max_size=200),
    st.text(alphabet=st.characters(codec=None, min_codepoint=0xD7F0, max_codepoint=0xE010)),
    st.text(alphabet="\\'\"\n\x00\x7f\x80é€😀", max_size=150),
    st.binary(max_size=30),
    st.binary(max_size=200),
)

hostile = st.one_of(
    st.builds(RaisingRepr),
    st.builds(NonStrRepr),
    st.builds(BadHash),
    st.builds(StrSub, st.text(max_size=5)),
    st.builds(IntSub, st.integers()),
    st.builds(object),
    st.builds(FakeArray),
    st.sampled_from([Color.RED, type, len, sys]),
)

hashables = st.one_of(scalars.filter(lambda v: not isinstance(v, float) or v == v), hostile)


def containers(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(
        st.lists(children, max_size=6),
        st.lists(children, max_size=6).map(tuple),
        st.dictionaries(
            hashables.filter(lambda v: not isinstance(v, BadHash)), children, max_size=6
        ),
        st.sets(st.one_of(st.integers(), st.text(max_size=30), st.binary(max_size=30)), max_size=6),
        st.frozensets(st.one_of(st.floats(allow_nan=False), st.none(), st.booleans()), max_size=6),
        st.lists(children, max_size=6).map(lambda items: DictSub(enumerate(items))),
        st.lists(children, max_size=6).map(ListSub),
    )


values = st.recursive(st.one_of(scalars, hostile), containers, max_leaves=20)


@pytest.mark.parametrize("core", ["c", "monitoring"] if MONITORING else ["c"])
@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=values)
def test_generated_values(core: str, value: object) -> None:
    if core not in _SUMMARIZERS:  # one per core for all examples: its caches fill up
        classes = c_cores()
        _SUMMARIZERS[core] = Summarizer(classes[0] if core == "c" else classes[1])
    check(_SUMMARIZERS[core], value)


_SUMMARIZERS: dict[str, Summarizer] = {}


# --- in recorded traces, on every core


PROGRAM = """
import numpy as np

class Boom(Exception):
    pass

class RaisingRepr:
    def __repr__(self):
        raise Boom("repr")

class StrSub(str):
    pass

def f(value):
    return value

looped = [1]
looped.append(looped)
VALUES = [
    None, True, 3, 2**64, 2**200, -(2**129), 1.5, 2j, "s", "x" * 100, "\\\\" * 60, "\\ud800",
    b"b", b"\\xff" * 80, [1, "a", None], [1, 2, 3, 4], [[1]], (1,), (), looped,
    {"k": 1}, {"k": [1]}, {1, 2}, frozenset({"a"}), StrSub("x"), RaisingRepr(),
    [RaisingRepr()], {StrSub("k"): 1}, np.zeros((2, 3)), np.zeros((1,) * 9, dtype=">i2"),
    np.zeros(2, dtype=[("a", "i4")]),
]
for value in VALUES:
    f(value)
"""


def test_traces_agree(tmp_path: Path) -> None:
    """Every core records the same argument and return texts, summarize's."""
    main = tmp_path / "main.py"
    main.write_text(textwrap.dedent(PROGRAM))
    cores = ["python", "c", *(["pymonitoring", "monitoring"] if MONITORING else [])]
    traces = {core: structure(record(tmp_path, main, core)[1]) for core in cores}
    reference = traces["python"]
    calls = [call for call in reference["MainThread"] if call[0] == "f"]
    assert len(calls) == 31
    assert calls[9][7] == {"value": summarize("x" * 100)}
    assert calls[28][7] == {"value": summarize(np.zeros((2, 3)))}
    for core in cores[1:]:
        assert traces[core] == reference, core


# --- signal handlers


class _Timeout(Exception):
    """What a program's SIGALRM-based timeout raises from its handler."""


@pytest.mark.parametrize(
    "value", [10**12 + 7, "a new string", [1, 2.5, "x"]], ids=["int", "str", "list"]
)
def test_a_handler_run_while_a_value_is_summarized_raises_in_the_program(
    summarizer: Summarizer, value: object
) -> None:
    """``PyObject_Repr`` and ``PyObject_Str`` run pending signal handlers: a
    handler's exception raised there reaches the program, never dropped (before:
    a SIGALRM timeout of a loop making calls with new arguments now and then
    never fired). The signal is made pending by ``_thread.interrupt_main`` and
    the value summarized by the next C call, with no Python code between them
    (where CPython would run the handler itself)."""

    def on_signal(signum: int, frame: object) -> None:
        raise _Timeout

    previous = signal.signal(signal.SIGUSR1, on_signal)
    try:
        steps = [
            functools.partial(_thread.interrupt_main, signal.SIGUSR1),
            functools.partial(summarizer.core._summarize, value),
        ]
        with pytest.raises(_Timeout):
            list(map(operator.methodcaller("__call__"), steps))
    finally:
        signal.signal(signal.SIGUSR1, previous)
    check(summarizer, value)  # the core goes on as before
