"""The HTML viewer: the call tree with pattern groups as boxes, in one page with
everything bundled (docs/viewer.md). ``python -m exporters.viewer`` builds and
serves it; ``write_standalone`` writes one self-contained HTML file."""

from exporters.viewer.site import fold_for_viewer, write_served, write_standalone

__all__ = ["fold_for_viewer", "write_served", "write_standalone"]
