"""Random pruning: the baseline every method has to beat.

The trivial baseline of pruning at initialization in Frankle, Dziugaite, Roy & Carbin, "Pruning Neural Networks at
Initialization: Why are We Missing the Mark?", ICLR 2021, and in Tanaka et al., NeurIPS 2020. Counts and ties:
docs/algorithms.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from lottery.pruning.base import Pruner


class Random(Pruner):
    """Uniform random scores, drawn on the CPU so a seed gives the same mask on every device.

    With `seed=None` the draw comes from torch's global generator (seed it with `pl.seed_everything`).
    Synaptic-Flow draws N(0, 1) scores instead; only their ranking matters, so the masks have the same
    distribution.
    """

    name = "random"

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def scores(self, model: nn.Module, batches: Iterable[Any] | None = None) -> dict[str, Tensor]:
        """Independent U(0, 1) scores for each prunable weight."""
        gen = None if self.seed is None else torch.Generator().manual_seed(self.seed)
        return {n: torch.rand(p.shape, generator=gen).to(p.device) for n, p in self.prunable_parameters(model).items()}

    def __repr__(self) -> str:
        return f"Random(seed={self.seed})"
