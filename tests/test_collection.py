"""Pausing the cyclic garbage collector while a trace is built, loaded or written
(otel_tracer/trace/collection.py): it is back as it was afterwards, even after an
error, and the program's own choice is kept."""

from __future__ import annotations

import gc

import pytest
from conftest import run_tracer, write_files

from otel_tracer.trace.collection import collection_paused


def test_paused_inside_and_back_on_after() -> None:
    assert gc.isenabled()
    with collection_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_back_on_after_an_error() -> None:
    with pytest.raises(KeyError), collection_paused():
        raise KeyError("x")
    assert gc.isenabled()


def test_a_collector_switched_off_stays_off() -> None:
    gc.disable()
    try:
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_program_finds_the_collector_on_at_exit(tmp_path) -> None:
    """A traced program's atexit handlers run after the trace is written: they
    see the collector as the program left it."""
    write_files(
        tmp_path,
        {
            "p.py": "import atexit, gc\n"
            "def f():\n    return 1\n"
            "f()\n"
            "atexit.register(lambda: print('gc enabled:', gc.isenabled()))\n"
        },
    )
    result = run_tracer(["-q", "p.py", "-o", "t.json"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "gc enabled: True" in result.stdout
