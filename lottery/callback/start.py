"""The zero-training starts of the loop: prune at initialization, or train a given ticket (after a sanity transform)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytorch_lightning as pl
from torch import Tensor

from lottery import sanity
from lottery.plan import Plan
from lottery.pruning import Pruner
from lottery.ticket import Ticket


def pruned_at_init(trainer: pl.Trainer, module: pl.LightningModule, plan: Plan, pruner: Pruner, steps: int,
                   seed: int | None) -> dict[str, Tensor] | None:
    """Rank zero's masks after `steps` scoring steps with no training between them (None on other ranks).

    Data-driven pruners score on the train loader (as IMP rounds do); SynFlow reads its input shape there when
    the module has no example_input_array.
    """
    if not trainer.is_global_zero:
        return None
    batches: Iterable[Any] = trainer.train_dataloader
    return plan.prune_steps(module, pruner, steps, batches, seed=seed)


def load_given(ticket: Ticket, variant: str | None, module: pl.LightningModule, seed: int) -> Ticket:
    """Put the given ticket (after the sanity `variant`, if any) into `module`: its weights where it has them, its masks."""
    if variant is not None:
        ticket = sanity.VARIANTS[variant](ticket, module, seed)
    if ticket.weights:
        ticket.rewind(module)
    ticket.apply(module)  # also checks that the masks fit this model
    return ticket
