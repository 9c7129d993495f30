"""SynFlow (Tanaka et al., NeurIPS 2020): data-free iterative synaptic flow pruning."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from lottery.pruning.base import Pruner
from lottery.pruning.batches import scoring_copy


class SynFlow(Pruner):
    """Score |θ ⊙ ∂R/∂θ| with R = 1ᵀ∏|θ^[l]|1, computed on a float64 copy in eval mode.

    Every parameter is replaced by its absolute value and every bias, batch-norm shift and running mean is
    zeroed, so R counts weights only and the per-layer conservation law (each layer's scores sum to R)
    holds for any feed-forward network, biases and batch norm included (REFERENCE.md: with |bias| kept, the
    bias flow empties early layers at extreme compression). float64 keeps R finite on deep ResNets. The
    input is one all-ones example shaped like `example_input_array`, or like one example of `batches`.
    """

    name = "synflow"
    default_rounds = 100

    def scores(self, model: nn.Module, batches: Iterable[Any] | None = None) -> dict[str, Tensor]:
        """Synaptic-flow scores of the prunable weights."""
        example = getattr(model, "example_input_array", None)
        if not isinstance(example, Tensor):
            if batches is None:
                raise ValueError("SynFlow needs the input shape: set model.example_input_array or pass batches=")
            example = next(iter(batches))[0]
        net = scoring_copy(model, torch.float64).eval()
        with torch.no_grad():
            for name, p in net.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                else:
                    p.abs_()
            for name, b in net.named_buffers():
                if name.endswith("running_mean"):
                    b.zero_()
        device = next(net.parameters()).device
        ones = torch.ones((1, *example.shape[1:]), dtype=torch.float64, device=device)
        r = net(ones).sum()
        r.backward()
        # in place on the throw-away copy: |θ| ∂R/∂θ is already non-negative, abs_ only clears -0.0
        return {n: p.grad.mul_(p.detach()).abs_() for n, p in self.prunable_parameters(net).items()}
