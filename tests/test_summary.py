"""Tests for otel_tracer.record.summary: formats, safety (no user code) and speed."""

from __future__ import annotations

import ast
import enum
import math
import re
import signal
import sys
import time
import types
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_tracer.record import summary
from otel_tracer.record.summary import (
    MAX_ITEMS,
    MAX_MESSAGE,
    MAX_STR,
    summarize,
    summarize_exception,
    summarize_self,
)

M = __name__  # module prefix of classes defined here
DEV = ", cpu" if hasattr(np.ndarray, "device") else ""  # numpy >= 2 has ndarray.device


# --- helpers

_ARMED: list[list[str]] = []  # non-empty while a `calls` fixture is active


def _trip(name: str) -> None:
    """Record a forbidden hook call (while armed) and raise."""
    if _ARMED:
        _ARMED[-1].append(name)
        raise RuntimeError(f"user hook {name} was called")


@pytest.fixture
def calls() -> Iterator[list[str]]:
    """Arm the tripwires; the test body must leave the yielded list empty."""
    recorded: list[str] = []
    _ARMED.append(recorded)
    try:
        yield recorded
    finally:
        _ARMED.pop()
    assert recorded == []


class TripMeta(type):
    """Metaclass whose hooks all trip."""

    def __getattribute__(cls, name: str) -> object:
        _trip(f"meta.__getattribute__({name})")
        return super().__getattribute__(name)

    def __getattr__(cls, name: str) -> object:
        _trip(f"meta.__getattr__({name})")
        raise AttributeError(name)

    def __repr__(cls) -> str:
        _trip("meta.__repr__")
        return "TripMeta"

    def __hash__(cls) -> int:
        _trip("meta.__hash__")
        return 0

    def __eq__(cls, other: object) -> bool:
        _trip("meta.__eq__")
        return False

    def __instancecheck__(cls, obj: object) -> bool:
        _trip("meta.__instancecheck__")
        return False

    def __subclasscheck__(cls, sub: type) -> bool:
        _trip("meta.__subclasscheck__")
        return False


class Tripwire(metaclass=TripMeta):
    """Instance whose every overridable hook trips."""

    def __getattribute__(self, name: str) -> object:
        _trip(f"__getattribute__({name})")
        return object.__getattribute__(self, name)

    def __getattr__(self, name: str) -> object:
        _trip(f"__getattr__({name})")
        raise AttributeError(name)

    def __repr__(self) -> str:
        _trip("__repr__")
        return "Tripwire()"

    def __str__(self) -> str:
        _trip("__str__")
        return "Tripwire"

    def __format__(self, spec: str) -> str:
        _trip("__format__")
        return "Tripwire"

    def __len__(self) -> int:
        _trip("__len__")
        return 0

    def __iter__(self) -> Iterator[object]:
        _trip("__iter__")
        return iter(())

    def __bool__(self) -> bool:
        _trip("__bool__")
        return True

    def __eq__(self, other: object) -> bool:
        _trip("__eq__")
        return False

    def __hash__(self) -> int:
        _trip("__hash__")
        return 0

    def __call__(self) -> None:
        _trip("__call__")

    @property
    def __class__(self) -> type:
        _trip("__class__")
        return int

    @property
    def shape(self) -> tuple[int, ...]:
        _trip("shape")
        return (1,)


class SlowRepr:
    def __repr__(self) -> str:
        time.sleep(5)
        return "SlowRepr()"

    __str__ = __repr__

    def method(self) -> None:
        pass


class SlowGetattr:
    def __getattr__(self, name: str) -> object:
        time.sleep(5)
        raise AttributeError(name)


class RaisingGetattr:
    def __getattr__(self, name: str) -> object:
        raise RuntimeError(f"no {name}")


class InfiniteGetattr:
    def __getattr__(self, name: str) -> object:
        return getattr(self, "_" + name)  # recurses until RecursionError


class AnythingGetattr:
    """Pretends to have every attribute: must not be mistaken for an array."""

    def __getattr__(self, name: str) -> object:
        return (2, 2) if name == "shape" else "float32"


class InstanceAttrsArray:
    def __init__(self) -> None:
        self.shape = (3,)
        self.dtype = "int8"


class RaisingRepr:
    def __repr__(self) -> str:
        raise ValueError("no repr")

    __str__ = __repr__


class Plain:
    def method(self) -> int:
        return 1

    @classmethod
    def cmethod(cls) -> int:
        return 2

    @staticmethod
    def smethod() -> int:
        return 3


class Outer:
    class Inner:
        pass

    class Error(Exception):
        pass


def top_level() -> None:
    pass


# --- scalars


@pytest.mark.parametrize(
    "value",
    [None, True, False, 0, -1, 42, 2**128 - 1, -(2**128 - 1), 1.5, -0.0, math.inf, 1e300, 3j],
)
def test_exact_scalars_use_repr(value: object) -> None:
    assert summarize(value) == repr(value)


def test_nan() -> None:
    assert summarize(math.nan) == "nan"


@pytest.mark.parametrize(
    ("value", "bits"),
    [(2**128, 129), (-(2**200), 201), (10**5000, 16610), (-(10**5000), 16610)],
    ids=["2**128", "-2**200", "10**5000", "-10**5000"],
)
def test_huge_ints_show_bit_length(value: int, bits: int) -> None:
    assert summarize(value) == f"int(<{bits} bits>)"


def test_huge_int_beyond_digit_limit() -> None:
    value = 10**100_000  # far beyond the int->str digit limit
    assert summarize(value) == f"int(<{value.bit_length()} bits>)"
    assert summarize(value) == f"int(<{value.bit_length()} bits>)"


@given(st.integers(min_value=-(2**128) + 1, max_value=2**128 - 1))
def test_ints_up_to_128_bits_are_exact(value: int) -> None:
    assert summarize(value) == repr(value)


class MyInt(int):
    def __repr__(self) -> str:
        _trip("MyInt.__repr__")
        return "MyInt"


class MyStr(str):
    def __repr__(self) -> str:
        _trip("MyStr.__repr__")
        return "MyStr"

    def __len__(self) -> int:
        _trip("MyStr.__len__")
        return 0


class MyFloat(float):
    pass


class Color(enum.IntEnum):
    RED = 1


class Flavor(enum.Enum):
    SWEET = "sweet"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (MyInt(5), f"<{M}.MyInt>"),
        (MyStr("abc"), f"<{M}.MyStr>"),
        (MyFloat(1.5), f"<{M}.MyFloat>"),
        (Color.RED, f"<{M}.Color>"),
        (Flavor.SWEET, f"<{M}.Flavor>"),
    ],
)
def test_subclasses_of_builtins_are_generic(value: object, expected: str, calls: list[str]) -> None:
    assert summarize(value) == expected


# --- str / bytes


def test_short_str() -> None:
    assert summarize("abc") == "'abc'"
    assert summarize("") == "''"
    assert summarize("a\nb") == "'a\\nb'"
    assert summarize("x" * MAX_STR) == repr("x" * MAX_STR)


def test_long_str_is_truncated() -> None:
    assert summarize("a" * 1000) == repr("a" * MAX_STR) + "...(+936 chars)"
    assert summarize("b" * (MAX_STR + 1)) == repr("b" * MAX_STR) + "...(+1 chars)"


def test_huge_str_is_fast_and_truncated() -> None:
    value = "a" * 10**7
    assert summarize(value) == repr("a" * MAX_STR) + f"...(+{10**7 - MAX_STR} chars)"


def test_bytes() -> None:
    assert summarize(b"") == "b''"
    assert summarize(b"ab\x00") == repr(b"ab\x00")
    assert summarize(b"x" * 100) == repr(b"x" * MAX_STR) + "...(+36 bytes)"
    value = b"y" * 10**7
    assert summarize(value) == repr(b"y" * MAX_STR) + f"...(+{10**7 - MAX_STR} bytes)"


def test_bytes_subclass_and_bytearray_are_generic() -> None:
    class MyBytes(bytes):
        pass

    assert (
        summarize(MyBytes(b"a"))
        == f"<{M}.test_bytes_subclass_and_bytearray_are_generic.<locals>.MyBytes>"
    )
    assert summarize(bytearray(b"a")) == "<bytearray>"


_CLIPPED = re.compile(r"^(.*)\.\.\.\(\+(\d+) (chars|bytes)\)$", re.DOTALL)


def _check_clipped(value: str | bytes, unit: str) -> None:
    text = summarize(value)
    match = _CLIPPED.match(text)
    if match is None:
        assert text == repr(value)
        return
    prefix = ast.literal_eval(match.group(1))
    assert type(prefix) is type(value)
    assert 1 <= len(prefix) <= MAX_STR
    assert value.startswith(prefix)
    assert int(match.group(2)) == len(value) - len(prefix) > 0
    assert match.group(3) == unit
    assert len(match.group(1)) <= 2 * MAX_STR + 2


@given(st.text())
def test_str_format_property(value: str) -> None:
    _check_clipped(value, "chars")


@given(st.binary())
def test_bytes_format_property(value: bytes) -> None:
    _check_clipped(value, "bytes")


@pytest.mark.parametrize("char", ["\x00", "\U000e0001", "\u2028", "é", "\U0001f600"])
def test_escape_heavy_str_stays_short(char: str) -> None:
    value = char * 1000
    _check_clipped(value, "chars")
    assert len(summarize(value)) <= 2 * MAX_STR + 2 + len("...(+1000 chars)")


# --- containers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([], "list(len=0)"),
        ((), "tuple(len=0)"),
        ({}, "dict(len=0)"),
        (set(), "set(len=0)"),
        (frozenset(), "frozenset(len=0)"),
        ([1, 2, 3, 4, 5], "list(len=5)[1, 2, 3, ...]"),
        ([1, 2, 3], "list(len=3)[1, 2, 3]"),
        ([None, True, 1.5], "list(len=3)[None, True, 1.5]"),
        ((1, "a"), "tuple(len=2)[1, 'a']"),
        ({"a": 1, "b": 2}, "dict(len=2){'a': 1, 'b': 2}"),
        ({1: None, 2: 2, 3: 3, 4: 4}, "dict(len=4){1: None, 2: 2, 3: 3, ...}"),
        ({7}, "set(len=1){7}"),
        (frozenset({"x"}), "frozenset(len=1){'x'}"),
        ([b"ab"], "list(len=1)[b'ab']"),
        # a non-scalar among the leading items hides all items
        ([1, [2]], "list(len=2)"),
        ([1, 2, 3, [4]], "list(len=4)[1, 2, 3, ...]"),
        ([1, "x" * 100], "list(len=2)"),
        ([2**100], "list(len=1)"),
        ([MyInt(1)], "list(len=1)"),
        ({"a": [1]}, "dict(len=1)"),
        ({(1, 2): 1}, "dict(len=1)"),
        ({frozenset(): 1}, "dict(len=1)"),
        ({1, (2, 3)} - {1}, "set(len=1)"),
    ],
)
def test_containers(value: object, expected: str) -> None:
    assert summarize(value) == expected


def test_set_items_are_members() -> None:
    value = {10, 20, 30, 40}
    text = summarize(value)
    assert text.startswith("set(len=4){") and text.endswith(", ...}")
    shown = ast.literal_eval(text[len("set(len=4)") : -len(", ...}")] + "}")
    assert len(shown) == MAX_ITEMS and shown <= value


def test_recursive_containers() -> None:
    items: list[object] = [1]
    items.append(items)
    mapping: dict[str, object] = {}
    mapping["self"] = mapping
    assert summarize(items) == "list(len=2)"
    assert summarize(mapping) == "dict(len=1)"


def test_large_containers_show_length_and_head() -> None:
    assert summarize(list(range(10**6))) == "list(len=1000000)[0, 1, 2, ...]"
    assert summarize(dict.fromkeys(range(10**6), 1)) == "dict(len=1000000){0: 1, 1: 1, 2: 1, ...}"
    assert summarize(set(range(10**6))).startswith("set(len=1000000)")


def test_container_subclasses_are_generic(calls: list[str]) -> None:
    class MyList(list):
        def __len__(self) -> int:
            _trip("MyList.__len__")
            return 0

        def __iter__(self) -> Iterator[object]:
            _trip("MyList.__iter__")
            return iter(())

    class MyDict(dict):
        def items(self):
            _trip("MyDict.items")
            return {}.items()

    assert summarize(MyList([1])) == f"<{M}.test_container_subclasses_are_generic.<locals>.MyList>"
    assert summarize(MyDict(a=1)) == f"<{M}.test_container_subclasses_are_generic.<locals>.MyDict>"


def test_containers_of_hostile_objects(calls: list[str]) -> None:
    _ARMED.pop()  # build the set/dict without tripping __hash__
    try:
        wire = Tripwire()
        as_set = {wire}
        as_key = {wire: 1}
    finally:
        _ARMED.append(calls)
    assert summarize([wire, wire]) == "list(len=2)"
    assert summarize((wire,)) == "tuple(len=1)"
    assert summarize({"k": wire}) == "dict(len=1)"
    assert summarize(as_set) == "set(len=1)"
    assert summarize(frozenset(as_set)) == "frozenset(len=1)"
    assert summarize(as_key) == "dict(len=1)"


# --- hostile objects


def test_tripwire_instance_and_class(calls: list[str]) -> None:
    wire = Tripwire()
    assert summarize(wire) == f"<{M}.Tripwire>"
    assert summarize(Tripwire) == f"<class {M}.Tripwire>"
    assert summarize_self(wire) == "Tripwire"
    assert summarize_self(Tripwire) == "Tripwire"
    assert summarize(types.MethodType(wire, 1)) == "<method>"
    assert summarize(types.MethodType(top_level, wire)) == f"<function {M}.top_level>"


def test_raising_repr() -> None:
    assert summarize(RaisingRepr()) == f"<{M}.RaisingRepr>"
    assert summarize([RaisingRepr()]) == "list(len=1)"


def test_slow_repr_is_never_called() -> None:
    obj = SlowRepr()
    start = time.perf_counter()
    assert summarize(obj) == f"<{M}.SlowRepr>"
    assert summarize([obj]) == "list(len=1)"
    assert summarize({1: obj}) == "dict(len=1)"
    assert summarize(obj.method) == f"<function {M}.SlowRepr.method>"
    assert summarize_self(obj) == "SlowRepr"
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("cls", [SlowGetattr, RaisingGetattr, InfiniteGetattr, AnythingGetattr])
def test_getattr_is_never_called(cls: type) -> None:
    start = time.perf_counter()
    assert summarize(cls()) == f"<{M}.{cls.__qualname__}>"
    assert summarize_self(cls()) == cls.__qualname__
    assert time.perf_counter() - start < 1.0


def test_instance_level_array_attributes_are_ignored() -> None:
    assert summarize(InstanceAttrsArray()) == f"<{M}.InstanceAttrsArray>"


def test_module_name_oddities() -> None:
    class NoStrModule:
        __module__ = 123

    nameless = eval("type('Nameless', (), {})", {})  # no __name__ -> no __module__
    assert "__module__" not in nameless.__dict__
    assert summarize(NoStrModule()) == "<test_module_name_oddities.<locals>.NoStrModule>"
    assert summarize(nameless()) == "<Nameless>"
    assert summarize(nameless) == "<class Nameless>"
    assert summarize_exception(eval("type('E', (Exception,), {})", {})("m")) == ("E", "m")


def test_handler_failure_gives_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(value: object) -> str:
        raise RuntimeError("boom")

    monkeypatch.setitem(summary._HANDLERS, id(int), boom)
    assert summarize(1) == "<unrepresentable>"


def test_base_exceptions_are_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(value: object) -> str:
        raise KeyboardInterrupt

    monkeypatch.setitem(summary._HANDLERS, id(int), interrupt)
    with pytest.raises(KeyboardInterrupt):
        summarize(1)


# --- classes, functions, modules


def test_classes() -> None:
    assert summarize(Plain) == f"<class {M}.Plain>"
    assert summarize(Outer.Inner) == f"<class {M}.Outer.Inner>"
    assert summarize(int) == "<class int>"
    assert summarize(type) == "<class type>"
    assert summarize(TripMeta) == f"<class {M}.TripMeta>"
    assert summarize(np.ndarray) == "<class numpy.ndarray>"
    assert summarize(Color) == f"<class {M}.Color>"


def test_functions() -> None:
    def inner() -> None:
        pass

    assert summarize(top_level) == f"<function {M}.top_level>"
    assert summarize(inner) == f"<function {M}.test_functions.<locals>.inner>"
    assert summarize(lambda: 0) == f"<function {M}.test_functions.<locals>.<lambda>>"
    assert summarize(Plain().method) == f"<function {M}.Plain.method>"
    assert summarize(Plain.method) == f"<function {M}.Plain.method>"
    assert summarize(Plain.cmethod) == f"<function {M}.Plain.cmethod>"
    assert summarize(Plain.smethod) == f"<function {M}.Plain.smethod>"


def test_builtin_callables() -> None:
    assert summarize(len) == "<function len>"
    assert summarize(print) == "<function print>"
    assert summarize(math.sqrt) == "<function math.sqrt>"
    assert summarize([].append) == "<function list.append>"
    assert summarize(list.append) == "<function list.append>"
    assert summarize(dict.fromkeys) == "<function dict.fromkeys>"
    assert summarize(dict.__dict__["fromkeys"]) == "<function dict.fromkeys>"
    assert summarize((1).__add__) == "<function int.__add__>"
    assert summarize(int.__add__) == "<function int.__add__>"
    assert summarize(np.zeros) == "<function numpy.zeros>"


def test_function_with_hostile_module_attribute(calls: list[str]) -> None:
    def func() -> None:
        pass

    func.__module__ = Tripwire()
    assert summarize(func) == "<function test_function_with_hostile_module_attribute.<locals>.func>"


def test_modules(calls: list[str]) -> None:
    class LazyModule(types.ModuleType):
        def __getattr__(self, name: str) -> object:
            _trip(f"LazyModule.__getattr__({name})")
            raise AttributeError(name)

        def __repr__(self) -> str:
            _trip("LazyModule.__repr__")
            return "lazy"

    assert summarize(math) == "<module math>"
    assert summarize(sys) == "<module sys>"
    assert summarize(np) == "<module numpy>"
    assert summarize(LazyModule("lazy_mod")) == "<module lazy_mod>"
    nameless = types.ModuleType("gone")
    del nameless.__name__
    assert summarize(nameless) == "<module>"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (object(), "<object>"),
        (Plain(), f"<{M}.Plain>"),
        (Outer.Inner(), f"<{M}.Outer.Inner>"),
        (range(3), "<range>"),
        (Ellipsis, "<ellipsis>"),
        (iter([]), "<list_iterator>"),
    ],
)
def test_generic(value: object, expected: str) -> None:
    assert summarize(value) == expected


# --- array-likes


class FakeDtype:
    def __str__(self) -> str:
        return "torch.bfloat16"


class FakeTensor:
    reads: list[str] = []

    def __init__(self, shape: tuple[int, ...], dtype: object = "float16") -> None:
        self._shape = shape
        self._dtype = dtype

    @property
    def shape(self) -> tuple[int, ...]:
        FakeTensor.reads.append("shape")
        return self._shape

    @property
    def dtype(self) -> object:
        FakeTensor.reads.append("dtype")
        return self._dtype

    @property
    def device(self) -> str:
        FakeTensor.reads.append("device")
        return "meta"

    def __repr__(self) -> str:
        _trip("FakeTensor.__repr__")
        return "FakeTensor"


class FakeArray:
    shape = (4,)
    dtype = "int8"


class FakeSize(tuple):
    """Like torch.Size: a tuple subclass (overrides must not be used)."""

    def __iter__(self) -> Iterator[int]:
        _trip("FakeSize.__iter__")
        return iter(())

    def __len__(self) -> int:
        _trip("FakeSize.__len__")
        return 0

    def __getitem__(self, item: object) -> object:
        _trip("FakeSize.__getitem__")
        return 0


class BrokenShape(FakeArray):
    @property
    def shape(self) -> tuple[int, ...]:
        raise RuntimeError("no shape")


class OddShape(FakeArray):
    shape = "4x4"


class OddDim(FakeArray):
    shape = (4, "x")


class MethodDevice(FakeArray):
    def device(self) -> str:  # jax style: a method, not a property
        return "tpu"


class LazyShape(FakeArray):
    shape = (None, 3, math.nan)


class ShapeOnly:
    shape = (1,)


def test_fake_tensor(calls: list[str]) -> None:
    FakeTensor.reads.clear()
    assert summarize(FakeTensor((2, 3))) == "FakeTensor(float16[2, 3], meta)"
    assert FakeTensor.reads == ["shape", "dtype", "device"]
    assert summarize(FakeTensor((), FakeDtype())) == "FakeTensor(bfloat16[], meta)"
    assert summarize(FakeTensor(FakeSize((8, 128)))) == "FakeTensor(float16[8, 128], meta)"
    assert summarize(FakeTensor(tuple(range(1, 11)))) == (
        "FakeTensor(float16[1, 2, 3, 4, 5, 6, 7, 8, ...(+2 dims)], meta)"
    )
    assert summarize(FakeTensor((1,), "x" * 100)) == f"FakeTensor({'x' * 32}...[1], meta)"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (FakeArray(), "FakeArray(int8[4])"),
        (MethodDevice(), "MethodDevice(int8[4])"),
        (LazyShape(), "LazyShape(int8[?, 3, nan])"),
        (BrokenShape(), f"<{M}.BrokenShape>"),
        (OddShape(), f"<{M}.OddShape>"),
        (OddDim(), f"<{M}.OddDim>"),
        (ShapeOnly(), f"<{M}.ShapeOnly>"),
    ],
)
def test_array_likes(value: object, expected: str) -> None:
    assert summarize(value) == expected


class MyArray(np.ndarray):
    pass


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.zeros((8, 128), dtype=np.float32), "ndarray(float32[8, 128]{DEV})"),
        (np.arange(6, dtype=np.int64).reshape(2, 3), "ndarray(int64[2, 3]{DEV})"),
        (np.ones(3, dtype=bool), "ndarray(bool[3]{DEV})"),
        (np.zeros((1, 2, 3), dtype=np.complex128), "ndarray(complex128[1, 2, 3]{DEV})"),
        (np.zeros(0, dtype=np.uint8), "ndarray(uint8[0]{DEV})"),
        (np.zeros(2, dtype="datetime64[ns]"), "ndarray(datetime64[ns][2]{DEV})"),
        (np.array(1.5), "ndarray(float64[]{DEV})"),
        (np.array("abc"), "ndarray(<U3[]{DEV})"),
        (np.zeros((4, 6), dtype=np.float16)[::2, 1:], "ndarray(float16[2, 5]{DEV})"),
        (np.eye(2).view(MyArray), "MyArray(float64[2, 2]{DEV})"),
        (np.float64(2.0), "float64(float64[]{DEV})"),
    ],
)
def test_numpy(value: object, expected: str) -> None:
    assert summarize(value) == expected.format(DEV=DEV)


def test_numpy_large_array_shows_shape_only() -> None:
    assert summarize(np.zeros(10**7)) == f"ndarray(float64[10000000]{DEV})"


# --- summarize_self


def test_summarize_self() -> None:
    assert summarize_self(Plain()) == "Plain"
    assert summarize_self(Plain) == "Plain"
    assert summarize_self(Outer.Inner()) == "Outer.Inner"
    assert summarize_self(Outer.Inner) == "Outer.Inner"
    assert summarize_self(5) == "int"
    assert summarize_self(int) == "int"
    assert summarize_self(SlowRepr()) == "SlowRepr"


# --- summarize_exception


class BadInput(ValueError):
    pass


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("cannot print")


class NonStrError(Exception):
    def __str__(self) -> str:
        return 42


class HostileStr(str):
    def __len__(self) -> int:
        _trip("HostileStr.__len__")
        return 0

    def __getitem__(self, item: object) -> str:
        _trip("HostileStr.__getitem__")
        return ""


class HostileStrError(Exception):
    def __str__(self) -> str:
        return HostileStr("m" * 600)


class InterruptingError(Exception):
    def __str__(self) -> str:
        raise KeyboardInterrupt


def test_summarize_exception_builtin() -> None:
    assert summarize_exception(ValueError("bad value")) == ("ValueError", "bad value")
    assert summarize_exception(KeyError("k")) == ("KeyError", "'k'")
    assert summarize_exception(RuntimeError()) == ("RuntimeError", "")
    assert summarize_exception(KeyboardInterrupt()) == ("KeyboardInterrupt", "")


def test_summarize_exception_user_types() -> None:
    assert summarize_exception(BadInput("x")) == (f"{M}.BadInput", "x")
    assert summarize_exception(Outer.Error("y")) == (f"{M}.Outer.Error", "y")


def test_summarize_exception_unprintable() -> None:
    assert summarize_exception(UnprintableError()) == (
        f"{M}.UnprintableError",
        "<unprintable message>",
    )
    assert summarize_exception(NonStrError()) == (f"{M}.NonStrError", "<unprintable message>")
    huge = ValueError(10**5000)  # str() hits the int->str digit limit
    assert summarize_exception(huge) == ("ValueError", "<unprintable message>")


def test_summarize_exception_truncates() -> None:
    assert summarize_exception(ValueError("m" * MAX_MESSAGE)) == ("ValueError", "m" * MAX_MESSAGE)
    name, message = summarize_exception(ValueError("m" * 10_000))
    assert message == "m" * MAX_MESSAGE + f"...(+{10_000 - MAX_MESSAGE} chars)"


def test_summarize_exception_str_subclass_message(calls: list[str]) -> None:
    name, message = summarize_exception(HostileStrError())
    assert type(message) is str
    assert message == "m" * MAX_MESSAGE + "...(+100 chars)"


def test_summarize_exception_lets_base_exceptions_through() -> None:
    with pytest.raises(KeyboardInterrupt):
        summarize_exception(InterruptingError())


# --- property test

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-700, max_value=700).map(lambda e: 2 ** abs(e) * (-1) ** (e < 0))
    | st.floats()
    | st.complex_numbers()
    | st.text()
    | st.binary()
)
_hashables = _scalars | st.tuples(_scalars, _scalars) | st.frozensets(_scalars, max_size=4)
_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=6)
        | st.tuples(children, children)
        | st.dictionaries(_hashables, children, max_size=6)
        | st.sets(_hashables, max_size=6)
        | st.frozensets(_hashables, max_size=6)
    ),
    max_leaves=30,
)


@given(_values)
def test_summarize_never_raises_and_is_short(value: object) -> None:
    text = summarize(value)
    assert type(text) is str
    assert 0 < len(text) <= 200
    assert "\n" not in text and "\r" not in text
    assert text != "<unrepresentable>"


def test_type_summary_is_the_summary_of_every_instance() -> None:
    from otel_tracer.record.summary import type_summary

    class Plain:
        pass

    assert type_summary(Plain) == summarize(Plain()) == f"<{M}.{Plain.__qualname__}>"
    for value in (1, "s", [1], {}, Plain, len, np.zeros(2), np.float64(1.0), sys):
        assert type_summary(type(value)) is None, value


class _Timeout(Exception):
    """What a program's SIGALRM-based timeout raises from its handler."""


def test_a_signal_handlers_exception_passes_through(monkeypatch: pytest.MonkeyPatch) -> None:
    """``repr()`` and ``str()`` run pending signal handlers: an ``Exception`` a
    handler of the program raises while a value is summarized is the program's
    and passes on (a SIGALRM timeout must fire); any other failure still gives
    ``<unrepresentable>``."""

    def on_signal(signum: int, frame: object) -> None:
        raise _Timeout

    def handler_runs(value: object) -> str:
        on_signal(signal.SIGUSR1, None)  # as repr() would run it
        return ""

    def fails(value: object) -> str:
        raise ValueError("odd value")

    previous = signal.signal(signal.SIGUSR1, on_signal)
    try:
        monkeypatch.setitem(summary._HANDLERS, id(int), handler_runs)
        with pytest.raises(_Timeout):
            summarize(12)
        monkeypatch.setitem(summary._HANDLERS, id(int), fails)
        assert summarize(12) == "<unrepresentable>"
    finally:
        signal.signal(signal.SIGUSR1, previous)
