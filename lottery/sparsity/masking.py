"""Keep pruned weights at exactly zero without hooks on forward and without renaming parameters."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class Masker:
    """Holds the pruned positions of a model's parameters and zeroes them (weights or gradients) in place.

    Only parameters with at least one pruned weight are touched, so a dense round costs nothing. The masks
    are kept as 0/1 tensors in each parameter's dtype: one fused multiply (`_foreach_mul_`) per step is
    about 15x faster on CPU than `masked_fill_` with a bool mask, at the price of one mask-sized copy of
    the pruned weights (torch.nn.utils.prune keeps three).
    """

    def __init__(self, model: nn.Module, masks: Mapping[str, Tensor]) -> None:
        # a parametrized weight is masked at its original (a parameter); a tied one under any of its names
        params = dict(model.named_parameters(remove_duplicate=False))
        self.params: list[nn.Parameter] = []
        self.keep: list[Tensor] = []
        for name, keep in masks.items():
            p = params[name]
            if not bool(keep.all()):
                self.params.append(p)
                self.keep.append(keep.to(device=p.device, dtype=p.dtype))

    @torch.no_grad()
    def apply(self) -> None:
        """Set every pruned weight to zero."""
        if self.params:
            torch._foreach_mul_(self.params, self.keep)

    @torch.no_grad()
    def zero_grads(self) -> None:
        """Zero the gradients of pruned weights, so optimizer state never builds up on them."""
        grads = [p.grad for p in self.params]
        if all(g is not None and not g.is_sparse for g in grads):  # not `None in grads`: that compares tensors
            if grads:
                torch._foreach_mul_(grads, self.keep)
            return
        for g, k in zip(grads, self.keep):  # some parameters took no part in this step
            # a survivor-sized (sparse) gradient of lottery.sparsity.execution stores no pruned entry
            if g is not None and not g.is_sparse:
                g.mul_(k)

    @torch.no_grad()
    def mask_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero pruned entries of per-weight optimizer state (momentum, Adam moments)."""
        for p, keep in zip(self.params, self.keep):
            for value in optimizer.state.get(p, {}).values():
                if isinstance(value, Tensor) and value.shape == p.shape:
                    value.mul_(keep.to(value.dtype))


# Optimizers whose update of a weight with zero gradient and zero state is exactly zero (weight decay and
# momentum included). With gradients masked before the step, pruned weights stay zero under them without
# re-masking after the step; any other optimizer is re-masked after every step.
ZERO_PRESERVING = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop, torch.optim.Adagrad)


def preserves_zeros(optimizer: torch.optim.Optimizer) -> bool:
    """True when zeroed gradients and state are enough to keep pruned weights at zero under `optimizer`."""
    return type(optimizer) in ZERO_PRESERVING


@contextmanager
def masked(model: nn.Module, masks: Mapping[str, Tensor]) -> Iterator[nn.Module]:
    """Temporarily zero the pruned weights of `model`; the original values come back on exit."""
    params = dict(model.named_parameters(remove_duplicate=False))
    saved = {n: params[n].detach().clone() for n, m in masks.items() if not bool(m.all())}
    try:
        with torch.no_grad():
            for n in saved:
                params[n].mul_(masks[n].to(params[n].device))
        yield model
    finally:
        with torch.no_grad():
            for n, value in saved.items():
                params[n].copy_(value)
