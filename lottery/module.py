"""ClassificationModule: a LightningModule around a built-in model, with optimizer and schedule from the config."""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from lottery.callback import round_epochs
from lottery.callback.hooks import switch_off_empty
from lottery.models import build

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "multistep", "cosine")


class ClassificationModule(pl.LightningModule):
    """Cross-entropy classification with torchmetrics accuracy for train / val / test.

    Validation batches may come from two loaders, the validation split and the test set (the data
    modules' `test_in_validation`): both are measured every validation, but only `val_*` may drive
    decisions such as the early-stopping iteration; `test_*` is recorded beside it.

    The learning-rate schedule is one step-interval `LambdaLR`: linear warmup over `warmup_steps`, then
    `multistep` (×`gamma` at each epoch of `milestones`), `cosine` (to zero over a round) or `constant`.
    A round is the `epochs_per_round` of a LotteryTicket callback on the Trainer, else `max_epochs`, so
    rewinding restores the schedule position exactly.

    `fused=True` builds the optimizer with torch's fused kernels where every parameter is on CPU or CUDA:
    the same update rule, one kernel per parameter instead of a Python loop of small ops (an Adam step of
    LeNet-300-100 on CPU takes 0.19 ms instead of 0.54 ms, a quarter of the whole training step). Results
    differ from the unfused path only by floating-point rounding; `fused=False` gives torch's default path.
    """

    def __init__(
        self,
        arch: str = "lenet300",
        num_classes: int = 10,
        input_shape: Sequence[int] = (1, 28, 28),
        init: str = "kaiming_normal",
        optimizer: str = "sgd",
        lr: float = 0.1,
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        schedule: str = "constant",
        milestones: Sequence[int] = (),
        gamma: float = 0.1,
        warmup_steps: int = 0,
        fused: bool = True,
    ) -> None:
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={optimizer!r} is not supported; choose one of {OPTIMIZERS}")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule={schedule!r} is not supported; choose one of {SCHEDULES}")
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        self.save_hyperparameters()
        self.model = build(arch, num_classes=num_classes, init=init)
        self.example_input_array = torch.zeros(1, *input_shape)
        # validate_args=False: the checks cost more than the update itself on small models
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.test_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self._train_loss_sum: Tensor | None = None
        self._train_batches = 0
        self._train_preds: list[Tensor] = []
        self._train_targets: list[Tensor] = []
        # Lightning calls the six training-step hooks of the module at every step, also the empty ones it does not define
        switch_off_empty(self, pl.LightningModule)

    # training_step is the cross-entropy of forward(x) on (x, y): pruners scoring inside LotteryTicket use their own
    # form of it (GraSP with its temperature) instead of calling training_step (lottery.callback.loss)
    lottery_loss = "cross_entropy"

    # Lightning sets `_current_fx_name` around every hook it calls (about 40 times a step) and
    # training_step updates running sums: none of them is a parameter, buffer or module, so they skip
    # nn.Module.__setattr__'s bookkeeping (2 us each, ~3% of a LeNet step on CPU)
    _PLAIN_ATTRIBUTES = frozenset({"_current_fx_name", "_train_loss_sum", "_train_batches"})

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._PLAIN_ATTRIBUTES:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y)
        # kept here and measured once per epoch: a per-step self.log or metric update costs more than a LeNet step
        self._train_preds.append(logits.detach().argmax(1))
        self._train_targets.append(y)
        detached = loss.detach()
        self._train_loss_sum = detached if self._train_loss_sum is None else self._train_loss_sum + detached
        self._train_batches += 1
        return loss

    def on_train_epoch_end(self) -> None:
        if self._train_batches:
            self.log("train_loss", self._train_loss_sum / self._train_batches, sync_dist=True)
        if self._train_preds:
            self.train_acc.update(torch.cat(self._train_preds), torch.cat(self._train_targets))
            self.log("train_acc", self.train_acc.compute())
            self.train_acc.reset()
        self._train_loss_sum, self._train_batches = None, 0
        self._train_preds, self._train_targets = [], []

    def _split(self, dataloader_idx: int) -> str:
        splits = getattr(self.trainer.datamodule, "val_splits", ("val",)) if self.trainer.datamodule else ("val",)
        return splits[dataloader_idx]

    def _evaluate(self, batch: tuple[Tensor, Tensor], split: str) -> None:
        x, y = batch
        logits = self(x)
        metric = self.val_acc if split == "val" else self.test_acc
        metric.update(logits, y)
        self.log(f"{split}_loss", nn.functional.cross_entropy(logits, y), add_dataloader_idx=False, sync_dist=True)
        self.log(f"{split}_acc", metric, add_dataloader_idx=False)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, self._split(dataloader_idx))

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    # -- optimization ---------------------------------------------------------------------------------
    def _round_epochs(self) -> int:
        return round_epochs(self.trainer) or max(1, int(self.trainer.max_epochs or 1))

    def lr_factor(self, step: int, steps_per_epoch: int, round_steps: int) -> float:
        """Multiplier of `lr` at optimizer step `step` of a round."""
        h = self.hparams
        warm = min(1.0, (step + 1) / h.warmup_steps) if h.warmup_steps else 1.0
        if h.schedule == "multistep":
            epoch = step // max(1, steps_per_epoch)
            return warm * h.gamma ** sum(epoch >= m for m in h.milestones)
        if h.schedule == "cosine":
            return warm * 0.5 * (1 + math.cos(math.pi * min(step, round_steps) / max(1, round_steps)))
        return warm

    def _fused(self) -> bool | None:
        """True when the optimizer should use fused kernels, None for torch's default choice."""
        params = list(self.parameters())
        fusable = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
        return True if self.hparams.get("fused", True) and fusable and params else None

    def configure_optimizers(self) -> Any:
        h = self.hparams
        params, fused = self.parameters(), self._fused()
        if h.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=h.lr, momentum=h.momentum, nesterov=h.nesterov,
                                  weight_decay=h.weight_decay, fused=fused)
        elif h.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=h.lr, betas=tuple(h.betas), weight_decay=h.weight_decay, fused=fused)
        else:
            opt = torch.optim.AdamW(params, lr=h.lr, betas=tuple(h.betas), weight_decay=h.weight_decay, fused=fused)
        if h.schedule == "constant" and not h.warmup_steps:
            return opt
        total = self.trainer.estimated_stepping_batches
        steps_per_epoch = max(1, math.ceil(total / max(1, self.trainer.max_epochs))) if math.isfinite(total) else 1
        round_steps = steps_per_epoch * self._round_epochs()
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: self.lr_factor(s, steps_per_epoch, round_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


# Lightning reads training_step's signature at every step (whether it takes batch_idx), by inspect: 10 us a
# step, 0.7% of a LeNet-300-100 step on CPU. A function's __signature__ is what inspect answers for it, so the
# steps' signatures are computed once here (a subclass that redefines a step is inspected as before)
for _step in (ClassificationModule.training_step, ClassificationModule.validation_step, ClassificationModule.test_step):
    _step.__signature__ = inspect.signature(_step)
del _step
