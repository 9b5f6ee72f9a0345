"""Program-controlled text reaches a terminal escaped: a real program whose
function, thread, argument and exception texts hold terminal escapes (a clear
screen, an OSC title sequence, a newline faking a row), traced and viewed by
every text output."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_python, run_tracer, write_files

ESC = "\\x1b[2J\\x1b]0;pwned\\x07\\n#99 fake_row [x.py:1]"

PROGRAM = f"""
    import sys
    import threading

    ESC = "{ESC}"


    def work(text):
        raise ValueError(text)


    def run(text):
        try:
            work(text)
        except ValueError:
            pass
        return text


    def renamed():
        return 1


    names = {{"co_name": "evil" + ESC}}
    if sys.version_info >= (3, 11):  # 3.10 code objects have no qualified name
        names["co_qualname"] = "evil" + ESC
    renamed.__code__ = renamed.__code__.replace(**names)
    run(ESC)
    renamed()
    t = threading.Thread(target=run, args=(ESC,), name="thread" + ESC)
    t.start()
    t.join()
"""


def _assert_inert(text: str) -> None:
    """No control character but newlines, and no faked row."""
    assert all(ch == "\n" or (ord(ch) >= 0x20 and not 0x7F <= ord(ch) < 0xA0) for ch in text)
    assert not any(line.lstrip().startswith("#99") for line in text.splitlines())
    assert "\\x1b]0;pwned\\x07" in text  # shown, escaped


def test_views_escape_control_characters(tmp_path: Path) -> None:
    write_files(tmp_path, {"prog.py": PROGRAM})
    grouped = run_tracer(["-q", "prog.py"], tmp_path)
    assert grouped.returncode == 0, grouped.stderr
    _assert_inert(grouped.stdout)
    assert "Thread thread\\x1b[2J" in grouped.stdout
    plain = run_tracer(["-q", "--no-patterns", "prog.py"], tmp_path)
    _assert_inert(plain.stdout)
    run_tracer(["-q", "prog.py", "-o", "view.txt", "-o", "trace.json"], tmp_path)
    _assert_inert((tmp_path / "view.txt").read_text("utf-8"))
    for args in (["trace.json"], ["trace.json", "--no-patterns"]):
        saved = run_python(["-m", "patterns", *args], tmp_path)
        assert saved.returncode == 0, saved.stderr
        _assert_inert(saved.stdout)


def test_status_lines_escape_file_names(tmp_path: Path) -> None:
    name = "evil\x1b]0;pwned\x07\nfake.py"
    (tmp_path / name).write_text("print('hi')\n")
    traced = run_tracer([name, "-o", "trace.json"], tmp_path)
    assert traced.returncode == 0, traced.stderr
    assert traced.stdout == "hi\n"
    assert "\x1b" not in traced.stderr and "\x07" not in traced.stderr
    assert "tracing evil\\x1b]0;pwned\\x07\\nfake.py" in traced.stderr
    missing = run_python(["-m", "patterns", "no\x1b[2Jsuch.json"], tmp_path)
    assert missing.returncode == 2
    assert "\x1b" not in missing.stderr and len(missing.stderr.splitlines()) == 1
