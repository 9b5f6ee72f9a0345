"""Importing numpy so that its threads never take the program's signals.

numpy's BLAS threads start when it is imported, and take their signal mask from
the importing thread: they are started with the program's signals blocked
(``signal_masks``): a signal taken by one of them would not interrupt the
program's blocking calls. numpy also adds 4 warning filters when
imported; the traced program shares the process and must see the filters it
would see untraced (``warnings.filters``), so they are taken out again (numpy
warns with them only about binary-incompatible extensions). The tracer imports
numpy through here.
"""

from __future__ import annotations

import sys
import warnings

from otel_tracer.trace.signal_masks import program_signals_blocked


def import_numpy() -> None:
    """Import numpy (once), with the program's signals blocked in this thread and
    the warning filters as they were."""
    if "numpy" in sys.modules:
        return
    filters = list(warnings.filters)
    try:
        with program_signals_blocked(), warnings.catch_warnings():
            # numpy warns when imported again after a program took it out of sys.modules
            warnings.simplefilter("ignore")
            import numpy  # noqa: F401
    finally:
        warnings.filters[:] = [f for f in warnings.filters if f in filters]
        warnings._filters_mutated()  # type: ignore[attr-defined]
