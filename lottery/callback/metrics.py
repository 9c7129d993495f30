"""A round's metrics: the best monitored value and its step (Frankle & Carbin's early-stopping iteration),
what else was measured then, the last validation's values and the last epoch's training values."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor

TRAIN = "train"  # metrics named train* are epoch values, known only once their epoch has ended
GROWTH = 100.0  # a monitored value (mode="min") this many times the round's best is called divergence


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The one-number entries of a metrics dict, as floats."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, Tensor) and v.numel() == 1}


OWN = "lottery/"  # the callback's own logged values (the round on every epoch row) are not the module's metrics


class RoundMetrics:
    """Tracks one round's validations: the best value of `monitor` (by `mode`), its step, and the metrics then.

    Training metrics (names starting with ``train``) are logged by a module at the end of its epoch, after the
    epoch's validations and after callbacks' epoch-end hooks. So a validation sees the previous epoch's values:
    they are recorded instead when the epoch has ended (`end_epoch`), and those of the best validation's epoch
    are the ``*_at_best`` training values.
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "min") -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode={mode!r} is not allowed; use 'min' or 'max'")
        self.monitor, self.mode = monitor, mode
        self.reset()

    def reset(self) -> None:
        """Forget the round (a new one starts)."""
        self.best: float | None = None
        self.best_step: int | None = None
        self.best_epoch: int | None = None
        self.at_best: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.train: dict[str, float] = {}  # of the epoch `train_epoch`, the round's last that ended
        self.train_epoch: int | None = None
        self.warned = False

    def observe(self, metrics: Mapping[str, Any], step: int, epoch: int, round: int, may_be_best: bool = True) -> None:
        """One validation's metrics at `step` of the round, in `epoch`; raise if the monitored value is not among them.
        A validation that may not be best (gradual pruning before its target density) only updates the last values."""
        metrics = {k: v for k, v in metrics.items() if not k.startswith(OWN)}  # the module's values, not ours
        if self.monitor not in metrics:
            logged = ", ".join(sorted(metrics)) or "nothing"
            raise ValueError(f"LotteryTicket(monitor={self.monitor!r}): the validation logged no such metric; it logged "
                             f"{logged}. Pass monitor= one of those (and mode='min' or 'max'), or log "
                             f"{self.monitor!r} in validation_step.")
        # kept in the checkpoint: a run resumed at a round boundary closes the round with these metrics (training
        # values at a validation are an earlier epoch's: they come from end_epoch)
        self.last = {k: v for k, v in scalars(metrics).items() if not k.startswith(TRAIN)}
        value = float(metrics[self.monitor])
        self._check_divergence(value, step, round)
        if may_be_best and (self.best is None or (value < self.best if self.mode == "min" else value > self.best)):
            self.best, self.best_step, self.best_epoch = value, step, epoch
            # what else was measured then (test accuracy at the early-stopping iteration, say); training values
            # of this epoch come when it ends
            self.at_best = dict(self.last)
            if self.train_epoch == epoch:
                self.at_best.update(self.train)

    def end_epoch(self, metrics: Mapping[str, Any], epoch: int) -> None:
        """The training values logged at the end of `epoch` (nothing to record when none were logged)."""
        train = {k: v for k, v in scalars(metrics).items() if k.startswith(TRAIN)}
        if not train or (self.train_epoch is not None and epoch < self.train_epoch):
            return
        self.train, self.train_epoch = train, epoch
        if epoch == self.best_epoch:
            self.at_best.update(train)

    def _check_divergence(self, value: float, step: int, round: int) -> None:
        if self.warned:
            return
        if not math.isfinite(value):
            problem = f"{self.monitor} is {value}"
        elif self.mode == "min" and self.best is not None and self.best > 0 and value > GROWTH * self.best:
            problem = f"{self.monitor} grew to {value:.4g}, {value / self.best:.0f} times the round's best {self.best:.4g}"
        else:
            return
        self.warned = True
        rank_zero_warn(f"LotteryTicket: {problem} at step {step} of round {round}: training has diverged, and a ticket "
                       "pruned from these weights means nothing. Lower the learning rate (or add warmup or "
                       "gradient clipping) and train again.")

    def warn_unmeasured(self, trainer: pl.Trainer, round: int, epochs_per_round: int) -> None:
        """Say that `round` had no validation, and which Trainer settings made it so."""
        rank_zero_warn(
            f"LotteryTicket: round {round} had no validation, so it records no validation values and "
            f"best_{self.monitor} is NaN (Trainer check_val_every_n_epoch={trainer.check_val_every_n_epoch}, "
            f"limit_val_batches={trainer.limit_val_batches}). To measure every round, validate at least once per "
            f"round: check_val_every_n_epoch dividing epochs_per_round ({epochs_per_round}).")

    def summary(self) -> dict[str, float]:
        """The round's record: its last validation's values and last epoch's training values, those at the best
        validation, the best value and its step. Only what was measured in this round: a round without a
        validation has no validation values (Lightning keeps earlier rounds' in `callback_metrics`)."""
        out = {**self.last, **self.train}
        out.update({f"{k}_at_best": v for k, v in self.at_best.items() if k != self.monitor})
        out[f"best_{self.monitor}"] = self.best if self.best is not None else float("nan")
        out["best_step"] = self.best_step if self.best_step is not None else -1
        return out

    def state(self) -> dict[str, Any]:
        """Checkpoint values."""
        return {"best": self.best, "best_step": self.best_step, "best_epoch": self.best_epoch, "at_best": self.at_best,
                "last": self.last, "train": self.train, "train_epoch": self.train_epoch, "warned": self.warned}

    def load(self, state: Mapping[str, Any]) -> None:
        """Inverse of `state`."""
        self.best, self.best_step = state["best"], state["best_step"]
        self.at_best, self.last = dict(state.get("at_best", {})), dict(state.get("last", {}))
        self.best_epoch, self.train_epoch = state.get("best_epoch"), state.get("train_epoch")
        self.train, self.warned = dict(state.get("train", {})), bool(state.get("warned", False))
