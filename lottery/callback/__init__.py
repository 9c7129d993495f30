"""When Lightning prunes, rewinds and saves: the LotteryTicket callback and its named pieces."""

from __future__ import annotations

import pytorch_lightning as pl

from lottery.callback.lottery_ticket import LotteryTicket
from lottery.callback.rewind import RewindPoint


def round_epochs(trainer: pl.Trainer) -> int | None:
    """Epochs per round of the LotteryTicket callback on `trainer`, or None without one that trains rounds."""
    for cb in trainer.callbacks:
        if isinstance(cb, LotteryTicket) and cb.epochs_per_round > 0:
            return cb.epochs_per_round
    return None


__all__ = ["LotteryTicket", "RewindPoint", "round_epochs"]
