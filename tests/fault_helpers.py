"""Faults injected into `lottery fit` runs from the command line (`--trainer.callbacks+=fault_helpers.SigKill`)."""

from __future__ import annotations

import os
import signal

import pytorch_lightning as pl


class SigKill(pl.Callback):
    """SIGKILL this process once the epoch-end checkpoint of `epoch` is on disk: at the start of the next epoch or
    at the end of training, before the other callbacks' hooks there (a round is closed in those hooks)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def _kill(self, trainer: pl.Trainer) -> None:
        if trainer.current_epoch == self.epoch + 1:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._kill(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._kill(trainer)
