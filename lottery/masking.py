"""Keep pruned weights at exactly zero without hooks on forward and without renaming parameters."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class Masker:
    """Holds the pruned positions of a model's parameters and zeroes them (weights or gradients) in place.

    Only parameters with at least one pruned weight are touched, so a dense round costs nothing.
    """

    def __init__(self, model: nn.Module, masks: Mapping[str, Tensor]) -> None:
        params = dict(model.named_parameters())
        self.params: list[nn.Parameter] = []
        self.pruned: list[Tensor] = []
        for name, keep in masks.items():
            p = params[name]
            if not bool(keep.all()):
                self.params.append(p)
                self.pruned.append(keep.logical_not().to(p.device))

    @torch.no_grad()
    def apply(self) -> None:
        """Set every pruned weight to zero."""
        for p, pruned in zip(self.params, self.pruned):
            p.masked_fill_(pruned, 0)

    @torch.no_grad()
    def zero_grads(self) -> None:
        """Zero the gradients of pruned weights, so optimizer state never builds up on them."""
        for p, pruned in zip(self.params, self.pruned):
            if p.grad is not None:
                p.grad.masked_fill_(pruned, 0)

    @torch.no_grad()
    def mask_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero pruned entries of per-weight optimizer state (momentum, Adam moments)."""
        for p, pruned in zip(self.params, self.pruned):
            for value in optimizer.state.get(p, {}).values():
                if isinstance(value, Tensor) and value.shape == p.shape:
                    value.masked_fill_(pruned, 0)


@contextmanager
def masked(model: nn.Module, masks: Mapping[str, Tensor]) -> Iterator[nn.Module]:
    """Temporarily zero the pruned weights of `model`; the original values come back on exit."""
    params = dict(model.named_parameters())
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
