"""Writing the viewer: served form (a page plus its data folder) or one
standalone HTML file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from exporters.json_trace import atomic_output
from exporters.viewer.data import build_data
from exporters.viewer.page import render_page
from otel_tracer.model import Trace
from patterns.engine import Folding, fold_trace
from patterns.fold import FoldOptions


def fold_for_viewer(
    trace: Trace, patterns: bool = True, options: FoldOptions | None = None
) -> Folding | None:
    """The folding the viewer shows: with ``options``, else the options the trace
    was annotated with (when it was), else the defaults; None without patterns."""
    if not patterns:
        return None
    if options is not None:
        return fold_trace(trace, options)
    options = FoldOptions()
    if trace.patterns is not None:
        saved = trace.patterns.section.get("options", {})
        options = FoldOptions(match=saved.get("match", "structure"), near=saved.get("near", True))
    return fold_trace(trace, options)


def page_title(trace: Trace, fallback: str) -> str:
    """The program and its arguments, as the page title."""
    argv = trace.meta.get("argv") or []
    if argv:
        return " ".join([os.path.basename(str(argv[0])), *map(str, argv[1:])])
    return fallback


def page_name(trace_path: str | os.PathLike[str]) -> str:
    """``trace_output.json`` -> ``trace_output`` (also for .json.gz)."""
    name = Path(trace_path).name
    for suffix in (".gz", ".json"):
        name = name.removesuffix(suffix)
    return name or "trace"


def write_served(trace: Trace, folding: Folding | None, directory: Path, name: str) -> Path:
    """Write ``<name>.html`` and ``<name>.data/`` into ``directory``; returns the page."""
    data = build_data(trace, folding)
    folder = directory / f"{name}.data"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for blob_name, blob in data.blobs.items():
        (folder / f"{blob_name}.gz").write_bytes(blob)
    page = directory / f"{name}.html"
    page.write_text(render_page(data, page_title(trace, name), f"{name}.data/"), "utf-8")
    return page


def write_standalone(trace: Trace, folding: Folding | None, path: str | os.PathLike[str]) -> None:
    """One HTML file with the data inside, written atomically."""
    data = build_data(trace, folding)
    page = render_page(data, page_title(trace, page_name(path)), None)
    with atomic_output(Path(path)) as out:
        out.write(page.encode("utf-8"))
