"""GraSP: keep the weights whose removal least reduces the gradient flow.

Wang, Zhang & Grosse, "Picking Winning Tickets Before Training by Preserving Gradient Flow", ICLR 2020. The |S|
variant: Frankle, Dziugaite, Roy & Carbin, "Pruning Neural Networks at Initialization: Why are We Missing the
Mark?", ICLR 2021. Where this implementation's conventions differ from the authors' code, see
docs/algorithms.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from lottery.pruning.base import Pruner
from lottery.pruning.batches import LossFn, cross_entropy_inputs, model_device, scoring_copy, take, user_loss


class GraSP(Pruner):
    """S = -θ ⊙ Hg with g = ∇L and logits divided by a temperature of 200; the highest S are removed.

    The GraSP score S(-θ) of Wang et al. (ICLR 2020), H the Hessian of the cross-entropy L. Our convention is
    that higher scores survive, so `scores` returns θ ⊙ Hg (= -S): keeping its highest values is removing
    the highest S. Hg is the gradient of gᵀ∇L with g held fixed (double backprop).

    Scored in train mode on a copy of the model, at the model's real weights (the authors' code redraws the
    Linear weights of its scoring copy; the paper's formula scores the network as it is). Each of `batches`
    batches is forwarded on its own, with its own batch statistics; `per_class` gives one batch. The
    authors' code scores 10 examples per class as two class-sorted halves: to match it on a batch-norm
    network, use ``batches=2`` and pass those two halves as the first two batches (docs/algorithms.md).

    With ``loss_fn=(module, batch) -> loss``, L is the mean of its batch losses (each batch weighted equally),
    g and Hg both from it; the temperature applies only to the built-in cross-entropy, so a loss_fn that wants
    it divides its logits by it itself.
    """

    name = "grasp"
    needs_data = True
    reads_loss_fn = True
    default_rounds = 1

    def __init__(self, batches: int = 1, per_class: int | None = None, temperature: float = 200.0) -> None:
        self.batches, self.per_class, self.temperature = batches, per_class, temperature

    def hessian_gradient(self, net: nn.Module, data: list[Any], loss_fn: LossFn | None = None) -> dict[str, Tensor]:
        """Hg for the prunable weights of `net`, averaged over all examples of `data` (over batches with a loss_fn)."""
        weights = self.prunable_parameters(net)
        params = list(weights.values())
        if loss_fn is None:
            cross_entropy_inputs(net, data[0][0], type(self).__name__)
            total = sum(len(y) for _, y in data)

        def loss(batch: Any) -> Tensor:
            if loss_fn is not None:
                return user_loss(loss_fn, net, batch) / len(data)
            x, y = batch
            return nn.functional.cross_entropy(net(x) / self.temperature, y, reduction="sum") / total

        g = [torch.zeros_like(p) for p in params]
        for batch in data:
            for acc, gi in zip(g, torch.autograd.grad(loss(batch), params)):
                acc.add_(gi)
        hg = [torch.zeros_like(p) for p in params]
        for batch in data:
            grads = torch.autograd.grad(loss(batch), params, create_graph=True)
            z = sum((gi * gd).sum() for gi, gd in zip(g, grads))
            for acc, h in zip(hg, torch.autograd.grad(z, params)):
                acc.add_(h)
        return dict(zip(weights, hg))

    def scores(self, model: nn.Module, batches: Iterable[Any] | None = None, *,
               loss_fn: LossFn | None = None) -> dict[str, Tensor]:
        """θ ⊙ Hg (= -S)."""
        data = take(batches, self.batches, self.per_class, model_device(model), as_given=loss_fn is not None,
                    who=type(self).__name__)
        net = scoring_copy(model).train()
        hg = self.hessian_gradient(net, data, loss_fn)
        return {n: (p.detach() * hg[n]) for n, p in self.prunable_parameters(net).items()}


class GraSPAbs(GraSP):
    """|S| = |θ ⊙ Hg|, keeping the largest: the variant Frankle et al. (ICLR 2021) found as good or better.

    That is, the weights with the lowest-magnitude GraSP scores are pruned.
    """

    name = "grasp_abs"

    def scores(self, model: nn.Module, batches: Iterable[Any] | None = None, *,
               loss_fn: LossFn | None = None) -> dict[str, Tensor]:
        """|θ ⊙ Hg|."""
        return {n: s.abs() for n, s in super().scores(model, batches, loss_fn=loss_fn).items()}
