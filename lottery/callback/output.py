"""A run's output: each round's ticket and rounds.csv in the run's folder (rank zero), the Trainer's loggers, W&B."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info

from lottery.integrations import wandb as wandb_integration
from lottery.layout import FolderTakenError, RunLayout, run_folder
from lottery.ticket import Ticket


class RunOutput:
    """Writes tickets to `dirpath` (default: ``tickets`` in the run's own folder, `lottery.layout.run_folder`) and
    logs each round."""

    def __init__(self, dirpath: str | None, monitor: str) -> None:
        self.dirpath, self.monitor = dirpath, monitor
        self._layout: RunLayout | None = None

    def layout(self, trainer: pl.Trainer) -> RunLayout:
        """The run's results folder; resolved on every rank because `run_folder` is a collective call."""
        if self._layout is None:
            self._layout = RunLayout(Path(self.dirpath)) if self.dirpath else RunLayout.under(run_folder(trainer))
        return self._layout

    def claim(self, trainer: pl.Trainer, run_id: str, resuming: bool) -> None:
        """At fit start, before any work: make the results folder this run's, or refuse (on every rank) one that
        holds another run's tickets."""
        self._layout = None
        layout, problem = self.layout(trainer), None
        if trainer.is_global_zero:
            try:
                layout.claim(run_id, resuming)
            except FolderTakenError as err:
                problem = str(err)
        problem = trainer.strategy.broadcast(problem)  # every rank stops, none waits for the others
        if problem is not None:
            raise FolderTakenError(problem)

    def open(self, trainer: pl.Trainer, tickets: list[Ticket]) -> None:
        """At the start of training: resolve the folder, set up W&B, and write the tickets a resumed run already has."""
        self._layout = None
        self.layout(trainer)
        wandb_integration.define_metrics(trainer)
        for ticket in tickets:  # after a resume into a new log folder, earlier tickets go there too
            self._save(trainer, ticket, tickets, overwrite=False)

    def _save(self, trainer: pl.Trainer, ticket: Ticket, tickets: list[Ticket], overwrite: bool = True) -> Path | None:
        layout = self.layout(trainer)
        if not trainer.is_global_zero:
            return None
        return layout.save(ticket, tickets, self.monitor, overwrite)

    @staticmethod
    def mark_epoch(pl_module: pl.LightningModule, round: int, round_step: int) -> None:
        """Put the round and the step within it on the epoch's logged rows, so training curves split by round."""
        for name, value in (("lottery/round", round), ("lottery/round_step", round_step)):
            # epoch-level only: a per-step value that changes once per round would bloat every step's row
            pl_module.log(name, float(value), on_step=False, on_epoch=True, sync_dist=False, rank_zero_only=True)

    def record(self, trainer: pl.Trainer, ticket: Ticket, tickets: list[Ticket]) -> None:
        """A closed round (the last of `tickets`): its file, rounds.csv, its values in the loggers and in W&B."""
        path = self._save(trainer, ticket, tickets)
        wandb_integration.log_round(trainer, ticket, path)
        metrics, best = ticket.metrics, f"best_{self.monitor}"
        log = {"lottery/round": float(ticket.round), "lottery/density": ticket.density,
               f"lottery/{best}": metrics[best], f"lottery/{best}_step": float(metrics["best_step"])}
        for logger in trainer.loggers:  # W&B gets the round's values, best ones included, from log_round
            if not wandb_integration.is_wandb(logger):
                logger.log_metrics(log, step=trainer.global_step)
        rank_zero_info(f"LotteryTicket: round {ticket.round} done, density {ticket.density:.4f}, "
                       f"best {self.monitor} {metrics[best]:.4f} at step {metrics['best_step']}")

    def close(self, trainer: pl.Trainer, tickets: list[Ticket]) -> None:
        """At the end of fit: the W&B summary and where the files are."""
        wandb_integration.log_summary(trainer, tickets, self.layout(trainer).folder)
        rank_zero_info(f"LotteryTicket: {len(tickets)} tickets and rounds.csv in {self.layout(trainer).folder}")
