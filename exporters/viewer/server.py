"""Serving the viewer: only the generated page and its data, nothing else.

The files live in a private temporary directory that is removed when the server
stops; requests for anything else get 404, directory listings are off, and the
server binds to 127.0.0.1 unless told otherwise (an SSH tunnel needs nothing more).
"""

from __future__ import annotations

import errno
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class PortBusy(Exception):
    """The port is taken (or not allowed) on that host."""


class _Handler(SimpleHTTPRequestHandler):
    """Serves the viewer directory; ``/`` redirects to the page."""

    page = "index.html"

    def send_head(self):
        if self.path in ("/", ""):
            self.send_response(HTTPStatus.FOUND)
            self.send_header("Location", "/" + self.page)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return super().send_head()

    def list_directory(self, path):  # never list anything
        self.send_error(HTTPStatus.NOT_FOUND, "not found")
        return None

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()

    def guess_type(self, path) -> str:
        if str(path).endswith(".gz"):  # the page gunzips the blobs itself
            return "application/octet-stream"
        return super().guess_type(path)

    def log_message(self, format: str, *args) -> None:  # quiet: no access log
        return


class ViewerServer:
    """An HTTP server for one viewer directory."""

    def __init__(self, directory: Path, page: str, host: str, port: int) -> None:
        handler = type("Handler", (_Handler,), {"page": page})
        try:
            self.httpd = ThreadingHTTPServer((host, port), partial(handler, directory=directory))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                raise PortBusy(f"port {port} on {host} is {_why(error)}") from None
            raise
        self.httpd.daemon_threads = True

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def serve_until_stopped(self) -> None:
        """Serve until Ctrl-C (KeyboardInterrupt), then close the socket."""
        try:
            self.httpd.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self.httpd.server_close()


def _why(error: OSError) -> str:
    if error.errno == errno.EACCES:
        return "not allowed for this user (ports below 1024 need root); choose another"
    return "already in use; choose another port"
