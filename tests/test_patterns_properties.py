"""Property and stress tests of the pattern folding (``patterns/``).

Random programs of nested loops with noise (extra calls in some iterations, a
shorter last iteration, conditional calls, random children, sometimes two
threads, interleaved or not) are run into traces with ``build_trace``; every
folding of them must be a lossless view of the call tree, its per-call
annotations must agree with an independent walk of the groups, and the
annotated JSON trace must round-trip. Plain tests cover the edges: empty and
one-call traces, a million siblings, recursion and threads.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from trace_builder import build_trace, trace_from_columns

from otel_tracer.trace.format import from_document
from otel_tracer.trace.group_table import section_document
from otel_tracer.trace.model import Calls, Function, Trace
from otel_tracer.trace.save import dumps
from patterns import engine as engine_module
from patterns import fold as fold_module
from patterns.annotate import annotate
from patterns.engine import Folding, fold_trace
from patterns.fold import FoldOptions
from patterns.groups import LocalGroup
from patterns.render import grouped_lines
from patterns.restore import restored_folding

REPO = Path(__file__).resolve().parent.parent
_SCHEMA = json.loads((REPO / "otel_tracer/trace/schema/trace-v3.schema.json").read_text())
PATTERNS_SCHEMA = {"$ref": "#/$defs/patterns", "$defs": _SCHEMA["$defs"]}

OPTIONS = [
    FoldOptions(match=match, near=near)
    for match in ("structure", "function")
    for near in (True, False)
]
OPTION_IDS = [f"{o.match}-{'near' if o.near else 'exact'}" for o in OPTIONS]

MAX_CALLS = 2000
PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SMALL_SETTINGS = settings(PROPERTY_SETTINGS, max_examples=30)
JSON_SETTINGS = settings(PROPERTY_SETTINGS, max_examples=25)

# -- random programs ------------------------------------------------------------------------
#
# A block is a tuple of statements:
#   ("call", name, block)               call ``name``, whose body is ``block``
#   ("loop", reps, block, short_last)   for i in range(reps): block
#   ("if", condition, block)            if condition: block
# Running a program (``Runner``) gives build_trace specs; noise is added from a seeded
# random generator, so a drawn example is reproducible.

NAMES = ["a", "b", "c", "d", "e", "mod.py:7:a", "other.py:3:f", "!len", "!append"]
NOISE_NAMES = ["n", "a", "b", "!print"]
CONDITIONS = [("every", 2), ("every", 3), ("first",), ("last",), ("random", 0.5), ("random", 0.1)]

names = st.sampled_from(NAMES)


@functools.cache
def blocks(depth: int) -> st.SearchStrategy:
    return st.lists(statements(depth), min_size=1, max_size=4).map(tuple)


@functools.cache
def loops(depth: int) -> st.SearchStrategy:
    return st.tuples(st.just("loop"), st.integers(1, 9), blocks(depth - 1), st.booleans())


@functools.cache
def statements(depth: int) -> st.SearchStrategy:
    leaf = st.tuples(st.just("call"), names, st.just(()))
    if depth == 0:
        return leaf
    return st.one_of(
        loops(depth),
        leaf,
        st.tuples(st.just("call"), names, blocks(depth - 1)),
        st.tuples(st.just("if"), st.sampled_from(CONDITIONS), blocks(depth - 1)),
    )


@functools.cache
def programs(depth: int) -> st.SearchStrategy:
    """An outer loop, maybe with statements around it."""
    around = st.lists(statements(depth - 1), max_size=2).map(tuple)
    return st.tuples(around, loops(depth), around).map(lambda p: (*p[0], p[1], *p[2]))


class Runner:
    """Runs a program into build_trace specs, with noise, up to ``limit`` calls."""

    def __init__(self, seed: int, noise: float, limit: int) -> None:
        self.rng = random.Random(seed)
        self.noise = noise
        self.limit = limit
        self.count = 0

    def _noise_call(self):
        self.count += 1
        name = self.rng.choice(NOISE_NAMES)
        if self.rng.random() < 0.5 or self.count >= self.limit or name.startswith("!"):
            return name
        self.count += 1
        return (name, [self.rng.choice(NOISE_NAMES)])

    def block(self, block: tuple, index: int, reps: int) -> list:
        out: list = []
        for statement in block:
            if self.count >= self.limit:
                break
            kind = statement[0]
            if kind == "call":
                _, name, body = statement
                self.count += 1
                children = self.block(body, index, reps)
                if self.noise and self.rng.random() < self.noise and self.count < self.limit:
                    children.insert(self.rng.randint(0, len(children)), self._noise_call())
                if name.startswith("!"):  # external calls are leaves
                    self.count -= _count(children)
                    children = []
                out.append((name, children) if children else name)
            elif kind == "loop":
                _, count, body, short_last = statement
                for i in range(count):
                    if self.count >= self.limit:
                        break
                    iteration = self.block(body, i, count)
                    if short_last and i == count - 1 and len(iteration) > 1:
                        iteration = iteration[: self.rng.randint(1, len(iteration) - 1)]
                    if self.noise and self.rng.random() < self.noise and self.count < self.limit:
                        iteration.insert(self.rng.randint(0, len(iteration)), self._noise_call())
                    out.extend(iteration)
            else:
                _, condition, body = statement
                if _holds(condition, index, reps, self.rng):
                    out.extend(self.block(body, index, reps))
        return out


def _holds(condition: tuple, index: int, reps: int, rng: random.Random) -> bool:
    kind = condition[0]
    if kind == "every":
        return index % condition[1] == 0
    if kind == "first":
        return index == 0
    if kind == "last":
        return index == reps - 1
    return rng.random() < condition[1]


def _count(specs: list) -> int:
    return sum(1 + (0 if isinstance(s, str) else _count(s[1])) for s in specs)


def interleave(trace: Trace, seed: int) -> Trace:
    """The same calls with the threads' rows merged in a random order (each thread
    keeps its own call order), as concurrent threads record them."""
    calls = trace.calls
    n = len(calls)
    rng = np.random.default_rng(seed)
    key = np.empty(n)
    for t in range(len(trace.threads)):
        rows = np.flatnonzero(calls.thread == t)
        key[rows] = np.sort(rng.random(len(rows)))
    order = np.argsort(key, kind="stable")
    new_of_old = np.empty(n, dtype=np.int64)
    new_of_old[order] = np.arange(n)
    old_parent = calls.parent[order]
    parent = np.where(old_parent >= 0, new_of_old[np.maximum(old_parent, 0)], -1)
    last = np.arange(n, dtype=np.int64)
    for row in range(n - 1, 0, -1):
        if parent[row] >= 0:
            last[parent[row]] = max(last[parent[row]], last[row])
    return Trace(
        meta=dict(trace.meta),
        functions=trace.functions,
        threads=trace.threads,
        strings=[],
        arg_tuples=[],
        exceptions=[],
        calls=Calls(
            parent=parent.astype(np.int64),
            depth=calls.depth[order],
            function=calls.function[order],
            thread=calls.thread[order],
            start=np.arange(n, dtype=np.int64) * 10,
            end=last * 10 + 5,
            args=calls.args[order],
            value=calls.value[order],
            exception=calls.exception[order],
            flags=calls.flags[order],
            span_id=np.arange(1, n + 1, dtype=np.uint64),
            raise_line=np.zeros(n, dtype=np.int32),
            task=np.full(n, -1, dtype=np.int32),
        ),
    )


@st.composite
def traces(draw, allow_interleaving: bool = True) -> Trace:
    """A trace of 1 or 2 threads running random nested-loop programs with noise."""
    depth = draw(st.integers(3, 4))
    program = draw(programs(depth))
    seed = draw(st.integers(0, 2**32 - 1))
    noise = draw(st.sampled_from([0.0, 0.05, 0.2, 0.5]))
    threads = draw(st.sampled_from([1, 1, 2]))
    runner = Runner(seed, noise, MAX_CALLS // threads)
    specs = []
    for t in range(threads):
        if t and draw(st.booleans()):  # the second thread may run another program
            program = draw(programs(depth))
        runner.count = 0
        roots = runner.block(program, 0, 1)
        if draw(st.booleans()):
            roots = [("main", roots)] if roots else ["main"]
        specs.append(roots)
    trace = build_trace(*specs)
    if threads == 2 and allow_interleaving and draw(st.booleans()):
        trace = interleave(trace, seed)
    return trace


# -- independent reference computations ---------------------------------------------------


def reference_structure(trace: Trace) -> tuple[list[int], list[int], list[int]]:
    """(canonical shape, subtree size, last row) of every row, by a plain bottom-up
    walk: two calls have the same shape iff they ran the same function and their
    children have the same shapes, in order."""
    n = len(trace)
    parent = trace.calls.parent.tolist()
    function = trace.calls.function.tolist()
    children: list[list[int]] = [[] for _ in range(n)]
    for row in range(n):
        if parent[row] >= 0:
            children[parent[row]].append(row)
    ids: dict[tuple, int] = {}
    shape, size, last = [0] * n, [1] * n, list(range(n))
    for row in range(n - 1, -1, -1):  # a child's row is after its parent's
        kids = children[row]
        shape[row] = ids.setdefault((function[row], tuple(shape[c] for c in kids)), len(ids))
        size[row] += sum(size[c] for c in kids)
        if kids:
            last[row] = max(row, *(last[c] for c in kids))
    return shape, size, last


def owners_and_steps(folding: Folding) -> Iterator[tuple[int, np.ndarray, list[LocalGroup]]]:
    """(owner, step rows, top-level groups) of every folded sequence instance."""
    for sequence in folding.sequences:
        for k, owner in enumerate(sequence.owners.tolist()):
            yield owner, sequence.steps[k], sequence.groups


class SequenceCheck:
    """Checks the groups of one owner's child sequence and expands them back.

    The expansion (steps outside groups, and each iteration's steps with its nested
    groups expanded) must give the positions 0, 1, ... in order: ``cursor`` is the
    next position expected. Three properties are collected rather than asserted, so
    that each has its own test and the others still run on every example:
    ``unlike`` (iterations of one variant that are not alike: other step functions,
    or with match="structure" other step shapes) and ``wrong_near``."""

    def __init__(self, folding: Folding, steps: np.ndarray) -> None:
        self.options = folding.options
        self.shapes = folding.shapes.shape[steps]
        self.functions = folding.trace.calls.function[steps].astype(np.int64)
        self.calls_before = np.concatenate(([0], np.cumsum(folding.shapes.size[steps])))
        self.cursor = 0
        self.unlike: list[str] = []
        self.wrong_near: list[tuple[int, bool]] = []  # (start, near)

    def emit(self, lo: int, hi: int) -> None:
        """Steps ``lo..hi`` come next in the expansion."""
        assert lo <= hi
        if lo < hi:
            assert lo == self.cursor, f"expansion jumps from step {self.cursor} to {lo}"
            self.cursor = hi

    def groups(self, groups: list[LocalGroup], shift: int, lo: int, hi: int) -> None:
        """Check ``groups`` (positions + ``shift``) inside steps ``[lo, hi)``."""
        pos = lo
        for group in groups:
            bounds = group.bounds.astype(np.int64) + shift
            start, stop = int(bounds[0]), int(bounds[-1])
            assert lo <= pos <= start, f"group [{start}, {stop}) overlaps or is out of [{lo}, {hi})"
            assert stop <= hi, f"group [{start}, {stop}) runs past {hi}"
            assert group.repetitions >= 2
            assert (np.diff(bounds) > 0).all(), f"bounds not increasing: {bounds.tolist()}"
            self.emit(pos, start)
            self.iterations(group, bounds)
            if any(v.nested for v in group.variants):
                for j in range(group.repetitions):
                    nested, offset = group.nested_of(j)
                    assert (
                        offset
                        == bounds[j] - bounds[group.variants[group.variant_of[j]].representative]
                    )
                    self.groups(nested, shift + offset, int(bounds[j]), int(bounds[j + 1]))
            else:  # no nested groups: the iterations expand to their steps
                assert group.nested_of(0)[0] == group.nested_of(group.repetitions - 1)[0] == []
                self.emit(start, stop)
            pos = stop
        self.emit(pos, hi)

    def calls(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Calls in steps ``lo..hi`` (elementwise), everything below included."""
        return self.calls_before[hi] - self.calls_before[lo]

    def iterations(self, group: LocalGroup, bounds: np.ndarray) -> None:
        """Variants of ``group`` (at ``bounds``): a partition of its iterations, template
        first, the iterations of a variant alike."""
        reps = group.repetitions
        variant_of = np.asarray(group.variant_of)
        assert variant_of.shape == (reps,)
        assert len(group.variants) >= 1
        assert ((variant_of >= 0) & (variant_of < len(group.variants))).all()
        assert sum(len(v.iterations) for v in group.variants) == reps
        # variants[0] is the variant most iterations have; ties: first seen
        order_keys = [(-len(v.iterations), v.representative) for v in group.variants]
        assert order_keys == sorted(order_keys), order_keys
        structure = self.options.match == "structure"
        template = None
        steps_differ = False
        for v, variant in enumerate(group.variants):
            iterations = np.asarray(variant.iterations, dtype=np.int64)
            assert np.array_equal(iterations, np.flatnonzero(variant_of == v))
            firsts = bounds[iterations]
            assert (bounds[iterations + 1] - firsts == variant.steps).all()
            rows = firsts[:, None] + np.arange(variant.steps)  # [iteration, step]
            # one variant: the same step functions, and with match="structure" the same
            # step shapes (with match="function" iterations may differ below the steps)
            functions = self.functions[rows]
            other = np.flatnonzero((functions != functions[0]).any(axis=1))
            if len(other):
                self.unlike.append(
                    f"group at step {bounds[0]}: iteration {iterations[other[0]]} of variant "
                    f"{v} runs other functions than iteration {iterations[0]}"
                )
            if structure:
                shapes = self.shapes[rows]
                other = np.flatnonzero((shapes != shapes[0]).any(axis=1))
                if len(other):
                    self.unlike.append(
                        f"group at step {bounds[0]}: iteration {iterations[other[0]]} of "
                        f"variant {v} differs in shape from iteration {iterations[0]}"
                    )
                assert (self.calls(firsts, firsts + variant.steps) == variant.calls).all()
            if template is None:
                template = functions[0]
            steps_differ |= not np.array_equal(functions[0], template)
        if group.near != steps_differ:
            self.wrong_near.append((int(bounds[0]), bool(group.near)))
        if structure and not self.options.near:  # exact structure: identical iterations
            assert len(group.variants) == 1 and not group.near
        if not self.options.near:
            assert not group.near


def check_sequences(folding: Folding, reference=None) -> dict[str, list]:
    """Check every folded sequence (the shapes against ``reference_structure`` when
    given); assert that each expands back to exactly its owner's children, and
    return the collected problems of ``SequenceCheck`` by kind, with their owners."""
    trace = folding.trace
    shapes = folding.shapes
    if reference is not None:
        shape, size, last = reference
        # same shape <=> same canonical shape
        pairs = np.unique(np.stack((shapes.shape, np.asarray(shape))), axis=1)
        assert pairs.shape[1] == len(np.unique(shapes.shape)) == len(set(shape))
        assert shapes.size.tolist() == size
        assert shapes.last.tolist() == last
    seen_owners = set()
    problems: dict[str, list] = {"unlike": [], "near": []}
    for owner, steps, groups in owners_and_steps(folding):
        assert owner not in seen_owners
        seen_owners.add(owner)
        assert folding.groups_of(owner)[0] is groups
        children = folding.steps_of(owner)
        if owner < 0:
            roots = (trace.calls.parent < 0) & (trace.calls.thread == -1 - owner)
            assert np.array_equal(children, np.flatnonzero(roots))
        assert np.array_equal(steps, children), f"steps of owner {owner} are not its children"
        check = SequenceCheck(folding, steps)
        check.groups(groups, 0, 0, len(steps))
        assert check.cursor == len(steps), f"owner {owner}: the expansion stops early"
        problems["unlike"] += [(owner, w) for w in check.unlike]
        problems["near"] += [(owner, *w) for w in check.wrong_near]
    assert set(folding.sequence_of_owner) == seen_owners
    return problems


def check_lossless(folding: Folding, reference=None) -> None:
    """Every folded sequence expands back to exactly its owner's children, and the
    iterations of a variant are alike (what the view shows once stands for them)."""
    unlike = check_sequences(folding, reference)["unlike"]
    assert not unlike, f"iterations of one variant are not alike: (owner, group) = {unlike}"


def check_total_calls(trace: Trace, options: FoldOptions) -> None:
    """Every group instance's ``total_calls`` is the calls in its span, and each
    variant's ``calls`` the calls of that variant's first iteration in this
    instance (counted independently: within one thread, the rows between a group's
    first and last call are exactly the subtrees of its steps)."""
    annotate(trace, options)
    thread = trace.calls.thread
    wrong = []
    for g in trace.patterns.section["groups"]:

        def calls(first: int, stop: int, on: int = g["thread"]) -> int:  # ids first..stop-1
            return int((thread[first - 1 : stop - 1] == on).sum())

        ends = [*g["iterations"][1:], g["last"] + 1]
        if g["total_calls"] != calls(g["first"], g["last"] + 1):
            wrong.append((g["id"], "total_calls", g["total_calls"]))
        for v in g["variants"]:
            j = v["iterations"][0]
            if v["calls"] != calls(g["iterations"][j], ends[j]):
                wrong.append((g["id"], "variant calls", v["calls"]))
    assert not wrong, f"calls counted wrong: (group, what, value) = {wrong}"


def check_near_flags(folding: Folding) -> None:
    """``near``: "iterations differ in their steps (a near-repeat), not only below
    them" (patterns/groups.py, docs/trace-format.md)."""
    wrong = check_sequences(folding)["near"]
    assert not wrong, (
        "LocalGroup.near disagrees with whether the iterations' step functions differ: "
        f"(owner, start, near) = {wrong}"
    )


def check_all(folding: Folding, reference=None) -> None:
    """Every property of ``check_sequences``."""
    problems = check_sequences(folding, reference)
    assert problems == {"unlike": [], "near": []}, problems


def reference_annotations(folding: Folding):
    """Instances (in call order, outer before inner) and per-call (instance,
    iteration, variant), by walking the groups: a step gets the innermost group
    whose iteration holds it, a call below a step its parent's."""
    trace = folding.trace
    n = len(trace)
    last = reference_structure(trace)[2]
    records: list[dict] = []
    own = [-1] * n  # record index
    own_iteration = [-1] * n
    own_variant = [-1] * n

    def walk(groups, shift, steps, owner, parent_record):
        for group in groups:
            bounds = (group.bounds + shift).tolist()
            record = {
                "first": int(steps[bounds[0]]),
                "last": int(last[steps[bounds[-1] - 1]]),
                "parent_record": parent_record,
                "owner": owner,
                "thread": int(trace.calls.thread[steps[0]]),
            }
            records.append(record)
            index = len(records) - 1
            for j in range(group.repetitions):
                for row in steps[bounds[j] : bounds[j + 1]].tolist():
                    own[row] = index
                    own_iteration[row] = j
                    own_variant[row] = int(group.variant_of[j])
            for j in range(group.repetitions):
                nested, offset = group.nested_of(j)
                walk(nested, shift + offset, steps, owner, index)

    for owner, steps, groups in owners_and_steps(folding):
        walk(groups, 0, steps, owner, None)
    parent = trace.calls.parent.tolist()
    group, iteration, variant = list(own), list(own_iteration), list(own_variant)
    for row in range(n):  # parents come first
        if group[row] < 0 and parent[row] >= 0:
            up = parent[row]
            group[row], iteration[row], variant[row] = group[up], iteration[up], variant[up]
    for record in records:
        if record["parent_record"] is None and record["owner"] >= 0:
            record["parent_record"] = group[record["owner"]]
            if record["parent_record"] < 0:
                record["parent_record"] = None
    order = sorted(range(len(records)), key=lambda i: (records[i]["first"], -records[i]["last"]))
    number = {old: new for new, old in enumerate(order)}
    instances = [records[i] for i in order]
    for record in instances:
        p = record["parent_record"]
        record["parent"] = -1 if p is None else number[p]
    group = [number[g] if g >= 0 else -1 for g in group]
    return instances, group, iteration, variant


def check_annotations(folding: Folding) -> None:
    instances, group, iteration, variant = reference_annotations(folding)
    got = folding.instances
    assert len(got) == len(instances)
    assert got.first.tolist() == [r["first"] for r in instances]
    assert got.last.tolist() == [r["last"] for r in instances]
    assert got.parent.tolist() == [r["parent"] for r in instances]
    assert got.parent_call.tolist() == [max(r["owner"], -1) for r in instances]
    assert got.thread.tolist() == [
        r["thread"] if r["owner"] >= 0 else -1 - r["owner"] for r in instances
    ]
    for i in range(len(got)):
        sequence = folding.sequences[int(got.sequence[i])]
        owner = int(sequence.owners[int(got.owner[i])])
        assert owner == instances[i]["owner"]
        placed, steps = folding.instance(i)
        assert int(steps[placed.group.start + placed.shift]) == instances[i]["first"]
        assert int(sequence.instance_ids[int(got.owner[i]), int(got.placed[i])]) == i
        parent = int(got.parent[i])
        if parent >= 0:  # the parent instance contains this one
            assert got.first[parent] <= got.first[i] and got.last[i] <= got.last[parent]
            assert got.thread[parent] == got.thread[i]
    assert folding.group.tolist() == group
    assert folding.iteration.tolist() == iteration
    assert folding.variant.tolist() == variant
    for row in np.flatnonzero(folding.group >= 0).tolist():  # groups never span threads
        assert got.thread[folding.group[row]] == folding.trace.calls.thread[row]


def assert_same_group(a: LocalGroup, b: LocalGroup) -> None:
    assert a.bounds.tolist() == b.bounds.tolist() and a.near == b.near
    assert a.variant_of.tolist() == b.variant_of.tolist() and len(a.variants) == len(b.variants)
    for x, y in zip(a.variants, b.variants, strict=True):
        assert (x.iterations.tolist(), x.steps, x.calls) == (
            y.iterations.tolist(),
            y.steps,
            y.calls,
        )
        assert len(x.nested) == len(y.nested)
        for p, q in zip(x.nested, y.nested, strict=True):
            assert_same_group(p, q)


def assert_same_folding(restored: Folding | None, folding: Folding) -> None:
    """A folding rebuilt from the saved groups is the one folding made."""
    assert restored is not None
    assert len(restored.sequences) == len(folding.sequences)
    for mine, theirs in zip(restored.sequences, folding.sequences, strict=True):
        assert np.array_equal(mine.owners, theirs.owners)
        assert np.array_equal(mine.steps, theirs.steps)
        assert len(mine.groups) == len(theirs.groups) and len(mine.placed) == len(theirs.placed)
        for a, b in zip(mine.groups, theirs.groups, strict=True):
            assert_same_group(a, b)
    for name in ("sequence", "placed", "owner", "parent", "first", "last", "parent_call"):
        assert np.array_equal(getattr(restored.instances, name), getattr(folding.instances, name))
    assert np.array_equal(restored.group, folding.group)
    assert list(grouped_lines(restored)) == list(grouped_lines(folding))


def section_json(section: dict) -> dict:
    """A ``patterns`` section as the file has it, parsed back."""
    return orjson.loads(orjson.dumps(section_document(section), option=orjson.OPT_SERIALIZE_NUMPY))


def check_round_trip(trace: Trace, options: FoldOptions, interleaved: bool) -> None:
    folding = annotate(trace, options)
    section = trace.patterns.section
    jsonschema.validate(section_json(section), PATTERNS_SCHEMA)
    loaded = from_document(orjson.loads(dumps(trace)))
    assert loaded.patterns is not None
    assert section_json(loaded.patterns.section) == section_json(section)
    assert list(loaded.patterns.section["groups"]) == list(section["groups"])
    assert loaded.patterns.group.tolist() == trace.patterns.group.tolist()
    assert loaded.patterns.iteration.tolist() == trace.patterns.iteration.tolist()
    assert loaded.patterns.variant.tolist() == trace.patterns.variant.tolist()
    for row in range(len(trace)):
        assert loaded.patterns.attributes_of(row) == trace.patterns.attributes_of(row)
    assert_same_folding(restored_folding(loaded, options), folding)  # not folded again
    groups = section["groups"]
    assert len(groups) == len(folding.instances)
    stats = section["statistics"]
    assert stats["groups"] == len(groups)
    assert stats["top_level_groups"] == sum(g["parent"] is None for g in groups)
    assert stats["calls"] == stats["rows_unfolded"] == len(trace)
    assert stats["calls_in_groups"] == int((folding.group >= 0).sum())
    largest = sorted(groups, key=lambda g: (-g["total_calls"], g["id"]))[:5]
    keys = ("id", "repetitions", "calls_per_repetition", "total_calls", "first")
    assert stats["largest"] == [{k: g[k] for k in keys} for g in largest]
    threads = sum(1 for roots in folding.thread_roots if len(roots))
    assert stats["rows_folded"] == sum(1 for _ in grouped_lines(folding)) - threads
    thread_of = trace.calls.thread
    for g in groups:
        first, last, iterations = g["first"], g["last"], g["iterations"]
        assert len(iterations) == g["repetitions"] >= 2
        assert iterations[0] == first <= last
        assert all(a < b for a, b in zip(iterations, iterations[1:], strict=False))
        assert iterations[-1] <= last
        if options.match == "structure":  # alike iterations: the same calls below
            assert g["total_calls"] == sum(v["calls"] * len(v["iterations"]) for v in g["variants"])
        if not interleaved:
            assert g["total_calls"] == last - first + 1, g
        if len(g["variants"]) == 1 and options.match == "structure":
            assert g["calls_per_repetition"] * g["repetitions"] == g["total_calls"]
        assert g["calls_per_repetition"] == g["variants"][0]["calls"]
        assert g["template"] == g["variants"][0]["entries"]
        assert sorted(j for v in g["variants"] for j in v["iterations"]) == list(
            range(g["repetitions"])
        )
        assert thread_of[first - 1] == thread_of[last - 1] == g["thread"]
        if g["parent"] is not None:
            parent = groups[g["parent"] - 1]
            assert g["id"] in parent["groups"]
            assert parent["first"] <= first and last <= parent["last"]
        for child in g["groups"]:
            assert groups[child - 1]["parent"] == g["id"]
        for v in g["variants"]:  # entries: calls and nested groups of the representative
            j = v["iterations"][0]
            lo = iterations[j]
            hi = iterations[j + 1] - 1 if j + 1 < len(iterations) else last
            steps = 0
            previous = lo - 1
            for entry in v["entries"]:
                if "call" in entry:
                    call = entry["call"]
                    steps += 1
                else:
                    nested = groups[entry["group"] - 1]
                    assert nested["parent"] == g["id"]
                    call = nested["first"]
                    steps += sum(len(w["iterations"]) * w["steps"] for w in nested["variants"])
                assert previous < call <= hi
                previous = call
            assert steps == v["steps"]
    # every call marked with a group lies in its iteration of that group
    marks = trace.patterns
    for row in np.flatnonzero(marks.group >= 0).tolist():
        g = groups[int(marks.group[row])]
        k = int(marks.iteration[row])
        call = row + 1
        assert g["iterations"][k] <= call <= g["last"]
        if k + 1 < len(g["iterations"]):
            assert call < g["iterations"][k + 1]
        assert k in g["variants"][int(marks.variant[row])]["iterations"]


# -- properties ---------------------------------------------------------------------------


# Minimal failing cases found by these properties. They run first (explicit
# examples: while a bug is there its test fails at once, without a long search and
# shrink) and stay as regression tests.
#
# NEAR_NOT_SET (structure/near, function/near, function/exact): roots
# x y z a a a a | x y z a a a fold as 2 iterations [x, y, z, a*k] of 7 and 6 steps
# (2 variants); the iterations differ in their steps, yet the group has near=False.
NEAR_NOT_SET = build_trace(list("xyzaaaaxyzaaa"))
# SHARED_NESTED_TOTAL (match="function"): roots x a(c) a(c) | x a a. The second
# iteration reuses the first one's nested group a*2 (same function layout), with its
# total_calls 4, though it covers 2 calls (also in the JSON: group 3, calls #7-#8).
SHARED_NESTED_TOTAL = build_trace(["x", ("a", ["c"]), ("a", ["c"]), "x", "a", "a"])
# SHARED_NESTED_HIDES_A_STEP (match="function", near): roots A*5 f p | A A a A A f p.
# The second iteration's near group (A A +a A A) has the same function layout as
# A*5, so the outer group has one variant and that iteration reuses the first one's
# nested group: call #10 (a) is annotated as iteration 2, variant 0 of "5x A", and
# the view never shows it.
SHARED_NESTED_HIDES_A_STEP = build_trace(list("AAAAAfpAAaAAfp"))


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
@PROPERTY_SETTINGS
@given(trace=traces())
@example(trace=SHARED_NESTED_HIDES_A_STEP)
def test_folding_is_lossless(trace: Trace, options: FoldOptions) -> None:
    folding = fold_trace(trace, options)
    check_lossless(folding, reference_structure(trace))


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
@SMALL_SETTINGS
@given(trace=traces())
@example(trace=SHARED_NESTED_TOTAL)
def test_group_total_calls(trace: Trace, options: FoldOptions) -> None:
    check_total_calls(trace, options)


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
@SMALL_SETTINGS
@given(trace=traces())
@example(trace=NEAR_NOT_SET)
def test_group_near_flag(trace: Trace, options: FoldOptions) -> None:
    check_near_flags(fold_trace(trace, options))


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
@PROPERTY_SETTINGS
@given(trace=traces())
def test_annotations_match_the_groups(trace: Trace, options: FoldOptions) -> None:
    check_annotations(fold_trace(trace, options))


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
@JSON_SETTINGS
@given(trace=traces(allow_interleaving=False))
@example(trace=SHARED_NESTED_TOTAL)
def test_annotated_json_round_trip(trace: Trace, options: FoldOptions) -> None:
    check_round_trip(trace, options, interleaved=False)


@JSON_SETTINGS
@given(trace=traces(), near=st.booleans())
def test_annotated_json_round_trip_interleaved(trace: Trace, near: bool) -> None:
    check_round_trip(trace, FoldOptions(near=near), interleaved=True)


# -- edges and stress -----------------------------------------------------------------------


def flat_trace(child_functions: np.ndarray) -> Trace:
    """One root call (function 0) whose children run ``child_functions`` (ids >= 1),
    built column by column."""
    m = len(child_functions)
    n = m + 1
    count = int(child_functions.max()) + 1 if m else 1
    parent = np.zeros(n, dtype=np.int64)
    parent[0] = -1
    depth = np.ones(n, dtype=np.int32)
    depth[0] = 0
    function = np.empty(n, dtype=np.int32)
    function[0] = 0
    function[1:] = child_functions
    start = np.arange(n, dtype=np.int64) * 10
    end = start + 5
    end[0] = n * 10
    functions = [
        Function(f"f{i}", f"f{i}", "mod", "/src/mod.py", i + 1, False) for i in range(count)
    ]
    return trace_from_columns(
        functions,
        parent=parent,
        depth=depth,
        function=function,
        thread=np.zeros(n, dtype=np.int32),
        start=start,
        end=end,
        flags=np.zeros(n, dtype=np.uint8),
    )


def view_rows(folding: Folding) -> int:
    return sum(1 for _ in grouped_lines(folding))


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
def test_empty_trace(options: FoldOptions) -> None:
    for trace in (build_trace([]), build_trace()):
        folding = annotate(trace, options)
        assert len(folding.instances) == 0 and folding.sequences == []
        assert view_rows(folding) == 0
        assert len(trace.patterns.section["groups"]) == 0
        assert trace.patterns.section["statistics"]["calls"] == 0
        jsonschema.validate(section_json(trace.patterns.section), PATTERNS_SCHEMA)
        loaded = from_document(orjson.loads(dumps(trace)))
        assert len(loaded) == 0
        assert section_json(loaded.patterns.section) == section_json(trace.patterns.section)


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
def test_single_call(options: FoldOptions) -> None:
    trace = build_trace(["main"])
    folding = annotate(trace, options)
    assert len(folding.instances) == 0
    assert folding.group.tolist() == [-1]
    assert view_rows(folding) == 2  # the thread and the call
    check_all(folding, reference_structure(trace))
    loaded = from_document(orjson.loads(dumps(trace)))
    assert loaded.patterns.attributes_of(0) == {}


def test_million_identical_siblings() -> None:
    n = 10**6
    trace = flat_trace(np.ones(n, dtype=np.int32))
    folding = annotate(trace)
    groups, steps = folding.groups_of(0)
    assert len(groups) == 1
    (group,) = groups
    assert group.repetitions == n
    assert np.array_equal(group.bounds, np.arange(n + 1))
    assert len(group.variants) == 1 and not group.near
    assert len(folding.instances) == 1
    assert folding.instances.first.tolist() == [1] and folding.instances.last.tolist() == [n]
    assert folding.group[0] == -1 and (folding.group[1:] == 0).all()
    assert np.array_equal(folding.iteration[1:], np.arange(n))
    assert (folding.variant[1:] == 0).all()
    assert view_rows(folding) == 5  # thread, root, group header, template label, its step
    check_all(folding)
    (entry,) = trace.patterns.section["groups"]
    assert (entry["first"], entry["last"], entry["parent_call"]) == (2, n + 1, 1)
    assert (entry["repetitions"], entry["calls_per_repetition"], entry["total_calls"]) == (n, 1, n)
    assert entry["iterations"] == list(range(2, n + 2))
    assert trace.patterns.section["statistics"]["rows_folded"] == 4


@pytest.mark.parametrize("noise", ["replaced", "inserted"])
def test_million_siblings_periodic_with_noise(noise: str) -> None:
    """f1 f2 f3 repeated; every 1000th sibling is another call: in place of a pattern
    call, or inserted after 1000 pattern calls (shifting the phase each time)."""
    n = 10**6
    position = np.arange(n)
    if noise == "replaced":
        functions = (position % 3 + 1).astype(np.int32)
        functions[999::1000] = 4
    else:
        inserted = position % 1001 == 1000
        functions = np.full(n, 4, dtype=np.int32)
        functions[~inserted] = np.arange(n - int(inserted.sum())) % 3 + 1
    trace = flat_trace(functions)
    folding = fold_trace(trace)
    check_all(folding)
    groups, _ = folding.groups_of(0)
    assert sum(g.stop - g.start for g in groups) > 0.99 * n
    assert (folding.group[1:] >= 0).mean() > 0.99
    assert view_rows(folding) < 100


def fib_spec(k: int):
    if k < 2:
        return "fib"
    return ("fib", [fib_spec(k - 1), fib_spec(k - 2)])


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
def test_recursion_never_grows_the_view(options: FoldOptions) -> None:
    trace = build_trace([("main", [fib_spec(18)])])
    assert len(trace) == 2 * 4181  # main + fib(18) calls (2 * F(19) - 1)
    folding = fold_trace(trace, options)
    check_all(folding)
    assert view_rows(folding) <= len(trace) + 1


LOOP = ("main", [("step", ["load", "!len", ("work", ["a", "b"])]) for _ in range(20)])


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
@pytest.mark.parametrize("interleaved", [False, True])
def test_threads_fold_separately(options: FoldOptions, interleaved: bool) -> None:
    trace = build_trace([LOOP, LOOP], [LOOP, LOOP])
    if interleaved:
        trace = interleave(trace, 7)
    folding = fold_trace(trace, options)
    check_all(folding, reference_structure(trace))
    check_annotations(folding)
    instances = folding.instances
    # per thread: roots main, main fold into one group, each main's steps into another
    assert sorted(instances.thread.tolist()) == [0] * 3 + [1] * 3
    top = np.flatnonzero(instances.parent < 0)
    assert len(top) == 2 and sorted(instances.thread[top].tolist()) == [0, 1]
    thread = trace.calls.thread
    for i in range(len(instances)):
        first, last = int(instances.first[i]), int(instances.last[i])
        inside = np.flatnonzero(folding.group == i)
        assert len(inside) and (thread[inside] == instances.thread[i]).all()
        assert thread[first] == thread[last] == instances.thread[i]
    check_round_trip(trace, options, interleaved=interleaved)


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
@SMALL_SETTINGS
@given(trace=traces())
def test_memoised_folding_equals_folding_from_scratch(trace: Trace, options: FoldOptions) -> None:
    """The Folder's memos (loop bodies, tandem runs, near-repeat growth and
    difference rows reused by content) change nothing: the same folding as with
    memos that keep nothing."""
    memoised = fold_trace(trace, options)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fold_module.Memo, "__setitem__", lambda self, key, value: None)
        scratch = fold_trace(trace, options)
    assert_same_folding(memoised, scratch)


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
@SMALL_SETTINGS
@given(trace=traces(), chunk=st.integers(1, 7))
def test_marks_set_in_chunks_equal_marks_set_at_once(
    trace: Trace, options: FoldOptions, chunk: int
) -> None:
    """The instances are numbered and every call marked a chunk of steps at a
    time (bounded memory on large traces): any chunk size gives the same folding,
    iterations and variants."""
    whole = fold_trace(trace, options)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine_module, "CHUNK", chunk)
        chunked = fold_trace(trace, options)
    assert_same_folding(chunked, whole)
    assert np.array_equal(chunked.iteration, whole.iteration)
    assert np.array_equal(chunked.variant, whole.variant)
