"""The HTML viewer in a real headless Chromium: the serve script end to end, the
pattern boxes, the controls, search, details, the standalone file, hostile
strings and a million-call page."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from browser import screenshot
from conftest import REPO, run_python, run_tracer, write_files
from trace_builder import trace_from_columns
from viewer_helpers import (
    click_row,
    details,
    index_of,
    labels,
    open_viewer,
    serve,
    shown_labels,
)

import otel_tracer
from exporters.viewer.server import ViewerServer
from exporters.viewer.site import fold_for_viewer, write_served, write_standalone
from otel_tracer.trace.model import Function

NESTED = """
    import json

    def attention(x):
        return x * 2

    def get(key):
        return key

    def forward(x):
        return json.dumps(x)  # an external (out of scope) call

    def layer_name(i):
        return f"layer{i}"

    def block(x):
        attention(x)
        get("k")
        for i in range(2):
            forward(x)
            layer_name(i)

    def fails(x):
        raise ValueError(f"bad value {x}")

    def train(steps, password):
        for s in range(steps):
            block(s)
        try:
            fails(7)
        except ValueError:
            pass
        return "done"

    train(6, password="hunter2")
"""

HOSTILE = """
    def show(text, note):
        return text

    def explode(text):
        raise RuntimeError(text)

    show("<script>window.pwned = 1</script>", note='"><img src=x onerror="window.pwned=2">')
    try:
        explode("<img src=y onerror=window.pwned=3><b>bold</b>")
    except RuntimeError:
        pass
"""


@pytest.fixture(scope="module")
def nested_trace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nested")
    write_files(root, {"train.py": NESTED})
    result = run_tracer(["train.py", "-o", "trace.json"], root)
    assert result.returncode == 0, result.stderr
    return root / "trace.json"


@pytest.fixture(scope="module")
def loops_trace(tmp_path_factory) -> Path:
    """The README's near-repeat example (examples/loops/train.py)."""
    root = tmp_path_factory.mktemp("loops")
    script = REPO / "examples" / "loops" / "train.py"
    result = run_tracer([str(script), "-o", str(root / "trace_output.json")], root)
    assert result.returncode == 0, result.stderr
    return root / "trace_output.json"


def terminal_groups(trace: Path) -> list[str]:
    """The top-level group headers of ``python -m patterns`` for the same trace."""
    result = run_python(["-m", "patterns", str(trace), "-q"], trace.parent)
    assert result.returncode == 0, result.stderr
    return [
        line.split("🔄 Repeating Pattern: ")[1]
        for line in result.stdout.splitlines()
        if "🔄 Repeating Pattern: " in line
    ]


def wait_for_matches(page) -> None:
    """Wait until a search has jumped to a match ("3 of 120")."""
    page.wait_for_function("() => document.getElementById('match-count').innerText.includes('of')")


# -- the serve script ----------------------------------------------------------------------


def test_serve_script_end_to_end(page, loops_trace, tmp_path):
    (loops_trace.parent / "secret.txt").write_text("not for the web")
    with serve(loops_trace) as (url, lines):
        assert url.startswith("http://localhost:") and url.endswith("/trace_output.html")
        assert any("ssh -L" in line for line in lines), lines
        port = url.split(":")[2].split("/")[0]
        assert any(f"ssh -L {port}:localhost:{port}" in line for line in lines)
        # only the viewer's files are served: never the working directory
        for path in ("/secret.txt", "/trace_output.json", "/../secret.txt", "/trace_output.data/"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://localhost:{port}{path}")
            assert refused.value.code == 404
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/") as response:  # redirects
            assert response.url.endswith("/trace_output.html")
        ready = open_viewer(page, url)
        assert ready["calls"] == 411
        assert labels(page, "group") == [
            "100x repetitions of 4 calls (3 variants) (calls #3-#411, total: 409 calls)"
        ]
        screenshot(page, tmp_path, "served")


def test_serve_binds_to_localhost_only(loops_trace):
    with serve(loops_trace) as (url, _):
        port = int(url.split(":")[2].split("/")[0])
        addresses = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
        outside = [a for a in addresses if not a.startswith("127.") and ":" not in a]
        for address in outside:
            with pytest.raises(OSError):
                socket.create_connection((address, port), timeout=2).close()
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


# -- pattern boxes ---------------------------------------------------------------------------


def test_pattern_boxes_of_the_readme_example(page, loops_trace, tmp_path):
    with serve(loops_trace) as (url, _):
        open_viewer(page, url)
        assert labels(page, "template") == ["Pattern template (repeated 89 times)"]
        assert labels(page, "variant") == [
            "Variant 2: 10 iterations (iterations 3, 13, 23, 33, 43, 53, 63, 73, … 2 more), "
            "5 calls each",
            "Variant 3: 1 iteration (iteration 99), 3 calls each",
        ]
        assert shown_labels(page)[5:9] == ["get_batch", "forward", "backward", "update"]
        # a variant lists its differences from the template
        for label in labels(page, "variant"):
            page.evaluate("i => viewer.toggle(i, true)", index_of(page, label, "variant"))
        rows = page.evaluate(
            "viewer.rows.map(n => [n.kind, n.mark || '', viewer.describe(n).label])"
        )
        assert ["call", "+", "log_metrics"] in rows
        assert ["missing", "-", "backward (not in this variant)"] in rows
        # every repetition can be opened to see its actual calls
        every = index_of(page, "All 100 iterations, one by one")
        page.evaluate("i => viewer.toggle(i, true)", every)
        iteration = index_of(page, "Iteration 99 (calls #409-#411, 3 calls) · variant 3", "rep")
        click_row(page, iteration)  # a click opens a group part, Enter closes and opens it
        opened = [["call", 408], ["call", 409], ["call", 410]]
        rows = "viewer.rows.map(n => [n.kind, n.row ?? -1])"
        assert page.evaluate(rows)[iteration + 1 :] == opened
        page.keyboard.press("Enter")
        assert page.evaluate(rows)[iteration + 1 :] == []
        page.keyboard.press("Enter")
        assert page.evaluate(rows)[iteration + 1 :] == opened
        screenshot(page, tmp_path, "variants")


def test_nested_groups_match_the_terminal_view(page, nested_trace, tmp_path):
    expected = terminal_groups(nested_trace)
    assert expected, "the program should fold"
    with serve(nested_trace) as (url, _):
        open_viewer(page, url)
        page.click("#expand-all")
        shown = labels(page, "group")
        top = page.evaluate(
            "viewer.rows.filter(n => n.kind === 'group' && !n.rails.length)"
            ".map(n => viewer.describe(n).label)"
        )
        assert top == expected
        # the nested group: 2 repetitions of forward/layer_name inside each block
        assert any(label.startswith("2x repetitions of 3 calls") for label in shown), shown
        nested = page.evaluate("viewer.rows.filter(n => n.kind === 'group' && n.rails.length)")
        assert nested, "a group inside the template (boxes inside boxes)"
        boxes = page.locator("#layer .row:not([hidden]) .box:not([hidden])").count()
        assert boxes > 0
        screenshot(page, tmp_path, "nested")


# -- controls ----------------------------------------------------------------------------------


def test_expand_and_collapse_all_and_keyboard(page, nested_trace):
    trace = otel_tracer.load(nested_trace)
    with serve(nested_trace) as (url, _):
        open_viewer(page, url)
        page.click("#collapse-all")  # everything but the threads
        assert page.evaluate("viewer.rows.map(n => n.kind)") == ["thread", "call"]
        page.click("#expand-all")
        expanded = page.evaluate("viewer.rows.length")
        page.uncheck("#patterns")
        assert page.evaluate("viewer.rows.filter(n => n.kind === 'call').length") == len(trace)
        page.check("#patterns")
        assert page.evaluate("viewer.rows.length") == expanded
        page.click("#collapse-all")
        # keyboard: Right opens, arrows move, Enter/Space toggle, Left goes to the parent
        click_row(page, 1)  # <module>
        page.keyboard.press("ArrowRight")
        assert labels(page) == labels(page)[:2] + ["train"]
        page.keyboard.press("ArrowDown")
        assert page.evaluate("viewer.rows[viewer.selected].kind") == "call"
        page.keyboard.press("Enter")
        assert page.evaluate("viewer.rows.length") > 3
        page.keyboard.press("Space")
        assert page.evaluate("viewer.rows.length") == 3
        page.keyboard.press("ArrowLeft")
        assert page.evaluate("viewer.selected") == 1
        page.keyboard.press("ArrowLeft")
        assert page.evaluate("viewer.rows.length") == 2


def test_patterns_switch_live_and_no_patterns_option(page, nested_trace):
    with serve(nested_trace) as (url, _):
        open_viewer(page, url)
        assert labels(page, "group")
        page.uncheck("#patterns")
        assert labels(page, "group") == []
    with serve(nested_trace, "--no-patterns") as (url, _):
        open_viewer(page, url)
        page.click("#expand-all")
        assert labels(page, "group") == []
        assert page.is_disabled("#patterns")
        assert page.evaluate("viewer.model.stats.patterns") is None


def test_external_calls_filter(page, nested_trace):
    with serve(nested_trace) as (url, _):
        open_viewer(page, url)
        page.uncheck("#patterns")
        page.click("#expand-all")
        external = "viewer.rows.filter(n => n.kind === 'call' && viewer.model.isExternal(n.row))"
        assert page.evaluate(f"{external}.length") == 12  # json.dumps in each forward
        row = page.evaluate(f"viewer.rows.indexOf({external}[0])")
        click_row(page, row)
        assert page.locator(".row.selected .badge.ext").inner_text().lower() == "external"
        page.uncheck("#external")
        assert page.evaluate(f"{external}.length") == 0
        page.check("#external")
        assert page.evaluate(f"{external}.length") == 12


FINALIZING = """
    class Resource:
        def __del__(self):
            release()

    def release():
        return 1

    def work():
        resource = Resource()
        del resource  # __del__ runs here: the garbage collector's call, not work's
        return 2

    work()
"""


def test_finalizer_calls_are_marked_and_dimmed(page, tmp_path):
    write_files(tmp_path, {"prog.py": FINALIZING})
    result = run_tracer(["prog.py", "-q", "-o", "trace.json"], tmp_path)
    assert result.returncode == 0, result.stderr
    with serve(tmp_path / "trace.json") as (url, _):
        open_viewer(page, url)
        page.click("#expand-all")
        row = index_of(page, "Resource.__del__", "call")
        click_row(page, row)
        selected = page.locator(".row.selected")
        assert selected.locator(".badge.fin").inner_text().lower() == "finalizer"
        assert float(selected.locator(".label").evaluate("e => getComputedStyle(e).opacity")) < 1
        assert details(page)["kind"].startswith("finalizer")
        plain = page.locator(f'#layer .row[data-index="{index_of(page, "work", "call")}"]')
        assert plain.locator(".badge.fin").count() == 0


def test_search_jumps_into_folded_groups(page, loops_trace):
    with serve(loops_trace) as (url, _):
        open_viewer(page, url)
        page.fill("#search", "log_metrics")
        page.press("#search", "Enter")
        wait_for_matches(page)
        assert page.inner_text("#match-count") == "1 of 10"
        first = page.evaluate("viewer.rows[viewer.selected]")
        assert first["kind"] == "call" and first["row"] + 1 == 19  # iteration 3 of the loop
        assert page.evaluate("location.hash") == "#call=19"
        assert page.locator(".row.selected .label").inner_text() == "log_metrics"
        assert page.locator(".row.selected").get_attribute("class").count("match") == 1
        page.press("#search", "Enter")
        assert page.inner_text("#match-count") == "2 of 10"
        page.press("#search", "Shift+Enter")
        page.press("#search", "Shift+Enter")
        assert page.inner_text("#match-count") == "10 of 10"
        # by file name too
        page.fill("#search", "train.py")
        page.press("#search", "Enter")
        wait_for_matches(page)
        assert page.inner_text("#match-count") == "1 of 411"


def test_url_keeps_the_selected_call(page, loops_trace):
    with serve(loops_trace) as (url, _):
        open_viewer(page, url + "#call=200")
        selected = page.evaluate("viewer.rows[viewer.selected]")
        assert selected["kind"] == "call" and selected["row"] == 199
        assert details(page)["call id"] == "#200"


def test_details_panel(page, nested_trace):
    trace = otel_tracer.load(nested_trace)
    train = next(i for i in range(len(trace)) if trace.function_of(i).name == "train")
    fails = next(i for i in range(len(trace)) if trace.function_of(i).name == "fails")
    with serve(nested_trace) as (url, _):
        open_viewer(page, url + f"#call={train + 1}")
        facts = details(page)
        assert facts["call id"] == f"#{train + 1}"
        assert facts["qualified name"] == "train"
        assert facts["module"] == "__main__"
        assert facts["file"] == f"{trace.function_of(train).file}:{trace.function_of(train).line}"
        assert facts["span id"] == f"{int(trace.calls.span_id[train]):016x}"
        assert facts["arguments"].split("\n") == ["steps = 6", "password = [redacted]"]
        assert facts["returned"] == "'done'"
        assert facts["thread"].startswith("MainThread")
        duration = int(trace.calls.end[train] - trace.calls.start[train])
        assert facts["duration"].split()[0] in (
            f"{duration / 1e3:.1f}",
            f"{duration / 1e6:.2f}",
        )
        page.goto(url + f"#call={fails + 1}")
        page.reload()
        page.wait_for_function("() => window.viewerReady !== undefined")
        facts = details(page)
        line = int(trace.calls.raise_line[fails])  # the raise's, recorded by the core
        assert line > trace.function_of(fails).line
        assert facts["exception"] == f"ValueError: bad value 7 (at line {line})"
        assert page.locator(".row.selected .badge.exc").inner_text().lower() == "raised"


def test_details_name_the_asyncio_task(page, tmp_path):
    from test_async_tasks import PROGRAM, worker_a_fetch

    result = run_tracer(["-q", str(PROGRAM), "-o", "trace.json"], tmp_path)
    assert result.returncode == 0, result.stderr
    trace = otel_tracer.load(tmp_path / "trace.json")
    fetch = worker_a_fetch(trace)
    with serve(tmp_path / "trace.json") as (url, _):
        open_viewer(page, url + f"#call={fetch + 1}")
        assert details(page)["asyncio task"] == "worker-a"


def test_statistics_panel(page, nested_trace):
    with serve(nested_trace) as (url, _):
        open_viewer(page, url)
        page.click(".tab[data-tab=statistics]")
        text = page.inner_text("#statistics")
        trace = otel_tracer.load(nested_trace)
        assert f"calls\n{len(trace)}" in text
        assert "pattern groups" in text and "rows folded" in text
        tables = page.locator("#statistics table").all()
        assert len(tables) == 3
        by_count = tables[0].locator("td.fn").all_inner_texts()
        assert by_count[0] in ("forward", "layer_name", "json.dumps", "dumps")
        tables[0].locator("td.fn", has_text="layer_name").first.click()
        assert page.input_value("#search") == "layer_name"
        assert page.inner_text("#match-count") == "1 of 12"
        # the search selected a call, whose details load lazily: let them arrive
        # before the server stops (a load cut short is a console error)
        assert details(page)["qualified name"] == "layer_name"


# -- safety --------------------------------------------------------------------------------------


def test_hostile_strings_are_shown_as_text(page, tmp_path):
    write_files(tmp_path, {"evil.py": HOSTILE})
    result = run_tracer(["evil.py", "-o", "trace.json", "-o", "trace.html"], tmp_path)
    assert result.returncode == 0, result.stderr
    trace = otel_tracer.load(tmp_path / "trace.json")
    show = next(i for i in range(len(trace)) if trace.function_of(i).name == "show")
    explode = next(i for i in range(len(trace)) if trace.function_of(i).name == "explode")
    for url in (
        (tmp_path / "trace.html").as_uri(),
        None,  # served
    ):
        with serve(tmp_path / "trace.json") if url is None else _nothing(url) as (base, _):
            open_viewer(page, base + f"#call={show + 1}")
            facts = details(page)
            assert "<script>window.pwned = 1</script>" in facts["arguments"]
            assert '"><img src=x onerror="window.pwned=2">' in facts["arguments"]
            page.goto(base + f"#call={explode + 1}")
            page.reload()
            page.wait_for_function("() => window.viewerReady !== undefined")
            assert "<b>bold</b>" in details(page)["exception"]
            assert page.evaluate("window.pwned") is None
            assert page.locator("img").count() == 0
            assert page.locator("#details-body b, #details-body script").count() == 0


class _nothing:
    """A stand-in for ``serve`` when the page is a file: yields the URL as is."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self):
        return self.url, []

    def __exit__(self, *exc):
        return False


def test_hostile_program_name_in_title(page, tmp_path):
    name = 'x<img src=q onerror="window.pwned=4">&amp;.py'
    (tmp_path / name).write_text("def f():\n    return 1\n\nf()\n")
    result = run_tracer([name, "-o", "t.html"], tmp_path)
    assert result.returncode == 0, result.stderr
    open_viewer(page, (tmp_path / "t.html").as_uri())
    assert page.evaluate("window.pwned") is None
    assert page.title().startswith(name)
    assert page.inner_text("#title") == name


# -- the standalone file ----------------------------------------------------------------------


def test_standalone_html_from_file(page, tmp_path):
    script = REPO / "examples" / "loops" / "train.py"
    result = run_tracer([str(script), "-o", "trace.html", "-o", "trace.json"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert not list(tmp_path.glob("*.data"))  # one file, nothing next to it
    html = (tmp_path / "trace.html").read_text()
    assert "http://" not in html.replace("http://www.w3.org", "")  # nothing fetched
    ready = open_viewer(page, (tmp_path / "trace.html").as_uri() + "#call=5")
    assert ready["calls"] == 411
    assert labels(page, "group")[0].startswith("100x repetitions of 4 calls")
    assert details(page)["call id"] == "#5"
    assert not page.is_visible("#notice")  # a whole run: nothing to say
    screenshot(page, tmp_path, "standalone")


def test_header_says_what_the_trace_does_not_hold(page, tmp_path):
    """A ring-buffer run says how many older calls it discarded; a trace
    recovered from a killed run, or cut by --max-calls, says so too."""
    script = REPO / "examples" / "loops" / "train.py"
    result = run_tracer(
        [str(script), "--ring-buffer", "50", "-o", "ring.html", "-o", "ring.json"], tmp_path
    )
    assert result.returncode == 0, result.stderr
    trace = otel_tracer.load(tmp_path / "ring.json")
    discarded = trace.meta["discarded_calls"]
    assert discarded + len(trace) == 411  # the last 50 calls and the calls they ran in kept
    open_viewer(page, (tmp_path / "ring.html").as_uri())
    assert page.is_visible("#notice")
    assert page.inner_text("#notice") == (
        f"{discarded} older calls discarded (ring buffer: the last 50 calls of each "
        "process, with the calls they ran in)"
    )
    screenshot(page, tmp_path, "ring-buffer")
    trace.meta.update(discarded_calls=0, truncated=True, dropped_calls=7)
    write_standalone(trace, fold_for_viewer(trace), tmp_path / "cut.html")
    open_viewer(page, (tmp_path / "cut.html").as_uri())
    assert page.inner_text("#notice") == (
        "7 calls not recorded (past --max-calls) · truncated: the run was killed; "
        "the calls still open then are unfinished"
    )


def test_viewer_cli_writes_standalone_without_patterns(page, loops_trace, tmp_path):
    out = tmp_path / "plain.html"
    result = run_python(
        ["-m", "exporters.viewer", str(loops_trace), "--no-patterns", "-o", str(out)], tmp_path
    )
    assert result.returncode == 0, result.stderr
    open_viewer(page, out.as_uri())
    page.click("#expand-all")
    assert labels(page, "group") == []
    assert page.evaluate("viewer.rows.filter(n => n.kind === 'call').length") == 411


# -- a million calls -------------------------------------------------------------------------


def training_trace(steps: int):
    """``train`` calling ``step`` ``steps`` times, each step calling forward,
    backward, update and log: 1 + 5 * steps calls, built as columns."""
    names = ["train", "step", "forward", "backward", "update", "log"]
    functions = [Function(name, name, "m", "/src/m.py", i, False) for i, name in enumerate(names)]
    n = 1 + 5 * steps
    step_rows = 1 + 5 * np.arange(steps)
    parent = np.zeros(n, dtype=np.int64)
    depth = np.full(n, 2, dtype=np.int32)
    function = np.zeros(n, dtype=np.int32)
    parent[0], depth[step_rows], function[step_rows] = -1, 1, 1
    for k in range(1, 5):
        parent[step_rows + k] = step_rows
        function[step_rows + k] = 1 + k
    depth[0] = 0
    start = np.arange(n, dtype=np.int64) * 100
    end = start + 50
    end[step_rows] = start[step_rows] + 450
    end[0] = start[-1] + 100
    return trace_from_columns(
        functions,
        parent,
        depth,
        function,
        np.zeros(n, dtype=np.int32),
        start,
        end,
        np.zeros(n, dtype=np.uint8),
    )


@pytest.mark.slow
def test_a_million_calls_open_and_fold(page, tmp_path):
    """10^6 calls: the page opens, folds the loop, answers expand/collapse, scrolls
    and searches (timings are measured in benchmarks/viewer.py, not asserted here)."""
    steps = 200_000
    trace = training_trace(steps)
    n = len(trace)
    write_served(trace, fold_for_viewer(trace), tmp_path, "big")
    server = ViewerServer(tmp_path, "big.html", "127.0.0.1", 0)
    threading.Thread(target=server.httpd.serve_forever, daemon=True).start()
    try:
        ready = open_viewer(page, f"http://127.0.0.1:{server.port}/big.html")
        assert ready["calls"] == n == 1_000_001
        assert labels(page, "group") == [
            f"{steps:,}x repetitions of 5 calls (calls #2-#{n}, total: {n - 1:,} calls)"
        ]
        reps = index_of(page, f"All {steps:,} iterations, one by one")
        page.evaluate("i => viewer.toggle(i, true)", reps)
        ranges = labels(page, "range")
        assert len(ranges) == 200 and ranges[0] == "iterations 0-999 of 200,000"
        page.evaluate("i => viewer.toggle(i, true)", index_of(page, ranges[100]))
        assert "Iteration 100000 (calls #500002-#500006, 5 calls)" in labels(page, "rep")
        page.evaluate("i => viewer.toggle(i, false)", reps)
        page.uncheck("#patterns")
        page.click("#expand-all")
        assert page.evaluate("viewer.rows.length") == n + 1 + 200  # + thread row and ranges
        page.evaluate("viewer.viewport.scrollTop = viewer.viewport.scrollHeight / 2")
        page.wait_for_timeout(200)
        top = page.locator("#layer .row:not([hidden])").first.get_attribute("data-index")
        assert 0.45 * n < int(top) < 0.55 * n
        assert set(shown_labels(page)) <= {"step", "forward", "backward", "update", "log"}
        page.check("#patterns")
        page.fill("#search", "update")
        page.press("#search", "Enter")
        wait_for_matches(page)
        assert page.inner_text("#match-count") == f"1 of {steps:,}"
        screenshot(page, tmp_path, "million")
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def test_long_sibling_lists_open_in_ranges(page, tmp_path):
    """12,000 plain siblings show as 12 ranges of 1,000; search reveals inside them."""
    functions = [Function("main", "main", "m", "/src/m.py", 1, False)] + [
        Function(f"f{i}", f"f{i}", "m", "/src/m.py", 10 + i, False) for i in range(7)
    ]
    n = 12_001
    parent = np.zeros(n, dtype=np.int64)
    parent[0] = -1
    depth = np.ones(n, dtype=np.int32)
    depth[0] = 0
    function = np.zeros(n, dtype=np.int32)
    function[1:] = 1 + (np.arange(n - 1) * 7919 + (np.arange(n - 1) // 5)) % 6
    function[9_500] = 7  # f6 once, in the tenth range
    start = np.arange(n, dtype=np.int64) * 10
    end = start + 5
    end[0] = start[-1] + 10
    trace = trace_from_columns(
        functions,
        parent,
        depth,
        function,
        np.zeros(n, dtype=np.int32),
        start,
        end,
        np.zeros(n, dtype=np.uint8),
    )
    write_standalone(trace, fold_for_viewer(trace, patterns=False), tmp_path / "t.html")
    open_viewer(page, (tmp_path / "t.html").as_uri())
    main = index_of(page, "main")
    page.evaluate("i => viewer.toggle(i, true)", main)
    ranges = labels(page, "range")
    assert len(ranges) == 12
    assert ranges[0] == "calls 1-1,000 of 12,000" and ranges[-1] == "calls 11,001-12,000 of 12,000"
    page.fill("#search", "f6")
    page.press("#search", "Enter")
    wait_for_matches(page)
    assert page.inner_text("#match-count") == "1 of 1"
    selected = page.evaluate("viewer.rows[viewer.selected]")
    assert selected["row"] == 9_500
    parent_index = page.evaluate("viewer.parentIndex(viewer.selected)")
    assert labels(page)[parent_index] == "calls 9,001-10,000 of 12,000"


def test_empty_trace(page, tmp_path):
    trace = trace_from_columns(
        [],
        *(np.zeros(0, dtype=dtype) for dtype in (np.int64, np.int32, np.int32, np.int32)),
        np.zeros(0, dtype=np.int64),
        np.zeros(0, dtype=np.int64),
        np.zeros(0, dtype=np.uint8),
    )
    write_standalone(trace, fold_for_viewer(trace), tmp_path / "empty.html")
    open_viewer(page, (tmp_path / "empty.html").as_uri())
    assert page.is_visible("#empty")
    assert page.inner_text("#empty") == "No calls were recorded in scope."
