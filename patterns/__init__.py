"""Pattern folding: repeated call sequences (loops within loops) folded into groups.

``annotate(trace)`` folds a trace and attaches the ``pattern.*`` annotations;
``render_grouped(folding, out)`` prints the grouped view; ``python -m patterns
trace.json`` does both from the command line. See patterns/fold.py for the rules.
"""

from patterns.annotate import annotate
from patterns.engine import Folding, fold_trace
from patterns.fold import FoldOptions
from patterns.render import render_grouped

__all__ = ["FoldOptions", "Folding", "annotate", "fold_trace", "render_grouped"]
