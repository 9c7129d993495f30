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


@dataclass(frozen=True)
class Cubic:
    """Gradual magnitude pruning's schedule (Zhu & Gupta 2017, "To prune, or not to prune"): after update k of n the sparsity is
    s_f + (s_i − s_f)(1 − k/n)³, so round(size · d_k) survive with d_k = 1 − s_k; from update n on, the final
    density. Here k counts pruning updates (t = t0 + kΔt in the paper)."""

    final: float  # density d_f after the last update
    updates: int  # n
    initial: float = 1.0  # density d_i at update 0

    def density(self, step: int) -> float:
        """d_k, the density after update `step`."""
        k = min(max(step, 0), self.updates)
        s_i, s_f = 1.0 - self.initial, 1.0 - self.final
        return 1.0 - (s_f + (s_i - s_f) * (1.0 - k / self.updates) ** 3)

    def kept(self, size: int, step: int) -> int:
        """round(size · d_k)."""
        return int(math.floor(size * self.density(step) + 0.5))


@dataclass(frozen=True)
class Toward:
    """Reach exactly `count` survivors after `steps` steps, geometrically from all of them: round(size·(c/size)^(k/n))
    after step k < n, then `count` (a layer's exact share of a distribution such as ERK)."""

    count: int
    steps: int

    def kept(self, size: int, step: int) -> int:
        """round(size · (count/size)^(step/steps)), exactly `count` from step `steps` on."""
        if step >= self.steps:
            return self.count
        if self.count == 0:
            return int(math.floor(size * (1.0 - step / self.steps) + 0.5))  # geometric toward 0 is undefined
        return int(math.floor(size * (self.count / size) ** (step / self.steps) + 0.5))


class UpdateFraction(Protocol):
    """The fraction of a layer's active weights a dynamic sparse training update replaces at `step` of `total`."""

    def __call__(self, step: int, total: int) -> float:
        ...


@dataclass(frozen=True)
class Constant:
    """The same fraction at every update (SET, Mocanu et al. 2018: ζ = 0.3)."""

    fraction: float = 0.3

    def __call__(self, step: int, total: int) -> float:
        """ζ."""
        return self.fraction


@dataclass(frozen=True)
class CosineDecay:
    """RigL's drop fraction (Evci et al., ICML 2020, "Rigging the Lottery"): f(t) = (α/2)(1 + cos(π t / T_end)), 0 from T_end on, with
    T_end = `stop` · the run's total steps."""

    alpha: float = 0.3
    stop: float = 0.75

    def __call__(self, step: int, total: int) -> float:
        """(α/2)(1 + cos(π t / T_end)) before T_end, else 0."""
        end = self.stop * total
        if step >= end:
            return 0.0
        return self.alpha / 2.0 * (1.0 + math.cos(math.pi * step / end))
