"""SNIP (Lee et al., ICLR 2019) and Iterative SNIP / FORCE (de Jorge et al., ICLR 2021): gradient saliencies."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from lottery.pruning.base import Pruner
from lottery.pruning.batches import model_device, scoring_copy, take


def mean_gradients(net: nn.Module, batches: list[tuple[Tensor, Tensor]]) -> None:
    """Leave in `.grad` the gradient of the cross-entropy averaged over every example of `batches`."""
    total = sum(len(y) for _, y in batches)
    for x, y in batches:
        loss = nn.functional.cross_entropy(net(x), y, reduction="sum") / total
        loss.backward()


class SNIP(Pruner):
    """Connection sensitivity |θ ⊙ ∂L/∂θ| from labelled data at initialization, one shot.

    The network is scored in train mode (batch statistics), as the reference code, on a copy of the model.
    """

    name = "snip"
    needs_data = True
    default_rounds = 1

    def __init__(self, batches: int = 1, per_class: int | None = None) -> None:
        self.batches, self.per_class = batches, per_class

    def scores(self, model: nn.Module, batches: Iterable[Any] | None = None) -> dict[str, Tensor]:
        """|θ ⊙ g| with g the mean loss gradient over the batches."""
        data = take(batches, self.batches, self.per_class, model_device(model))
        net = scoring_copy(model).train()
        mean_gradients(net, data)
        return {n: (p.grad * p).detach().abs() for n, p in self.prunable_parameters(net).items()}


class IterativeSNIP(SNIP):
    """Iterative SNIP: SNIP saliency of the currently masked network at each step; pruned weights stay pruned."""

    name = "iter_snip"
    default_rounds = 60
    fresh_batches = True  # as the reference code, every step averages over batches drawn anew


class FORCE(SNIP):
    """FORCE: |θ₀ ⊙ ∇L(θ₀ ⊙ m)| for all weights, so a pruned weight may come back at a later step.

    The loop hands FORCE the unmasked model and the current masks (`self.masks`); the gradient is taken
    at the masked point and multiplied by the original values.
    """

    name = "force"
    default_rounds = 60
    revives = True
    fresh_batches = True

    def scores(self, model: nn.Module, batches: Iterable[Any] | None = None) -> dict[str, Tensor]:
        """|θ₀ ⊙ ∇L(θ₀ ⊙ m)|."""
        data = take(batches, self.batches, self.per_class, model_device(model))
        net = scoring_copy(model).train()
        masks = getattr(self, "masks", None) or {}
        originals = {n: p.detach().clone() for n, p in self.prunable_parameters(net).items()}
        with torch.no_grad():
            for n, p in self.prunable_parameters(net).items():
                if n in masks:
                    p.mul_(masks[n].to(p.device))
        mean_gradients(net, data)
        return {n: (p.grad * originals[n]).detach().abs() for n, p in self.prunable_parameters(net).items()}
