"""Benchmark the HTML trace viewer (``exporters/viewer/``) in headless Chromium:
build time and size, opening time, and how fast it answers once open.

    python benchmarks/viewer.py                   # training loop 1e5, 1e6; flat 1e6
    python benchmarks/viewer.py --sizes 1e5 --flat 0 --views patterns --repeat 5
    python benchmarks/viewer.py --profile /tmp/prof   # also CPU profiles of slow steps

For each generated trace (``training_trace`` and ``flat_trace`` of benchmarks/fold.py)
and each view (folded ``patterns``, ``plain`` as with ``--no-patterns``), the viewer
is built once per repetition in this process (``fold_for_viewer`` + ``write_served``,
timed) and opened by Playwright in Chromium, each run in a fresh browser context:
served by ``ViewerServer``, then the standalone ``file://`` page. In the served page
the script then times, in the page with ``performance.now()``, until the next frame
has been drawn: opening and closing the biggest expandable node of each kind visible
after load, the first details panel, a search, expand all, a scroll to the middle,
a toggle in the expanded tree and collapse all. Medians over ``--repeat`` runs are
reported, against the targets: open in under 3 s for 10^6 calls, expand/collapse
in under 100 ms. See ``benchmarks/README.md``, "Viewer".
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _path in (HERE, REPO):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from fold import (  # noqa: E402  (benchmarks/fold.py)
    WORKLOADS,
    flat_trace,
    git_head,
    parse_sizes,
    size_label,
    trace_workloads,
    training_trace,
)

from exporters.viewer.server import ViewerServer  # noqa: E402
from exporters.viewer.site import fold_for_viewer, write_served, write_standalone  # noqa: E402
from otel_tracer.trace.model import Trace  # noqa: E402

# Targets (the issue): a 10^6-call trace opens in under 3 s, expand/collapse answers in 100 ms.
OPEN_S = 3.0
TOGGLE_MS = 100.0

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--enable-precise-memory-info",  # exact performance.memory.usedJSHeapSize
]
VIEWPORT = {"width": 1400, "height": 900}
SETTLE_MS = 300  # quiet time after the page is ready, before the first interaction
PROFILE_MIN_MS = 50.0  # --profile: summarise the steps at least this slow
PROFILE_TOP = 8  # functions listed per profiled step
PROFILE_INTERVAL_US = 100

# Installed in the page as window.__bench once it is ready. Every step returns
# {js_ms: the synchronous call, ms: until the next frame has been drawn, rows}.
BENCH_JS = """() => {
  const v = window.viewer, m = v.model;
  // After the next rAF callback the frame is styled, laid out and painted; the
  // timeout then runs once that frame is done.
  const frame = () => new Promise((done) => requestAnimationFrame(() => setTimeout(done, 0)));
  async function timed(action) {
    await frame();
    const t0 = performance.now();
    action();
    const t1 = performance.now();
    await frame();
    return { js_ms: t1 - t0, ms: performance.now() - t0, rows: v.rows.length };
  }
  // How many items a node opens onto (before nested nodes open): picks the biggest.
  function width(node) {
    const g = node.g;
    switch (node.kind) {
      case "thread": return m.threadRoots[node.t].length;
      case "call": return m.childrenOf(node.row).length;
      case "group": return m.callsBetween(node.steps, g.start + node.shift, g.stop + node.shift);
      case "template":
      case "variant": {
        const j = g.variants[node.v].representative;
        return g.bound(j + 1) - g.bound(j);
      }
      case "reps": return g.repetitions;
      case "rep": return g.bound(node.j + 1) - g.bound(node.j);
      case "range": return node.hi - node.lo;
    }
    return 0;
  }
  const count = (n, word) => `${n.toLocaleString("en-US")} ${word}${n === 1 ? "" : "s"}`;
  function label(node) {
    const n = width(node);
    switch (node.kind) {
      case "thread": return `thread (${count(n, "root call")})`;
      case "call": {
        const name = m.functions[m.function[node.row]].qualname;
        return `call ${name} (${n.toLocaleString("en-US")} ${n === 1 ? "child" : "children"})`;
      }
      case "group": {
        return `group (${count(node.g.repetitions, "repetition")}, ${count(n, "call")})`;
      }
      case "reps": return `reps (${count(n, "iteration")})`;
      case "range": {  // as the viewer labels it: calls and steps from 1, iterations from 0
        const f = (k) => k.toLocaleString("en-US"), of = `of ${f(node.total)}`;
        if (node.items && node.items[0].kind === "rep") {
          return `range (iterations ${f(node.lo)}-${f(node.hi - 1)} ${of})`;
        }
        return `range (${node.steps ? "calls" : "steps"} ${f(node.lo + 1)}-${f(node.hi)} ${of})`;
      }
      default: return `${node.kind} (${count(n, "step")})`;
    }
  }
  const describe = (node) => ({
    kind: node.kind, key: node.key, width: width(node), label: label(node),
  });
  const indexOf = (key) => v.rows.findIndex((node) => node.key === key);
  window.__bench = {
    settle: async (ms) => { await frame(); await new Promise((done) => setTimeout(done, ms)); },
    heap: () => (performance.memory ? performance.memory.usedJSHeapSize : null),
    /** An empty step: what waiting for the next frame costs by itself. */
    noop: () => timed(() => {}),
    /** The visible expandable node with the most items, per kind. */
    candidates() {
      const best = new Map();
      for (const node of v.rows) {
        if (!node.expandable) continue;
        const seen = best.get(node.kind);
        if (!seen || width(node) > seen.width) best.set(node.kind, describe(node));
      }
      return [...best.values()];
    },
    /** The expandable node at or above the middle row (for the expanded tree). */
    middle() {
      for (let i = v.rows.length >> 1; i >= 0; i--) {
        const node = v.rows[i];
        if (node.expandable) return describe(node);
      }
      return null;
    },
    /** Toggle a node twice (open then close, or close then open). */
    async toggleTwice(key) {
      const out = [];
      for (let k = 0; k < 2; k++) {
        const index = indexOf(key), before = v.rows.length;
        const opening = !v.state.isOpen(v.rows[index]);
        const step = await timed(() => v.toggle(index));
        out.push({ ...step, opening, delta: step.rows - before });
      }
      return out;
    },
    /** Select the first call and wait for the details panel (details.json) to fill. */
    async details() {
      const index = v.rows.findIndex((node) => node.kind === "call");
      if (index < 0) return null;
      await frame();
      const t0 = performance.now();
      v.select(index, false);
      await m.details(v.config);
      await frame();
      return { js_ms: null, ms: performance.now() - t0, rows: v.rows.length };
    },
    /** Search the most called function, jumping to its first call. */
    async search() {
      const name = m.functions[m.stats.top_by_count[0].function].qualname;
      const step = await timed(() => v.search(name, true));
      return { ...step, query: name, matches: v.matches ? v.matches.length : 0 };
    },
    expandAll: () => timed(() => { v.state.expandAll(); v.rebuild(); }),
    collapseAll: () => timed(() => { v.state.collapseAll(); v.rebuild(); }),
    scroll: () => timed(() => {
      const port = v.viewport;
      port.scrollTop = (port.scrollHeight - port.clientHeight) / 2;
      v.render();
    }),
  };
}"""

READY_JS = "() => window.viewerReady"
# Steps without a target of their own, noted when slower than TOGGLE_MS.
SLOW_NOTES = {
    "expand_all": "expand all",
    "collapse_all": "collapse all",
    "search": "search (jumps to the first match)",
    "scroll": "scroll to the middle",
    "details": "first details panel (loads details.json)",
}


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# --------------------------------------------------------------------------- traces and builds


@dataclass
class Scenario:
    """One trace in one view, and everything measured on it."""

    trace_name: str  # "training loop 1e6"
    source: dict[str, Any]  # {"kind": "training" | "flat", "calls": n} or {"kind": "real", ...}
    patterns: bool
    calls: int = 0
    fold_s: list[float] = field(default_factory=list)
    write_s: list[float] = field(default_factory=list)
    standalone_write_s: float | None = None
    data_bytes: int = 0  # the served page and its data folder
    standalone_bytes: int = 0
    page: Path | None = None
    standalone: Path | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def view(self) -> str:
        return "patterns" if self.patterns else "plain"

    @property
    def name(self) -> str:
        return f"{self.trace_name}, {self.view}"

    @property
    def slug(self) -> str:
        return self.name.replace(", ", "-").replace(" ", "-").replace("(", "").replace(")", "")

    @property
    def build_s(self) -> list[float]:
        return [a + b for a, b in zip(self.fold_s, self.write_s, strict=True)]

    def values(self, path: str) -> list[float]:
        """One figure of every run, by dotted path (``open.wall_s``, ``search.ms``)."""
        out = []
        for run in self.runs:
            value: Any = run
            for part in path.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if isinstance(value, int | float):
                out.append(float(value))
        return out

    def med(self, path: str) -> float | None:
        return median(self.values(path))

    def toggles(self, expanded: bool = False) -> list[dict[str, Any]]:
        """Per toggled node and direction: its median time over the runs. The nodes
        toggled after load, or (``expanded``) the one toggled after expand all."""
        samples: dict[tuple[str, str, bool], list[dict[str, Any]]] = defaultdict(list)
        for run in self.runs:
            for node in run.get("expanded_toggles" if expanded else "toggles", []):
                for step in node["steps"]:
                    samples[(node["label"], node["kind"], step["opening"])].append(step)
        return [
            {
                "label": label + (" in the expanded tree" if expanded else ""),
                "kind": kind,
                "opening": opening,
                "ms": statistics.median(s["ms"] for s in steps),
                "js_ms": statistics.median(s["js_ms"] for s in steps),
                "delta": steps[0]["delta"],
            }
            for (label, kind, opening), steps in samples.items()
        ]

    def slowest_toggle(self, expanded: bool | None = None) -> dict[str, Any] | None:
        """The slowest toggle (by its median): after load (``expanded`` False), in the
        expanded tree (True), or either (None)."""
        toggles = [] if expanded is True else self.toggles()
        toggles += [] if expanded is False else self.toggles(expanded=True)
        return max(toggles, key=lambda t: t["ms"], default=None)


def make_trace(source: dict[str, Any]) -> Trace:
    if source["kind"] == "training":
        return training_trace(int(source["calls"]))
    if source["kind"] == "flat":
        return flat_trace(int(source["calls"]))
    with open(source["path"], "rb") as stream:
        return pickle.load(stream)


def build(trace: Trace, scenarios: list[Scenario], workdir: Path, repeat: int) -> None:
    """Write every view of ``trace`` ``repeat`` times (timed: fold_for_viewer, then
    write_served), then its standalone page once."""
    for scenario in scenarios:
        scenario.calls = len(trace)
        for rep in range(repeat):
            trace.__dict__.pop("children", None)  # a cached_property: folding computes it
            began = time.perf_counter()
            folding = fold_for_viewer(trace, scenario.patterns)
            folded = time.perf_counter()
            scenario.page = write_served(trace, folding, workdir, scenario.slug)
            written = time.perf_counter()
            scenario.fold_s.append(folded - began)
            scenario.write_s.append(written - folded)
            progress(
                f"  build {scenario.name:<34} rep {rep + 1}/{repeat}: fold {folded - began:6.2f} s"
                f", write {written - folded:6.2f} s"
            )
        data = workdir / f"{scenario.slug}.data"
        scenario.data_bytes = scenario.page.stat().st_size + sum(
            f.stat().st_size for f in data.iterdir()
        )
        scenario.standalone = workdir / f"{scenario.slug}.standalone.html"
        began = time.perf_counter()
        write_standalone(trace, folding, scenario.standalone)
        scenario.standalone_write_s = time.perf_counter() - began
        scenario.standalone_bytes = scenario.standalone.stat().st_size


# --------------------------------------------------------------------------- the browser


class Profiler:
    """CPU profiles of single steps through Chrome DevTools (``--profile``)."""

    def __init__(self, page: Any, directory: Path, slug: str, html: str) -> None:
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Profiler.enable")
        self.cdp.send("Profiler.setSamplingInterval", {"interval": PROFILE_INTERVAL_US})
        self.directory = directory
        self.slug = slug
        self.lines = source_lines(html)
        self.summaries: list[str] = []

    def start(self) -> None:
        self.cdp.send("Profiler.start")

    def stop(self, step: str, ms: float | None) -> None:
        profile = self.cdp.send("Profiler.stop")["profile"]
        name = f"{self.slug}-{step}.cpuprofile".replace(" ", "-")
        (self.directory / name).write_text(json.dumps(profile), "utf-8")
        if ms is not None and ms >= PROFILE_MIN_MS:
            self.summaries.append(summarise(profile, self.lines, f"{step}: {ms:.0f} ms", name))


def source_lines(html: str) -> list[tuple[int, str]]:
    """(first line of the file in the page, file name) of each bundled script, from
    the ``// model.js:`` comment on each file's second line (0-based page lines)."""
    starts = []
    for number, line in enumerate(html.splitlines()):
        for script in ("model.js", "tree.js", "view.js"):
            if line.startswith(f"// {script}:"):
                starts.append((number - 1, script))
    return starts


def summarise(profile: dict[str, Any], lines: list[tuple[int, str]], title: str, file: str) -> str:
    """The hottest functions of a CPU profile by self time, with their total time."""
    nodes = {node["id"]: node for node in profile["nodes"]}
    parent = {child: node["id"] for node in profile["nodes"] for child in node.get("children", [])}

    def where(frame: dict[str, Any]) -> str:
        line = frame.get("lineNumber", -1)
        name = frame.get("functionName") or "(anonymous)"
        if not frame.get("url") or line < 0:
            return name
        script = [(start, s) for start, s in lines if start <= line]
        if not script:
            return name
        start, file_name = script[-1]
        return f"{name} ({file_name}:{line - start + 1})"

    self_ms: dict[str, float] = defaultdict(float)
    total_ms: dict[str, float] = defaultdict(float)
    deltas = profile.get("timeDeltas", [])
    for sample, delta in zip(profile.get("samples", []), deltas[1:] + [0], strict=False):
        ms = delta / 1000
        node_id: int | None = sample
        seen = set()
        self_ms[where(nodes[sample]["callFrame"])] += ms
        while node_id is not None:
            key = where(nodes[node_id]["callFrame"])
            if key not in seen:
                seen.add(key)
                total_ms[key] += ms
            node_id = parent.get(node_id)
    hot = sorted(self_ms.items(), key=lambda item: -item[1])
    hot = [(k, v) for k, v in hot if k not in ("(idle)", "(root)")][:PROFILE_TOP]
    body = [f"    {ms:7.1f} ms self {total_ms[key]:8.1f} ms total  {key}" for key, ms in hot]
    return "\n".join([f"  {title}  [{file}]", *body])


class Browser:
    """One Chromium for the whole benchmark; a fresh context (profile) per page."""

    def __init__(self, executable: str, timeout_s: float) -> None:
        from playwright.sync_api import sync_playwright

        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS
        )
        self.timeout_ms = timeout_s * 1000

    def close(self) -> None:
        self.browser.close()
        self.playwright.stop()

    def page(self, problems: list[str]) -> tuple[Any, Any]:
        """A new context (a fresh profile) and a blank page in it; its JS exceptions and
        console errors go to ``problems``."""
        context = self.browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.set_default_timeout(self.timeout_ms)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("console", lambda message: console_problem(message, problems))
        return context, page


def load(page: Any, url: str) -> dict[str, Any]:
    """Open ``url`` and wait until ``window.viewerReady``: {wall_s, ms, calls, rows},
    or {error} (the page's own, or not ready before the timeout)."""
    began = time.perf_counter()
    try:
        page.goto(url, wait_until="commit")
        page.wait_for_function(READY_JS, polling="raf")
    except Exception as error:  # a failed navigation or a timeout: report it, keep going
        return {"error": f"not ready: {str(error).splitlines()[0]}"}
    wall = time.perf_counter() - began
    return {"wall_s": wall, **page.evaluate(READY_JS)}


def console_problem(message: Any, problems: list[str]) -> None:
    """Console errors, except the browser's own request for /favicon.ico."""
    if message.type != "error":
        return
    if message.location.get("url", "").endswith("/favicon.ico"):
        return
    problems.append(f"console error: {message.text}")


def served_run(
    browser: Browser, url: str, scenario: Scenario, profiler_dir: Path | None
) -> dict[str, Any]:
    """Open the served page, then time every interaction in it."""
    problems: list[str] = []
    context, page = browser.page(problems)
    run: dict[str, Any] = {"open": {"error": "not opened"}, "problems": problems}
    try:
        profiler = None
        if profiler_dir is not None:
            html = scenario.page.read_text("utf-8") if scenario.page else ""
            profiler = Profiler(page, profiler_dir, scenario.slug, html)
            run["profiles"] = profiler.summaries
            profiler.start()
        run["open"] = opened = load(page, url)
        if profiler:
            profiler.stop("open", opened.get("ms"))
        if "error" in opened:
            return run
        page.evaluate(BENCH_JS)
        page.evaluate("(ms) => __bench.settle(ms)", SETTLE_MS)
        run["heap_ready_mb"] = heap_mb(page)
        run["noop"] = page.evaluate("() => __bench.noop()")

        def step(name: str, script: str, arg: Any = None) -> Any:
            if profiler:
                profiler.start()
            result = page.evaluate(script, arg)
            if profiler:
                times = [s["ms"] for s in result] if isinstance(result, list) else []
                ms = max(times) if times else (result or {}).get("ms")
                profiler.stop(name, ms)
            return result

        run["toggles"] = []
        for node in page.evaluate("() => __bench.candidates()"):
            steps = step(f"toggle {node['kind']}", "(key) => __bench.toggleTwice(key)", node["key"])
            run["toggles"].append({**node, "steps": steps})
        run["details"] = step("details", "() => __bench.details()")
        run["search"] = step("search", "() => __bench.search()")
        run["expand_all"] = step("expand all", "() => __bench.expandAll()")
        run["heap_expanded_mb"] = heap_mb(page)
        run["scroll"] = step("scroll", "() => __bench.scroll()")
        middle = page.evaluate("() => __bench.middle()")
        if middle is not None:
            steps = step("expanded toggle", "(key) => __bench.toggleTwice(key)", middle["key"])
            run["expanded_toggles"] = [{**middle, "steps": steps}]
        run["collapse_all"] = step("collapse all", "() => __bench.collapseAll()")
    except Exception as error:  # a crashed page or a JS exception: report, keep going
        problems.append(f"benchmark step failed: {str(error).splitlines()[0]}")
    finally:
        context.close()
    return run


def heap_mb(page: Any) -> float | None:
    used = page.evaluate("() => __bench.heap()")
    return None if used is None else used / 1e6


def standalone_run(browser: Browser, path: Path) -> dict[str, Any]:
    """Open the standalone page from disk; only the opening is timed."""
    problems: list[str] = []
    context, page = browser.page(problems)
    try:
        opened = load(page, path.as_uri())
    finally:
        context.close()
    return {"open": opened, "problems": problems}


def measure(scenarios: list[Scenario], opts: argparse.Namespace, workdir: Path) -> None:
    """``--repeat`` rounds; each round opens every scenario once (served, then
    standalone), so slow phases of a shared machine hit all of them alike."""
    server = ViewerServer(workdir, "index.html", "127.0.0.1", 0)
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    browser = Browser(opts.chromium, opts.timeout)
    try:
        for rep in range(opts.repeat + (1 if opts.profile else 0)):
            profiling = rep == opts.repeat  # one extra, untimed run under the profiler
            for scenario in scenarios:
                if scenario.page is None or scenario.standalone is None:
                    continue
                url = f"http://127.0.0.1:{server.port}/{scenario.page.name}"
                run = served_run(browser, url, scenario, opts.profile if profiling else None)
                if profiling:
                    report_profiles(scenario, run.get("profiles", []))
                    continue
                run["standalone"] = standalone_run(browser, scenario.standalone)
                scenario.runs.append(run)
                for problem in run["problems"] + run["standalone"]["problems"]:
                    if problem not in scenario.errors:
                        scenario.errors.append(problem)
                for opened in (run["open"], run["standalone"]["open"]):
                    if "error" in opened and opened["error"] not in scenario.errors:
                        scenario.errors.append(opened["error"])
                progress(f"  run {rep + 1}/{opts.repeat} {scenario.name:<34} {run_line(run)}")
    finally:
        browser.close()
        server.httpd.shutdown()
        server.httpd.server_close()


def run_line(run: dict[str, Any]) -> str:
    """One progress line: open times and the slowest toggle of a run."""
    opened, alone = run["open"], run["standalone"]["open"]
    if "error" in opened:
        return f"failed: {opened['error']}"
    steps = [s["ms"] for node in run.get("toggles", []) for s in node["steps"]]
    slowest = f"{max(steps):7.1f} ms" if steps else "-"
    alone_s = f"{alone['wall_s']:.2f} s" if "wall_s" in alone else alone.get("error", "-")
    return f"open {opened['wall_s']:.2f} s, file:// {alone_s}, slowest toggle {slowest}"


def report_profiles(scenario: Scenario, summaries: list[str]) -> None:
    if summaries:
        progress(f"profile of {scenario.name} (steps of {PROFILE_MIN_MS:.0f} ms or more):")
        for summary in summaries:
            progress(summary)


# --------------------------------------------------------------------------- reporting


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "MISS", None: "n/a"}[passed]


def toggle_text(toggle: dict[str, Any] | None) -> str:
    """``168 ms (opening call main (999,913 children))``."""
    if toggle is None:
        return "-"
    direction = "opening" if toggle["opening"] else "closing"
    return f"{toggle['ms']:.0f} ms ({direction} {toggle['label']})"


def open_s(scenario: Scenario) -> float | None:
    """The slower of the two opening times (served, file://)."""
    values = [scenario.med("open.wall_s"), scenario.med("standalone.open.wall_s")]
    return max((v for v in values if v is not None), default=None)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def opening_table(scenarios: list[Scenario]) -> str:
    header = [
        "trace",
        "view",
        "calls",
        "build s (fold + write)",
        "data MB",
        "B / call",
        "open s (served)",
        "in page ms",
        "open s (file://)",
        "file MB",
        "rows at load",
        "JS heap MB (load / expanded)",
        f"open < {OPEN_S:.0f} s",
    ]
    rows = []
    for s in scenarios:
        opened = open_s(s)
        rows.append(
            [
                s.trace_name,
                s.view,
                f"{s.calls:,}",
                f"{fmt(median(s.build_s), '.2f')} ({fmt(median(s.fold_s), '.2f')} + "
                f"{fmt(median(s.write_s), '.2f')})",
                fmt(s.data_bytes / 1e6, ".1f"),
                fmt(s.data_bytes / s.calls if s.calls else None, ".1f"),
                fmt(s.med("open.wall_s"), ".2f"),
                fmt(s.med("open.ms"), ",.0f"),
                fmt(s.med("standalone.open.wall_s"), ".2f"),
                fmt(s.standalone_bytes / 1e6, ".1f"),
                fmt(s.med("open.rows"), ",.0f"),
                f"{fmt(s.med('heap_ready_mb'), '.0f')} / {fmt(s.med('heap_expanded_mb'), '.0f')}",
                verdict(None if opened is None else opened < OPEN_S),
            ]
        )
    return table(header, rows)


def interaction_table(scenarios: list[Scenario]) -> str:
    header = [
        "trace",
        "view",
        "slowest toggle after load",
        "toggle median ms",
        "toggle, expanded tree ms",
        "expand all ms (rows)",
        "scroll ms",
        "collapse all ms",
        "search ms (matches)",
        "first details ms",
        "empty step ms",
        f"toggle < {TOGGLE_MS:.0f} ms",
    ]
    rows = []
    for s in scenarios:
        expanded, worst = s.slowest_toggle(expanded=True), s.slowest_toggle()
        rows.append(
            [
                s.trace_name,
                s.view,
                toggle_text(s.slowest_toggle(expanded=False)),
                fmt(median([t["ms"] for t in s.toggles()]), ".0f"),
                fmt(expanded and expanded["ms"], ".0f"),
                f"{fmt(s.med('expand_all.ms'), ',.0f')} ({fmt(s.med('expand_all.rows'), ',.0f')})",
                fmt(s.med("scroll.ms"), ".0f"),
                fmt(s.med("collapse_all.ms"), ".0f"),
                f"{fmt(s.med('search.ms'), ',.0f')} ({fmt(s.med('search.matches'), ',.0f')})",
                fmt(s.med("details.ms"), ",.0f"),
                fmt(s.med("noop.ms"), ".0f"),
                verdict(None if worst is None else worst["ms"] < TOGGLE_MS),
            ]
        )
    return table(header, rows)


def toggle_table(scenarios: list[Scenario]) -> str:
    """Every toggled node: both directions, to the next frame and the JS call alone."""
    header = ["trace", "view", "node", "open ms (JS ms)", "close ms (JS ms)", "rows added"]
    rows = []
    for s in scenarios:
        by_node: dict[str, dict[bool, dict[str, Any]]] = defaultdict(dict)
        for t in s.toggles() + s.toggles(expanded=True):
            by_node[t["label"]][t["opening"]] = t
        for label, directions in by_node.items():
            cells = [
                f"{fmt(d['ms'], ',.1f')} ({fmt(d['js_ms'], ',.1f')})" if d else "-"
                for d in (directions.get(True), directions.get(False))
            ]
            added = directions.get(True, {}).get("delta")
            rows.append([s.trace_name, s.view, label, *cells, fmt(added, ",")])
    return table(header, rows)


def targets(scenarios: list[Scenario]) -> list[str]:
    """PASS / MISS lines, and a note for each other step slower than the toggle target."""
    lines = []
    for s in scenarios:
        if not s.runs:
            continue
        served, alone = s.med("open.wall_s"), s.med("standalone.open.wall_s")
        opened = open_s(s)
        lines.append(
            f"- {verdict(None if opened is None else opened < OPEN_S)}  open [{s.name}, "
            f"{s.calls:,} calls]: served {fmt(served, '.2f', ' s')}, file:// "
            f"{fmt(alone, '.2f', ' s')} (target < {OPEN_S:.0f} s)"
        )
        worst = s.slowest_toggle()
        lines.append(
            f"- {verdict(None if worst is None else worst['ms'] < TOGGLE_MS)}  expand/collapse "
            f"[{s.name}]: slowest {toggle_text(worst)} (target < {TOGGLE_MS:.0f} ms)"
        )
    for s in scenarios:
        for step, what in SLOW_NOTES.items():
            ms = s.med(f"{step}.ms")
            if ms is not None and ms >= TOGGLE_MS:
                rows = "" if step == "details" else f", {fmt(s.med(f'{step}.rows'), ',.0f')} rows"
                lines.append(
                    f"- note  {what} [{s.name}]: {ms:,.0f} ms{rows} "
                    f"(no target; over {TOGGLE_MS:.0f} ms)"
                )
    return lines


def chromium_version(executable: str) -> str:
    try:
        done = subprocess.run([executable, "--version"], capture_output=True, text=True)
    except OSError:
        return "?"
    return done.stdout.strip() or "?"


# --------------------------------------------------------------------------- main


def served_from_file(browser: Browser, trace_path: Path) -> dict[str, Any]:
    """Start ``python -m exporters.viewer TRACE 0`` and open the address it prints:
    seconds from the command's start until it listens and until the page is drawn."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "exporters.viewer", str(trace_path), "0"]
    began = time.perf_counter()
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        url = None
        for line in server.stdout:
            text = line.decode().strip()
            if text.startswith("open  http"):
                url = text.split()[-1]
                break
        if url is None:
            return {"error": server.stderr.read().decode().strip()[-300:]}
        listening = time.perf_counter() - began
        problems: list[str] = []
        context, page = browser.page(problems)
        try:
            result = load(page, url)
        finally:
            context.close()
        if "error" in result:
            return result
        return {
            "listening_s": listening,
            "drawn_s": time.perf_counter() - began,
            "problems": problems,
        }
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        server.stdout.close()
        server.stderr.close()


def served_from_file_table(opts: argparse.Namespace, workdir: Path) -> str:
    """``--from-file``: the medians of ``served_from_file`` per trace size."""
    from otel_tracer.trace.save import save

    browser = Browser(opts.chromium, opts.timeout)
    rows = []
    try:
        for n in opts.sizes:
            path = workdir / f"training-{size_label(n)}.json"
            trace = training_trace(n)
            trace.meta.setdefault("trace_id", os.urandom(16).hex())  # a saved trace has one
            save(trace, path)
            calls = len(trace)
            del trace
            runs = [served_from_file(browser, path) for _ in range(opts.repeat)]
            good = [r for r in runs if "error" not in r]
            errors = [r["error"] for r in runs if "error" in r]
            drawn = median([r["drawn_s"] for r in good])
            rows.append(
                [
                    f"training loop {size_label(n)}",
                    f"{calls:,}",
                    fmt(median([r["listening_s"] for r in good]), ".2f"),
                    fmt(drawn, ".2f"),
                    verdict(None if drawn is None else drawn <= OPEN_S),
                    "; ".join(errors) or "-",
                ]
            )
            progress(f"  served from file {size_label(n)}: {rows[-1]}")
    finally:
        browser.close()
    header = ["trace", "calls", "listening s", "page drawn s", f"<= {OPEN_S:.0f} s", "errors"]
    return (
        "Served from a saved file (`python -m exporters.viewer trace.json 0`, medians; "
        "seconds from the command's start):\n\n" + table(header, rows)
    )


def parse_cli(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="1e5,1e6",
        help="calls of the training-loop traces (default 1e5,1e6; 0: none)",
    )
    parser.add_argument(
        "--flat", default="1e6", help="siblings of the flat traces (default 1e6; 0: none)"
    )
    parser.add_argument(
        "--views",
        default="patterns,plain",
        help="patterns (folded), plain (--no-patterns); default both",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per trace and view; medians are reported (default 3)",
    )
    parser.add_argument(
        "--real", action="store_true", help="also trace and view the workloads of run.py"
    )
    parser.add_argument("--workloads", default="fib", help="workloads for --real (default fib)")
    parser.add_argument("--chromium", default=CHROMIUM, help=f"browser (default {CHROMIUM})")
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for a page to be ready (default 120)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="one more run per trace under the DevTools CPU profiler: .cpuprofile files in "
        f"DIR, and the hottest functions of every step of {PROFILE_MIN_MS:.0f} ms or more",
    )
    parser.add_argument(
        "--workdir", type=Path, help="write the pages here and keep them (default: a temp dir)"
    )
    parser.add_argument("--json", metavar="PATH", help="also save the raw results as JSON")
    parser.add_argument(
        "--from-file",
        action="store_true",
        help="only time serving a saved trace as a user does: `python -m exporters.viewer "
        "trace.json 0` from the command's start until the page is drawn in Chromium "
        "(the training-loop traces of --sizes, saved as JSON first)",
    )
    opts = parser.parse_args(argv)
    if opts.repeat < 1:
        parser.error("--repeat must be >= 1")
    opts.sizes = [n for n in parse_sizes(opts.sizes) if n > 0]
    opts.flat = [n for n in parse_sizes(opts.flat) if n > 0]
    opts.views = [v.strip() for v in opts.views.split(",") if v.strip()]
    if not opts.views or set(opts.views) - {"patterns", "plain"}:
        parser.error("--views: patterns, plain or both")
    opts.workloads = [w.strip() for w in opts.workloads.split(",") if w.strip()]
    unknown = [w for w in opts.workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {','.join(WORKLOADS)}")
    return opts


def run_benchmark(opts: argparse.Namespace, workdir: Path) -> list[Scenario]:
    """Build every trace's views, then measure them all in the browser."""
    sources = [
        (f"training loop {size_label(n)}", {"kind": "training", "calls": n}) for n in opts.sizes
    ]
    sources += [(f"flat siblings {size_label(n)}", {"kind": "flat", "calls": n}) for n in opts.flat]
    if opts.real:
        for name, path in trace_workloads(opts.workloads, workdir):
            if isinstance(path, str):
                progress(f"  {name}: {path}")
            else:
                sources.append((name, {"kind": "real", "path": str(path)}))
    scenarios: list[Scenario] = []
    for trace_name, source in sources:
        progress(trace_name)
        views = [Scenario(trace_name, source, view == "patterns") for view in opts.views]
        try:
            build(make_trace(source), views, workdir, opts.repeat)
        except Exception as error:  # report the failed build, measure the others
            for scenario in views:
                scenario.errors.append(f"build failed: {error!r}")
            progress(f"  build failed: {error!r}")
        scenarios += views
    if opts.profile:
        opts.profile.mkdir(parents=True, exist_ok=True)
    measure(scenarios, opts, workdir)
    return scenarios


def main(argv: list[str] | None = None) -> int:
    opts = parse_cli(argv)
    head = git_head(("exporters", "patterns", "otel_tracer"))
    print(
        f"python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPUs; "
        f"{chromium_version(opts.chromium)} (headless); git {head or '?'}; "
        f"repeat {opts.repeat}; viewport {VIEWPORT['width']}x{VIEWPORT['height']}",
        flush=True,
    )
    if opts.from_file:
        with tempfile.TemporaryDirectory(prefix="otel-viewer-bench-") as tmp:
            print(served_from_file_table(opts, Path(opts.workdir or tmp)))
        return 0
    if opts.workdir is not None:
        opts.workdir.mkdir(parents=True, exist_ok=True)
        scenarios = run_benchmark(opts, opts.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="otel-viewer-bench-") as tmp:
            scenarios = run_benchmark(opts, Path(tmp))
    print("\nOpening (medians):\n")
    print(opening_table(scenarios))
    print("\nInteraction (medians, ms from the call until the next frame is drawn):\n")
    print(interaction_table(scenarios))
    print("\nToggled nodes (medians; the biggest expandable node of each kind after load):\n")
    print(toggle_table(scenarios))
    print(
        "\nbuild: fold_for_viewer + write_served in this process. data MB: the page and its "
        "data folder. open s: wall time from page.goto to window.viewerReady (Playwright); "
        "in page ms: viewerReady.ms, script start to first render. JS heap MB: "
        "performance.memory.usedJSHeapSize after load / after expand all."
    )
    print("\nTargets:")
    for line in targets(scenarios):
        print(line)
    failed = [s for s in scenarios if s.errors]
    if failed:
        print("\nProblems:")
        for s in failed:
            for error in s.errors:
                print(f"- [{s.name}] {error}")
    if opts.json:
        payload = {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "chromium": chromium_version(opts.chromium),
            "git_head": head,
            "repeat": opts.repeat,
            "viewport": VIEWPORT,
            "scenarios": [
                {
                    "name": s.name,
                    "trace": s.trace_name,
                    "source": s.source,
                    "view": s.view,
                    "calls": s.calls,
                    "fold_s": s.fold_s,
                    "write_s": s.write_s,
                    "standalone_write_s": s.standalone_write_s,
                    "data_bytes": s.data_bytes,
                    "standalone_bytes": s.standalone_bytes,
                    "runs": s.runs,
                    "toggles": s.toggles(),
                    "errors": s.errors,
                }
                for s in scenarios
            ],
        }
        Path(opts.json).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"\nraw results: {opts.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
