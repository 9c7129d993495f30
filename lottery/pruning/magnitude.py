"""Magnitude pruning: keep the largest |θ|.

After training, the criterion of iterative magnitude pruning: Frankle & Carbin, "The Lottery Ticket Hypothesis:
Finding Sparse, Trainable Neural Networks", ICLR 2019 (rewinding to an early iteration: Frankle et al., "Linear
Mode Connectivity and the Lottery Ticket Hypothesis", ICML 2020). At initialization, a baseline of Frankle,
Dziugaite, Roy & Carbin, "Pruning Neural Networks at Initialization: Why are We Missing the Mark?", ICLR 2021.
Counts, ties and the differences from open_lth: docs/algorithms.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from lottery.pruning.base import Pruner


class Magnitude(Pruner):
    """Score = |θ|: after training this is IMP's criterion, at initialization the classic baseline.

    Frankle & Carbin (ICLR 2019) after training; Frankle et al. (ICLR 2021) and Tanaka et al. (NeurIPS 2020)
    at initialization.
    """

    name = "magnitude"

    @torch.no_grad()
    def scores(self, model: nn.Module, batches: Iterable[Any] | None = None) -> dict[str, Tensor]:
        """|θ| of each prunable weight."""
        return {n: p.detach().abs() for n, p in self.prunable_parameters(model).items()}
