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
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def c_core_built() -> bool:
    try:
        import otel_tracer._ctracer  # noqa: F401
    except ImportError:
        return False
    return True


CORES = ["python", "c"] + (["monitoring"] if sys.version_info >= (3, 12) else [])


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
