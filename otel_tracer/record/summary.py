"""Short, safe, one-line summaries of arbitrary Python values.

Used from inside the ``sys.setprofile`` hook to record arguments, return values
and exceptions, so every function here:

* is fast for common values (exact-type dispatch comes first),
* never raises an ``Exception`` of its own (failures degrade to
  ``<unrepresentable>``; one raised by a signal handler of the program while it
  ran, as ``repr()`` runs pending handlers, is the program's and passes on),
* never recurses into nested containers,
* never calls user-defined ``__repr__``/``__str__``/``__len__``/``__iter__``/
  ``__eq__``/``__hash__``/``__getattr__`` or properties.  Types are identified
  with ``type(value)`` and class attributes are looked up in the MRO ``__dict__``s,
  bypassing ``__getattribute__`` and metaclass hooks.

Two documented exceptions to the last rule: array-likes (types that declare
``shape`` and ``dtype``) have those attributes (and ``device``) read, and
``summarize_exception`` calls ``str(exc)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from itertools import islice
from types import (
    BuiltinFunctionType,
    ClassMethodDescriptorType,
    FunctionType,
    MethodDescriptorType,
    MethodType,
    MethodWrapperType,
    ModuleType,
    WrapperDescriptorType,
)

from otel_tracer.record.program_errors import from_signal_handler

__all__ = [
    "MAX_ITEMS",
    "MAX_MESSAGE",
    "MAX_STR",
    "summarize",
    "summarize_exception",
    "summarize_self",
    "type_summary",
]

MAX_STR = 64
"""Characters (or bytes) of a ``str``/``bytes`` shown before truncation."""
MAX_ITEMS = 3
"""Leading items shown for builtin containers."""
MAX_MESSAGE = 500
"""Characters of an exception message kept by ``summarize_exception``."""

_MAX_INT_BITS = 128  # larger ints are shown as ``int(<N bits>)``
_MAX_REPR = 2 * MAX_STR + 2  # cap on the repr of the shown str/bytes prefix (escapes expand)
_MAX_ITEM_REPR = 24  # a container item is shown only if its repr fits in this
_MAX_DIMS = 8  # array dimensions shown before ``...``
_MAX_META = 32  # cap on dtype/device text
_UNREPRESENTABLE = "<unrepresentable>"

# Unbound C-level getters: they read type slots directly and never run
# metaclass ``__getattribute__``/``__getattr__`` or user descriptors.
_type_qualname: Callable[[type], str] = type.__dict__["__qualname__"].__get__
_type_module: Callable[[type], object] = type.__dict__["__module__"].__get__
_type_mro: Callable[[type], tuple[type, ...]] = type.__dict__["__mro__"].__get__
_type_dict: Callable[[type], Mapping[str, object]] = type.__dict__["__dict__"].__get__
_module_dict: Callable[[ModuleType], dict[str, object]] = ModuleType.__dict__["__dict__"].__get__


def _type_has(tp: type, name: str) -> bool:
    """Whether ``name`` is defined on ``tp`` or a base, without attribute hooks."""
    for klass in _type_mro(tp):
        if name in _type_dict(klass):
            return True
    return False


def _join(module: object, qualname: str) -> str:
    """``module.qualname``, or just ``qualname`` for builtins / unknown modules."""
    if type(module) is not str or module == "builtins" or not module:
        return qualname
    return f"{module}.{qualname}"


def _type_name(tp: type) -> str:
    """``module.QualName`` of a class (``builtins.`` omitted)."""
    qualname = _type_qualname(tp)
    try:
        module = _type_module(tp)
    except Exception as error:  # a heap type created without ``__module__``
        if from_signal_handler(error):
            raise  # a signal handler of the program ran here
        return qualname
    return _join(module, qualname)


def _clip(value: str | bytes, unit: str) -> str:
    """repr of a prefix of at most MAX_STR items, then ``...(+N unit)`` if cut."""
    size = len(value)
    if size <= MAX_STR:
        text = repr(value)
        if len(text) <= _MAX_REPR:
            return text
    keep = min(size, MAX_STR)
    text = repr(value[:keep])
    while len(text) > _MAX_REPR:  # heavy escaping: keep fewer items (terminates at 1)
        keep //= 2
        text = repr(value[:keep])
    return f"{text}...(+{size - keep} {unit})"


def _str(value: str) -> str:
    return _clip(value, "chars")


def _bytes(value: bytes) -> str:
    return _clip(value, "bytes")


def _int(value: int) -> str:
    bits = value.bit_length()
    return repr(value) if bits <= _MAX_INT_BITS else f"int(<{bits} bits>)"


def _item(value: object) -> str | None:
    """repr of a short scalar of an exact builtin type, else None."""
    tp = type(value)
    if tp is int:
        if value.bit_length() > 64:
            return None
    elif tp is str or tp is bytes:
        if len(value) > _MAX_ITEM_REPR:
            return None
    elif not (value is None or tp is bool or tp is float or tp is complex):
        return None
    text = repr(value)
    return text if len(text) <= _MAX_ITEM_REPR else None


def _container(name: str, size: int, items: Iterable[str | None], brackets: str) -> str:
    """``name(len=N)`` plus the leading items when all of them are short scalars."""
    head = f"{name}(len={size})"
    shown = []
    for text in items:
        if text is None:
            return head
        shown.append(text)
    if not shown:
        return head
    more = ", ..." if size > MAX_ITEMS else ""
    return f"{head}{brackets[0]}{', '.join(shown)}{more}{brackets[1]}"


def _list(value: list[object]) -> str:
    return _container("list", len(value), map(_item, value[:MAX_ITEMS]), "[]")


def _tuple(value: tuple[object, ...]) -> str:
    return _container("tuple", len(value), map(_item, value[:MAX_ITEMS]), "[]")


def _set(value: set[object]) -> str:
    return _container("set", len(value), map(_item, islice(value, MAX_ITEMS)), "{}")


def _frozenset(value: frozenset[object]) -> str:
    return _container("frozenset", len(value), map(_item, islice(value, MAX_ITEMS)), "{}")


def _dict(value: dict[object, object]) -> str:
    def pairs() -> Iterable[str | None]:
        for key, val in islice(value.items(), MAX_ITEMS):
            key_text, val_text = _item(key), _item(val)
            yield None if key_text is None or val_text is None else f"{key_text}: {val_text}"

    return _container("dict", len(value), pairs(), "{}")


def _class(value: type) -> str:
    return f"<class {_type_name(value)}>"


def _module(value: ModuleType) -> str:
    name = _module_dict(value).get("__name__")
    return f"<module {name}>" if type(name) is str else "<module>"


def _function(value: FunctionType) -> str:
    return f"<function {_join(value.__module__, value.__qualname__)}>"


def _owner_function(owner: object, name: str, module: object = None) -> str:
    """``<function ...>`` for a builtin bound to ``owner`` (a module, class or instance)."""
    if owner is None or issubclass(type(owner), ModuleType):
        return f"<function {_join(module, name)}>"
    cls = owner if issubclass(type(owner), type) else type(owner)
    return f"<function {_type_name(cls)}.{name}>"


def _builtin(value: BuiltinFunctionType) -> str:
    return _owner_function(value.__self__, value.__name__, value.__module__)


def _method_wrapper(value: MethodWrapperType) -> str:
    return _owner_function(value.__self__, value.__name__)


def _descriptor(value: MethodDescriptorType) -> str:
    return _owner_function(value.__objclass__, value.__name__)


def _method(value: MethodType) -> str:
    func = value.__func__
    if type(func) is FunctionType:
        return _function(func)
    if type(func) is BuiltinFunctionType:
        return _builtin(func)
    return _generic(type(value))


def _generic(tp: type) -> str:
    return f"<{_type_name(tp)}>"


def _meta_text(value: object) -> str:
    """Short text for a dtype/device object (``str`` of it, ``torch.`` stripped)."""
    text = value if type(value) is str else str.__str__(str(value))
    text = text.removeprefix("torch.")
    return text if len(text) <= _MAX_META else f"{text[:_MAX_META]}..."


def _dim(value: object) -> str:
    tp = type(value)
    if tp is int:
        return _int(value)
    if tp is float:  # e.g. dask's nan for unknown sizes
        return repr(value)
    if value is None:  # unknown size
        return "?"
    raise TypeError("unsupported dimension")


def _array(value: object, tp: type) -> str:
    """``ClassName(dtype[d0, d1], device)`` for array-likes; raises when unsupported."""
    shape = value.shape
    if type(shape) is list:
        dims = shape[:_MAX_DIMS]
    elif issubclass(type(shape), tuple):  # tuple or subclass (torch.Size)
        dims = tuple.__getitem__(shape, slice(0, _MAX_DIMS))
    else:
        raise TypeError("unsupported shape")
    text = ", ".join(map(_dim, dims))
    ndim = len(shape) if type(shape) is list else tuple.__len__(shape)
    if ndim > _MAX_DIMS:
        text += f", ...(+{ndim - _MAX_DIMS} dims)"
    text = f"{_meta_text(value.dtype)}[{text}]"
    if _type_has(tp, "device"):
        device = value.device
        if device is not None and not callable(device):  # skip jax-style methods
            text = f"{text}, {_meta_text(device)}"
    return f"{_type_qualname(tp)}({text})"


def _other(value: object) -> str:
    """Everything without an exact-type handler."""
    tp = type(value)
    if issubclass(tp, type):
        return _class(value)
    if issubclass(tp, ModuleType):
        return _module(value)
    if _type_has(tp, "shape") and _type_has(tp, "dtype"):
        try:
            return _array(value, tp)
        except Exception as error:
            if from_signal_handler(error):
                raise  # a signal handler of the program ran here
    return _generic(tp)


# Keyed by id(type): no hashing of (possibly user-metaclass) type objects. The
# types are builtins that live for the whole process, so their ids are stable.
_HANDLERS: dict[int, Callable[[object], str]] = {
    id(type(None)): repr,
    id(bool): repr,
    id(int): _int,
    id(float): repr,
    id(complex): repr,
    id(str): _str,
    id(bytes): _bytes,
    id(list): _list,
    id(tuple): _tuple,
    id(dict): _dict,
    id(set): _set,
    id(frozenset): _frozenset,
    id(type): _class,
    id(ModuleType): _module,
    id(FunctionType): _function,
    id(MethodType): _method,
    id(BuiltinFunctionType): _builtin,
    id(MethodWrapperType): _method_wrapper,
    id(WrapperDescriptorType): _descriptor,
    id(MethodDescriptorType): _descriptor,
    id(ClassMethodDescriptorType): _descriptor,
}


def summarize(value: object) -> str:
    """One-line summary of ``value``; never calls user code, never raises an
    ``Exception`` of its own (one a signal handler of the program raised while
    it ran, in ``repr()`` say, is the program's and passes on).

    Formats (``builtins.`` is always omitted from module-qualified names):

    * ``None``/``bool``/``int``/``float``/``complex``: ``repr``, e.g. ``42``;
      ints over 128 bits: ``int(<N bits>)``.
    * ``str``/``bytes``: ``repr``; longer than ``MAX_STR``: repr of the first
      ``MAX_STR`` chars/bytes plus the rest's size, e.g. ``'aaa...a'...(+936 chars)``
      or ``b'...'...(+10 bytes)`` (fewer are kept if escapes make the repr long).
    * ``list``/``tuple``/``dict``/``set``/``frozenset``: ``list(len=5)[1, 2, 3, ...]``,
      ``tuple(len=2)[1, 'a']``, ``dict(len=2){'a': 1, 'b': 2}``, ``set(len=1){1}``;
      items only when the first ``MAX_ITEMS`` are short scalars, else ``list(len=5)``.
    * array-likes (type defines ``shape`` and ``dtype``):
      ``Tensor(float32[8, 128], cuda:0)``, ``ndarray(float64[], cpu)``.
    * classes ``<class mod.Qual>``, functions ``<function mod.qual>``, modules
      ``<module name>``; anything else ``<mod.Qual>`` (e.g. ``<object>``).

    Only exact builtin types get value output: subclasses (``IntEnum``, ``str``
    subclasses, ...) use the ``<mod.Qual>`` form.
    """
    try:
        handler = _HANDLERS.get(id(type(value)))
        if handler is not None:
            return handler(value)
        return _other(value)
    except Exception as error:
        if from_signal_handler(error):
            raise  # a signal handler of the program ran here
        return _UNREPRESENTABLE


def type_summary(tp: type) -> str | None:
    """The summary every value of type ``tp`` gets when it depends on the type
    alone (the ``<mod.Qual>`` form), else None. Lets a recorder cache it per type."""
    try:
        if id(tp) in _HANDLERS or issubclass(tp, (type, ModuleType)):
            return None
        if _type_has(tp, "shape") and _type_has(tp, "dtype"):
            return None
        return _generic(tp)
    except Exception as error:
        if from_signal_handler(error):
            raise  # a signal handler of the program ran here
        return None


def summarize_self(value: object) -> str:
    """Class qualname for a ``self``/``cls`` argument (``value`` itself if a class)."""
    try:
        tp = type(value)
        return _type_qualname(value if issubclass(tp, type) else tp)
    except Exception as error:
        if from_signal_handler(error):
            raise  # a signal handler of the program ran here
        return _UNREPRESENTABLE


def summarize_exception(exc: BaseException) -> tuple[str, str]:
    """``(type name, message)`` for an exception.

    Type name is ``mod.Qual`` (``ValueError`` for builtins); message is ``str(exc)``,
    ``<unprintable message>`` if that fails, cut to ``MAX_MESSAGE`` chars plus
    ``...(+N chars)``.
    """
    try:
        name = _type_name(type(exc))
    except Exception as error:
        if from_signal_handler(error):
            raise  # a signal handler of the program ran here
        name = _UNREPRESENTABLE
    try:
        message = str.__str__(str(exc))  # exact str: no str-subclass overrides later
    except Exception as error:
        if from_signal_handler(error):
            raise  # a signal handler of the program ran here
        return name, "<unprintable message>"
    if len(message) > MAX_MESSAGE:
        message = f"{message[:MAX_MESSAGE]}...(+{len(message) - MAX_MESSAGE} chars)"
    return name, message
