"""Density schedules: how many weights of a group survive after each pruning step.

A schedule is an object with `kept(size, step)`; a new one is a new class here, passed to `Plan` in place of a fraction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol


class DensitySchedule(Protocol):
    """How many of `size` weights survive `step` pruning steps."""

    def kept(self, size: int, step: int) -> int:
        """Survivors of a group of `size` weights after `step` steps (step 0: all of them)."""
        ...


def per_round_fraction(prune_fraction: float | None, density: float | None, rounds: int) -> float:
    """Fraction of survivors removed per round: `prune_fraction`, or 1 - density^(1/rounds)."""
    if density is not None:
        return 1.0 - density ** (1.0 / rounds)
    return 0.2 if prune_fraction is None else prune_fraction


def kept_count(size: int, prune_fraction: float, round: int) -> int:
    """Weights of a group of `size` that survive `round` rounds at `prune_fraction` each: round(size·(1-p)^r).

    Counting from the original size (not from last round's survivors) keeps the density within half a
    weight of (1 - p)^r however many rounds are run.
    """
    return int(math.floor(size * (1.0 - prune_fraction) ** round + 0.5))


@dataclass(frozen=True)
class Geometric:
    """Remove `prune_fraction` of the survivors at every step: round(size·(1-p)^step) kept.

    IMP's rounds (Frankle & Carbin, ICLR 2019: p per round) and the exponential schedule of pruning at
    initialization (Tanaka et al., NeurIPS 2020, SynFlow; de Jorge et al., ICLR 2021: density d^(k/n) after
    step k of n, i.e. p = 1 - d^(1/n)).
    """

    prune_fraction: float

    def kept(self, size: int, step: int) -> int:
        """round(size·(1-p)^step)."""
        return kept_count(size, self.prune_fraction, step)
