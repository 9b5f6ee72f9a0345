"""The viewer page: one HTML file with the bundled CSS and JavaScript.

Two forms share the same page: *served* (the data blobs sit next to the page in
``<name>.data/`` and are fetched) and *standalone* (the blobs are embedded as
base64, so the file opens from disk with no server). No trace string is ever
written into the page as HTML: the title is escaped, the configuration is JSON
with ``<``, ``>`` and ``&`` escaped, and the page only sets ``textContent``. A
Content-Security-Policy lets nothing run but the page's own script (by hash).
"""

from __future__ import annotations

import base64
import hashlib
import html
from functools import cache
from importlib import resources
from string import Template

import orjson

from exporters.viewer.data import ViewerData

SCRIPTS = ("model.js", "tree.js", "view.js")


@cache
def _static(name: str) -> str:
    return resources.files("exporters.viewer").joinpath("static", name).read_text("utf-8")


def _json_for_script(value: object) -> str:
    """JSON that is safe inside a <script> element."""
    text = orjson.dumps(value).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(data: ViewerData, title: str, base: str | None) -> str:
    """The page; ``base`` is the URL prefix of the data blobs, or None to embed them."""
    return b"".join(render_page_pieces(data, title, base)).decode("utf-8")


def render_page_pieces(data: ViewerData, title: str, base: str | None) -> list[bytes]:
    """``render_page`` as UTF-8 pieces, to write without joining them: each embedded
    blob is one piece of base64, the page around them two more."""
    script = "\n".join(_static(name) for name in SCRIPTS)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    marker = "\x00blobs\x00"  # where the embedded blobs go; no static file has a NUL
    page = Template(_static("viewer.html")).substitute(
        digest=digest,
        title=html.escape(title),
        style=_static("viewer.css"),
        config=_json_for_script({"title": title, "base": base or ""}),
        blobs=marker if base is None else "",
        script=script,
    )
    before, _, after = page.partition(marker)
    pieces = [before.encode("utf-8")]
    for i, (name, blob) in enumerate(data.blobs.items() if base is None else ()):
        separator = "\n" if i else ""
        pieces.append(
            f'{separator}<script type="application/octet-stream" id="blob:{name}">'.encode()
        )
        pieces += [base64.b64encode(blob), b"</script>"]
    pieces.append(after.encode("utf-8"))
    return pieces
