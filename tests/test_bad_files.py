"""Every command that reads a saved trace answers a bad file with one line on
stderr and exit status 2: truncated, corrupted, wrong version, not a trace."""

from __future__ import annotations

import gzip
import json

import pytest
from conftest import run_python, run_tracer, write_files

COMMANDS = {
    "patterns": (["-m", "patterns"], "patterns"),
    "viewer": (["-m", "exporters.viewer", "-o", "out.html"], "serve_visualization"),
    "exporters": (["-m", "exporters", "--to", "perfetto", "-o", "out.pftrace"], "exporters"),
}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    write_files(root, {"prog.py": "def f(i):\n    return i\nfor i in range(50):\n    f(i)\n"})
    result = run_tracer(["prog.py", "-q", "-o", "good.json"], root)
    assert result.returncode == 0, result.stderr
    good = (root / "good.json").read_bytes()
    document = json.loads(good)
    broken_tree = json.loads(good)
    broken_tree["calls"][3][0] = 40  # a parent after its child
    files = {
        "truncated.json": good[: len(good) // 2],
        "truncated.json.gz": gzip.compress(good)[:200],
        "corrupted.json": good.replace(b'"calls":[', b'"calls":[}', 1),
        "version.json": json.dumps({**document, "version": 7}).encode(),
        "other.json": b'{"traceEvents": []}',
        "binary.json": bytes(range(256)),
        "empty.json": b"",
        "tree.json": json.dumps(broken_tree).encode(),
    }
    for name, content in files.items():
        (root / name).write_bytes(content)
    return root


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(
    "name",
    [
        "truncated.json",
        "truncated.json.gz",
        "corrupted.json",
        "version.json",
        "other.json",
        "binary.json",
        "empty.json",
        "tree.json",
    ],
)
def test_one_line_and_status_2(bad_files, command, name):
    args, label = COMMANDS[command]
    result = run_python([*args[:2], name, *args[2:]], bad_files)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{label}: error: "), result.stderr
    assert name in lines[0]
    assert not (bad_files / "out.html").exists() and not (bad_files / "out.pftrace").exists()
