"""Benchmark the pattern folding (``patterns/``): time and extra memory of
``fold_trace`` and ``annotate`` on generated and on real traces.

    python benchmarks/fold.py                  # training loop 1e5, 1e6, 1e7; flat 1e5, 1e6
    python benchmarks/fold.py --sizes 1e5,1e6 --flat 0 --repeat 5
    python benchmarks/fold.py --real           # also the traced workloads of run.py

Generated traces are built directly as numpy columns (see ``training_trace`` and
``flat_trace``): a training loop with noise, sized to about the requested number
of calls, and a very long flat sibling list. Every measurement runs in a fresh
process (``--child``), which builds (or unpickles) the trace, collects garbage and
times one ``fold_trace`` or one ``annotate`` call with the cyclic garbage collector
paused, as the commands run them; the median over the repetitions is reported.
Memory is measured in separate runs with ``tracemalloc`` (numpy reports its
buffers to it): the peak while folding minus what was in use before, so the trace
itself is not counted. See ``benchmarks/README.md``, "Folding".
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from run import WORKLOADS, child_env  # noqa: E402  (benchmarks/run.py)

from otel_tracer.trace.model import EXTERNAL, Calls, Function, ThreadInfo, Trace  # noqa: E402

PY = sys.executable

# Targets.
FOLD_SECONDS = {1_000_000: 2.0, 10_000_000: 20.0}  # calls -> max fold_trace seconds
MAX_LINEARITY = 1.25  # (time ratio) / (calls ratio), 10^6 -> 10^7: 1.0 is linear
MAX_BYTES_PER_CALL = 100.0  # peak memory beyond the trace, per call
BIG = 5_000_000  # traces at least this large use --big-repeat repetitions
OPS = ("fold", "annotate")
SLOW_S = 60.0  # a trace whose first run takes longer is also run --big-repeat times

# Shape of the generated training loop.
LAYERS = 16  # layers per forward pass
LAST_LAYERS = 5  # the last step's shorter batch runs fewer layers
LOG_EVERY = 0.05  # share of steps that also call log_metrics
BRANCH_SHARE = 0.10  # share of steps where one layer takes an ``if`` branch (one extra call)
EVAL_EVERY = 100  # an evaluation loop after every EVAL_EVERY training steps
EVAL_BATCHES = 4
# Shape of the flat sibling list: read, parse, validate, store, with noise.
FLAT_RETRY = 0.02  # share of iterations with an extra ``retry`` after ``parse``
FLAT_SKIP = 0.01  # share of iterations without ``validate``
FLAT_FLUSH_EVERY = 1000  # a ``flush`` after every FLAT_FLUSH_EVERY iterations

Spec = Any  # "name" (a leaf) or ("name", [children...]); "!name" is an external call


# --------------------------------------------------------------------------- generated traces


class TraceBuilder:
    """Builds a one-thread trace ``main -> blocks...`` from a few small templates.

    A template is a forest of call specs (built in Python, a few hundred rows at
    most); the trace is ``main`` followed by a sequence of blocks, each a copy of
    one template, assembled with numpy: no Python object per call."""

    def __init__(self, module: str, library: str) -> None:
        self.module = module
        self.library = library  # module of the external calls
        self.functions: list[Function] = []
        self._ids: dict[str, int] = {}
        self.templates: list[dict[str, np.ndarray]] = []
        self._template_ids: dict[Any, int] = {}
        self.function_id("main")

    def function_id(self, label: str) -> int:
        """Index of a function (``!name``: external), created on first use."""
        if label not in self._ids:
            name = label.lstrip("!")
            if label.startswith("!"):
                function = Function(name, name, self.library, "", 0, True)
            else:
                line = 10 + 7 * len(self.functions)
                function = Function(name, name, self.module, f"/src/{self.module}.py", line, False)
            self._ids[label] = len(self.functions)
            self.functions.append(function)
        return self._ids[label]

    def template(self, key: Any, forest: list[Spec]) -> int:
        """Index of the template ``key`` (``forest`` is only built into arrays once)."""
        if key in self._template_ids:
            return self._template_ids[key]
        depth: list[int] = []
        function: list[int] = []
        parent: list[int] = []
        last: list[int] = []

        def visit(spec: Spec, up: int, level: int) -> None:
            label, children = (spec, []) if isinstance(spec, str) else spec
            row = len(depth)
            depth.append(level)
            function.append(self.function_id(label))
            parent.append(up)
            last.append(row)
            for child in children:
                visit(child, row, level + 1)
            last[row] = len(depth) - 1

        for spec in forest:
            visit(spec, -1, 0)
        self._template_ids[key] = len(self.templates)
        self.templates.append(
            {
                "depth": np.array(depth, dtype=np.int64),
                "function": np.array(function, dtype=np.int64),
                "parent": np.array(parent, dtype=np.int64),
                "last": np.array(last, dtype=np.int64),
            }
        )
        return self._template_ids[key]

    def size(self, template: int) -> int:
        """Calls in one copy of a template."""
        return len(self.templates[template]["depth"])

    def build(self, blocks: np.ndarray, label: str) -> Trace:
        """The trace ``main -> copies of the templates listed in blocks``."""
        joined = {k: np.concatenate([t[k] for t in self.templates]) for k in self.templates[0]}
        lengths = np.array([self.size(t) for t in range(len(self.templates))], dtype=np.int64)
        offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        block_len = lengths[blocks]
        block_row = 1 + np.concatenate(([0], np.cumsum(block_len)[:-1]))  # first row of a block
        n = 1 + int(block_len.sum())
        base = np.repeat(block_row, block_len)  # first row of each row's block
        source = np.repeat(offsets[blocks], block_len)
        del block_len, block_row
        source += np.arange(1, n, dtype=np.int64) - base  # row -> row of its template
        rel_parent = joined["parent"][source]
        parent = np.empty(n, dtype=np.int64)
        parent[0] = -1
        parent[1:] = np.where(rel_parent >= 0, base + rel_parent, 0)
        del rel_parent
        last = np.empty(n, dtype=np.int64)
        last[0] = n - 1
        last[1:] = base + joined["last"][source]
        del base
        depth = np.zeros(n, dtype=np.int32)
        depth[1:] = joined["depth"][source] + 1
        function = np.zeros(n, dtype=np.int32)
        function[1:] = joined["function"][source]
        del source
        external = np.array([f.external for f in self.functions], dtype=bool)
        start = np.arange(n, dtype=np.int64) * 20 + 1_700_000_000_000_000_000
        end = last * 20 + 10 + 1_700_000_000_000_000_000
        del last
        calls = Calls(
            parent=parent,
            depth=depth,
            function=function,
            thread=np.zeros(n, dtype=np.int32),
            start=start,
            end=end,
            args=np.full(n, -1, dtype=np.int32),
            value=np.full(n, -1, dtype=np.int32),
            exception=np.full(n, -1, dtype=np.int32),
            flags=np.where(external[function], EXTERNAL, 0).astype(np.uint8),
            span_id=np.arange(1, n + 1, dtype=np.uint64),
            raise_line=np.zeros(n, dtype=np.int32),
            task=np.full(n, -1, dtype=np.int32),
        )
        return Trace(
            meta={"call_count": n, "generated": label},
            functions=self.functions,
            threads=[ThreadInfo(1, 1, "MainThread")],
            strings=[],
            arg_tuples=[],
            exceptions=[],
            calls=calls,
        )


def _layer(branch: bool) -> Spec:
    body: list[Spec] = [("linear", ["!matmul"]), "gelu"]
    if branch:  # the ``if`` branch: one extra call inside the layer
        body.append("apply_mask")
    return ("layer", [*body, ("linear", ["!matmul"]), "norm"])


def _forward(layers: int, branch_layer: int = -1) -> Spec:
    return ("forward", [_layer(i == branch_layer) for i in range(layers)])


def training_trace(calls: int, seed: int = 0) -> Trace:
    """``main -> setup, train_step x S (an evaluation loop every EVAL_EVERY steps),
    save_checkpoint``, with S chosen so that the trace has about ``calls`` calls.

    A step is ``load_batch, forward -> layer x LAYERS -> (linear -> matmul, gelu,
    linear -> matmul, norm), backward (external), optimizer_step``; about 5% of
    the steps also call ``log_metrics``, 10% take an ``if`` branch in one layer
    (an extra ``apply_mask`` call), the last step runs only LAST_LAYERS layers."""
    builder = TraceBuilder("train", "torch")

    def step(log: bool, branch_layer: int, layers: int) -> int:
        children: list[Spec] = [
            "load_batch",
            _forward(layers, branch_layer),
            "!backward",
            "optimizer_step",
        ]
        if log:
            children.append("log_metrics")
        return builder.template(("step", log, branch_layer, layers), [("train_step", children)])

    setup = builder.template(
        "setup", [("setup", ["load_config", ("build_model", ["init_layer"] * LAYERS)])]
    )
    evaluation = builder.template(
        "eval",
        [
            (
                "evaluate",
                [
                    ("eval_batch", ["load_batch", _forward(LAYERS), "compute_metrics"])
                    for _ in range(EVAL_BATCHES)
                ],
            )
        ],
    )
    save = builder.template("save", ["save_checkpoint"])
    plain = step(False, -1, LAYERS)
    per_step = (
        builder.size(plain) + LOG_EVERY + BRANCH_SHARE + builder.size(evaluation) / EVAL_EVERY
    )
    fixed = 1 + builder.size(setup) + builder.size(save)
    steps = max(2, round((calls - fixed) / per_step))

    rng = np.random.default_rng(seed)
    log = rng.random(steps) < LOG_EVERY
    branch = np.where(rng.random(steps) < BRANCH_SHARE, rng.integers(0, LAYERS, steps), -1)
    layers = np.full(steps, LAYERS)
    layers[-1] = LAST_LAYERS
    branch[-1] = -1
    kinds = np.stack((log, branch, layers), axis=1)
    distinct, inverse = np.unique(kinds, axis=0, return_inverse=True)
    ids = np.array([step(bool(a), int(b), int(c)) for a, b, c in distinct.tolist()])
    step_blocks = ids[inverse.reshape(-1)]
    # an evaluation block after every EVAL_EVERY steps (not after the last one)
    evals = np.arange(EVAL_EVERY, steps, EVAL_EVERY)
    blocks = np.insert(step_blocks, evals, evaluation)
    blocks = np.concatenate(([setup], blocks, [save])).astype(np.int64)
    return builder.build(blocks, f"training {size_label(calls)}")


def flat_trace(siblings: int, seed: int = 0) -> Trace:
    """``main`` with about ``siblings`` leaf children: ``read, parse, validate, store``
    repeated, with noise: 2% of the iterations retry after parsing, 1% skip the
    validation, and a ``flush`` follows every FLAT_FLUSH_EVERY-th iteration."""
    builder = TraceBuilder("etl", "requests")
    per_iteration = 4 + FLAT_RETRY - FLAT_SKIP + 1 / FLAT_FLUSH_EVERY
    count = max(2, round(siblings / per_iteration))
    rng = np.random.default_rng(seed)
    retry = rng.random(count) < FLAT_RETRY
    skip = rng.random(count) < FLAT_SKIP
    flush = (np.arange(count) + 1) % FLAT_FLUSH_EVERY == 0
    code = retry * 4 + skip * 2 + flush
    ids = np.zeros(8, dtype=np.int64)
    for value in np.unique(code).tolist():
        forest = ["read", "parse"]
        forest += ["!retry"] if value & 4 else []
        forest += [] if value & 2 else ["validate"]
        forest += ["store"]
        forest += ["flush"] if value & 1 else []
        ids[value] = builder.template(value, forest)
    return builder.build(ids[code], f"flat {size_label(siblings)}")


# --------------------------------------------------------------------------- child process


def make_trace(source: dict[str, Any]) -> Trace:
    """The trace a child folds: generated, or unpickled from a real run."""
    if source["kind"] == "training":
        return training_trace(int(source["calls"]))
    if source["kind"] == "flat":
        return flat_trace(int(source["calls"]))
    with open(source["path"], "rb") as stream:
        return pickle.load(stream)


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this (fresh) process: build the trace, then time one
    ``fold_trace`` or ``annotate`` call, under tracemalloc when ``memory``."""
    from otel_tracer.trace.collection import collection_paused
    from patterns.annotate import annotate
    from patterns.engine import fold_trace

    trace = make_trace(spec["source"])
    trace.__dict__.pop("children", None)  # a cached_property: folding computes it
    trace.patterns = None
    columns = trace.calls
    trace_bytes = sum(getattr(columns, k).nbytes for k in columns.__dataclass_fields__)
    gc.collect()
    memory = bool(spec["memory"])
    before = 0
    if memory:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    began = time.perf_counter()
    with collection_paused():  # as the commands run it
        folding = fold_trace(trace) if spec["op"] == "fold" else annotate(trace)
    elapsed = time.perf_counter() - began
    result: dict[str, Any] = {"seconds": elapsed, "calls": len(trace), "trace_bytes": trace_bytes}
    if memory:
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        result["peak_bytes"] = peak - before
        result["retained_bytes"] = current - before
    result["instances"] = len(folding.instances)
    if trace.patterns is not None:
        stats = trace.patterns.section["statistics"]
        result["statistics"] = {k: v for k, v in stats.items() if k != "largest"}
    return result


# --------------------------------------------------------------------------- running


@dataclass
class Row:
    """Everything measured on one trace."""

    name: str
    source: dict[str, Any]
    repeat: int
    calls: int | None = None
    trace_bytes: int | None = None
    fold_s: list[float] = field(default_factory=list)
    annotate_s: list[float] = field(default_factory=list)
    fold_peak: int | None = None
    annotate_peak: int | None = None
    statistics: dict[str, Any] = field(default_factory=dict)
    timed_out: set[str] = field(default_factory=set)  # operations that ran past --timeout
    memory_note: dict[str, str] = field(default_factory=dict)  # op -> why no memory figure
    error: str = ""

    def median(self, op: str) -> float | None:
        """Median seconds of ``op`` (fold or annotate), None when never measured."""
        samples = self.fold_s if op == "fold" else self.annotate_s
        return statistics.median(samples) if samples else None

    @property
    def fold(self) -> float | None:
        return self.median("fold")

    def per_call(self, value: float | None, scale: float = 1.0) -> float | None:
        return None if value is None or not self.calls else value * scale / self.calls


class TimedOut(Exception):
    """A measurement ran past --timeout."""


def run_child(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one measurement in a fresh process; its result (raises on failure)."""
    argv = [PY, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    try:
        done = subprocess.run(
            argv, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise TimedOut from None
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"exit {done.returncode}: {' / '.join(tail)}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(row: Row, memory: bool, timeout: float, big_repeat: int) -> None:
    """The timing repetitions (fold and annotate interleaved), then the memory runs.
    An operation that runs past ``timeout`` is not run again (nor ``annotate``,
    which folds first, when ``fold`` timed out); when a first run takes over
    SLOW_S seconds, the trace is only run ``big_repeat`` times."""
    ops = list(OPS)

    def timed_out(op: str, what: str) -> None:
        progress(f"  {row.name:<22} {op:<8} {what}: killed after {timeout:.0f} s (--timeout)")
        for late in ops[ops.index(op) :] if op == "fold" else [op]:
            row.timed_out.add(late)

    try:
        rep = 0
        while rep < row.repeat:
            if rep == 1 and max(row.fold_s + row.annotate_s, default=0.0) > SLOW_S:
                row.repeat = min(row.repeat, big_repeat)  # too slow to repeat
                if rep >= row.repeat:
                    progress(f"  {row.name}: runs take over {SLOW_S:.0f} s; not repeated")
                    break
            for op in ops if rep % 2 == 0 else ops[::-1]:
                if op in row.timed_out:
                    continue
                try:
                    result = run_child({"source": row.source, "op": op, "memory": False}, timeout)
                except TimedOut:
                    timed_out(op, f"rep {rep + 1}/{row.repeat}")
                    continue
                row.calls, row.trace_bytes = result["calls"], result["trace_bytes"]
                (row.fold_s if op == "fold" else row.annotate_s).append(result["seconds"])
                if op == "annotate":
                    row.statistics = result["statistics"]
                progress(
                    f"  {row.name:<22} {op:<8} rep {rep + 1}/{row.repeat}: "
                    f"{result['seconds']:8.3f} s"
                )
            rep += 1
        for op in ops if memory else []:
            if op in row.timed_out:
                continue
            if (row.median(op) or 0.0) > SLOW_S:
                row.memory_note[op] = "skipped ²"
                progress(f"  {row.name:<22} {op:<8} memory: skipped (over {SLOW_S:.0f} s a run)")
                continue
            try:
                result = run_child({"source": row.source, "op": op, "memory": True}, timeout)
            except TimedOut:
                row.memory_note[op] = f"> {timeout:.0f} s"
                progress(f"  {row.name:<22} {op:<8} memory: killed after {timeout:.0f} s")
                continue
            setattr(row, f"{op}_peak", result["peak_bytes"])
            progress(
                f"  {row.name:<22} {op:<8} memory: "
                f"{result['peak_bytes'] / 1e6:8.1f} MB peak beyond the trace"
            )
    except RuntimeError as error:
        row.error = str(error)
        progress(f"  {row.name}: failed: {error}")


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def trace_workloads(names: list[str], workdir: Path) -> list[tuple[str, Path | str]]:
    """Trace each workload of run.py (full size) with the CLI; (name, pickled trace
    path) or (name, error)."""
    import otel_tracer

    traced: list[tuple[str, Path | str]] = []
    for name in names:
        script, size, _ = WORKLOADS[name]
        output = workdir / f"{name}.json"
        argv = [PY, "-m", "cli.main", str(HERE / "workloads" / script), "-o", str(output)]
        argv += ["--no-patterns", "-q", "--", size]
        progress(f"tracing {name}: {' '.join(argv[1:])}")
        done = subprocess.run(argv, cwd=REPO, env=child_env(), capture_output=True, text=True)
        if done.returncode != 0 or not output.exists():
            traced.append((name, f"tracing failed (exit {done.returncode})"))
            continue
        trace = otel_tracer.load(str(output))
        path = workdir / f"{name}.pickle"
        with open(path, "wb") as stream:
            pickle.dump(trace, stream, protocol=pickle.HIGHEST_PROTOCOL)
        output.unlink()
        traced.append((f"{name} ({script} {size})", path))
    return traced


# --------------------------------------------------------------------------- reporting

COLUMNS = (
    "trace",
    "calls",
    "fold s",
    "annotate s",
    "ns / call (fold / annotate)",
    "peak MB beyond trace (fold / annotate)",
    "B / call (fold / annotate)",
    "groups",
    "rows folded",
    "compression",
)


def fmt(value: float | int | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def table(rows: list[Row], timeout: float) -> str:
    """All rows as one markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for row in rows:
        if row.error and row.fold is None:
            cells = [row.name, f"failed: {row.error}".replace("|", "/")]
            cells += ["-"] * (len(COLUMNS) - len(cells))
        else:
            stats = row.statistics
            calls = fmt(row.calls, ",")
            if row.calls is None and "calls" in row.source:
                calls = f"~{int(row.source['calls']):,}"
            peaks = [row.fold_peak, row.annotate_peak]
            notes = [row.memory_note.get(op) for op in OPS]
            cells = [
                row.name + (" ¹" if row.repeat == 1 else ""),
                calls,
                time_cell(row, "fold", timeout),
                time_cell(row, "annotate", timeout),
                " / ".join(fmt(row.per_call(row.median(op), 1e9), ",.0f") for op in OPS),
                " / ".join(
                    note or fmt(None if p is None else p / 1e6, ",.1f")
                    for p, note in zip(peaks, notes, strict=True)
                ),
                " / ".join(
                    note or fmt(row.per_call(p), ",.0f")
                    for p, note in zip(peaks, notes, strict=True)
                ),
                fmt(stats.get("groups"), ","),
                fmt(stats.get("rows_folded"), ","),
                fmt(stats.get("compression"), ".1f", "x"),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def time_cell(row: Row, op: str, timeout: float) -> str:
    """Median seconds, or ``> timeout`` when the operation never finished in time."""
    value = row.median(op)
    if value is None and op in row.timed_out:
        return f"> {timeout:.0f}"
    return fmt(value, ".3f")


def verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "MISS", None: "n/a "}[passed]


def targets(rows: list[Row], timeout: float) -> list[str]:
    """PASS / MISS lines."""
    lines = []
    training = {int(r.source["calls"]): r for r in rows if r.source["kind"] == "training"}
    flat = {int(r.source["calls"]): r for r in rows if r.source["kind"] == "flat"}
    for calls, limit in FOLD_SECONDS.items():
        for row in (training.get(calls), flat.get(calls)):
            if row is None or row.error:
                continue
            value = row.fold
            if value is None and "fold" in row.timed_out:
                passed, text = False, f"> {timeout:.0f} s (killed by --timeout)"
            else:
                passed = None if value is None else value < limit
                text = fmt(value, ".2f", " s")
            lines.append(
                f"- {verdict(passed)}  fold_trace time [{row.name}]: {text} "
                f"(target < {limit:.0f} s)"
            )
    for kind in (training, flat):
        sizes = sorted(kind)
        for small, big in zip(sizes, sizes[1:], strict=False):
            lines += growth(kind[small], kind[big], timeout)
    for row in rows:
        per_call = {op: row.per_call(getattr(row, f"{op}_peak")) for op in OPS}
        measured = {op: value for op, value in per_call.items() if value is not None}
        if not measured:
            continue
        figures = ", ".join(f"{op} {value:,.0f}" for op, value in measured.items())
        passed = all(value < MAX_BYTES_PER_CALL for value in measured.values())
        lines.append(
            f"- {verdict(passed)}  peak memory beyond the trace [{row.name}]: {figures} B/call "
            f"(target < {MAX_BYTES_PER_CALL:.0f} B/call)"
        )
    return lines


def git_head(measured: tuple[str, ...] = ("patterns", "otel_tracer")) -> str | None:
    """The repository's short HEAD commit, when git is there, with a note when the
    measured code (the folders ``measured``) has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", *measured],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return None
    if head and dirty:
        folders = ", ".join(f"{m}/" for m in measured)
        head += f" + uncommitted changes in {folders}"
    return head or None


def growth(small: Row, big: Row, timeout: float) -> list[str]:
    """Time ratio between two sizes of the same shape, against linear growth."""
    lines = []
    for op in OPS:
        a, b = small.median(op), big.median(op)
        if a is None or not small.calls:
            continue
        more = ""
        if b is None and op in big.timed_out:
            b, more = timeout, ">"  # a lower bound
        if b is None:
            continue
        calls_ratio = (big.calls or int(big.source["calls"])) / small.calls
        linear = (b / a) / calls_ratio
        lines.append(
            f"- {verdict(linear <= MAX_LINEARITY)}  growth of {op} time "
            f"[{small.name} -> {size_label(int(big.source['calls']))}]: {more}{b / a:.1f}x "
            f"the time for {calls_ratio:.2f}x the calls = {more}{linear:.2f}x linear "
            f"(target <= {MAX_LINEARITY}x linear)"
        )
    return lines


def size_label(n: int) -> str:
    """``1e6`` for a power of ten, else ``1,500,000``."""
    digits = len(str(n)) - 1
    return f"1e{digits}" if n == 10**digits else f"{n:,}"


def parse_sizes(text: str) -> list[int]:
    return [int(float(t)) for t in text.split(",") if t.strip()]


def parse_cli(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="1e5,1e6,1e7", help="calls of the generated training-loop traces"
    )
    parser.add_argument(
        "--flat", default="1e5,1e6", help="siblings of the flat traces (0: no flat trace)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="timing runs per trace; the median is reported"
    )
    parser.add_argument(
        "--big-repeat",
        type=int,
        default=1,
        help=f"timing runs for traces of {BIG:,} calls or more, or whose first run takes "
        f"over {SLOW_S:.0f} s (default 1; at most --repeat)",
    )
    parser.add_argument(
        "--real", action="store_true", help="also trace and fold the workloads of run.py"
    )
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="workloads for --real")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc runs")
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds before one run is killed and reported as '> TIMEOUT' (default 600)",
    )
    parser.add_argument("--json", metavar="PATH", help="also save the raw results as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.repeat < 1 or opts.big_repeat < 1:
        parser.error("--repeat and --big-repeat must be >= 1")
    opts.sizes = parse_sizes(opts.sizes)
    opts.flat = [n for n in parse_sizes(opts.flat) if n > 0]
    opts.workloads = [w.strip() for w in opts.workloads.split(",") if w.strip()]
    unknown = [w for w in opts.workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {','.join(WORKLOADS)}")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_cli(argv)
    if opts.child:
        print(json.dumps(child(json.loads(opts.child))))
        return 0
    head = git_head()
    print(
        f"python {platform.python_version()}, numpy {np.__version__} on "
        f"{platform.platform()}, {os.cpu_count()} CPUs; git {head or '?'}; "
        f"repeat {opts.repeat} ({min(opts.repeat, opts.big_repeat)} for traces of {BIG:,} "
        f"calls or more); timeout {opts.timeout:.0f} s per run",
        flush=True,
    )

    def repeat_for(calls: int) -> int:
        return min(opts.repeat, opts.big_repeat) if calls >= BIG else opts.repeat

    rows = [
        Row(f"training loop {size_label(n)}", {"kind": "training", "calls": n}, repeat_for(n))
        for n in opts.sizes
    ]
    rows += [
        Row(f"flat siblings {size_label(n)}", {"kind": "flat", "calls": n}, repeat_for(n))
        for n in opts.flat
    ]
    with tempfile.TemporaryDirectory(prefix="otel-fold-") as tmp:
        if opts.real:
            for name, path in trace_workloads(opts.workloads, Path(tmp)):
                if isinstance(path, str):
                    rows.append(Row(name, {"kind": "real"}, opts.repeat, error=path))
                else:
                    rows.append(Row(name, {"kind": "real", "path": str(path)}, opts.repeat))
        for row in rows:
            if row.error:
                continue
            progress(row.name)
            measure(row, not opts.no_memory, opts.timeout, opts.big_repeat)
    print()
    print(table(rows, opts.timeout))
    if any(r.repeat == 1 for r in rows):
        print(
            f"\n¹ one timing run: the time is a single sample, not a median (traces of "
            f"{BIG:,} calls or more, and traces whose first run took over {SLOW_S:.0f} s, "
            f"run min(--repeat, --big-repeat) = {min(opts.repeat, opts.big_repeat)} time(s))."
        )
    if any(r.timed_out for r in rows):
        print(
            f"\n> {opts.timeout:.0f}: the run was killed after --timeout {opts.timeout:.0f} s "
            "and not repeated (annotate folds first, so it is not run when fold timed out)."
        )
    if any(note.startswith("skipped") for r in rows for note in r.memory_note.values()):
        print(
            f"\n² no memory run: the timing runs took over {SLOW_S:.0f} s, and tracemalloc "
            "slows the Python-heavy folding several-fold (8x measured on the flat trace)."
        )
    own = [r.trace_bytes / r.calls for r in rows if r.trace_bytes and r.calls]
    print(
        "\nns / call: median seconds / calls. Peak beyond trace: tracemalloc peak during the "
        "call minus the memory in use before it, one run; the trace's own columns "
        f"({statistics.median(own) if own else 0:.0f} B/call) are not counted. groups, "
        "rows folded, compression: trace.patterns.section['statistics'] after annotate."
    )
    print("\nTargets:")
    for line in targets(rows, opts.timeout):
        print(line)
    if opts.json:
        payload = {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "git_head": head,
            "repeat": opts.repeat,
            "big_repeat": opts.big_repeat,
            "timeout_s": opts.timeout,
            "rows": [
                {
                    "name": r.name,
                    "source": r.source,
                    "calls": r.calls,
                    "trace_bytes": r.trace_bytes,
                    "fold_s": r.fold_s,
                    "annotate_s": r.annotate_s,
                    "fold_peak_bytes": r.fold_peak,
                    "annotate_peak_bytes": r.annotate_peak,
                    "statistics": r.statistics,
                    "timed_out": sorted(r.timed_out),
                    "error": r.error,
                }
                for r in rows
            ],
        }
        Path(opts.json).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"\nraw results: {opts.json}")
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
