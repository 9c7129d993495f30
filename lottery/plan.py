"""A pruning plan and its score -> select steps, shared by the callback and by `prune` (pruning without Lightning)."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from lottery.pruning import Pruner, get
from lottery.pruning.base import score
from lottery.pruning.batches import LossFn, take
from lottery.pruning.inverted import Inverted
from lottery.rng import seeded
from lottery.sparsity import (
    DensitySchedule, Geometric, NaNScoresError, Survivors, check_amount, check_scope, groups, layer_fractions,
    per_round_fraction, prunable, select,
)
from lottery.sparsity.distribution import layer_counts
from lottery.sparsity.execution import dense_gradients
from lottery.sparsity.schedule import Toward
from lottery.sparsity.structure import NM
from lottery.sparsity.targets import aliases, emptied_norms, scoring
from lottery.ticket import Ticket


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
                # as given: the pruner itself reads (inputs, labels), or hands each batch to a loss_fn
                self.drawn = take(self.batches, self.pruner.batches, self.pruner.per_class, as_given=True)
        return iter(self.drawn)


class Plan:
    """What to prune in a model: prunable names, their sizes, the density schedule (per layer where set), the scope.

    `prune_fraction` is the fraction of survivors removed per step (a `Geometric` schedule) or any
    `DensitySchedule`; `fractions` give layers matching their glob patterns a geometric schedule of their own.
    The names are Linear and Conv weights, plus the floating-point parameters `include` globs match (attention
    in-projections, embeddings), minus those `exclude` matches (`lottery.sparsity.prunable`).
    """

    def __init__(
        self,
        model: nn.Module,
        prune_fraction: float | DensitySchedule,
        scope: str = "global",
        fractions: Mapping[str, float] | None = None,
        exclude: Iterable[str] = (),
        include: Iterable[str] = (),
        structure: str | NM | None = None,
    ) -> None:
        check_scope(scope)
        params = dict(model.named_parameters())
        self.names = prunable(model, tuple(exclude), tuple(include))  # Linear/Conv weights + include - exclude
        self.sizes = {n: params[n].numel() for n in self.names}
        self.shapes = {n: tuple(params[n].shape) for n in self.names}
        self.fractions = layer_fractions(self.names, fractions)  # the layers pruned on their own
        self.schedule = Geometric(prune_fraction) if isinstance(prune_fraction, (int, float)) else prune_fraction
        self.layer_schedules: dict[str, DensitySchedule] = {n: Geometric(f) for n, f in self.fractions.items()}
        self.scope = scope
        self.structure = None if structure is None else NM.parse(structure)  # N:M blocks (lottery.sparsity.structure)
        if self.structure is not None:
            for n in self.names:
                self.structure.check(n, self.shapes[n])

    def rescheduled(self, schedule: DensitySchedule) -> Plan:
        """This plan with every group (layers named in `fractions` too) on `schedule` (gradual pruning's cubic one)."""
        plan = copy.copy(self)
        plan.schedule = schedule
        plan.layer_schedules = {n: schedule for n in self.layer_schedules}
        return plan

    def distributed(self, density: float, kind: str, steps: int) -> Plan:
        """This plan with each layer pruned on its own toward its exact share of `density` under the layer
        distribution `kind` (uniform, ER, ERK: `lottery.sparsity.distribution`), reached after `steps` steps."""
        counts = layer_counts(self.shapes, density, kind)
        plan = copy.copy(self)
        plan.layer_schedules = {n: Toward(counts[n], steps) for n in self.names}
        return plan

    def dense_masks(self, model: nn.Module) -> dict[str, Tensor]:
        """All-True masks for the prunable parameters."""
        params = dict(model.named_parameters())
        return {n: torch.ones_like(params[n], dtype=torch.bool) for n in self.names}

    def prune_steps(self, model: nn.Module, pruner: Pruner, rounds: int, batches: Iterable[Any] | None = None,
                    seed: int | None = None, *, loss_fn: LossFn | None = None) -> dict[str, Tensor]:
        """Masks after `rounds` scoring steps from dense with no training between them; `model` is left as it was.

        `loss_fn(module, batch) -> loss` is handed to every step (see `step`).
        """
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
        survivors = Survivors()
        try:
            with pruner.session(None if pruner.revives else survivors):
                for r in range(1, rounds + 1):
                    if saved and r > 1:
                        pruner.zero_pruned(model, masks, survivors.dropped)
                    with seeded(None if seed is None else seed + r):
                        masks = self.step(model, pruner, masks, r, batches, survivors, loss_fn=loss_fn)
        finally:
            with torch.no_grad():
                for n, value in saved.items():
                    params[n].copy_(value)
        return masks

    def step(self, model: nn.Module, pruner: Pruner, masks: Mapping[str, Tensor], round: int,
             batches: Iterable[Any] | None = None, survivors: Survivors | None = None, *,
             loss_fn: LossFn | None = None) -> dict[str, Tensor]:
        """Masks after `round` rounds: score the model as it is and keep each group's scheduled count.

        `loss_fn(module, batch) -> loss` goes to a pruner that reads one (the data-driven ones); without it they
        score the cross-entropy of forward(inputs) on (inputs, labels) batches.
        """
        with scoring(self.names):  # `Pruner.prunable_parameters` gives the pruner this plan's names
            with dense_gradients(model):  # a pruner reads .grad as a weight-shaped tensor
                scores = score(pruner, model, batches, masks, loss_fn)
        missing = [n for n in self.names if n not in scores]
        if missing:
            raise KeyError(f"round {round}: pruner {pruner.name or type(pruner).__name__} returned no scores for "
                           f"{', '.join(missing)}: a pruner scores every prunable parameter of the plan (include= ones "
                           "too), those of `self.prunable_parameters(model)`.")
        kept = groups(self.sizes, round, self.schedule, self.layer_schedules, self.scope)
        competing, revive = masks, pruner.revives
        if self.structure is not None:  # only each block's N best survivors compete, at most N/M of the layers kept
            competing = {n: self.structure.candidates(scores[n], torch.ones_like(masks[n]) if revive else masks[n])
                         for n in self.names}
            kept = [(names, min(k, sum(int(competing[n].sum()) for n in names))) for names, k in kept]
            revive, survivors = False, None
        try:
            new = select(scores, competing, kept, revive=revive, survivors=survivors)
        except NaNScoresError:
            bad = [n for n in self.names if n in scores and bool(torch.isnan(scores[n]).any())]
            raise NaNScoresError(
                f"round {round}: the {pruner.name} scores of {', '.join(bad)} hold NaN, so they cannot be ranked. "
                "The weights (or the gradients the pruner reads) are probably NaN or infinite: training diverged "
                "or the model produced NaN. Check the loss and lower the learning rate before pruning.") from None
        nan = emptied_norms(model, new)
        if nan:
            raise ValueError(f"round {round} prunes {'; '.join(nan)}, so that weight would be NaN there (0/0). Prune "
                             "less (a higher density), prune layerwise, give the layer a lower rate with fractions=, "
                             "leave it dense with exclude=, or remove the normalization.")
        emptied = [n for n in self.names if not bool(new[n].any()) and bool(masks[n].any())]
        if emptied:
            warnings.warn(f"round {round} left no weights in {', '.join(emptied)}: unless a skip connection goes around "
                          "them, the network's output no longer depends on its input. Prune less (a higher density), "
                          "prune layerwise, or give these layers a lower rate with fractions=.", stacklevel=2)
        return new


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
    include: Iterable[str] = (),
    seed: int | None = None,
    invert: bool = False,
    loss_fn: LossFn | None = None,
    distribution: str | None = None,
    structure: str | None = None,
) -> Ticket:
    """Score and select `rounds` times without training and return the ticket; `model` comes back unchanged.

    The data-driven pruners score the cross-entropy of forward(inputs) on (inputs, labels) batches, or
    `loss_fn(module, batch) -> loss` (the mean over the batch's examples) on batches of any structure.
    `distribution` ("uniform", "er", "erk") gives each layer its exact share of `density` instead of `scope`;
    `structure` ("2:4", any "N:M") keeps at most N of every M consecutive weights along the input dimension.
    """
    check_amount(prune_fraction, density, required=True)
    pr = get(pruner)
    if invert:
        pr = Inverted(pr)
    rounds = pr.default_rounds if rounds is None else rounds
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    if pr.needs_data and batches is None:
        raise ValueError(f"pruner {pr.name!r} scores with data: pass batches= (an iterable of (inputs, targets), "
                         "or of any batches together with loss_fn=(module, batch) -> loss)")
    p = per_round_fraction(prune_fraction, density, rounds)
    plan = Plan(model, p, scope, fractions, exclude, include, structure=structure)
    if distribution is not None:
        if density is None or fractions:
            raise ValueError("distribution= spreads density= over the layers: pass density=, and no fractions=")
        plan = plan.distributed(density, distribution, rounds)
    shared = aliases(model)  # a tied tensor's value is kept once, under its listed name (the one its mask has)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items() if k not in shared}
    masks = plan.prune_steps(model, pr, rounds, batches, seed, loss_fn=loss_fn)
    for n, m in masks.items():
        weights[n] = weights[n] * m.to(weights[n].device)
    meta = {"round": 1, "steps": rounds, "pruner": pr.name, "scope": scope, "rewind": "init",
            "prune_fraction": p, "seed": seed, **({"distribution": distribution} if distribution else {}),
            **({"structure": str(plan.structure)} if plan.structure else {})}
    ticket = Ticket(masks, weights, meta)
    ticket.metadata["density"] = ticket.density
    return ticket
