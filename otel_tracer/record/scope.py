"""Scope rules: which source files are traced in full.

A file is in scope when it lies under one of the scope roots and not inside an
*excluded* directory (the standard library, site-packages/dist-packages, this
tool's own packages) that sits below that root. A root named inside an excluded
directory (``--scope .venv/lib/python3.11/site-packages/foo``) wins over the
exclusion. All paths are compared after resolving symlinks.
"""

from __future__ import annotations

import os
import site
import sysconfig
from collections.abc import Iterable, Sequence
from pathlib import Path

LIBRARY_DIR_NAMES = ("site-packages", "dist-packages")
TOOL_PACKAGES = ("otel_tracer", "cli", "exporters", "patterns")
MTTL = "mttl"


def _real(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.fspath(path))


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def tool_dirs() -> list[str]:
    """Directories holding this tool's own packages."""
    here = Path(__file__).resolve().parents[2]  # otel_tracer/record/scope.py -> the root
    return [_real(here / name) for name in TOOL_PACKAGES]


def program_modules_named_like_ours() -> dict[str, object]:
    """Modules in ``sys.modules`` named like this tool's packages (``cli``,
    ``patterns``, ...) that are not this tool's: a program's own."""
    import sys

    ours = tuple(d + os.sep for d in tool_dirs())
    return {
        name: module
        for name, module in sys.modules.items()
        if name.split(".")[0] in TOOL_PACKAGES
        and not (getattr(module, "__file__", None) or "").startswith(ours)
    }


def library_dirs() -> list[str]:
    """The standard library and every site-packages directory Python knows of."""
    paths = sysconfig.get_paths()
    dirs = {paths["stdlib"], paths["platstdlib"], paths["purelib"], paths["platlib"]}
    try:
        dirs.update(site.getsitepackages())
        dirs.add(site.getusersitepackages())
    except AttributeError:  # some embedded interpreters lack these
        pass
    return sorted({_real(d) for d in dirs if d})


def default_scope(script: str) -> list[str]:
    """The documented default: the outermost ``mttl`` directory in the script's
    path if there is one, otherwise the directory containing the script."""
    script_path = Path(_real(script))
    parts = script_path.parent.parts
    if MTTL in parts:
        return [str(Path(*parts[: parts.index(MTTL) + 1]))]
    return [str(script_path.parent)]


class Scope:
    """Decides for a file name whether its code is in scope (cached per name)."""

    def __init__(self, roots: Iterable[str], excluded: Sequence[str] | None = None) -> None:
        self.roots = sorted({_real(r) for r in roots})
        self.excluded = list(excluded) if excluded is not None else library_dirs() + tool_dirs()
        self._cache: dict[str, bool] = {}

    def __contains__(self, filename: str) -> bool:
        cached = self._cache.get(filename)
        if cached is None:
            cached = self._cache[filename] = self._decide(filename)
        return cached

    def _decide(self, filename: str) -> bool:
        if not filename or filename.startswith("<"):
            return False  # <string>, <frozen ...>, <stdin>: no file to be in scope
        path = _real(filename)
        for root in self.roots:
            if _is_under(path, root) and not self._excluded_below(path, root):
                return True
        return False

    def _excluded_below(self, path: str, root: str) -> bool:
        """True when an excluded directory strictly inside ``root`` contains ``path``."""
        for ex in self.excluded:
            if ex != root and _is_under(ex, root) and _is_under(path, ex):
                return True
        relative = Path(path).relative_to(root).parts[:-1]
        return any(part in LIBRARY_DIR_NAMES for part in relative)
