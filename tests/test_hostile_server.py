"""The viewer server against hostile clients, through the real serve script and
raw sockets: DNS rebinding (a foreign ``Host``), idle and half-open connections,
NUL and odd bytes in the path, and trace files whose names need URL encoding."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import run_tracer, write_files
from viewer_helpers import serve


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    write_files(root, {"p.py": "def f(i):\n    return i\n\nfor i in range(3):\n    f(i)\n"})
    result = run_tracer(["p.py", "-o", "trace.json", "-q"], root)
    assert result.returncode == 0, result.stderr
    return root / "trace.json"


def request(port: int, path: str, host: str | None = "localhost", raw: bytes = b"") -> bytes:
    """One HTTP/1.0 request over a raw socket; the whole response."""
    lines = [f"GET {path} HTTP/1.0".encode("latin-1") + raw]
    if host is not None:
        lines.append(f"Host: {host}".encode())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"\r\n".join([*lines, b"", b""]))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_host_must_be_loopback(small_trace: Path) -> None:
    with serve(small_trace) as (url, _):
        port, page = urlsplit(url).port, urlsplit(url).path
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LOCALHOST"):
            assert status(request(port, page, host)) == 200, host
        for host in ("evil.example", f"evil.example:{port}", "localhost.evil.example", None):
            response = request(port, page, host)
            assert status(response) == 403, host
            assert b"otel-tracer" not in response


def test_idle_connections_do_not_block_and_are_closed(small_trace: Path) -> None:
    with serve(small_trace) as (url, _):
        port, page = urlsplit(url).port, urlsplit(url).path
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
        half = socket.create_connection(("127.0.0.1", port))
        half.sendall(b"GET " + page.encode() + b" HTTP/1.1\r\nHost: local")  # never finished
        try:
            started = time.monotonic()
            assert status(request(port, page, "localhost")) == 200
            assert time.monotonic() - started < 5
            half.settimeout(30)
            started = time.monotonic()
            assert half.recv(100) == b""  # closed by the server
            assert time.monotonic() - started < 25
        finally:
            for sock in [*idle, half]:
                sock.close()


def test_odd_paths_get_404_without_traceback(small_trace: Path) -> None:
    with serve(small_trace) as (url, _):
        port = urlsplit(url).port
        for path in ("/a%00b.html", "/%00", "/trace%ff.html", "/%1b[2J", "/../../etc/passwd"):
            assert status(request(port, path)) == 404, path
        assert b"400" in request(port, "/", raw=b"\x00\xff")  # a broken request line
        assert status(request(port, "/")) == 302
    # serve() checks that the server printed no traceback


@pytest.mark.parametrize("name", ["my trace#1?.json", "100%.json", "a%20b.json"])
def test_names_that_need_encoding_serve(small_trace: Path, name: str) -> None:
    copy = small_trace.parent / name
    shutil.copy(small_trace, copy)
    with serve(copy) as (url, _):
        parts = urlsplit(url)
        assert not parts.query and not parts.fragment
        page = request(parts.port, parts.path)
        assert status(page) == 200 and b"<html" in page.lower()
        base = page.split(b'"base":"', 1)[1].split(b'"', 1)[0].decode()
        folder = parts.path.rsplit("/", 1)[0] + "/" + base
        blob = request(parts.port, folder + "calls.bin.gz")
        assert status(blob) == 200, folder
