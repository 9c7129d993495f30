"""Gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune"): from dense to the target density along
the cubic schedule, pruning every `every` steps inside one training run, no rewinding."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lottery.plan import Plan
from lottery.sparse_training.base import SparseTraining, Update
from lottery.sparsity.schedule import Cubic


class Gradual(SparseTraining):
    """GMP: update k of n keeps round(size · d_k) of each selection group (the plan's scope, exact counts) with
    d_k on the cubic schedule (`lottery.sparsity.schedule.Cubic`); masks only shrink. The pruner scores the weights
    (magnitude in the paper; any registered pruner works)."""

    name = "gmp"
    fixed_density = False

    def initial_masks(self, plan: Plan, model: nn.Module, density: float, seed: int) -> dict[str, Tensor]:
        """Dense: GMP starts from the whole network."""
        return plan.dense_masks(model)

    def update(self, u: Update) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The plan's groups pruned to the cubic schedule's count after update k."""
        plan = u.plan.rescheduled(Cubic(u.density, u.n))
        masks = plan.step(u.model, u.pruner, u.masks, u.k, u.batches)
        return masks, {n: torch.zeros_like(m) for n, m in masks.items()}
