"""``os.execv`` and friends while recording: the process is about to become
another program, and nothing of the tracer would run again in it (no exit
handler, no ``finally``). So the trace of what ran until then is written first,
and the new program runs untraced (the variables that would make it a followed
process are taken out of its environment: it has this process's pid, and its
files would take this process's names).

Every ``os.exec*`` function ends in ``os.execv`` or ``os.execve``, looked up in
the ``os`` module when called: replacing those two covers them all.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

_real_execv = os.execv
_real_execve = os.execve
_before: Callable[[], None] | None = None
_env_names: tuple[str, ...] = ()


def install(before: Callable[[], None], env_names: tuple[str, ...]) -> None:
    """Call ``before()`` (write the trace) before the program execs, and take
    ``env_names`` out of the new program's environment."""
    global _before, _env_names
    _before, _env_names = before, env_names
    os.execv = _execv
    os.execve = _execve


def uninstall() -> None:
    global _before
    _before = None
    os.execv = _real_execv
    os.execve = _real_execve


def _prepare(path: Any) -> None:
    """Write the trace once, unless the exec will fail anyway (``os.execvp``
    tries every directory of ``PATH`` until one holds the program)."""
    global _before
    if _before is None:
        return
    if not isinstance(path, int) and not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return
    before, _before = _before, None
    os.execv, os.execve = _real_execv, _real_execve
    for name in _env_names:
        os.environ.pop(name, None)
    before()


def _execv(path: Any, argv: Any) -> None:
    _prepare(path)
    _real_execv(path, argv)


def _execve(path: Any, argv: Any, env: Mapping[str, str]) -> None:
    _prepare(path)
    if _before is None and _env_names:
        env = {name: value for name, value in env.items() if name not in _env_names}
    _real_execve(path, argv, env)
