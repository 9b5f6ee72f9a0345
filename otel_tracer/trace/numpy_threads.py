"""Importing numpy so that its threads never take the program's signals.

numpy's BLAS threads start when it is imported, and take their signal mask from
the importing thread: delivered to one of them, a SIGINT or SIGTERM would leave
a main thread blocked in a wait (a ``multiprocessing`` worker in
``SimpleQueue.get``) waiting for ever. numpy also adds 4 warning filters when
imported; the traced program shares the process and must see the filters it
would see untraced (``warnings.filters``), so they are taken out again (numpy
warns with them only about binary-incompatible extensions). The tracer imports
numpy through here.
"""

from __future__ import annotations

import signal
import sys
import warnings


def import_numpy() -> None:
    """Import numpy (once), with SIGINT and SIGTERM blocked in this thread and the
    warning filters as they were."""
    if "numpy" in sys.modules:
        return
    filters = list(warnings.filters)
    mask = None
    if hasattr(signal, "pthread_sigmask"):
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        with warnings.catch_warnings():
            # numpy warns when imported again after a program took it out of sys.modules
            warnings.simplefilter("ignore")
            import numpy  # noqa: F401
    finally:
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        warnings.filters[:] = [f for f in warnings.filters if f in filters]
        warnings._filters_mutated()  # type: ignore[attr-defined]
