"""Checks of the callback's arguments, made in `__init__` so that bad input fails before any work starts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl

from lottery.sanity import check_variant
from lottery.sparsity import check_amount, check_fractions, check_scope
from lottery.sparsity.distribution import check_distribution
from lottery.ticket import Ticket

OPTIMIZER_STATES = ("restart", "rewind")


def check_arguments(rounds: int, epochs_per_round: int, prune_fraction: float | None, density: float | None,
                    scope: str, fractions: Mapping[str, float] | None, optimizer_state: str,
                    from_ticket: str | Ticket | None, sanity: str | None) -> None:
    """Raise ValueError naming the first argument of LotteryTicket that is not allowed, and what is."""
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer (pruning rounds after the dense round 0), got {rounds!r}")
    if not isinstance(epochs_per_round, int) or epochs_per_round < 0:
        raise ValueError(f"epochs_per_round must be a positive integer, or 0 for pruning at initialization; "
                         f"got {epochs_per_round!r}")
    try:
        check_amount(prune_fraction, density)
    except ValueError as err:
        if density is None or prune_fraction is None:
            raise
        raise ValueError(f"{err}. On the command line, where a config file sets the other one, add "
                         "--ticket.prune_fraction null (or --ticket.density null).") from None
    check_fractions(fractions)
    check_scope(scope)
    if optimizer_state not in OPTIMIZER_STATES:
        raise ValueError(f"optimizer_state={optimizer_state!r} is not allowed; use one of {OPTIMIZER_STATES}")
    if from_ticket is not None and epochs_per_round != 0:
        raise ValueError("from_ticket= trains a given ticket and needs epochs_per_round=0 (no pruning rounds)")
    check_variant(sanity)
    if sanity is not None and from_ticket is None:
        raise ValueError("sanity= transforms a given ticket: pass from_ticket= (or its old spelling ticket=) too")


def check_rounds_trainer(trainer: pl.Trainer, monitor: str) -> None:
    """Raise before training if the Trainer holds a callback that cannot work across IMP rounds (EarlyStopping)."""
    if trainer.early_stopping_callbacks:
        raise ValueError(
            "LotteryTicket with IMP rounds (epochs_per_round > 0) and EarlyStopping on the Trainer: "
            "EarlyStopping's best score carries over from round to round and its stop ends the whole run, "
            "not a round. Remove EarlyStopping: every round records its own early stopping, Frankle & "
            f"Carbin's early-stopping iteration (best_{monitor}, best_step, and the metrics at that "
            "step as *_at_best in rounds.csv). With epochs_per_round=0 (one ticket trained) it works as usual.")


def check_sparse_training(method: Any, distribution: str | None, rounds: int | None, epochs_per_round: int,
                          density: float | None, fractions: Mapping[str, float] | None, from_ticket: Any) -> None:
    """Raise ValueError for sparse_training= or distribution= given with arguments they do not go with."""
    if distribution is not None:
        check_distribution(distribution)
        if density is None:
            raise ValueError(f"distribution={distribution!r} spreads a target density over the layers: pass density=")
        if epochs_per_round != 0:
            raise ValueError(f"distribution={distribution!r} sets the layer densities of pruning at initialization or of "
                             "sparse training (epochs_per_round=0); IMP rounds prune by scope= and fractions=")
        if fractions:
            raise ValueError("distribution= decides every layer's density; leave fractions= out")
    if method is None:
        return
    where = f"sparse_training={getattr(method, 'name', method)!r}"
    if epochs_per_round != 0:
        raise ValueError(f"{where} trains one sparse run, updating the masks as it goes: set epochs_per_round=0 (the "
                         "Trainer's max_epochs is its length), not IMP rounds")
    if density is None:
        raise ValueError(f"{where} needs density= (the density it reaches, or keeps)")
    if rounds is not None:
        raise ValueError(f"{where} updates the masks every `every` steps; rounds= (pruning steps at initialization) "
                         "does not apply: leave it out")
    if from_ticket is not None:
        raise ValueError(f"{where} makes its own masks; from_ticket= does not apply")
    if fractions:
        raise ValueError(f"{where}: fractions= (per-layer IMP rates) do not apply; use distribution= for layer densities")
