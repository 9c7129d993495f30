"""SNIP, Iterative SNIP and FORCE: gradient saliencies |θ ⊙ ∂L/∂θ| from labelled data.

Lee, Ajanthan & Torr, "SNIP: Single-shot Network Pruning based on Connection Sensitivity", ICLR 2019.
de Jorge, Sanyal, Behl, Torr, Rogez & Dokania, "Progressive Skeletonization: Trimming more fat from a network at
initialization", ICLR 2021 (arXiv:2006.09081): Iterative SNIP and FORCE. Where this implementation's
conventions differ from the authors' code (naver/force) and from Synaptic-Flow's SNIP, see docs/algorithms.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from lottery.pruning.base import Pruner
from lottery.pruning.batches import LossFn, cross_entropy_inputs, model_device, scoring_copy, take, user_loss


def mean_gradients(net: nn.Module, batches: list[Any], loss_fn: LossFn | None = None, who: str = "SNIP") -> None:
    """Leave in `.grad` the gradient of the mean loss: over every example, or over the batches of a loss_fn.

    Without `loss_fn`: the cross-entropy of `net(x)` averaged over every example of the `(x, y)` batches. With
    one: the mean of `loss_fn(net, batch)` over the batches, each batch weighted equally (its loss is already a
    mean over its examples; equal to the mean over examples when the batches are of equal size).
    """
    if loss_fn is not None:
        for batch in batches:
            (user_loss(loss_fn, net, batch) / len(batches)).backward()
        return
    cross_entropy_inputs(net, batches[0][0], who)
    total = sum(len(y) for _, y in batches)
    for x, y in batches:
        loss = nn.functional.cross_entropy(net(x), y, reduction="sum") / total
        loss.backward()


class SNIP(Pruner):
    """Connection sensitivity |θ ⊙ ∂L/∂θ| from labelled data at initialization, one shot.

    Lee et al. (ICLR 2019) define it as |∂L(c ⊙ θ)/∂c| at c = 1, normalized by its sum over all weights;
    that normalization does not change the ranking and is left out. L is the cross-entropy averaged over
    every example scored, or with ``loss_fn=(module, batch) -> loss`` the mean of its batch losses (each batch
    weighted equally; batches of any structure). The network is scored in train mode (batch statistics), on a
    copy of the model, as the GraSP authors' code and naver/force do; Synaptic-Flow's SNIP defaults to eval
    mode, which changes the scores of a batch-norm network completely (docs/algorithms.md).
    """

    name = "snip"
    needs_data = True
    reads_loss_fn = True
    default_rounds = 1

    def __init__(self, batches: int = 1, per_class: int | None = None) -> None:
        self.batches, self.per_class = batches, per_class

    def scores(self, model: nn.Module, batches: Iterable[Any] | None = None, *,
               loss_fn: LossFn | None = None) -> dict[str, Tensor]:
        """|θ ⊙ g| with g the mean loss gradient over the batches."""
        net, data = self._prepare(model, batches, loss_fn)
        mean_gradients(net, data, loss_fn, type(self).__name__)
        return {n: (p.grad * p).detach().abs() for n, p in self.prunable_parameters(net).items()}

    def _prepare(self, model: nn.Module, batches: Iterable[Any] | None,
                 loss_fn: LossFn | None) -> tuple[nn.Module, list[Any]]:
        """The scoring copy in train mode and the batches on the model's device (as given for a loss_fn)."""
        data = take(batches, self.batches, self.per_class, model_device(model), as_given=loss_fn is not None,
                    who=type(self).__name__)
        return scoring_copy(model).train(), data


class IterativeSNIP(SNIP):
    """Iterative SNIP: SNIP saliency of the currently masked network at each step; pruned weights stay pruned.

    de Jorge et al. (ICLR 2021): exponential schedule, density d^(k/T) after step k of T (60 by default, as
    in the authors' example command), each step on batches drawn anew. The authors' code (naver/force) takes
    `nll_loss` of raw logits and keeps ties at its threshold; this uses the cross-entropy, as the paper does,
    and exact counts (docs/algorithms.md).
    """

    name = "iter_snip"
    default_rounds = 60
    fresh_batches = True  # as the reference code, every step averages over batches drawn anew


class FORCE(SNIP):
    """FORCE: |θ₀ ⊙ ∇L(θ₀ ⊙ m)| for all weights, so a pruned weight may come back at a later step.

    de Jorge et al. (ICLR 2021). The loop hands FORCE the unmasked model and the current masks
    (`reads_masks`); the gradient is taken at the masked point and multiplied by the original values.
    Schedule, loss and count conventions as `IterativeSNIP` (docs/algorithms.md).
    """

    name = "force"
    default_rounds = 60
    revives = True
    reads_masks = True
    fresh_batches = True

    def scores(self, model: nn.Module, batches: Iterable[Any] | None = None,
               masks: Mapping[str, Tensor] | None = None, *, loss_fn: LossFn | None = None) -> dict[str, Tensor]:
        """|θ₀ ⊙ ∇L(θ₀ ⊙ m)| (with no masks: SNIP's saliency of the unmasked network)."""
        net, data = self._prepare(model, batches, loss_fn)
        masks = masks or {}
        originals = {n: p.detach().clone() for n, p in self.prunable_parameters(net).items()}
        with torch.no_grad():
            for n, p in self.prunable_parameters(net).items():
                if n in masks:
                    p.mul_(masks[n].to(p.device))
        mean_gradients(net, data, loss_fn, type(self).__name__)
        return {n: (p.grad * originals[n]).detach().abs() for n, p in self.prunable_parameters(net).items()}
