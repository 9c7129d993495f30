"""The loss data-driven pruners score with inside the callback: the module's own training_step by default."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytorch_lightning as pl
from torch import Tensor, nn

LOSSES = ("training_step", "cross_entropy")  # the names `LotteryTicket(loss_fn=...)` takes besides a callable
# A module whose training_step is the cross-entropy of forward(inputs) on (inputs, labels) batches may say so with
# this class attribute set to "cross_entropy": pruners then use their own form of it (GraSP divides the logits by
# its temperature, as in the paper). lottery's ClassificationModule does.
DECLARED = "lottery_loss"


def check_loss(loss_fn: str | Callable[..., Any]) -> None:
    """Raise unless `loss_fn` is one of LOSSES or a callable."""
    if not callable(loss_fn) and loss_fn not in LOSSES:
        raise ValueError(f"loss_fn={loss_fn!r} is not allowed; use 'training_step' (the module's own loss), "
                         "'cross_entropy' (the pruner's cross-entropy of forward(inputs) on (inputs, labels) batches) "
                         "or a callable (module, batch) -> loss")


def training_step_loss(module: nn.Module, batch: Any) -> Tensor:
    """The loss the module's training_step returns for `batch` (a tensor, or a dict's "loss")."""
    try:
        out = module.training_step(batch, 0)
    except RuntimeError as err:
        if "not attached to a `Trainer`" not in str(err):
            raise
        raise RuntimeError(f"{type(module).__name__}.training_step reads its Trainer ({err}); a pruner scores on a copy "
                           "of the module without one: pass LotteryTicket(loss_fn=(module, batch) -> loss)") from err
    loss = out.get("loss") if isinstance(out, Mapping) else out
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise ValueError(f"{type(module).__name__}.training_step returned {type(out).__name__}, not a loss to score "
                         "with; pass LotteryTicket(loss_fn=(module, batch) -> loss)")
    return loss


def resolve(loss_fn: str | Callable[..., Any], module: pl.LightningModule) -> Callable[..., Any] | None:
    """The loss_fn to hand the pruning plan (None: the pruner's own cross-entropy)."""
    if callable(loss_fn):
        return loss_fn
    if loss_fn == "cross_entropy" or getattr(module, DECLARED, None) == "cross_entropy":
        return None
    if not module.automatic_optimization:
        raise ValueError(f"{type(module).__name__} uses manual optimization, so its training_step steps the optimizers "
                         "and cannot score a pruner: pass LotteryTicket(loss_fn=(module, batch) -> loss) or "
                         "loss_fn='cross_entropy'")
    return training_step_loss
