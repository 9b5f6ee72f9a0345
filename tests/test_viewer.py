"""The viewer without a browser: its data, the page, the command line and the
server's refusals (the page itself is tested in test_viewer_browser.py)."""

from __future__ import annotations

import gzip
import json
import re
import socket
import subprocess
import sys

import numpy as np
import orjson
import pytest
from conftest import REPO, run_python, run_tracer, write_files
from trace_builder import build_trace

from exporters.viewer.data import COLUMNS, build_data, statistics
from exporters.viewer.page import render_page
from exporters.viewer.site import fold_for_viewer, page_name, write_served
from patterns.fold import FoldOptions

LOOP = [("main", [*(("step", ["fwd", "bwd"]) for _ in range(5)), "!ext"])]


def blobs(trace, patterns=True):
    data = build_data(trace, fold_for_viewer(trace, patterns))
    return {name: gzip.decompress(blob) for name, blob in data.blobs.items()}


def test_calls_blob_columns():
    trace = build_trace(LOOP)
    raw = blobs(trace)
    meta = orjson.loads(raw["meta.json"])
    assert [c["name"] for c in meta["columns"]] == [name for name, _ in COLUMNS]
    columns = {
        c["name"]: np.frombuffer(raw["calls.bin"], c["type"], c["length"], c["offset"])
        for c in meta["columns"]
    }
    assert all(c["offset"] % 8 == 0 for c in meta["columns"][:2])  # float64 views align
    assert columns["parent"].tolist() == trace.calls.parent.tolist()
    assert columns["start"][0] == 0
    assert columns["duration"].tolist() == (trace.calls.end - trace.calls.start).tolist()
    assert columns["flags"].tolist() == trace.calls.flags.tolist()
    # the children of main fold: main's children sequence is sequence 0
    assert columns["sequence"][0] == 0 and meta["sequences"][0]["groups"][0] == {
        "start": 0,
        "repetitions": 5,
        "period": 1,
        "near": False,
        "variants": [{"iterations": None, "representative": 0, "nested": []}],
    }


def test_no_patterns_sends_no_folding():
    raw = blobs(build_trace(LOOP), patterns=False)
    meta = orjson.loads(raw["meta.json"])
    assert meta["patterns"] is None and meta["sequences"] == []
    assert "patterns" not in meta["statistics"]


def test_statistics():
    # f recursive: f(f(g)), g twice more at the root
    trace = build_trace([("f", [("f", ["g"])]), "g", "g"])
    stats = statistics(trace, fold_for_viewer(trace))
    assert stats["calls"] == 5 and stats["functions"] == 2 and stats["max_depth"] == 3
    by_name = {trace.functions[e["function"]].name: e for e in stats["top_by_count"]}
    assert by_name["g"]["count"] == 3 and by_name["f"]["count"] == 2
    # f's total counts the outer call only (direct recursion is not counted twice)
    outer = int(trace.calls.end[0] - trace.calls.start[0])
    assert by_name["f"]["total_ns"] == outer
    roots = trace.calls.parent < 0
    root_time = int((trace.calls.end - trace.calls.start)[roots].sum())
    assert sum(e["self_ns"] for e in stats["top_by_self"]) == root_time
    assert stats["patterns"]["rows_folded"] + stats["patterns"]["rows_saved"] == 5


def test_statistics_count_only_threads_with_calls():
    """Threads that made no call (seen by the hooks, nothing in scope) are not
    counted in the header's "N threads"."""
    from otel_tracer.trace.model import ThreadInfo

    trace = build_trace(LOOP)
    trace.threads += [ThreadInfo(id=7, native_id=7, name="idle"), ThreadInfo(8, 8, "idle-2")]
    assert statistics(trace, None)["threads"] == 1


def test_details_blob():
    trace = build_trace(LOOP)
    details = orjson.loads(blobs(trace)["details.json"])
    assert details["span_id"][0] == f"{int(trace.calls.span_id[0]):016x}"
    assert len(details["args"]) == len(trace)


def test_page_escapes_the_title_and_config():
    trace = build_trace(LOOP)
    data = build_data(trace, None)
    title = '</title><script>alert(1)</script>"&'
    page = render_page(data, title, "x.data/")
    assert "<script>alert(1)" not in page
    assert "&lt;/title&gt;&lt;script&gt;" in page
    config = re.search(r'id="viewer-config" type="application/json">(.*?)</script>', page)
    assert json.loads(config.group(1))["title"] == title
    assert "</" not in config.group(1)


def test_page_allows_only_its_own_script():
    page = render_page(build_data(build_trace(LOOP), None), "t", None)
    policy = re.search(r'Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in policy and "'unsafe-inline'" not in policy.split("style-src")[0]
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+'", policy)
    assert "http://" not in page.replace("http://www.w3.org", "")  # nothing from the network
    assert page.count('type="application/octet-stream"') == 3  # embedded blobs


def test_page_names():
    assert page_name("runs/trace_output.json") == "trace_output"
    assert page_name("trace.json.gz") == "trace"
    assert page_name("weird") == "weird"


def test_served_layout(tmp_path):
    trace = build_trace(LOOP)
    page = write_served(trace, fold_for_viewer(trace), tmp_path, "run")
    assert page == tmp_path / "run.html"
    assert sorted(p.name for p in (tmp_path / "run.data").iterdir()) == [
        "calls.bin.gz",
        "details.json.gz",
        "meta.json.gz",
    ]
    assert 'type="application/octet-stream"' not in page.read_text()


def test_viewer_uses_the_options_the_trace_was_annotated_with():
    trace = build_trace(LOOP)
    from patterns.annotate import annotate

    annotate(trace, FoldOptions(match="function", near=False))
    assert fold_for_viewer(trace).options == FoldOptions(match="function", near=False)
    assert fold_for_viewer(trace, options=FoldOptions()).options == FoldOptions()
    assert fold_for_viewer(trace, patterns=False) is None


# -- command lines -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    write_files(root, {"p.py": "def f(i):\n    return i\n\nfor i in range(3):\n    f(i)\n"})
    result = run_tracer(["p.py", "-o", "trace.json", "-q"], root)
    assert result.returncode == 0, result.stderr
    return root / "trace.json"


def serve_args(small_trace, *args: str):
    return run_python(["-m", "exporters.viewer", str(small_trace), *args], small_trace.parent)


def one_error_line(result, expected: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_bad_port_numbers(small_trace):
    for port in ("abc", "70000", "-1"):
        one_error_line(serve_args(small_trace, port), "bad port number")


def test_busy_port(small_trace):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        one_error_line(serve_args(small_trace, str(port)), f"port {port} on 127.0.0.1 is")


def test_missing_and_invalid_traces(tmp_path):
    (tmp_path / "other.json").write_text('{"hello": 1}')
    (tmp_path / "broken.json").write_text('{"format": ')
    cases = {
        "missing.json": "cannot read",
        "other.json": "not an otel-tracer trace",
        "broken.json": "not valid JSON",
    }
    for name, expected in cases.items():
        result = run_python(["-m", "exporters.viewer", name, "8080"], tmp_path)
        one_error_line(result, expected)
    script = REPO / "scripts" / "serve_visualization.sh"
    result = subprocess.run(
        ["bash", str(script), "missing.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
    )
    one_error_line(result, "cannot read missing.json")


def test_standalone_output_option(small_trace, tmp_path):
    out = tmp_path / "v.html"
    result = serve_args(small_trace, "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and out.stat().st_size > 10_000
    one_error_line(serve_args(small_trace, "-o", str(tmp_path / "no/such/dir/v.html")), "")


def test_tracer_html_output(tmp_path):
    write_files(tmp_path, {"p.py": "def f():\n    return 1\n\nf()\nf()\n"})
    result = run_tracer(["p.py", "-o", "out.html"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "trace written to out.html" in result.stderr
    page = (tmp_path / "out.html").read_text()
    assert page.startswith("<!doctype html>") and 'id="blob:calls.bin"' in page
    result = run_tracer(["p.py", "-o", "out.view", "--format", "html"], tmp_path)
    assert result.returncode == 0 and (tmp_path / "out.view").exists()
    result = run_tracer(["p.py", "-o", "-", "--format", "html"], tmp_path)
    assert result.returncode == 2 and "needs a file name" in result.stderr


def test_serve_script_uses_the_installed_interpreter(tmp_path):
    """Without $PYTHON, the script runs the interpreter of the installed
    ``otel-tracer`` command, not the first python3 on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "otel-tracer").write_text(f"#!{sys.executable}\nprint('the command')\n")
    (bin_dir / "python3").write_text("#!/bin/sh\necho 'the wrong python3' >&2\nexit 97\n")
    for name in ("otel-tracer", "python3"):
        (bin_dir / name).chmod(0o755)
    script = REPO / "scripts" / "serve_visualization.sh"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    result = subprocess.run(
        ["bash", str(script), "missing.json"], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    one_error_line(result, "cannot read missing.json")
    (bin_dir / "otel-tracer").unlink()  # not installed: python3 it is
    result = subprocess.run(
        ["bash", str(script), "missing.json"], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert result.returncode == 97 and "the wrong python3" in result.stderr


def test_pending_files_wait_until_written():
    """The server listens before the data is built: a request for a blob still
    being written waits for it; one whose writing failed gets False (HTTP 500)."""
    import threading
    import time

    from exporters.viewer.server import Pending

    pending = Pending(["t.data/meta.json.gz", "t.data/calls.bin.gz"])
    assert pending.wait("t.html")  # not pending: at once
    threading.Timer(0.2, pending.done, ("t.data/meta.json.gz",)).start()
    began = time.perf_counter()
    assert pending.wait("t.data/meta.json.gz")
    assert time.perf_counter() - began >= 0.15
    pending.stop()  # the server stopped: no more writes, the rest fails
    assert pending.stopped and not pending.wait("t.data/calls.bin.gz")
