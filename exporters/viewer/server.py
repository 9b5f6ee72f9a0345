"""Serving the viewer: only the generated page and its data, nothing else.

The files live in a private temporary directory that is removed when the server
stops; requests for anything else get 404, directory listings are off, and the
server binds to 127.0.0.1 unless told otherwise (an SSH tunnel needs nothing more).

Requests must name this machine in ``Host``: a loopback name or address
(``localhost``, ``127.0.0.1``, ``[::1]``, any port), else the address the server
was bound to with ``--host`` (for 0.0.0.0 or ``::``: any IP address or this
machine's name). Anything else gets 403, so that a web page whose domain was
re-pointed at 127.0.0.1 (DNS rebinding) cannot read the trace. Each connection
has its own thread and is closed after ``IDLE_TIMEOUT`` seconds without data, so
idle or slow clients hold nothing up; a path with a NUL, a control character or
bytes that are not UTF-8 gets 404; no request ever prints a traceback.

The server listens as soon as the page is written: a request for a data file
that is still being built (``Pending``) waits for it, so the browser loads the
page while the trace is folded.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
from collections.abc import Iterable
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

IDLE_TIMEOUT = 10.0  # seconds a connection may stay silent, request or keep-alive
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})
WILDCARDS = frozenset({"", "0.0.0.0", "::"})


class PortBusy(Exception):
    """The port is taken (or not allowed) on that host."""


class Pending:
    """Files of the served directory that are still being written (paths relative
    to it, as the page requests them): a request for one waits until it is
    written, or gets 500 when writing it failed. Writers hold ``lock`` while they
    write and stop once ``stopped`` is set, so the directory can be removed."""

    def __init__(self, names: Iterable[str]) -> None:
        self._events = {name: threading.Event() for name in names}
        self._failed: set[str] = set()
        self.lock = threading.Lock()
        self.stopped = False

    def done(self, name: str, ok: bool = True) -> None:
        if not ok:
            self._failed.add(name)
        self._events[name].set()

    def fail_all(self) -> None:
        for name, event in self._events.items():
            if not event.is_set():
                self.done(name, ok=False)

    def wait(self, name: str) -> bool:
        """Wait until ``name`` is written (at once for any other file); False if it failed."""
        event = self._events.get(name)
        if event is None:
            return True
        event.wait()
        return name not in self._failed

    def stop(self) -> None:
        """No more writes; waiting requests get 500."""
        with self.lock:
            self.stopped = True
        self.fail_all()


def host_name(header: str) -> str:
    """The host of a ``Host`` header, without its port or IPv6 brackets, lowercased."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else ""
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def is_loopback(host: str) -> bool:
    """A loopback name (``localhost``) or address (127.0.0.0/8, ::1)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_allowed(header: str | None, bound: str) -> bool:
    """Whether a request's ``Host`` names this server (see the module's docstring)."""
    if not header:
        return False
    host = host_name(header)
    if is_loopback(host) or host == bound.lower():
        return True
    if bound not in WILDCARDS:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return host in {socket.gethostname().lower(), socket.getfqdn().lower()}


def _safe_path(path: str) -> bool:
    """A request path that is UTF-8 once decoded and holds no control character."""
    try:
        text = unquote(urlsplit(path).path, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return False
    return text.isprintable() and all(ord(ch) >= 0x20 for ch in text)


class _Handler(SimpleHTTPRequestHandler):
    """Serves the viewer directory; ``/`` redirects to the page."""

    page = "index.html"
    bound = "127.0.0.1"
    pending: Pending | None = None
    timeout = IDLE_TIMEOUT

    def send_head(self):
        if not host_allowed(self.headers.get("Host"), self.bound):
            self.send_error(HTTPStatus.FORBIDDEN, "Host not allowed: open the page by localhost")
            return None
        if self.path in ("/", ""):
            self.send_response(HTTPStatus.FOUND)
            self.send_header("Location", "/" + quote(self.page))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if not _safe_path(self.path):
            self.send_error(HTTPStatus.NOT_FOUND, "not found")
            return None
        relative = unquote(urlsplit(self.path).path).lstrip("/")
        if self.pending is not None and not self.pending.wait(relative):
            self.send_error(
                HTTPStatus.INTERNAL_SERVER_ERROR, "the viewer's data could not be built"
            )
            return None
        try:
            return super().send_head()
        except (ValueError, OSError):
            self.send_error(HTTPStatus.NOT_FOUND, "not found")
            return None

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


class _Server(ThreadingHTTPServer):
    """One thread per connection; a client that misbehaves costs no traceback."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        return


class ViewerServer:
    """An HTTP server for one viewer directory."""

    def __init__(
        self, directory: Path, page: str, host: str, port: int, pending: Pending | None = None
    ) -> None:
        attributes = {"page": page, "bound": host, "pending": pending}
        handler = type("Handler", (_Handler,), attributes)
        try:
            self.httpd = _Server((host, port), partial(handler, directory=directory))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                raise PortBusy(f"port {port} on {host} is {_why(error)}") from None
            raise

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
