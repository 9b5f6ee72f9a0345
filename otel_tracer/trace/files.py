"""Checking an output path before the program runs (no numpy needed yet)."""

from __future__ import annotations

import os
from pathlib import Path


def output_problem(path: str) -> str | None:
    """Why ``path`` cannot be written (one line), or None when it can."""
    directory = Path(path).parent.resolve()
    if not directory.is_dir():
        return f"cannot write {path}: directory {directory} does not exist"
    if not os.access(directory, os.W_OK):
        return f"cannot write {path}: directory {directory} is not writable"
    if Path(path).is_dir():
        return f"cannot write {path}: it is a directory"
    return None
