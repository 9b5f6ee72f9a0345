"""Hostile files and names given to every command: a gzip bomb, deeply nested
JSON, and bytes that are not UTF-8 in argv, paths and file names. Each gets
one line and exit status 2, or works; never a traceback or a blown memory."""

from __future__ import annotations

import gzip
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from conftest import REPO, run_python, run_tracer, write_files

MAX_INFLATION = 50  # otel_tracer.trace.format.MAX_INFLATION

SERVE = REPO / "scripts" / "serve_visualization.sh"
COMMANDS = (
    ["-m", "patterns"],
    ["-m", "exporters", "--to", "json", "-o", "out.json"],
    ["-m", "exporters.viewer", "-o", "out.html"],
)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def _one_error_line(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_gzip_bomb_is_refused_after_a_bounded_read(tmp_path: Path) -> None:
    member = gzip.compress(b" " * (64 << 20), 9)  # 64 MiB of spaces in ~64 KiB
    (tmp_path / "bomb.json.gz").write_bytes(member * 96)  # 6 GiB inflated, 6 MiB on disk
    for command in COMMANDS:
        args = [*command, "bomb.json.gz"]
        result = run_python(args, tmp_path, preexec_fn=_limit_memory)
        _one_error_line(result, "refused: the gzip data inflates past")


def test_real_gzipped_traces_are_far_below_the_limit(tmp_path: Path) -> None:
    program = "def step(i):\n    return i\n\nfor i in range(20000):\n    step(i)\n"
    write_files(tmp_path, {"p.py": program})
    for extra in ([], ["--no-args"]):
        result = run_tracer(["-q", *extra, "p.py", "-o", "t.json", "-o", "t.json.gz"], tmp_path)
        assert result.returncode == 0, result.stderr
        ratio = (tmp_path / "t.json").stat().st_size / (tmp_path / "t.json.gz").stat().st_size
        assert ratio < MAX_INFLATION / 3
        assert run_python(["-m", "patterns", "-q", "t.json.gz"], tmp_path).returncode == 0


def _serve(trace: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(SERVE), trace, "0"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_deeply_nested_json(tmp_path: Path) -> None:
    depth = 1_000_000
    (tmp_path / "deep.json").write_bytes(b"[" * depth + b"]" * depth)
    head = b'{"format":"otel-tracer-trace","version":1,"metadata":'
    (tmp_path / "deep_meta.json").write_bytes(head + b"[" * depth + b"]" * depth + b"}")
    nested: list = []
    for _ in range(600):  # readable by orjson (1024 levels), not writable (255)
        nested = [nested]
    small = run_tracer(["-q", "p.py", "-o", "t.json"], _program(tmp_path))
    assert small.returncode == 0, small.stderr
    doc = orjson.loads((tmp_path / "t.json").read_bytes())
    doc["metadata"]["nested"] = nested
    (tmp_path / "deep_value.json").write_text(json.dumps(doc))
    for name in ("deep.json", "deep_meta.json", "deep_value.json"):
        for command in COMMANDS:
            result = run_python([*command, name], tmp_path)
            assert result.returncode == 2, (name, command, result.stderr[-1000:])
            assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
        served = _serve(name, tmp_path)
        assert served.returncode == 2 and "Traceback" not in served.stderr, served.stderr


def _program(root: Path) -> Path:
    write_files(root, {"p.py": "def f(x):\n    return x\n\nf(1)\n"})
    return root


BAD = os.fsdecode(b"\xff\xfe")


def test_names_and_arguments_that_are_not_utf8(tmp_path: Path) -> None:
    script = f"s{BAD}.py"
    (tmp_path / script).write_text(
        "import sys\n\ndef f(a):\n    return a\n\n"
        "print(f(sys.argv[1:]) == [sys.argv[1]])\nopen(sys.argv[1], 'w').write('x')\n"
    )
    for outputs in ([], ["-o", f"t{BAD}.json", "-o", f"t{BAD}.txt"]):
        traced = run_tracer([script, f"arg{BAD}", *outputs], tmp_path)
        assert traced.returncode == 0, traced.stderr
        assert "Traceback" not in traced.stderr
        assert traced.stdout.startswith("True\n")
    assert (tmp_path / f"arg{BAD}").read_text() == "x"
    assert "s\\xff\\xfe.py" in (tmp_path / f"t{BAD}.txt").read_text("utf-8")
    trace = f"t{BAD}.json"
    for command in (
        ["-m", "patterns", trace],
        ["-m", "patterns", trace, "--no-patterns"],
        ["-m", "exporters", trace, "--to", "perfetto"],
        ["-m", "exporters", trace, "--to", "otlp-json"],
        ["-m", "exporters", trace, "--to", "html"],
        ["-m", "exporters.viewer", trace, "-o", f"v{BAD}.html"],
        ["-m", "exporters", "merge", trace, "-o", f"m{BAD}.json"],
    ):
        result = run_python(command, tmp_path)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (command, result)
    missing = run_python(["-m", "patterns", f"no{BAD}.json"], tmp_path)
    _one_error_line(missing, "no\\xff\\xfe.json")


@pytest.mark.parametrize("command", [["-m", "cli.main"], ["-m", "patterns"], ["-m", "exporters"]])
def test_bad_option_values_that_are_not_utf8(tmp_path: Path, command: list[str]) -> None:
    result = run_python([*command, f"--{BAD}"], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
