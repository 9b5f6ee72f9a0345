"""Starts recording in a Python process started by a traced program.

The tracer puts this directory first on ``PYTHONPATH`` of the processes a traced
program starts (``subprocess``, ``multiprocessing`` spawn and forkserver), so
Python imports this module at startup, before the program's own code. It starts
recording as ``OTEL_TRACER_FOLLOW`` says (``otel_tracer.run.follow``), then takes
this directory off ``sys.path`` again and runs the ``sitecustomize`` it hid, if any.
"""

import os
import sys


def _follow() -> None:
    config = os.environ.get("OTEL_TRACER_FOLLOW")
    if not config:
        return
    import json

    sys.path.insert(0, json.loads(config)["tool_root"])  # the tracer's own code
    try:
        from otel_tracer.run.follow import start_from_environment
    finally:
        sys.path.pop(0)
    start_from_environment(config)


def _hidden_sitecustomize() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    import importlib.machinery
    import importlib.util

    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", sys.path)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


try:
    _follow()
except Exception as error:  # never stop the program from starting
    print(
        f"otel-tracer: warning: process {os.getpid()} is not traced "
        f"({type(error).__name__}: {error})",
        file=sys.stderr,
    )
_hidden_sitecustomize()
