"""The round clock: which epochs belong to which round, the Trainer's epoch budget, and the rewind step."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

from lottery.callback.rewind import RewindPoint


class RoundClock:
    """Round 0 trains `epochs_per_round` epochs; every later round trains what round 0 had from the rewind point.

    A round rewound to step k = N epochs + M iterations of round 0 trains E - N epochs (whole epochs, since
    Lightning starts rounds at epoch boundaries). Before the epoch length is known (at `setup`) only whole-epoch
    rewinds are counted; `start` fixes the step once the Trainer knows its batches per epoch.
    """

    def __init__(self, rounds: int, epochs_per_round: int, rewind: RewindPoint) -> None:
        self.rounds, self.epochs, self.rewind = rounds, epochs_per_round, rewind
        self.steps_per_epoch: int | None = None  # known once training starts
        self.early: dict[int, int] = {}  # rounds ended early (early-bird): round -> epoch its successor starts
        self.check()

    @property
    def rewind_step(self) -> int:
        """Optimizer step of round 0 at which the rewind values are taken (0 before the epoch length is known)."""
        return self.rewind.step(self.steps_per_epoch or 0)

    @property
    def later_epochs(self) -> int:
        """Epochs each round after round 0 trains."""
        if self.rewind.kind != "step":
            return self.epochs
        if self.steps_per_epoch:
            return self.epochs - self.rewind_step // self.steps_per_epoch
        return self.epochs - self.rewind.epochs if self.rewind.iterations == 0 else self.epochs

    def round_start_epoch(self, round: int) -> int:
        """The epoch at which `round` starts (earlier rounds ended early move it forward)."""
        if not self.early:
            return 0 if round == 0 else self.epochs + (round - 1) * self.later_epochs
        epoch = 0
        for r in range(round):
            epoch = self.early.get(r, epoch + (self.epochs if r == 0 else self.later_epochs))
        return epoch

    def end_early(self, trainer: pl.Trainer, round: int) -> None:
        """End `round` with the current epoch: the next round starts at the next epoch, the budget shrinks."""
        self.early[round] = trainer.current_epoch + 1
        self.set_budget(trainer, quiet=True)

    def check(self) -> None:
        """Raise unless the rewind point lies inside round 0 (by epochs before the epoch length is known, then by steps)."""
        if self.rewind.kind != "step":
            return
        if self.steps_per_epoch is None:
            if self.rewind.epochs > self.epochs or (self.rewind.epochs == self.epochs and self.rewind.iterations == 0):
                raise ValueError(
                    f"rewind={str(self.rewind)!r} lies beyond the round length ({self.epochs} epochs); "
                    "choose a point inside round 0, e.g. a few hundred iterations ('500it')."
                )
            return
        total = self.epochs * self.steps_per_epoch
        if self.rewind_step >= total:
            raise ValueError(
                f"rewind={self.rewind} is step {self.rewind_step}, but round 0 has only {total} steps "
                f"({self.epochs} epochs of {self.steps_per_epoch}); choose a point inside round 0."
            )

    def start(self, trainer: pl.Trainer, steps_per_epoch: int | None) -> None:
        """Fix the epoch length (None: a loader without a length), check the rewind step, update the budget."""
        if steps_per_epoch is None:
            if self.rewind.kind == "step":
                raise ValueError(f"rewind={self.rewind} needs a train dataloader with a length to count steps per epoch")
            steps_per_epoch = 0
        self.steps_per_epoch = steps_per_epoch
        if self.rewind.kind == "step":
            self.check()
            self.set_budget(trainer)

    def check_schedulers(self, trainer: pl.Trainer) -> None:
        """Raise before training if an LR scheduler with a fixed length (OneCycleLR's total_steps) cannot last a round."""
        for cfg in trainer.lr_scheduler_configs:
            total = getattr(cfg.scheduler, "total_steps", None)
            if total is None or not self.steps_per_epoch:
                continue
            per_epoch = self.steps_per_epoch if cfg.interval == "step" else 1
            if self.rewind.kind == "none":  # the schedule runs on through every round
                needed, how = self.round_start_epoch(self.rounds + 1) * per_epoch, "all rounds without rewinding"
            else:  # each later round restarts the schedule where it was at the rewind point
                start = self.rewind_step if cfg.interval == "step" else self.rewind_step // self.steps_per_epoch
                needed = max(self.epochs * per_epoch, start + self.later_epochs * per_epoch)
                how = f"the rewind point ({start}) plus a later round ({self.later_epochs * per_epoch})"
            if needed > total:
                raise ValueError(
                    f"the LR scheduler {type(cfg.scheduler).__name__} has total_steps={total}, but the rounds need "
                    f"{needed} of its steps ({how}; interval {cfg.interval!r}). Size it for {needed} steps, or rewind "
                    "to a whole epoch ('1ep') so a later round trains no more than round 0 had from there.")

    def set_budget(self, trainer: pl.Trainer, quiet: bool = False) -> None:
        """Set the Trainer's max_epochs to the end of the last round (and say so when it changes)."""
        total = self.round_start_epoch(self.rounds + 1)
        if trainer.fit_loop.max_epochs != total:
            trainer.fit_loop.max_epochs = total
            if quiet:
                return
            rank_zero_info(
                f"LotteryTicket: {self.rounds} pruning rounds after a dense round 0; round 0 trains "
                f"{self.epochs} epochs, each later round {self.later_epochs} (rewind={self.rewind}): "
                f"Trainer max_epochs set to {total}."
            )
        if trainer.max_steps not in (-1, None):
            rank_zero_warn(f"Trainer(max_steps={trainer.max_steps}) may stop training before the {self.rounds} rounds end.")


def iteration(trainer: pl.Trainer) -> int:
    """Training iterations so far: optimizer steps under automatic optimization (accumulation counted), batches
    under manual optimization (however many optimizers a batch steps). Rewind points and round lengths count these."""
    if trainer.lightning_module.automatic_optimization:
        return trainer.global_step
    return trainer.fit_loop.epoch_loop.batch_progress.total.completed
