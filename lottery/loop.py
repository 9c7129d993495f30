"""The score -> select loop, shared by the callback and by `prune` (pruning without Lightning)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from lottery import select as sel
from lottery.pruning import Pruner, get
from lottery.pruning.batches import take
from lottery.pruning.inverted import Inverted
from lottery.schedule import per_round_fraction
from lottery.select import check_fraction
from lottery.ticket import Ticket


def _cuda_devices() -> list[int]:
    """The CUDA devices whose generators `torch.manual_seed` reseeds (none before CUDA is initialized)."""
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() and torch.cuda.is_initialized() else []


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run with torch's generators seeded by `seed`, leaving every global generator (CPU and CUDA) as it was."""
    if seed is None:  # the caller's own generator state decides
        yield
        return
    devices = _cuda_devices()
    with torch.random.fork_rng(devices=devices):
        if devices:  # CUDA generators too (dropout on a GPU while scoring); fork_rng restores them
            torch.manual_seed(seed % (2**63))
        else:  # torch.manual_seed would queue a CUDA seeding that lands at CUDA's first use, after the fork
            torch.default_generator.manual_seed(seed % (2**63))
        yield


class _DrawnOnce:
    """Batches drawn from `batches` at their first use (seeded) and replayed at every later step.

    A loader is iterated at most once per pruning loop, and not at all by a pruner that never reads it
    (SynFlow only reads one batch's shape, and only without `example_input_array`).
    """

    def __init__(self, batches: Iterable[Any], pruner: Pruner, seed: int | None) -> None:
        self.batches, self.pruner, self.seed = batches, pruner, seed
        self.drawn: list[Any] | None = None

    def __iter__(self) -> Iterator[Any]:
        if self.drawn is None:
            with seeded(self.seed):  # a shuffling loader draws its order from the seeded generator
                self.drawn = take(self.batches, getattr(self.pruner, "batches", 1), getattr(self.pruner, "per_class", None))
        return iter(self.drawn)


class Plan:
    """What to prune in a model: prunable names, their sizes and per-round fractions, the scope."""

    def __init__(
        self,
        model: nn.Module,
        prune_fraction: float,
        scope: str = "global",
        fractions: Mapping[str, float] | None = None,
        exclude: Iterable[str] = (),
    ) -> None:
        if scope not in sel.SCOPES:
            raise ValueError(f"scope={scope!r} is not allowed; use one of {sel.SCOPES}")
        params = dict(model.named_parameters())
        self.names = sel.prunable(model, tuple(exclude))
        self.sizes = {n: params[n].numel() for n in self.names}
        self.fractions = sel.layer_fractions(self.names, fractions)  # the layers pruned on their own
        self.prune_fraction = prune_fraction
        self.scope = scope

    def dense_masks(self, model: nn.Module) -> dict[str, Tensor]:
        """All-True masks for the prunable parameters."""
        params = dict(model.named_parameters())
        return {n: torch.ones_like(params[n], dtype=torch.bool) for n in self.names}

    def prune_steps(self, model: nn.Module, pruner: Pruner, rounds: int, batches: Iterable[Any] | None = None,
                    seed: int | None = None) -> dict[str, Tensor]:
        """Masks after `rounds` scoring steps from dense with no training between them; `model` is left as it was."""
        masks = self.dense_masks(model)
        # Iterative SNIP and FORCE average over batches drawn anew at every step (de Jorge et al.'s code iterates
        # the train loader at each one); a one-pass iterator, and the other pruners, score on batches drawn once
        fresh = pruner.fresh_batches and not isinstance(batches, Iterator)
        if batches is not None and not fresh:
            batches = _DrawnOnce(batches, pruner, seed)
        # FORCE scores all weights at the masked point itself; the others score the masked network, whose
        # pruned weights are zeroed step by step (masks only shrink) and restored once at the end
        params = dict(model.named_parameters())
        saved = {} if pruner.revives else {n: params[n].detach().clone() for n in self.names}
        survivors = sel.Survivors()
        try:
            with pruner.session(None if pruner.revives else survivors):
                for r in range(1, rounds + 1):
                    if saved and r > 1:
                        pruner.zero_pruned(model, masks, survivors.dropped)
                    with seeded(None if seed is None else seed + r):
                        masks = self.step(model, pruner, masks, r, batches, survivors)
        finally:
            with torch.no_grad():
                for n, value in saved.items():
                    params[n].copy_(value)
        return masks

    def step(self, model: nn.Module, pruner: Pruner, masks: Mapping[str, Tensor], round: int,
             batches: Iterable[Any] | None = None, survivors: sel.Survivors | None = None) -> dict[str, Tensor]:
        """Masks after `round` rounds: score the model as it is and keep each group's scheduled count."""
        pruner.masks = masks  # FORCE scores at the masked point of an unmasked model
        scores = pruner.scores(model, batches)
        groups = sel.groups(self.sizes, round, self.prune_fraction, self.fractions, self.scope)
        return sel.select(scores, masks, groups, revive=pruner.revives, survivors=survivors)


def prune(
    model: nn.Module,
    pruner: str | Pruner = "magnitude",
    density: float | None = None,
    rounds: int | None = None,
    batches: Iterable[Any] | None = None,
    scope: str = "global",
    *,
    prune_fraction: float | None = None,
    fractions: Mapping[str, float] | None = None,
    exclude: Iterable[str] = (),
    seed: int | None = None,
    invert: bool = False,
) -> Ticket:
    """Score and select `rounds` times without training and return the ticket; `model` comes back unchanged."""
    if density is None and prune_fraction is None:
        raise ValueError("pass density= (the final fraction of weights kept) or prune_fraction= (removed per round)")
    if density is not None and prune_fraction is not None:
        raise ValueError("pass either density= or prune_fraction=, not both")
    check_fraction("density", density)
    check_fraction("prune_fraction", prune_fraction)
    pr = get(pruner)
    if invert:
        pr = Inverted(pr)
    rounds = pr.default_rounds if rounds is None else rounds
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    if pr.needs_data and batches is None:
        raise ValueError(f"pruner {pr.name!r} scores with data: pass batches= (an iterable of (inputs, targets))")
    p = per_round_fraction(prune_fraction, density, rounds)
    plan = Plan(model, p, scope, fractions, exclude)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    masks = plan.prune_steps(model, pr, rounds, batches, seed)
    for n, m in masks.items():
        weights[n] = weights[n] * m.to(weights[n].device)
    meta = {"round": 1, "steps": rounds, "pruner": pr.name, "scope": scope, "rewind": "init",
            "prune_fraction": p, "seed": seed}
    ticket = Ticket(masks, weights, meta)
    ticket.metadata["density"] = ticket.density
    return ticket
