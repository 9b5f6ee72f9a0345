"""Writing the viewer: served form (a page plus its data folder) or one
standalone HTML file."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from exporters.viewer.data import ViewBuilder, ViewerData, build_data, details_blob
from exporters.viewer.page import render_page, render_page_pieces
from otel_tracer.trace.model import Trace
from otel_tracer.trace.save import atomic_output
from patterns.annotate import saved_options
from patterns.engine import Folding
from patterns.fold import FoldOptions
from patterns.restore import saved_or_folded


def fold_for_viewer(
    trace: Trace, patterns: bool = True, options: FoldOptions | None = None
) -> Folding | None:
    """The folding the viewer shows: with ``options``, else the options the trace
    was annotated with (when it was), else the defaults; None without patterns."""
    if not patterns:
        return None
    if options is None:
        saved = trace.patterns.section.get("options") if trace.patterns is not None else None
        options = saved_options(saved)
    return saved_or_folded(trace, options)


def page_title(trace: Trace, fallback: str) -> str:
    """The program and its arguments, as the page title."""
    argv = trace.meta.get("argv") or []
    if argv:
        return " ".join([os.path.basename(str(argv[0])), *map(str, argv[1:])])
    return fallback


def page_name(trace_path: str | os.PathLike[str]) -> str:
    """``trace_output.json`` -> ``trace_output`` (also for .json.gz); control
    characters and undecodable bytes of the file name become ``_``."""
    name = Path(trace_path).name
    for suffix in (".gz", ".json"):
        name = name.removesuffix(suffix)
    name = "".join(
        ch if ch.isprintable() and not 0xD800 <= ord(ch) < 0xE000 else "_" for ch in name
    )
    return name or "trace"


def page_url(name: str) -> str:
    """The URL path of the page ``<name>.html`` (``#``, ``?``, ``%``, spaces encoded)."""
    return quote(f"{name}.html")


def write_served(trace: Trace, folding: Folding | None, directory: Path, name: str) -> Path:
    """Write ``<name>.html`` and ``<name>.data/`` into ``directory``; returns the page."""
    data = build_data(trace, folding)
    page = write_page(trace, directory, name)
    for blob_name, blob in data.blobs.items():
        write_blob(directory, name, blob_name, blob)
    return page


SERVED_BLOBS = ("meta.json", "calls.bin", "details.json")


def blob_path(name: str, blob_name: str) -> str:
    """Where a served blob lives, relative to the served directory."""
    return f"{name}.data/{blob_name}.gz"


def write_page(trace: Trace, directory: Path, name: str) -> Path:
    """``<name>.html`` (the page loads its blobs from ``<name>.data/``) and an
    empty ``<name>.data/`` in ``directory``; returns the page."""
    folder = directory / f"{name}.data"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    page = directory / f"{name}.html"
    base = quote(f"{name}.data/")
    empty = ViewerData(blobs={}, calls=len(trace))  # the served page embeds no data
    page.write_text(render_page(empty, page_title(trace, name), base), "utf-8")
    return page


def write_blob(directory: Path, name: str, blob_name: str, blob: bytes) -> None:
    """One blob of a served page, written under a temporary name and then renamed,
    so the server never sends half of it."""
    path = directory / blob_path(name, blob_name)
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(blob)
    os.replace(partial, path)


def build_served(trace: Trace, fold: Callable[[], Folding | None], write) -> None:
    """The blobs of a page written by ``write_page``, in the order the page needs
    them: ``write(blob_name, blob)`` for the tree's blobs first, then the details.
    ``fold()`` gives the folding; the columns that do not depend on it are gzipped
    in a thread meanwhile."""
    view = ViewBuilder(trace, background=True)
    try:
        folding = fold()
    finally:
        view.wait()  # never leave the thread running (a failed fold ends the server)
    for blob_name, blob in view.finish(folding).items():
        write(blob_name, blob)
    write("details.json", details_blob(trace))


def write_standalone(trace: Trace, folding: Folding | None, path: str | os.PathLike[str]) -> None:
    """One HTML file with the data inside, written atomically."""
    data = build_data(trace, folding)
    pieces = render_page_pieces(data, page_title(trace, page_name(path)), None)
    del data  # the pieces hold what is left of it
    with atomic_output(Path(path)) as out:
        out.writelines(pieces)
