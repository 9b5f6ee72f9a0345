"""The grouped view: exact output for hand-written traces."""

from __future__ import annotations

import io
import textwrap

from trace_builder import build_trace

from patterns.engine import fold_trace
from patterns.fold import FoldOptions
from patterns.render import count_rows, render_grouped

SDPA = "packed_attention_monkey_patch.py:14:scaled_dot_product_attention"
GET = "expert_context.py:25:get"
FORWARD = "train_lens.py:88:forward"
LAYER_NAME = "base.py:21:layer_name"


def view(trace, **options) -> str:
    out = io.StringIO()
    render_grouped(fold_trace(trace, FoldOptions(**options)), out)
    return out.getvalue()


def expected(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def test_documented_example():
    """A loop of 6 iterations of sdpa(); get(); for 2: forward(); layer_name(),
    after 22387 other calls, prints exactly the README's block."""
    setup = ("setup", [f"init_{i}" for i in range(22386)])
    body = [SDPA, GET, FORWARD, LAYER_NAME, FORWARD, LAYER_NAME]
    text = view(build_trace([setup, *body * 6]))
    block = text[text.index("🔄 Repeating Pattern") :]
    assert block == expected(
        """
        🔄 Repeating Pattern: 6x repetitions of 6 calls (calls #22388-#22423, total: 36 calls)
          📋 Pattern template (repeated 6 times):
            ├── scaled_dot_product_attention [packed_attention_monkey_patch.py:14]
            ├── get [expert_context.py:25]
            └── 🔄 Nested Pattern: 2x repetitions of 2 calls
                ├── forward [train_lens.py:88]
                └── layer_name [base.py:21]
        """
    )


def test_nested_three_deep():
    sequence = (["a", "b", "c", "b", "c"] * 3 + ["d"]) * 2
    assert view(build_trace(sequence)) == expected(
        """
        Thread MainThread (id 200)
        🔄 Repeating Pattern: 2x repetitions of 16 calls (calls #1-#32, total: 32 calls)
          📋 Pattern template (repeated 2 times):
            ├── 🔄 Nested Pattern: 3x repetitions of 5 calls
            │   ├── a [mod.py:1]
            │   └── 🔄 Nested Pattern: 2x repetitions of 2 calls
            │       ├── b [mod.py:1]
            │       └── c [mod.py:1]
            └── d [mod.py:1]
        """
    )


def test_groups_among_children_and_below_template_steps():
    layer = ("layer", ["linear", "!torch.relu", "linear"])
    step = ("train_step", [("forward", [layer] * 4), "!backward"])
    trace = build_trace([("main", ["load", step, step, step, "save"])])
    assert view(trace) == expected(
        """
        Thread MainThread (id 200)
        #1 main [mod.py:1]  (1.2 us)
        ├── #2 load [mod.py:1]  (0.0 us)
        ├── 🔄 Repeating Pattern: 3x repetitions of 19 calls (calls #3-#59, total: 57 calls)
        │     📋 Pattern template (repeated 3 times):
        │       └── train_step [mod.py:1]
        │           ├── forward [mod.py:1]
        │           │   └── 🔄 Nested Pattern: 4x repetitions of 4 calls
        │           │       └── layer [mod.py:1]
        │           │           ├── linear [mod.py:1]
        │           │           ├── lib.torch.relu [external]
        │           │           └── linear [mod.py:1]
        │           └── lib.backward [external]
        └── #60 save [mod.py:1]  (0.0 us)
        """
    )


def near_loop() -> list[str]:
    """100 iterations of G F B S; every 10th also logs; the last one skips B."""
    sequence = []
    for i in range(100):
        body = ["G", "F", "B", "S"] if i < 99 else ["G", "F", "S"]
        sequence += body + (["log_metrics"] if i % 10 == 3 else [])
    return sequence + ["evaluate"]


def test_near_repeats_with_variants():
    assert view(build_trace(near_loop())) == expected(
        """
        Thread MainThread (id 200)
        🔄 Repeating Pattern: 100x repetitions of 4 calls (3 variants) (calls #1-#409, total: 409 calls)
          📋 Pattern template (repeated 89 times):
            ├── G [mod.py:1]
            ├── F [mod.py:1]
            ├── B [mod.py:1]
            └── S [mod.py:1]
          🔀 Variant 2: 10 iterations (iterations 3, 13, 23, 33, 43, 53, 63, 73, … 2 more), 5 calls each:
            └── + log_metrics [mod.py:1]
          🔀 Variant 3: 1 iteration (iteration 99), 3 calls each:
            └── - B [mod.py:1]
        #410 evaluate [mod.py:1]  (0.0 us)
        """
    )


def test_exact_keeps_only_identical_repetitions():
    text = view(build_trace(near_loop()), near=False)
    assert "variants" not in text and "🔀" not in text
    assert "🔄 Repeating Pattern: 9x repetitions of 41 calls (calls #1-#369" in text
    assert "🔄 Nested Pattern: 4x repetitions of 4 calls" in text


def test_variant_whose_step_differs_below():
    short = ("forward", ["layer"] * 2)
    full = ("forward", ["layer"] * 4)
    trace = build_trace([("main", ["load", full] * 5 + ["load", short])])
    assert view(trace) == expected(
        """
        Thread MainThread (id 200)
        #1 main [mod.py:1]  (0.7 us)
        └── 🔄 Repeating Pattern: 6x repetitions of 6 calls (2 variants) (calls #2-#35, total: 34 calls)
              📋 Pattern template (repeated 5 times):
                ├── load [mod.py:1]
                └── forward [mod.py:1]
                    └── 🔄 Nested Pattern: 4x repetitions of 1 call
                        └── layer [mod.py:1]
              🔀 Variant 2: 1 iteration (iteration 5), 4 calls each:
                └── ~ forward [mod.py:1]
                      ├── - 🔄 Nested Pattern: 4x repetitions of 1 call
                      ├── + layer [mod.py:1]
                      └── + layer [mod.py:1]
        """
    )


def test_overlapping_periods_choose_most_hidden_calls():
    # (a)x3 and (ab)x3 overlap at the third call; (ab)x3 hides more.
    assert view(build_trace(["a", "a", "a", "b", "a", "b", "a", "b"]), near=False) == expected(
        """
        Thread MainThread (id 200)
        #1 a [mod.py:1]  (0.0 us)
        #2 a [mod.py:1]  (0.0 us)
        🔄 Repeating Pattern: 3x repetitions of 2 calls (calls #3-#8, total: 6 calls)
          📋 Pattern template (repeated 3 times):
            ├── a [mod.py:1]
            └── b [mod.py:1]
        """
    )


def test_smallest_period_wins_a_tie():
    text = view(build_trace(["x"] * 8))
    assert "8x repetitions of 1 call" in text


def test_match_function_folds_calls_with_different_children():
    calls = [("f", ["g"]), ("f", ["g", "g"]), ("f", ["h"]), ("f", ["g"])]
    trace = build_trace([("main", calls)])
    assert "Repeating Pattern" not in view(trace, near=False)
    assert view(trace, match="function") == expected(
        """
        Thread MainThread (id 200)
        #1 main [mod.py:1]  (0.2 us)
        └── 🔄 Repeating Pattern: 4x repetitions of 2 calls (calls #2-#10, total: 9 calls)
              📋 Pattern template (repeated 4 times):
                └── f [mod.py:1]
                    └── g [mod.py:1]
        """
    )


def fib(n: int):
    return ("fib", [fib(n - 1), fib(n - 2)]) if n > 1 else "fib"


def test_recursion_does_not_explode():
    trace = build_trace([fib(16)])
    text = view(trace)
    assert len(text.splitlines()) == len(trace) + 1  # fib(n-1) and fib(n-2) differ
    assert "Repeating Pattern" not in text
    # comparing functions only, fib(n-1) and fib(n-2) are the same step
    assert len(view(trace, match="function").splitlines()) < len(trace) // 2


def test_threads_fold_separately():
    trace = build_trace(["x", "x", "x"], ["x", "x", "x", "y"])
    assert view(trace) == expected(
        """
        Thread MainThread (id 200)
        🔄 Repeating Pattern: 3x repetitions of 1 call (calls #1-#3, total: 3 calls)
          📋 Pattern template (repeated 3 times):
            └── x [mod.py:1]
        Thread T1 (id 201)
        🔄 Repeating Pattern: 3x repetitions of 1 call (calls #4-#6, total: 3 calls)
          📋 Pattern template (repeated 3 times):
            └── x [mod.py:1]
        #7 y [mod.py:1]  (0.0 us)
        """
    )


def test_empty_and_single_call():
    assert view(build_trace([])) == "(no calls recorded in scope)\n"
    assert view(build_trace(["solo"])) == expected(
        """
        Thread MainThread (id 200)
        #1 solo [mod.py:1]  (0.0 us)
        """
    )


def test_max_rows_and_depth():
    step = ("step", [("forward", ["layer"] * 3)])
    trace = build_trace([("main", [step] * 4)])
    out = io.StringIO()
    render_grouped(fold_trace(trace), out, max_rows=3)
    assert out.getvalue().splitlines()[-1] == "… output stopped at 3 rows (--max-rows)"
    assert len(out.getvalue().splitlines()) == 4
    out = io.StringIO()
    render_grouped(fold_trace(trace), out, depth=2)
    assert "└── step [mod.py:1]\n            └── … 4 more calls below (--depth)" in out.getvalue()
    assert "layer" not in out.getvalue()


def test_variant_differences_are_shown_where_they_are():
    """An extra call deep inside a step shows as that call, under ``~`` lines."""
    plain = ("step", ["load", ("forward", ["layer"] * 3)])
    logged = ("step", ["load", ("forward", ["layer"] * 3), "log_metrics"])
    trace = build_trace([("main", [plain, plain, logged, plain, plain, plain])])
    text = view(trace)
    assert "6x repetitions of 6 calls (2 variants)" in text
    assert text.endswith(
        "      🔀 Variant 2: 1 iteration (iteration 2), 7 calls each:\n"
        "        └── ~ step [mod.py:1]\n"
        "              └── + log_metrics [mod.py:1]\n"
    )
    folding = fold_trace(trace)
    assert count_rows(folding) == len(text.splitlines()) - 1
