"""Annotators: post-processors that add to a trace before it is saved (the
pattern groups of ``patterns``). The model layer owns this small interface and
finds them through the ``otel_tracer.annotators`` entry-point group, so that it
never imports the packages above it."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

from otel_tracer.trace.model import Trace

GROUP = "otel_tracer.annotators"


class AnnotatorMissing(LookupError):
    """No annotator of that name is installed."""


def annotator(name: str) -> Callable[[Trace], object]:
    """The annotator registered as ``name`` (``patterns``: the pattern groups)."""
    for point in entry_points(group=GROUP, name=name):
        return point.load()
    raise AnnotatorMissing(
        f"no {name!r} annotator is installed (entry point group {GROUP}); "
        "install otel-tracer with pip (pip install -e .)"
    )
