"""SynFlow: data-free iterative synaptic-flow pruning.

Tanaka, Kunin, Yamins & Ganguli, "Pruning neural networks without any data by iteratively conserving synaptic
flow", NeurIPS 2020 (arXiv:2006.05467), Algorithm 1. Where this implementation's conventions differ from the
authors' code (Synaptic-Flow), see docs/algorithms.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from lottery.pruning.base import Pruner, zero_positions
from lottery.sparsity.selection import Survivors


class SynFlow(Pruner):
    """Score |θ ⊙ ∂R/∂θ| with R = 1ᵀ∏|θ^[l]|1, computed in float64 in eval mode.

    The synaptic saliency S(θ) = ∂R/∂θ ⊙ θ of the Synaptic Flow objective R (Tanaka et al., NeurIPS 2020,
    Algorithm 1: eval mode, n scoring steps to density d^(k/n); 100 steps by default here).

    Every parameter enters the flow as its absolute value, except that every bias (batch-norm shifts
    included) and every running mean is zeroed. R then counts paths through weights only, and the
    conservation law (the scores of each layer that every input-output path crosses sum to R) holds exactly
    for any network, biases and batch norm included. The authors' code (Synaptic-Flow) keeps |bias| instead.
    The reason once given for zeroing, that the |bias| flow empties early layers at extreme compression, did
    not reproduce at initialization when checked against that code on identical weights; the convention is
    kept for the exact R and conservation law, not for a measured effect on layer collapse (see
    docs/algorithms.md). float64 keeps R finite on deep ResNets, where float32 (the authors' code) overflows.
    The input is one all-ones example shaped like `example_input_array`, or like one example of `batches`.
    The user's model only lends its structure: it runs once on float64 stand-ins for its tensors, in eval
    mode, and comes back with its own values, mode, gradients and `requires_grad` (its forward hooks, if
    any, see that pass, as they would see a copy's).
    """

    name = "synflow"
    default_rounds = 100

    def __init__(self) -> None:
        self._kept: dict[str, Tensor] | None = None  # float64 stand-ins reused by the steps of one session
        self._survivors: Survivors | None = None  # the loop's tracked survivors, during a session

    @contextmanager
    def session(self, survivors: Survivors | None = None) -> Iterator[None]:
        """Keep the float64 stand-ins between the steps of a loop, in which the model changes only by pruning.

        A fresh 120 MB of float64 per step (VGG-16) costs more in page faults than the conversion itself;
        the prunable weights' stand-ins are filled once and then only zeroed where a step prunes
        (`zero_pruned`), so the loop leaves the model's own weights alone. Parameters whose survivors the
        loop tracks are scored at their survivors only: two gathers instead of two sweeps of the whole tensor.
        """
        self._kept, self._survivors = {}, survivors
        try:
            yield
        finally:
            self._kept, self._survivors = None, None

    @torch.no_grad()
    def zero_pruned(self, model: nn.Module, masks: Mapping[str, Tensor], dropped: Mapping[str, Tensor]) -> None:
        """Inside a session: zero the pruned weights' stand-ins, not the model's weights."""
        if not self._kept:  # no session, or nothing scored in it yet
            super().zero_pruned(model, masks, dropped)
            return
        for n, m in masks.items():
            zero_positions(self._kept[n], m, dropped.get(n))

    def _stand_ins(self, model: nn.Module, prunable: Iterable[str]) -> dict[str, Tensor]:
        """float64 |θ| for weights, zeros for biases and running means, float64 copies of other float buffers."""
        kept = {} if self._kept is None else self._kept
        flow = {}
        prunable = set(prunable)
        with torch.no_grad():
            tensors = [(n, p, n.endswith("bias"), True) for n, p in model.named_parameters()]
            tensors += [(n, b, n.endswith("running_mean"), False) for n, b in model.named_buffers() if b.is_floating_point()]
            for n, t, zero, absolute in tensors:
                buf = flow[n] = kept.get(n)  # a session's buffer from an earlier step
                if buf is not None and buf.shape == t.shape and buf.device == t.device:
                    if n in prunable:
                        continue  # kept up to date by zero_pruned
                else:
                    buf = flow[n] = kept[n] = torch.empty_like(t, dtype=torch.float64, requires_grad=n in prunable)
                if zero:
                    buf.zero_()
                elif absolute:
                    buf.copy_(t).abs_()
                else:
                    buf.copy_(t)
        return flow

    def scores(self, model: nn.Module, batches: Iterable[Any] | None = None) -> dict[str, Tensor]:
        """Synaptic-flow scores of the prunable weights."""
        example = getattr(model, "example_input_array", None)
        if not isinstance(example, Tensor):
            if batches is None:
                raise ValueError("SynFlow needs the input shape: set model.example_input_array or pass batches=")
            example = next(iter(batches))[0]
        prunable = self.prunable_parameters(model)
        flow = self._stand_ins(model, prunable)
        leaves = [flow[n] for n in prunable]
        ones = torch.ones((1, *example.shape[1:]), dtype=torch.float64, device=leaves[0].device)
        modes = {m: m.training for m in model.modules()}
        model.eval()
        try:
            with torch.enable_grad():
                r = functional_call(model, flow, (ones,), strict=False).sum()
                grads = torch.autograd.grad(r, leaves)
        finally:
            for m, training in modes.items():
                m.training = training
        # |θ| ∂R/∂θ is already non-negative here; abs_ only clears -0.0 (and keeps the definition for any net)
        tracked = {} if self._survivors is None else self._survivors.positions
        scores = {}
        for n, g, leaf in zip(prunable, grads, leaves):
            idx = tracked.get(n)
            if idx is None:
                scores[n] = g.mul_(leaf.detach()).abs_()
            else:  # at the survivors only, in their order (select.Survivors)
                scores[n] = g.view(-1).index_select(0, idx).mul_(leaf.detach().view(-1).index_select(0, idx)).abs_()
        return scores
