"""The tracer's own imports, out of the program's sight.

Recording needs few modules; building and writing the trace need many more
(numpy, the exporters), imported only once the program has ended, so that a
traced process starts almost as fast as an untraced one. Those late imports
must not pass through what the program did to the import system (a
``sys.meta_path`` finder that logs imports, an import sandbox on
``builtins.__import__``, its own modules named ``cli`` or ``patterns``):
``tool_imports`` puts back the import system as it was before the program
started, for as long as the tracer imports, then gives the program's back.
"""

from __future__ import annotations

import builtins
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from otel_tracer.record.scope import TOOL_PACKAGES, program_modules_named_like_ours
from otel_tracer.trace.numpy_threads import import_numpy

TOOL_ROOT = str(Path(__file__).resolve().parents[2])  # holds otel_tracer/, cli/, ...


@dataclass(frozen=True)
class ImportSystem:
    """The parts of the interpreter's import system a program may change."""

    meta_path: list[Any]
    path_hooks: list[Any]
    path: list[str]
    path_importer_cache: dict[str, Any]
    import_function: Callable[..., Any]

    @classmethod
    def now(cls) -> ImportSystem:
        return cls(
            list(sys.meta_path),
            list(sys.path_hooks),
            list(sys.path),
            dict(sys.path_importer_cache),
            builtins.__import__,
        )

    def install(self) -> None:
        sys.meta_path = list(self.meta_path)
        sys.path_hooks = list(self.path_hooks)
        sys.path = list(self.path)
        sys.path_importer_cache = dict(self.path_importer_cache)
        builtins.__import__ = self.import_function


_before_program: ImportSystem | None = None
_recursion_limit = sys.getrecursionlimit()  # the tracer's, before the program set its own
_hidden: dict[str, ModuleType] = {}  # this tool's modules, out of sys.modules (followed processes)


def remember() -> None:
    """Note the import system as it is now, before the program starts (the
    tracer's command line, or the bootstrap of a followed process)."""
    global _before_program, _recursion_limit
    _before_program = ImportSystem.now()
    _recursion_limit = sys.getrecursionlimit()


def hide_tool_modules() -> None:
    """Take this tool's modules out of ``sys.modules`` (kept aside), so that a
    followed program with its own ``cli``, ``exporters`` or ``otel_tracer``
    imports its own, as the runner does in the tracer's process."""
    theirs = program_modules_named_like_ours()
    for name in [n for n in sys.modules if n.split(".")[0] in TOOL_PACKAGES]:
        if name not in theirs:
            _hidden[name] = sys.modules.pop(name)


@contextmanager
def tool_imports(numpy: bool = True) -> Iterator[None]:
    """Imports as before the program started (see ``remember``), this tool's
    packages first, whatever modules of the same names the program imported.
    ``numpy``: import it first (building a trace needs it), with its threads
    started with SIGINT and SIGTERM blocked (``trace/numpy_threads.py``)."""
    theirs = program_modules_named_like_ours()
    for name in theirs:
        del sys.modules[name]
    their_numpy = _program_numpy()
    for name in their_numpy:
        sys.modules.pop(name, None)
    # the program may have left a recursion limit too low for building a trace
    their_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(their_limit, _recursion_limit))
    # hidden while the program runs (runner, followed processes): hidden again after
    hidden = TOOL_PACKAGES if "otel_tracer" not in sys.modules else ()
    sys.modules.update(_hidden)
    programs = ImportSystem.now()
    ours = _before_program or programs
    ImportSystem(
        ours.meta_path,
        ours.path_hooks,
        [TOOL_ROOT, *ours.path],
        ours.path_importer_cache,
        ours.import_function,
    ).install()
    try:
        if numpy:
            import_numpy()
        yield
    finally:
        sys.setrecursionlimit(their_limit)
        programs.install()
        for name, module in their_numpy.items():
            if module is _ABSENT:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        for name in [n for n in sys.modules if n.split(".")[0] in hidden]:
            _hidden[name] = sys.modules.pop(name)  # hidden again, with what came since
        sys.modules.update(theirs)


_ABSENT = object()  # a name the program took out of sys.modules


def _program_numpy() -> dict[str, Any]:
    """numpy's entries in ``sys.modules`` as the program left them, when they are
    not numpy's own (name -> module, None, or _ABSENT): ``numpy`` replaced by a
    module of the program or by None (an import blocker), or taken out while its
    submodules stay; its submodules set to None. The tracer imports the real
    numpy in their place while it builds the trace, and gives them back after."""
    numpy = sys.modules.get("numpy", _ABSENT)
    entries: dict[str, Any] = {
        name: None
        for name, module in sys.modules.items()
        if name.startswith("numpy.") and module is None
    }
    if numpy is _ABSENT:
        if any(name.startswith("numpy.") for name in sys.modules):
            entries["numpy"] = _ABSENT
    elif not (isinstance(numpy, ModuleType) and hasattr(numpy, "ndarray")):
        entries["numpy"] = numpy
    return entries
