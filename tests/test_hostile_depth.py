"""A very deep call tree (a recursive program with a raised recursion limit)
keeps the text views linear: the indentation is cut short past MAX_INDENT
characters, so no row grows with the depth."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from conftest import run_python, run_tracer, write_files

MAX_INDENT = 256  # otel_tracer.trace.tree.MAX_INDENT

# On 3.10 every Python call also nests C frames, and the hooks add to them: 20,000
# levels overflow an 8 MiB C stack traced though not untraced (README, Security).
DEPTH = 12_000 if sys.version_info < (3, 11) else 20_000
PROGRAM = """
    import sys

    sys.setrecursionlimit(60_000)


    def down(n):
        return 0 if n == 0 else down(n - 1) + 1


    print(down(int(sys.argv[1])))
"""


def _assert_linear(text: str) -> None:
    lines = text.splitlines()
    assert len(lines) > DEPTH
    assert max(map(len, lines)) < MAX_INDENT + 120
    assert len(text) < DEPTH * (MAX_INDENT + 120)


def test_deep_call_tree_text_views_stay_linear(tmp_path: Path) -> None:
    write_files(tmp_path, {"deep.py": PROGRAM})
    started = time.monotonic()
    traced = run_tracer(
        ["-q", "deep.py", str(DEPTH), "-o", "t.json", "-o", "grouped.txt"], tmp_path, timeout=300
    )
    assert traced.returncode == 0, traced.stderr[-2000:]
    assert traced.stdout == f"{DEPTH}\n"
    _assert_linear((tmp_path / "grouped.txt").read_text("utf-8"))
    plain = run_python(["-m", "patterns", "--no-patterns", "t.json"], tmp_path, timeout=300)
    assert plain.returncode == 0, plain.stderr[-2000:]
    _assert_linear(plain.stdout)
    assert time.monotonic() - started < 240
