"""Batches for data-driven pruners: the first few, or N examples of every class; and the loss they score.

Without a `loss_fn` a batch is `(inputs, labels, ...)` and the loss is the cross-entropy of `forward(inputs)`;
with a `loss_fn(module, batch) -> loss`, batches of any structure are passed to it as given.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from lightning_fabric.utilities.apply_func import move_data_to_device
from torch import Tensor, nn

LossFn = Callable[[nn.Module, Any], Tensor]  # (module, batch) -> scalar loss, the mean over the batch's examples

USE_LOSS_FN = ("for other batches pass loss_fn=(module, batch) -> loss "
               "(inside LotteryTicket the module's training_step is used)")


def to_device(batch: Any, device: torch.device | None) -> Any:
    """`batch` with every tensor in its tuples, lists, dicts and dataclasses moved to `device` (as given when None)."""
    return batch if device is None else move_data_to_device(batch, device)


def labelled(batch: Any) -> bool:
    """Whether `batch` is an `(inputs, labels, ...)` tuple or list of tensors."""
    return isinstance(batch, (tuple, list)) and len(batch) >= 2 and all(isinstance(t, Tensor) for t in batch[:2])


def take(batches: Iterable[Any] | None, count: int | None = None, per_class: int | None = None,
         device: torch.device | None = None, *, as_given: bool = False, who: str = "this pruner") -> list[Any]:
    """The first `count` batches, or exactly `per_class` examples of each class seen in one batch, on `device`.

    Batches are `(inputs, labels)` tuples, unless `as_given` (a loss_fn reads them): then each batch keeps its
    structure, its tensors moved to `device`. `per_class` always needs `(inputs, labels)` batches.
    """
    if batches is None:
        raise ValueError("this pruner scores with data: pass batches= (an iterable of (inputs, labels) batches, "
                         "or of any batches together with loss_fn=)")
    out: list[Any] = []
    if per_class is None:
        for i, batch in enumerate(batches):
            if count is not None and i >= count:
                break
            if as_given:
                out.append(to_device(batch, device))
                continue
            if not labelled(batch):
                raise ValueError(f"{who} scores on (inputs, labels) batches with cross-entropy of forward(inputs); "
                                 f"{USE_LOSS_FN}. Got a batch of type {type(batch).__name__}.")
            out.append((batch[0].to(device), batch[1].to(device)))
        if not out:
            raise ValueError("the batches given to the pruner are empty")
        return out
    xs: dict[int, list[Tensor]] = {}
    for batch in batches:  # until every class seen has `per_class` examples and a batch brings no new class
        if not labelled(batch):
            raise ValueError("per_class= needs (inputs, labels) batches; pass batches= instead "
                             f"(got a batch of type {type(batch).__name__})")
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


def check_inputs(module: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any], message: str) -> None:
    """Raise ValueError(`message`, with the reason) when `module.forward` cannot be called with these inputs."""
    try:
        signature = inspect.signature(module.forward)
    except (TypeError, ValueError):  # no signature to check (a builtin): leave it to the call
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as err:
        raise ValueError(message.format(module=type(module).__name__, reason=err)) from None


def cross_entropy_inputs(net: nn.Module, x: Tensor, who: str) -> None:
    """Refuse clearly, naming loss_fn=, a module whose forward cannot take the one input `x` of the default loss."""
    check_inputs(net, (x,), {}, f"{who} scores on (inputs, labels) batches with cross-entropy of forward(inputs), "
                                "and forward of {module} cannot take one input ({reason}); " + USE_LOSS_FN + ".")


def user_loss(loss_fn: LossFn, net: nn.Module, batch: Any) -> Tensor:
    """`loss_fn(net, batch)`, a scalar tensor (or the 'loss' entry of a mapping, as training_step may return)."""
    loss = loss_fn(net, batch)
    if isinstance(loss, Mapping) and "loss" in loss:
        loss = loss["loss"]
    if not isinstance(loss, Tensor) or loss.numel() != 1 or not loss.is_floating_point():
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(f"loss_fn must return a scalar loss tensor (the mean over the batch's examples), got {shape}")
    return loss.reshape(())


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
