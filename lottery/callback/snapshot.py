"""Snapshots: the values a round rewinds to (the module's state, with the optimizer and scheduler states when
taken during training), and their restore."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
from torch import Tensor


def module_state(module: pl.LightningModule) -> dict[str, Tensor]:
    """A detached copy of the module's state dict."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@dataclass
class Snapshot:
    """The rewind point: module state, plus optimizer and scheduler states when taken at a step of training."""

    model: dict[str, Tensor]
    optimizers: list[dict[str, Any]] | None = None  # None: taken before training (pruning at init, a given ticket)
    schedulers: list[dict[str, Any]] | None = None
    step: int | None = None

    @classmethod
    def of_module(cls, module: pl.LightningModule) -> Snapshot:
        """The module's values alone (a start before any training)."""
        return cls(module_state(module))

    @classmethod
    def of_training(cls, trainer: pl.Trainer, module: pl.LightningModule, step: int) -> Snapshot:
        """Module, optimizers and schedulers at iteration `step` (now)."""
        return cls(
            module_state(module),
            [copy.deepcopy(opt.state_dict()) for opt in trainer.optimizers],
            [copy.deepcopy(cfg.scheduler.state_dict()) for cfg in trainer.lr_scheduler_configs],
            step,
        )

    def restore(self, trainer: pl.Trainer, module: pl.LightningModule, optimizer_state: str) -> None:
        """Load the module, the schedulers and (``optimizer_state="rewind"``) the optimizer state; "restart" empties it."""
        if self.optimizers is None or self.schedulers is None:
            raise RuntimeError("this snapshot was taken before training and holds no optimizer state to rewind to")
        # load_state_dict copies into the live tensors, so the snapshot itself is never mutated
        module.load_state_dict(self.model)
        for opt, saved in zip(trainer.optimizers, self.optimizers):
            saved = copy.deepcopy(saved)  # Optimizer.load_state_dict keeps references to what it is given
            if optimizer_state == "restart":
                saved["state"] = {}
            opt.load_state_dict(saved)
        for cfg, saved in zip(trainer.lr_scheduler_configs, self.schedulers):
            cfg.scheduler.load_state_dict(copy.deepcopy(saved))

    def state(self) -> dict[str, Any]:
        """Plain values for a checkpoint (loadable with weights_only)."""
        if self.optimizers is None:
            return {"model": self.model}
        return {"step": self.step, "model": self.model, "optimizers": self.optimizers, "schedulers": self.schedulers}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Snapshot | None:
        """Inverse of `state` (None stays None)."""
        if state is None:
            return None
        return cls(state["model"], state.get("optimizers"), state.get("schedulers"), state.get("step"))
