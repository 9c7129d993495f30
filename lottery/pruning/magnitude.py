"""Magnitude pruning (Frankle & Carbin 2019): keep the largest |θ|."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from lottery.pruning.base import Pruner


class Magnitude(Pruner):
    """Score = |θ|: after training this is IMP's criterion, at initialization the classic baseline."""

    name = "magnitude"

    @torch.no_grad()
    def scores(self, model: nn.Module, batches: Iterable[Any] | None = None) -> dict[str, Tensor]:
        """|θ| of each prunable weight."""
        return {n: p.detach().abs() for n, p in self.prunable_parameters(model).items()}
