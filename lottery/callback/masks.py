"""The masks of the round being trained: decided on rank zero, broadcast bit-packed, kept on the weights."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from lottery.sparsity import Masker
from lottery.ticket import pack_bits, unpack_bits


def packed(masks: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Masks bit-packed for a broadcast or a checkpoint."""
    return {n: pack_bits(m) for n, m in masks.items()}


class LiveMasks:
    """The current masks of a module and the Masker that keeps its pruned weights (and optimizer state) at zero."""

    def __init__(self) -> None:
        self.masks: dict[str, Tensor] | None = None
        self.masker: Masker | None = None
        self.listeners: list[Callable[[pl.LightningModule, dict[str, Tensor]], None]] = []  # told of new masks
        self.before: list[Callable[[], None]] = []  # told before the masks and the optimizer state change

    def attach(self, module: pl.LightningModule, dense: dict[str, Tensor]) -> None:
        """Start masking `module` (with `dense` masks unless a checkpoint gave some) and zero its pruned weights."""
        if self.masks is None:
            self.masks = dense
        self.masker = Masker(module, self.masks)
        self.masker.apply()
        self._tell(module)

    def _tell(self, module: pl.LightningModule) -> None:
        for listener in self.listeners:
            listener(module, self.masks)

    def install(self, trainer: pl.Trainer, module: pl.LightningModule, masks: Mapping[str, Tensor] | None,
                like: Mapping[str, Tensor] | None = None) -> None:
        """Take rank zero's `masks` (None on other ranks; shaped and placed like `like`, default the current ones),
        zero the pruned weights and their optimizer state."""
        shared = trainer.strategy.broadcast(None if masks is None else packed(masks), src=0)
        for hook in self.before:
            hook()
        like = self.masks if like is None else like
        self.masks = {n: unpack_bits(shared[n], m.shape).to(m.device) for n, m in like.items()}
        self.masker = Masker(module, self.masks)
        self.masker.apply()
        self.mask_optimizers(trainer)
        self._tell(module)

    def mask_optimizers(self, trainer: pl.Trainer) -> None:
        """Zero pruned entries of every optimizer's per-weight state."""
        for opt in trainer.optimizers:
            self.masker.mask_optimizer_state(opt)

    @property
    def density(self) -> float:
        """Fraction of the masked weights kept."""
        return sum(int(torch.count_nonzero(m)) for m in self.masks.values()) / sum(m.numel() for m in self.masks.values())

    def state(self) -> dict[str, Any]:
        """Bit-packed masks and their shapes (None before any)."""
        if self.masks is None:
            return {"masks": None, "shapes": None}
        return {"masks": packed(self.masks), "shapes": {n: tuple(m.shape) for n, m in self.masks.items()}}

    def load(self, state: Mapping[str, Any]) -> None:
        """Inverse of `state`."""
        self.masks = None if state["masks"] is None else {
            n: unpack_bits(p, state["shapes"][n]) for n, p in state["masks"].items()}
