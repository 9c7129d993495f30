"""Labelled batches for data-driven pruners: the first few, or N examples of every class."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn


def take(batches: Iterable[Any] | None, count: int | None = None, per_class: int | None = None,
         device: torch.device | None = None) -> list[tuple[Tensor, Tensor]]:
    """The first `count` (x, y) batches, or exactly `per_class` examples of each class seen, on `device`."""
    if batches is None:
        raise ValueError("this pruner scores with labelled data: pass batches= (an iterable of (inputs, targets))")
    out: list[tuple[Tensor, Tensor]] = []
    if per_class is None:
        for i, batch in enumerate(batches):
            if count is not None and i >= count:
                break
            x, y = batch[0], batch[1]
            out.append((x.to(device), y.to(device)))
        if not out:
            raise ValueError("the batches given to the pruner are empty")
        return out
    xs: dict[int, list[Tensor]] = {}
    for batch in batches:  # until every class seen has `per_class` examples and a batch brings no new class
        new_class = False
        for xi, yi in zip(batch[0], batch[1]):
            bucket = xs.setdefault(int(yi), [])
            new_class |= not bucket
            if len(bucket) < per_class:
                bucket.append(xi)
        if not new_class and all(len(v) >= per_class for v in xs.values()):
            break
    if not xs:
        raise ValueError("the batches given to the pruner are empty")
    labels = sorted(xs)
    x = torch.stack([xi for c in labels for xi in xs[c]])
    y = torch.tensor([c for c in labels for _ in xs[c]])
    return [(x.to(device), y.to(device))]


def scoring_copy(model: nn.Module) -> nn.Module:
    """A deep copy to score on, so the user's model (values, mode, grads, hooks) is never touched.

    A LightningModule's trainer is not copied along.
    """
    memo: dict[int, Any] = {}
    for attr in ("_trainer", "_fabric", "_jit_is_scripting"):
        value = model.__dict__.get(attr)
        if value is not None and not isinstance(value, (bool, int, float, str)):
            memo[id(value)] = None
    net = copy.deepcopy(model, memo)
    for p in net.parameters():
        p.requires_grad_(True)
        p.grad = None
    return net


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU for a model without parameters)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))
