"""An ``argparse`` parser whose errors are one line and exit status 2."""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from otel_tracer.trace.text import printable


class OneLineParser(argparse.ArgumentParser):
    """Prints ``LABEL: error: MESSAGE (see --help)`` on bad arguments and exits 2."""

    def __init__(self, *args: Any, label: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.label = label

    def error(self, message: str) -> NoReturn:
        print(f"{self.label}: error: {printable(message)} (see --help)", file=sys.stderr)
        raise SystemExit(2)
