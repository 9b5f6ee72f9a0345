"""Run a user's script or module exactly as ``python script.py`` / ``python -m``
would, while a Recorder is recording (after coverage.py's execfile).

``sys.argv``, ``sys.path[0]``, ``__main__``, ``__file__`` and the standard
streams are as Python sets them. This tool's own packages are taken out of
``sys.modules`` while the program runs, so a program with its own ``cli`` or
``patterns`` package imports its own.
"""

from __future__ import annotations

import atexit
import builtins
import importlib.machinery
import importlib.util
import os
import signal
import struct
import sys
import threading
import traceback
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from otel_tracer.record.program_errors import drop_tool_frames
from otel_tracer.record.scope import TOOL_PACKAGES, tool_dirs
from otel_tracer.run import interrupts, sigterm

_TOOL_DIRS = tuple(d + os.sep for d in tool_dirs())


@dataclass
class Outcome:
    """How the program ended."""

    exit_code: int
    exception: BaseException | None = None  # uncaught, other than SystemExit
    interrupted: bool = False  # ended by KeyboardInterrupt (Ctrl-C)
    terminated: bool = False  # ended by SIGTERM
    execed: bool = False  # replaced by another program (os.exec*): no exit status


class Terminated(BaseException):
    """Raised in the main thread when SIGTERM arrives, so that the run unwinds
    and its trace is written before the process dies of SIGTERM."""


class ProgramNotFound(Exception):
    """The module given with -m cannot be found."""


def module_origin(name: str) -> str:
    """File of the module ``python -m name`` would run (a package's ``__main__``)."""
    sys.path.insert(0, os.getcwd())
    try:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations is not None:
            spec = importlib.util.find_spec(name + ".__main__")
    except (ImportError, ValueError) as error:
        raise ProgramNotFound(f"cannot find module {name!r}: {error}") from None
    finally:
        sys.path.pop(0)
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        raise ProgramNotFound(f"no module named {name!r}")
    return spec.origin


def run_script(path: str, args: list[str], start: Callable[[], None]) -> Outcome:
    """Run the script at ``path`` as ``__main__``; ``start`` begins recording."""
    source = Path(path).read_bytes()
    code = compile(source, os.path.abspath(path), "exec", dont_inherit=True)
    main = _new_main()
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", os.path.abspath(path))
    main.__file__ = os.path.abspath(path)
    main.__cached__ = None  # type: ignore[attr-defined]  # a script is never cached
    with _program_environment(main, [path, *args], os.path.dirname(os.path.realpath(path))):
        return _execute(lambda: exec(code, main.__dict__), start)


def _new_main() -> types.ModuleType:
    """An empty ``__main__`` as the interpreter makes it: ``__builtins__`` is the
    ``builtins`` module (in other modules' globals it is its dict), and before
    3.14 an empty ``__annotations__`` comes first."""
    main = types.ModuleType("__main__")
    if sys.version_info < (3, 14):
        main.__annotations__ = {}
    main.__builtins__ = builtins  # type: ignore[attr-defined]
    return main


def run_module(name: str, args: list[str], start: Callable[[], None]) -> Outcome:
    """Run module ``name`` as ``python -m name`` does; ``start`` begins recording."""
    import runpy

    main = _new_main()
    with _program_environment(main, [module_origin(name), *args], os.getcwd()):
        return _execute(lambda: runpy._run_module_as_main(name, alter_argv=True), start)


def _execute(body: Callable[[], object], start: Callable[[], None]) -> Outcome:
    caught = _catch_sigterm()
    start()
    try:
        interrupts.release()  # a Ctrl-C held during start-up interrupts the program now
        body()
        outcome = Outcome(0)
    except SystemExit as stop:
        outcome = Outcome(_exit_code(stop.code))
    except KeyboardInterrupt as error:
        _report_uncaught(error)
        outcome = Outcome(130, error, interrupted=True)
    except Terminated:  # killed: no traceback, and no waiting for other threads
        outcome = Outcome(128 + signal.SIGTERM, terminated=True)
    except BaseException as error:  # the program's own uncaught exception
        _report_uncaught(error)
        outcome = Outcome(1, error)
    if not outcome.terminated:
        _shut_down_threads()
        _run_exit_handlers()
        _threads_usable_again()
    if caught:
        sigterm.uninstall(raise_terminated)
    return outcome


def raise_terminated(signum: int, frame: object) -> None:
    """The tracer's SIGTERM handler while the program runs."""
    sigterm.handled()
    raise Terminated("SIGTERM")


def _default_sigterm_in_child() -> None:
    """A forked child dies of SIGTERM as it would untraced (``follow`` may then
    install its own handler)."""
    sigterm.uninstall(raise_terminated)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_default_sigterm_in_child)


def _catch_sigterm() -> bool:
    """Turn SIGTERM into ``Terminated`` while the program runs, when SIGTERM
    would otherwise kill the process (a handler the program installs later
    replaces this one, as it would replace the default; ``signal.getsignal``
    still says ``SIG_DFL``, see ``sigterm``). Returns whether it did."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False
    sigterm.install(raise_terminated)
    return True


_LONG_MAX = 2 ** (8 * struct.calcsize("l") - 1) - 1
_LONG_MIN = -_LONG_MAX - 1


def _exit_code(code: object) -> int:
    """The process exit status ``sys.exit(code)`` gives (printing a message)."""
    if code is None:
        return 0
    if isinstance(code, int):
        if _LONG_MIN <= code <= _LONG_MAX:
            return code & 0xFF
        # CPython exits with (int)PyLong_AsLong(code): -1, so 255, and from 3.12
        # says why (3.13: as its threads shut down)
        overflow = "OverflowError: Python int too large to convert to C long"
        if sys.version_info[:2] == (3, 12):
            print(overflow, file=sys.stderr)
        elif sys.version_info >= (3, 13):
            print(f"Exception ignored on threading shutdown:\n{overflow}", file=sys.stderr)
        return 255
    print(code, file=sys.stderr)
    return 1


def _report_uncaught(error: BaseException) -> None:
    """Print the traceback as Python would, without this tool's frames (the
    runner's own, and a hook's that a signal handler interrupted)."""
    drop_tool_frames(error)
    sys.stdout.flush()
    sys.excepthook(type(error), error, error.__traceback__)


def _run_exit_handlers() -> None:
    """Run the program's ``atexit`` handlers now, as interpreter exit would next
    (recorded, and before the trace is written: ``multiprocessing`` joins or
    terminates its child processes there, which then write their traces)."""
    try:
        atexit._run_exitfuncs()
    except KeyboardInterrupt:
        pass


def _shut_down_threads() -> None:
    """What interpreter shutdown does first (``threading._shutdown``): call the
    ``threading`` exit functions (``concurrent.futures`` tells the idle workers of
    an executor never shut down to stop there), then wait for the program's
    non-daemon threads."""
    threading._SHUTTING_DOWN = True  # type: ignore[attr-defined]
    calls = getattr(threading, "_threading_atexits", [])
    for call in reversed(calls[:]):
        try:
            call()
        except Exception:  # as at shutdown: said, and the others still run
            print("Exception ignored in threading exit function:", file=sys.stderr)
            traceback.print_exc()
    calls.clear()  # run once, as at exit
    _join_program_threads()


def _threads_usable_again() -> None:
    """After the program's shutdown, the tracer may still start threads and
    executors of its own (the OTLP export): ``concurrent.futures`` accepts work
    again, and its exit functions are registered again, so that the real
    interpreter exit stops those executors' idle workers too (else it would wait
    for them forever)."""
    threading._SHUTTING_DOWN = False  # type: ignore[attr-defined]
    for name in ("concurrent.futures.thread", "concurrent.futures.process"):
        executors = sys.modules.get(name)
        if executors is None:
            continue
        if hasattr(executors, "_shutdown"):
            executors._shutdown = False
        if hasattr(executors, "_global_shutdown"):
            executors._global_shutdown = False
        exit_function = getattr(executors, "_python_exit", None)
        if exit_function is not None and hasattr(threading, "_register_atexit"):
            threading._register_atexit(exit_function)


def _join_program_threads() -> None:
    """Wait for the program's non-daemon threads, as interpreter shutdown does."""
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon and thread.is_alive():
            try:
                thread.join()
            except KeyboardInterrupt:
                return


@contextmanager
def _program_environment(main: types.ModuleType, argv: list[str], path0: str) -> Iterator[None]:
    """``__main__``, ``sys.argv`` and ``sys.path[0]`` as Python sets them for the
    program, with this tool's packages hidden from its imports."""
    saved_main, saved_argv, saved_path = sys.modules["__main__"], sys.argv, sys.path[:]
    ours = {
        name: module
        for name, module in sys.modules.items()
        if name.split(".")[0] in TOOL_PACKAGES
        and (getattr(module, "__file__", None) or "").startswith(_TOOL_DIRS)
    }
    for name in ours:
        del sys.modules[name]
    sys.modules["__main__"] = main
    sys.argv = argv
    sys.path[0:1] = [path0]
    try:
        yield
    finally:
        sys.modules["__main__"] = saved_main
        sys.argv = saved_argv
        sys.path[:] = saved_path
        for name in [n for n in sys.modules if n.split(".")[0] in TOOL_PACKAGES]:
            del sys.modules[name]  # the program's own cli/patterns/... modules
        sys.modules.update(ours)
