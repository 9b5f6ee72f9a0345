"""A real headless Chromium for the viewer tests: Debian's ``chromium`` driven by
Playwright (whose own browser download does not work on these machines).

When ``/usr/bin/chromium`` is missing and the tests run as root, it is installed
with apt once; otherwise the browser tests are skipped with the reason shown.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("OTEL_TRACER_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOTS = os.environ.get("OTEL_TRACER_SCREENSHOTS")  # keep screenshots in this folder


def chromium_path() -> str:
    """The Chromium executable, installing Debian's package if needed (as root)."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        install = ["apt-get", "install", "-y", "-qq", "chromium"]
        subprocess.run(install, env=env, capture_output=True)
        if Path(CHROMIUM).exists():
            return CHROMIUM
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")


def screenshot(page, path: Path, name: str) -> Path:
    """Take a screenshot of the page; also copied to $OTEL_TRACER_SCREENSHOTS if set."""
    target = path / f"{name}.png"
    page.screenshot(path=str(target))
    assert target.stat().st_size > 10_000  # a real rendered page, not a blank one
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        shutil.copy(target, Path(SCREENSHOTS) / target.name)
    return target
