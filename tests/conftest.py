"""Shared helpers: run real programs under the tracer in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Started in the background of a shell without job control, pytest inherits an
# ignored SIGINT, and so would every program a test starts: Ctrl-C tests need it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def write_files(root: Path, files: dict[str, str]) -> None:
    """Create ``files`` (relative path -> dedented source) under ``root``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def run_python(
    args: list[str], cwd: Path, timeout: float = 120, **kwargs
) -> subprocess.CompletedProcess[str]:
    """Run ``python args...`` in ``cwd`` with this repo importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(kwargs.pop("env", {}))
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def run_tracer(args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cli.main args...`` in ``cwd``."""
    return run_python(["-m", "cli.main", *args], cwd, **kwargs)


def start_traced_group(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    """``python -m cli.main -q -o trace.json prog.py args...`` in its own process
    group (signals go to it and its children, as from a terminal), once the
    program printed ``ready``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "-q", "-o", "trace.json", "prog.py", *args],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    # several processes of the program may print it at once (seen once on 3.13: "readyready")
    assert proc.stdout is not None and "ready" in proc.stdout.readline()
    return proc


def c_core_built() -> bool:
    try:
        import otel_tracer.record._ctracer  # noqa: F401
    except ImportError:
        return False
    return True


# The sys.monitoring cores (Python 3.12+): in Python, and in C (where it is not
# built, "monitoring" is the Python one too).
MONITORING_CORES = ("pymonitoring", "monitoring")
CORES = ["python", "c"] + (list(MONITORING_CORES) if sys.version_info >= (3, 12) else [])


@pytest.fixture(params=CORES)
def core(request: pytest.FixtureRequest) -> str:
    """Each recording core; the C core must be built unless OTEL_TRACER_ALLOW_NO_C=1."""
    if request.param == "c" and not c_core_built():
        if os.environ.get("OTEL_TRACER_ALLOW_NO_C") == "1":
            pytest.skip("C core not built (OTEL_TRACER_ALLOW_NO_C=1)")
        pytest.fail("the C recording core is not built: run pip install -e .")
    return request.param


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session (see tests/browser.py)."""
    from browser import FLAGS, chromium_path

    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=FLAGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    """A fresh page (1400x900); fails the test on any JavaScript error or console error."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            errors.append(f"console {message.type}: {message.text}")
            if message.type == "error"
            else None
        ),
    )
    yield page
    context.close()
    assert not errors, errors


CALL_FLAGS = {"external": 1, "resumed": 2, "yielded": 8, "unfinished": 16}


def call_objects(doc: dict) -> list[dict]:
    """The calls of a parsed version 2 JSON trace as one object per call, with the
    keys version 1 wrote (``id``, ``parent`` (None for a root), ``depth``,
    ``start``/``end`` in Unix ns, ``args`` as ``{name: summary}``, ``return``,
    ``exception`` as ``{type, message}``, a true flag key per flag, ``pattern``):
    the expansion docs/trace-format.md describes, written out for the tests."""
    fields = doc["call_fields"]
    defaults = {"args": -1, "return": -1, "flags": 0, "exception": -1, "pattern": 0}
    strings, functions = doc["strings"], doc["functions"]
    out: list[dict] = []
    for i, row in enumerate(doc["calls"]):
        raw = {**defaults, "iteration": 0, "variant": 0, **dict(zip(fields, row, strict=False))}
        parent = raw["parent"] or None
        call = {
            "id": i + 1,
            "parent": parent,
            "depth": out[parent - 1]["depth"] + 1 if parent else 0,
            "function": raw["function"],
            "thread": raw["thread"],
            "start": doc["start_base"] + raw["start"],
            "end": doc["start_base"] + raw["start"] + raw["duration"],
            "span_id": raw["span_id"],
        }
        if raw["args"] >= 0:
            names = functions[raw["function"]]["argnames"]
            values = doc["arguments"][raw["args"]]
            call["args"] = {n: strings[v] for n, v in zip(names, values, strict=False) if v >= 0}
        if raw["return"] >= 0:
            call["return"] = strings[raw["return"]]
        if raw["flags"] & 4:
            kind, message = (
                doc["exceptions"][raw["exception"]] if raw["exception"] >= 0 else ("<unknown>", "")
            )
            call["exception"] = {"type": kind, "message": message}
        for name, bit in CALL_FLAGS.items():
            if raw["flags"] & bit:
                call[name] = True
        if raw["pattern"]:
            call["pattern"] = {
                "id": raw["pattern"],
                "iteration": raw["iteration"],
                "variant": raw["variant"],
            }
        out.append(call)
    return out


def json_positions(value, prefix=()):
    """Every (container, key) position inside a JSON value, as key paths."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield prefix + (key,)
            yield from json_positions(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield prefix + (index,)
            yield from json_positions(item, prefix + (index,))


# nested loops with irregular iterations, a loop among a loop's own steps (group
# entries), a near repeat, and the same loops in a second thread
LOOPS_PROGRAM = """
    import threading

    def leaf(i):
        return i

    def mid(i):
        for j in range(i % 3 + 2):
            leaf(j)
        if i % 4 == 0:
            leaf(-1)

    def outer(n):
        for i in range(n):
            mid(i)
            leaf(i)

    def step(i):
        return -i

    def flat(n):
        for i in range(n):
            step(i)
            for j in range(3 if i % 2 else 2):
                leaf(j)

    worker = threading.Thread(target=outer, args=(9,))
    worker.start()
    worker.join()
    outer(12)
    for k in range(5):
        leaf(k)
    flat(6)
"""


def traced_loops(root: Path) -> Path:
    """``LOOPS_PROGRAM`` traced with the defaults into ``root / "trace.json"``."""
    write_files(root, {"prog.py": LOOPS_PROGRAM})
    result = run_tracer(["prog.py", "-q", "-o", "trace.json"], root)
    assert result.returncode == 0, result.stderr
    return root / "trace.json"
