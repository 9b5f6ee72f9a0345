"""Pattern groups over one sequence of sibling steps.

A ``LocalGroup`` describes a group by sibling positions (the index of a step
among its parent's children, or among a thread's root calls). Every call with
the same shape has the same children, so one ``LocalGroup`` serves all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Variant:
    """One distinct iteration shape of a group."""

    iterations: np.ndarray  # int64: indices of the iterations of this shape, ascending
    nested: list[LocalGroup]  # groups inside the first of those iterations
    steps: int  # sibling steps in one such iteration
    calls: int  # calls in the representative iteration, everything below its steps included

    @property
    def representative(self) -> int:
        """The iteration whose steps ``nested`` refers to."""
        return int(self.iterations[0])


@dataclass
class LocalGroup:
    """Consecutive iterations of a repeated block of sibling steps."""

    bounds: np.ndarray  # int64, repetitions + 1: iteration j is steps [bounds[j], bounds[j+1])
    variant_of: np.ndarray  # int32 per iteration: index into variants
    variants: list[Variant]  # variants[0] is the template: the shape most iterations have
    near: bool  # iterations differ in their steps (a near-repeat), not only below them

    @property
    def start(self) -> int:
        return int(self.bounds[0])

    @property
    def stop(self) -> int:
        return int(self.bounds[-1])

    @property
    def repetitions(self) -> int:
        return len(self.bounds) - 1

    def nested_of(self, iteration: int) -> tuple[list[LocalGroup], int]:
        """Groups inside ``iteration``, and the shift to add to their positions."""
        variant = self.variants[int(self.variant_of[iteration])]
        shift = int(self.bounds[iteration] - self.bounds[variant.representative])
        return variant.nested, shift
