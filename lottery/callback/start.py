"""The zero-training starts of the loop: prune at initialization, or train a given ticket (after a sanity transform)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
from torch import Tensor

from lottery import sanity
from lottery.plan import Plan
from lottery.pruning import Pruner
from lottery.ticket import Ticket


def pruned_at_init(trainer: pl.Trainer, module: pl.LightningModule, plan: Plan, pruner: Pruner, steps: int,
                   seed: int | None, loss_fn: Callable[..., Tensor] | None = None) -> dict[str, Tensor] | None:
    """Rank zero's masks after `steps` scoring steps with no training between them (None on other ranks).

    Data-driven pruners score on the train loader (as IMP rounds do); SynFlow reads its input shape there when
    the module has no example_input_array.
    """
    if not trainer.is_global_zero:
        return None
    batches: Iterable[Any] = trainer.train_dataloader
    return plan.prune_steps(module, pruner, steps, batches, seed=seed, loss_fn=loss_fn)


def load_given(ticket: Ticket, variant: str | None, module: pl.LightningModule, seed: int,
               prunable: list[str]) -> Ticket:
    """Put the given ticket (after the sanity `variant`, if any) into `module`: its weights where it has them, its masks.

    The ticket is checked against `module` first (names, shapes, finite values, some weight kept), so a refused
    ticket leaves `module` unchanged; layers of `prunable` (the run's plan) it has no mask for stay dense, and a
    warning names them.
    """
    from pytorch_lightning.utilities import rank_zero_warn

    ticket.check(module)
    if variant is not None:
        ticket = sanity.VARIANTS[variant](ticket, module, seed)
    if ticket.weights:
        ticket.rewind(module)
    else:
        ticket.apply(module)
    dense = ticket.uncovered(prunable)
    if dense:
        params = dict(module.named_parameters())
        kept = sum(int(m.count_nonzero()) for m in ticket.masks.values()) + sum(params[n].numel() for n in dense)
        total = sum(m.numel() for m in ticket.masks.values()) + sum(params[n].numel() for n in dense)
        shown = ", ".join(dense[:12]) + (f" and {len(dense) - 12} more" if len(dense) > 12 else "")
        rank_zero_warn(f"LotteryTicket: the given ticket leaves {len(dense)} of the model's {len(prunable)} prunable "
                       f"layers dense: {shown}. All their weights are trained, so the density of the prunable weights "
                       f"is {kept / total:.4f}, not the ticket's {ticket.density:.4f}. If that is not intended, make the "
                       "ticket from a run that prunes these layers too.")
    return ticket
