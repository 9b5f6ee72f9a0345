"""What to record: the knobs shared by the CLI, the Python API and the cores."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RecordOptions:
    """Recording options (see ``python -m cli.main --help``)."""

    external_calls: bool = True
    include_builtins: bool = False
    capture_args: bool = True
    max_depth: int | None = None
    max_calls: int | None = None
    ring_buffer: int | None = None  # keep only the last N calls (otel_tracer/stream/ring.py)
