"""``python -m exporters``: converting a saved trace without rerunning the program."""

from __future__ import annotations

import json
import socket

import pytest
from conftest import run_python, run_tracer, write_files

PROGRAM = """
    def step(i, token):
        return i * 2

    def train(n):
        for i in range(n):
            step(i, token="s3cret")

    train(6)
"""


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("convert")
    write_files(root, {"prog.py": PROGRAM})
    result = run_tracer(["prog.py", "-q", "-o", "run.json", "-o", "direct.otlp.json"], root)
    assert result.returncode == 0, result.stderr
    plain = run_tracer(["prog.py", "-q", "--no-patterns", "-o", "plain.json"], root)
    assert plain.returncode == 0, plain.stderr
    return root


def convert(args: list[str], cwd):
    return run_python(["-m", "exporters", *args], cwd)


def one_error_line(result, text: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("exporters: error: "), result.stderr
    assert text in lines[0]


def test_to_otlp_json_matches_what_the_tracer_wrote(saved):
    result = convert(["run.json", "--to", "otlp-json"], saved)
    assert result.returncode == 0, result.stderr
    assert "trace written to " in result.stderr and "run.otlp.jsonl" in result.stderr
    converted = json.loads((saved / "run.otlp.jsonl").read_bytes())
    direct = json.loads((saved / "direct.otlp.json").read_bytes())
    assert converted == direct
    spans = converted["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert "s3cret" not in json.dumps(spans)


def test_the_format_follows_the_output_name(saved):
    result = convert(["run.json", "-o", "view.txt"], saved)
    assert result.returncode == 0, result.stderr
    text = (saved / "view.txt").read_text()
    assert "6x" in text and "step" in text
    result = convert(["run.json", "-q", "-o", "-", "--to", "otlp-json"], saved)
    assert result.returncode == 0 and result.stderr == ""
    assert len(json.loads(result.stdout)["resourceSpans"][0]["scopeSpans"][0]["spans"]) == 9


def test_to_perfetto_writes_next_to_the_trace(saved):
    result = convert(["run.json", "--to", "perfetto"], saved)
    assert result.returncode == 0, result.stderr
    assert (saved / "run.pftrace").stat().st_size > 0


def test_fold_patterns_folds_a_trace_saved_without_them(saved):
    result = convert(["plain.json", "-o", "folded.otlp.json", "--fold-patterns"], saved)
    assert result.returncode == 0, result.stderr
    spans = json.loads((saved / "folded.otlp.json").read_bytes())["resourceSpans"][0]
    names = [s["name"] for s in spans["scopeSpans"][0]["spans"]]
    assert names == ["prog.py", "<module>", "train", "6x step", "step"]


def test_a_collector_that_is_down_is_one_line_and_status_1(saved):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = convert(
        ["run.json", "--to", "otlp", "--otlp-endpoint", f"http://127.0.0.1:{port}"], saved
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("exporters: error: OTLP export to "), lines


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.json", "--to", "perfetto"], "cannot read missing.json"),
        (["prog.py", "--to", "perfetto"], "prog.py"),
        (["run.json"], "say what to write: --to FORMAT or -o FILE"),
        (["run.json", "-o", "out.bin"], "cannot tell the output format of 'out.bin'"),
        (["run.json", "--to", "otlp", "-o", "x.json"], "use --otlp-endpoint, not -o"),
        (["run.json", "-o", "x.json", "--otlp-endpoint", "http://h:4317"], "go with --to otlp"),
        (["run.json", "--to", "html", "-o", "-"], "needs a file name"),
        (["run.json", "--to", "otlp", "--otlp-endpoint", "localhost"], "localhost"),
        (["run.json", "--to", "svg"], "invalid choice: 'svg'"),
        (["run.json", "-o", "/no/such/dir/t.pftrace"], "does not exist"),
    ],
)
def test_bad_input_is_one_line(saved, args, message):
    one_error_line(convert(args, saved), message)
