"""``python -m patterns trace.json``: the grouped view of a saved trace.

Prints the folded call tree (or the plain one with ``--no-patterns``), the
statistics (``--stats``), or writes the annotated trace (``--json OUT``).
Bad input gives one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from otel_tracer.cli_parser import OneLineParser
from otel_tracer.run.streams import reader_gone, trace_command
from otel_tracer.trace.format import TraceFormatError, load_noting_truncation
from otel_tracer.trace.model import Trace
from otel_tracer.trace.save import output_problem, save
from otel_tracer.trace.text import printable
from otel_tracer.trace.tree import render_tree
from patterns.annotate import LARGEST_KEYS, annotate, statistics
from patterns.fold import FoldOptions
from patterns.render import render_grouped
from patterns.restore import restored_folding, saved_groups, saved_or_folded

MATCHES = ("structure", "function")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"needs an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"needs an integer >= 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        label="patterns",
        prog="python -m patterns",
        description="Show a saved trace with repeated call sequences folded into pattern "
        "groups (loops within loops), or write the trace annotated with them.",
    )
    parser.add_argument("trace", help="a JSON trace written by the tracer (.json or .json.gz)")
    parser.add_argument(
        "--no-patterns", action="store_true", help="print the plain call tree, unfolded"
    )
    parser.add_argument(
        "--match",
        choices=MATCHES,
        default="structure",
        help="when two sibling calls are the same step: 'structure' (default) = same "
        "function and the same calls below it; 'function' = same function",
    )
    parser.add_argument(
        "--exact",
        action="store_true",
        help="only groups whose repetitions have the same steps (no near-repeats)",
    )
    parser.add_argument("--max-rows", type=_positive, metavar="N", help="print at most N rows")
    parser.add_argument(
        "--depth", type=_positive, metavar="N", help="show calls down to nesting depth N"
    )
    parser.add_argument(
        "--thread",
        action="append",
        metavar="THREAD",
        help="only this thread (name, native id, or index); repeatable",
    )
    parser.add_argument(
        "--json",
        metavar="OUT",
        help="write the trace annotated with its pattern groups to OUT (.json, .json.gz, "
        "or - for stdout) instead of printing the view",
    )
    parser.add_argument(
        "--stats",
        action="store_true",
        help="print the folding statistics instead of the view (those saved in the trace "
        "when it was folded with the same options)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary line on stderr")
    return parser


def select_threads(trace: Trace, wanted: list[str] | None) -> list[int] | None:
    """Thread indices named by ``--thread`` values; raises ValueError for unknown ones."""
    if not wanted:
        return None
    chosen = []
    for value in wanted:
        matches = [
            i
            for i, t in enumerate(trace.threads)
            if value in (t.name, str(t.native_id), str(t.id), str(i))
        ]
        if not matches:
            names = ", ".join(t.name for t in trace.threads) or "none"
            raise ValueError(f"no thread {value!r} in the trace (threads: {names})")
        chosen.extend(matches)
    return chosen


def saved_statistics(trace: Trace, options: FoldOptions) -> dict[str, Any] | None:
    """The statistics saved in ``trace`` (format 3) when its groups were folded
    with ``options`` and they hold what ``print_statistics`` prints, else None."""
    table = saved_groups(trace, options)
    if table is None:
        return None
    stats = trace.patterns.section["statistics"]  # type: ignore[union-attr]
    counts = ("calls", "groups", "top_level_groups", "calls_in_groups", "rows_unfolded")
    largest = stats.get("largest")
    valid = (
        all(type(stats.get(key)) is int for key in (*counts, "rows_folded"))
        and type(stats.get("compression")) in (int, float)
        and stats["calls"] == len(trace)
        and stats["groups"] == len(table)
        and type(largest) is list
        and all(
            type(g) is dict and all(type(g.get(key)) is int for key in LARGEST_KEYS)
            for g in largest
        )
    )
    return stats if valid else None


def summary_line(stats: dict[str, Any]) -> str:
    """One line of the folding statistics ``stats`` (``patterns.annotate.statistics``):
    groups, calls covered, rows folded vs unfolded."""
    return (
        f"{stats['groups']} pattern groups cover {stats['calls_in_groups']} of "
        f"{stats['calls']} calls; {stats['rows_folded']} rows folded vs "
        f"{stats['rows_unfolded']} unfolded ({stats['compression']}x)"
    )


def print_statistics(stats: dict[str, Any], out: TextIO) -> None:
    out.write(
        f"calls:            {stats['calls']}\n"
        f"pattern groups:   {stats['groups']} ({stats['top_level_groups']} top-level)\n"
        f"calls in groups:  {stats['calls_in_groups']}\n"
        f"rows unfolded:    {stats['rows_unfolded']}\n"
        f"rows folded:      {stats['rows_folded']}\n"
        f"compression:      {stats['compression']}x\n"
    )
    if stats["largest"]:
        out.write("largest groups:\n")
        for g in stats["largest"]:
            out.write(
                f"  #{g['id']}: {g['repetitions']}x repetitions of {g['calls_per_repetition']} "
                f"calls, total {g['total_calls']} calls, from call #{g['first']}\n"
            )


def main(argv: list[str] | None = None) -> int:
    """``python -m patterns``: the exit status."""
    try:
        return trace_command("patterns", _main, argv)
    except BrokenPipeError:  # piped into head: the reader has gone, as intended
        reader_gone()
        return 0


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        problem = output_problem(args.json) if args.json not in (None, "-") else None
        if problem is not None:
            raise ValueError(problem)
        trace = load_noting_truncation(args.trace, "patterns")
        threads = select_threads(trace, args.thread)
    except (TraceFormatError, ValueError) as error:
        print(f"patterns: error: {printable(str(error))}", file=sys.stderr)
        return 2
    if args.no_patterns:
        if args.json is not None or args.stats:
            print(
                "patterns: error: --no-patterns cannot go with --json or --stats", file=sys.stderr
            )
            return 2
        trace.patterns = None
        render_tree(trace, sys.stdout, max_rows=args.max_rows, depth=args.depth, threads=threads)
        return 0
    options = FoldOptions(match=args.match, near=not args.exact)
    saved = saved_statistics(trace, options) if args.stats and args.json is None else None
    if saved is not None:  # the trace's own groups: nothing to fold
        if not args.quiet:
            print(f"patterns: {summary_line(saved)}", file=sys.stderr)
        print_statistics(saved, sys.stdout)
        return 0
    if args.json is not None:  # the annotated trace: the whole patterns section
        saved = saved_statistics(trace, options)
        if saved is None or restored_folding(trace, options) is None:
            annotate(trace, options)  # else the trace holds them already
        stats = trace.patterns.section["statistics"]
    else:  # the view or its statistics: no group entries to build
        folding = saved_or_folded(trace, options)
        stats = statistics(folding)
    if not args.quiet:
        print(f"patterns: {summary_line(stats)}", file=sys.stderr)
    if args.json is not None:
        try:
            save(trace, args.json)
        except OSError as error:
            print(printable(f"patterns: error: cannot write {args.json}: {error}"), file=sys.stderr)
            return 1
        return 0
    if args.stats:
        print_statistics(stats, sys.stdout)
        return 0
    render_grouped(folding, sys.stdout, max_rows=args.max_rows, depth=args.depth, threads=threads)
    return 0
