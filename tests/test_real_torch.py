"""Behaviour preserved on real programs (slow): a small PyTorch training loop on
the CPU (tests/real_programs/torch_train), traced with the scope on its model
code (tinynet/): the same losses printed, the same checkpoint.pt and metrics.json
written (byte for byte), and a trace of every forward pass.

Needs torch (``pip install torch==2.13.0``, Python 3.11); run with
``python -m pytest -m slow``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from real_programs.harness import (
    PROGRAMS,
    assert_same_behaviour,
    last_timing,
    require_module,
    run_both,
    show_timings,
)
from real_programs.traces import call_counts, check_trace

pytestmark = pytest.mark.slow

TRAIN = PROGRAMS / "torch_train"
MODEL_CODE = TRAIN / "tinynet"
EPOCHS = 3
BATCHES = 8  # 256 samples in batches of 32


@pytest.fixture(scope="module", autouse=True)
def _timings(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    show_timings(request.config)


def test_torch_training_loop(tmp_path: Path) -> None:
    require_module("torch")
    plain, traced = run_both(
        "torch training loop",
        [str(TRAIN / "train.py"), "--epochs", str(EPOCHS)],
        tmp_path,
        ["--scope", str(MODEL_CODE)],
    )
    assert plain.returncode == 0, plain.describe()
    assert plain.stdout.count("train loss") == EPOCHS
    assert_same_behaviour(plain, traced)
    assert set(traced.files) == {"checkpoint.pt", "metrics.json"}
    # Each training batch and each evaluation runs TinyMLP.forward and two Block.forwards.
    forwards = 3 * EPOCHS * (BATCHES + 1)
    expected = {
        "forward": forwards,
        "train_epoch": EPOCHS,
        "evaluate": EPOCHS,
        "batches": EPOCHS * (BATCHES + 1),  # each resumption of the generator is a call
        "make_dataset": 2,
        "__init__": 1 + 2,  # TinyMLP's and its Blocks'
    }
    trace = check_trace(traced.trace_path, 0, MODEL_CODE, expected, min_calls=forwards)
    torch_calls = {
        name: count
        for name, count in call_counts(trace, external=True).items()
        if name.startswith("torch")
    }
    assert sum(torch_calls.values()) >= forwards, torch_calls  # calls out of scope, into torch
    last_timing().notes.append(f"{len(trace):,} calls recorded")
