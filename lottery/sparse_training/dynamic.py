"""Dynamic sparse training at a fixed density: SET (Mocanu et al., Nature Communications 2018) and RigL (Evci et al.,
ICML 2020, "Rigging the Lottery"). Both start from random masks with Erdős–Rényi(-Kernel) layer densities and, at
every update, replace a fraction of each layer's active weights: the lowest-scored leave (magnitude), as many
inactive ones enter. They differ only in what the entering weights are chosen by (`grow_scores`)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lottery.plan import Plan
from lottery.pruning import get
from lottery.pruning.base import score
from lottery.rng import seeded
from lottery.sparse_training.base import SparseTraining, Update
from lottery.sparsity.distribution import check_distribution
from lottery.sparsity.regrow import drop_and_grow
from lottery.sparsity.schedule import Constant, CosineDecay, UpdateFraction
from lottery.sparsity.targets import scoring


class DynamicSparse(SparseTraining):
    """Drop and grow at a constant per-layer count; subclasses say how entering weights are chosen."""

    default_distribution = "erk"

    def __init__(self, every: int = 100, start: float = 0.0, stop: float = 0.75, alpha: float = 0.3,
                 distribution: str | None = None) -> None:
        super().__init__(every, start, stop)
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"{self.name}: alpha (the fraction of active weights replaced) must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self.distribution = distribution or self.default_distribution
        check_distribution(self.distribution)

    def fraction(self, step: int, total: int) -> float:
        """The fraction of each layer's active weights replaced at `step` of `total`."""
        return self.schedule()(step, total)

    def schedule(self) -> UpdateFraction:
        """The update-fraction schedule (an object of lottery.sparsity.schedule)."""
        raise NotImplementedError

    def initial_masks(self, plan: Plan, model: nn.Module, density: float, seed: int) -> dict[str, Tensor]:
        """Random masks with each layer's exact share of `density` under the layer distribution (ER or ERK)."""
        with seeded(seed):
            return plan.distributed(density, self.distribution, 1).step(model, get("random"), plan.dense_masks(model), 1)

    def grow_scores(self, u: Update) -> dict[str, Tensor]:
        """How entering weights are ranked (highest first) among the inactive ones."""
        raise NotImplementedError

    def update(self, u: Update) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Each layer keeps its count: round(f·active) of the lowest pruner scores leave, as many best grow_scores enter."""
        with scoring(u.plan.names):
            drop = score(u.pruner, u.model, u.batches, u.masks, None)
        return drop_and_grow(drop, self.grow_scores(u), u.masks, self.fraction(u.step, u.total))

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "alpha": self.alpha, "schedule": type(self.schedule()).__name__,
                "distribution": self.distribution}


class SET(DynamicSparse):
    """SET: entering weights are drawn at random; the fraction replaced is constant (ζ = 0.3), layer densities ER."""

    name = "set"
    default_distribution = "er"

    def schedule(self) -> UpdateFraction:
        """ζ = alpha at every update."""
        return Constant(self.alpha)

    def grow_scores(self, u: Update) -> dict[str, Tensor]:
        """Uniform random scores, drawn from the update's own seed (the same on a resumed run)."""
        generator = torch.Generator().manual_seed(u.seed)
        return {n: torch.rand(m.shape, generator=generator).to(m.device) for n, m in u.masks.items()}


class RigL(DynamicSparse):
    """RigL: entering weights are those with the largest dense-gradient magnitude; the fraction replaced decays as
    (α/2)(1 + cos(π t / T_end)) with α = 0.3 and T_end = `stop` of training; layer densities ERK."""

    name = "rigl"
    needs_grads = True

    def schedule(self) -> UpdateFraction:
        """Cosine decay from alpha to 0 at `stop` of training."""
        return CosineDecay(self.alpha, self.stop)

    def grow_scores(self, u: Update) -> dict[str, Tensor]:
        """|dense gradient| of this update's step."""
        if u.grads is None:
            raise ValueError("RigL grows by the dense gradient; the update was given none")
        return {n: u.grads[n].abs() for n in u.masks}
