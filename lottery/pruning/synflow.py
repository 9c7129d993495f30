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
from lottery.pruning.batches import check_inputs
from lottery.sparsity.selection import Survivors

EXAMPLE_HINT = ("set model.example_input_array (a tensor for forward(x), a tuple of tensors for forward(*inputs), "
                "a dict for forward(**inputs))")


def all_ones(example: Any, device: torch.device, source: str) -> Any:
    """`example` with every tensor replaced by ones of its shape with batch size 1: float64, or its integer dtype."""
    if isinstance(example, Tensor):
        shape = (1, *example.shape[1:]) if example.dim() else ()
        if example.is_floating_point():
            return torch.ones(shape, dtype=torch.float64, device=device)
        if example.dtype == torch.bool or example.is_complex():
            raise ValueError(f"SynFlow cannot choose an all-ones stand-in for a {example.dtype} input of {source} "
                             "(for a mask, True may mean keep or drop): give that input as an integer or float "
                             "tensor, or leave it out of model.example_input_array")
        return torch.ones(shape, dtype=example.dtype, device=device)  # integer inputs: token id 1
    if isinstance(example, Mapping):
        return {k: all_ones(v, device, source) for k, v in example.items()}
    if isinstance(example, tuple) and hasattr(example, "_fields"):  # a namedtuple
        return type(example)(*(all_ones(v, device, source) for v in example))
    if isinstance(example, (tuple, list)):
        return type(example)(all_ones(v, device, source) for v in example)
    return example  # not a tensor (None, a flag): passed as given


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
    The input is one all-ones example that follows the structure of `example_input_array` (a tensor:
    forward(x); a tuple or list: forward(*inputs); a dict: forward(**inputs)), or the inputs x of one
    (x, y, ...) batch of `batches`: each tensor becomes ones of its shape with batch size 1, float64 for a
    floating tensor and of its own dtype for an integer one (token id 1); bool inputs are refused.
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

    @staticmethod
    def example_inputs(model: nn.Module, batches: Iterable[Any] | None) -> tuple[tuple[Any, ...], dict[str, Any], str]:
        """The forward arguments (args, kwargs) whose structure the all-ones input follows, and where they came from."""
        example = getattr(model, "example_input_array", None)
        source = "model.example_input_array"
        if example is None:
            if batches is None:
                raise ValueError("SynFlow needs the input shape: set model.example_input_array or pass batches=")
            batch, source = next(iter(batches)), "one batch's inputs"
            if isinstance(batch, Tensor):
                example = batch
            elif isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
                example = batch[0]  # (inputs, labels, ...)
            else:
                raise ValueError(f"SynFlow cannot tell the inputs of a {type(batch).__name__} batch (it reads x of "
                                 f"(x, y) batches): {EXAMPLE_HINT}")
        if isinstance(example, Mapping):
            return (), dict(example), source
        if isinstance(example, (tuple, list)):
            return tuple(example), {}, source
        return (example,), {}, source

    def scores(self, model: nn.Module, batches: Iterable[Any] | None = None) -> dict[str, Tensor]:
        """Synaptic-flow scores of the prunable weights."""
        args, kwargs, source = self.example_inputs(model, batches)
        check_inputs(model, args, kwargs, f"SynFlow feeds forward an all-ones stand-in of {source}, and forward of "
                                          "{module} cannot take it ({reason}): " + EXAMPLE_HINT)
        prunable = self.prunable_parameters(model)
        flow = self._stand_ins(model, prunable)
        leaves = [flow[n] for n in prunable]
        args, kwargs = all_ones((args, kwargs), leaves[0].device, source)
        modes = {m: m.training for m in model.modules()}
        model.eval()
        try:
            with torch.enable_grad():
                out = functional_call(model, flow, args, kwargs, strict=False)
                if not isinstance(out, Tensor):
                    raise ValueError(f"SynFlow sums the output of forward, which must be one tensor; "
                                     f"{type(model).__name__} returned a {type(out).__name__}")
                grads = torch.autograd.grad(out.sum(), leaves)
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
