"""``python -m patterns`` and the tracer's grouped view, on real traced programs."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from conftest import REPO, call_objects, run_python, run_tracer, write_files

import otel_tracer

SCHEMA = json.loads((REPO / "otel_tracer/trace/schema/trace-v3.schema.json").read_text())

TRAINING = """
    import threading

    class Layer:  # no comprehensions: 3.12 inlines them, changing the call counts
        def forward(self, x):
            out = []
            for v in x:
                out.append(self.act(v))
            return out
        def act(self, v):
            return max(v, 0.0)

    class Model:
        def __init__(self, depth):
            self.layers = []
            for _ in range(depth):
                self.layers.append(Layer())
        def forward(self, x):
            for layer in self.layers:
                x = layer.forward(x)
            return x

    def load_batch(step):
        return [float(step), -1.0]

    def log_metrics(step, loss):
        return f"{step}: {loss}"

    def train(steps):
        model = Model(3)
        for step in range(steps):
            x = load_batch(step)
            loss = sum(model.forward(x))
            if step % 4 == 1:
                log_metrics(step, loss)
        return loss

    worker = threading.Thread(target=train, args=(3,), name="worker")
    worker.start()
    worker.join()
    print(train(12))
"""


@pytest.fixture(scope="module")
def traced(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("patterns")
    write_files(root, {"train.py": TRAINING})
    result = run_tracer(["train.py", "-o", "trace.json", "-o", "plain.json", "--no-patterns"], root)
    assert result.returncode == 0, result.stderr
    result = run_tracer(["-q", "train.py", "-o", "trace.json"], root)
    assert result.returncode == 0, result.stderr
    return root


def patterns_cli(args: list[str], cwd: Path):
    return run_python(["-m", "patterns", *args], cwd)


def test_tracer_prints_the_grouped_view(traced):
    result = run_tracer(["train.py"], traced)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("11.0\n")  # the program's own output comes first
    assert "12x repetitions of 11 calls (2 variants)" in result.stdout
    assert "📋 Pattern template (repeated 9 times):" in result.stdout
    assert "+ log_metrics [train.py:26]" in result.stdout
    assert "🔄 Nested Pattern: 3x repetitions of 3 calls" in result.stdout
    assert "Thread worker" in result.stdout
    assert "otel-tracer: patterns: " in result.stderr


def test_annotated_trace_validates_and_loads(traced):
    doc = json.loads((traced / "trace.json").read_text())
    jsonschema.validate(doc, SCHEMA)
    section = otel_tracer.load(traced / "trace.json").patterns.section
    assert doc["patterns"]["options"] == {"match": "structure", "near": True}
    loop = max(section["groups"], key=lambda g: g["total_calls"])
    assert (loop["repetitions"], loop["calls_per_repetition"]) == (12, 11)
    assert loop["near"] is True and len(loop["variants"]) == 2
    assert loop["variants"][1]["iterations"] == [1, 5, 9]
    calls = call_objects(doc)
    inside = [c for c in calls if loop["first"] <= c["id"] <= loop["last"]]
    assert all("pattern" in c for c in inside)
    first_step = calls[loop["iterations"][4] - 1]
    assert first_step["pattern"] == {"id": loop["id"], "iteration": 4, "variant": 0}
    trace = otel_tracer.load(traced / "trace.json")
    attributes = trace.patterns.attributes_of(loop["iterations"][1] - 1)
    assert attributes == {
        "pattern.id": loop["id"],
        "pattern.repetitions": 12,
        "pattern.calls_per_repetition": 11,
        "pattern.iteration": 1,
        "pattern.variant": 1,
    }
    assert "patterns" not in json.loads((traced / "plain.json").read_text())


def test_patterns_command_matches_the_tracer(traced):
    from_saved = patterns_cli(["trace.json"], traced)
    assert from_saved.returncode == 0, from_saved.stderr
    live = run_tracer(["-q", "train.py"], traced)

    def strip(text: str) -> list[str]:  # thread ids and durations differ between runs
        return [line.split(" (")[0] for line in text.splitlines()]

    assert strip(from_saved.stdout) == strip(live.stdout.split("\n", 1)[1])
    assert from_saved.stderr.startswith("patterns: ")
    assert "rows folded vs" in from_saved.stderr


def test_patterns_command_options(traced):
    plain = patterns_cli(["plain.json", "--no-patterns"], traced)
    assert plain.returncode == 0 and "Repeating Pattern" not in plain.stdout
    assert plain.stdout.count("log_metrics") == 4
    limited = patterns_cli(["plain.json", "--max-rows", "5", "-q"], traced)
    assert limited.stdout.splitlines()[-1] == "… output stopped at 5 rows (--max-rows)"
    shallow = patterns_cli(["plain.json", "--depth", "1", "-q"], traced)
    assert "more calls below (--depth)" in shallow.stdout and "Layer" not in shallow.stdout
    worker = patterns_cli(["plain.json", "--thread", "worker", "-q"], traced)
    assert worker.stdout.startswith("Thread worker") and "MainThread" not in worker.stdout
    exact = patterns_cli(["plain.json", "--exact", "-q"], traced)
    assert "variants" not in exact.stdout and "Repeating Pattern" in exact.stdout
    stats = patterns_cli(["plain.json", "--stats", "-q"], traced)
    assert "compression:" in stats.stdout and "largest groups:" in stats.stdout


def test_patterns_command_writes_annotated_json(traced):
    result = patterns_cli(["plain.json", "--json", "again.json.gz", "--match", "function"], traced)
    assert result.returncode == 0, result.stderr
    trace = otel_tracer.load(traced / "again.json.gz")
    assert trace.patterns.section["options"] == {"match": "function", "near": True}
    assert len(trace.patterns.section["groups"]) == trace.patterns.section["statistics"]["groups"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.json"], "cannot read missing.json"),
        (["train.py"], "not valid JSON"),
        (["plain.json", "--thread", "nope"], "no thread 'nope' in the trace"),
        (["plain.json", "--max-rows", "0"], "needs an integer >= 1"),
        (["plain.json", "--match", "name"], "invalid choice: 'name'"),
        (["plain.json", "--json", "no/dir/out.json"], "cannot write no/dir/out.json: directory"),
        (["plain.json", "--no-patterns", "--stats"], "--no-patterns cannot go with"),
    ],
)
def test_patterns_command_bad_input(traced, args, message):
    result = patterns_cli(args, traced)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("patterns: error: "), result.stderr
    assert message in lines[0]


def test_tracer_pattern_options(traced):
    result = run_tracer(["-q", "train.py", "--exact", "--match", "function"], traced)
    assert result.returncode == 0 and "variants" not in result.stdout
    result = run_tracer(["-q", "train.py", "--match", "names"], traced)
    assert result.returncode == 2
    assert "option --match must be one of structure, function" in result.stderr


def test_bundled_loop_example_prints_the_readme_block(tmp_path):
    result = run_tracer(["-q", str(REPO / "examples/loops/train.py")], tmp_path)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "100x repetitions of 4 calls (3 variants) (calls #3-#411, total: 409 calls)" in text
    assert "🔀 Variant 2: 10 iterations (iterations 3, 13, 23, 33, 43, 53, 63, 73, … 2 more)" in (
        text
    )
    assert "└── - backward [train.py:16]" in text
    assert text.split("(calls #3")[1] in (REPO / "README.md").read_text()


def test_stats_of_a_folded_trace_are_those_it_saved(traced):
    """``--stats`` on a trace folded with the same options prints the statistics
    it saved, which are what folding it again gives; other options, or saved
    statistics that are not whole, fold it again."""
    saved = patterns_cli(["trace.json", "--stats"], traced)
    fresh = patterns_cli(["plain.json", "--stats"], traced)
    assert saved.returncode == fresh.returncode == 0, saved.stderr + fresh.stderr
    assert saved.stdout == fresh.stdout and saved.stderr == fresh.stderr
    exact = patterns_cli(["trace.json", "--stats", "--exact", "-q"], traced)
    assert exact.stdout == patterns_cli(["plain.json", "--stats", "--exact", "-q"], traced).stdout
    doc = json.loads((traced / "trace.json").read_text())
    doc["patterns"]["statistics"]["rows_folded"] = 7  # read, not folded again
    (traced / "seven.json").write_text(json.dumps(doc))
    seven = patterns_cli(["seven.json", "--stats", "-q"], traced)
    assert "rows folded:      7\n" in seven.stdout
    doc["patterns"]["statistics"]["largest"] = [{"id": "first"}]
    doc["patterns"]["statistics"]["groups"] = 10**6
    (traced / "odd-stats.json").write_text(json.dumps(doc))
    refolded = patterns_cli(["odd-stats.json", "--stats", "-q"], traced)
    assert refolded.returncode == 0 and refolded.stdout == fresh.stdout


def test_folding_past_its_budget_is_given_up_and_said(tmp_path):
    """``--fold-budget``: folding that takes longer is given up, the run says so
    in one line, and the trace is written whole, without pattern groups, for
    ``python -m patterns`` to fold later; 0 means no limit."""
    write_files(tmp_path, {"train.py": TRAINING})
    slow = run_tracer(["train.py", "--fold-budget", "1e-9", "-o", "t.json"], tmp_path)
    assert slow.returncode == 0, slow.stderr
    (line,) = [x for x in slow.stderr.splitlines() if "folding stopped" in x]
    assert "budget 1e-09 s, --fold-budget" in line and "without pattern groups" in line
    trace = otel_tracer.load(tmp_path / "t.json")
    assert trace.patterns is None and len(trace) > 100
    later = patterns_cli(["t.json", "--stats", "-q"], tmp_path)
    assert later.returncode == 0 and "largest groups:" in later.stdout
    unlimited = run_tracer(["train.py", "--fold-budget", "0", "-q", "-o", "u.json"], tmp_path)
    assert unlimited.returncode == 0 and unlimited.stderr == ""
    assert otel_tracer.load(tmp_path / "u.json").patterns is not None


def test_annotating_a_folded_trace_again_keeps_its_groups(traced):
    """``--json`` with the options the trace was folded with writes the same groups
    and marks (read, not folded again); other options fold it again."""
    same = patterns_cli(["trace.json", "--json", "same.json", "-q"], traced)
    assert same.returncode == 0, same.stderr
    before = json.loads((traced / "trace.json").read_text())
    after = json.loads((traced / "same.json").read_text())
    assert after["patterns"] == before["patterns"] and after["calls"] == before["calls"]
    exact = patterns_cli(["trace.json", "--json", "exact.json", "--exact", "-q"], traced)
    assert exact.returncode == 0, exact.stderr
    refolded = json.loads((traced / "exact.json").read_text())
    assert refolded["patterns"]["options"] == {"match": "structure", "near": False}
