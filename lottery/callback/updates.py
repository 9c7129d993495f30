"""Sparse training inside the round being trained: a method's mask update on its update steps (rank zero decides,
every rank installs), the dense gradient read before it is masked, grown weights started at zero."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn

from lottery import rng
from lottery.callback.clock import iteration
from lottery.callback.masks import LiveMasks, packed
from lottery.plan import Plan
from lottery.pruning import Pruner
from lottery.sparse_training import SparseTraining
from lottery.sparse_training.base import Update
from lottery.sparsity import Masker
from lottery.ticket import unpack_bits


class MaskUpdates:
    """Runs `method` on the optimizer steps it updates at, once per step whatever the number of optimizers."""

    def __init__(self, method: SparseTraining, density: float) -> None:
        self.method, self.density = method, density
        self.done_at: int | None = None  # the step last updated (several optimizers step once each per step)
        self._total: int | None = None

    def total(self, trainer: pl.Trainer) -> int:
        """The run's optimizer steps (fixed for a fit; asked for at every step, so Lightning computes it once)."""
        if self._total is None:
            self._total = int(trainer.estimated_stepping_batches)
        return self._total

    def start(self, trainer: pl.Trainer, module: pl.LightningModule, live: LiveMasks, plan: Plan, base_seed: int) -> str:
        """Before the first step: check the run gets updates, install the method's initial masks; what was done."""
        total = self.total(trainer)
        self.check(total)
        masks = None
        if trainer.is_global_zero:
            masks = self.method.initial_masks(plan, module, self.density, rng.derived_seed(base_seed, "sparse_training"))
        live.install(trainer, module, masks)
        return (f"{self.method.name} training at density {live.density:.6f} (target {self.density}), "
                f"{self.method.updates(total)} mask updates")

    def check(self, total: int) -> None:
        """Before training: refuse a gradual run that would never prune, warn of a dynamic one that never updates."""
        if self.method.updates(total) > 0:
            return
        window = f"{total} optimizer steps, every={self.method.every}, start={self.method.start}, stop={self.method.stop}"
        if not self.method.fixed_density:  # gradual pruning would never leave dense
            raise ValueError(f"sparse_training='gmp' would make no pruning update in this run ({window}), so it would "
                             "train dense: lower every= or train longer")
        rank_zero_warn(f"LotteryTicket: {self.method.name} makes no mask update in this run ({window}); this is static "
                       "sparse training. Lower every= or train longer for dynamic sparse training.")

    def settled(self, trainer: pl.Trainer) -> bool:
        """True once the masks have reached the run's density (GMP: after its last update; SET and RigL: always)."""
        return self.method.fixed_density or iteration(trainer) > self.method.last_update(self.total(trainer))

    def due(self, trainer: pl.Trainer) -> tuple[int, int, int] | None:
        """(k, step, total) when this optimizer step is update k, else None."""
        step, total = iteration(trainer), self.total(trainer)
        k = self.method.index(step, total)
        return None if k is None or self.done_at == step else (k, step, total)

    def run(self, trainer: pl.Trainer, module: pl.LightningModule, live: LiveMasks, plan: Plan, pruner: Pruner,
            base_seed: int) -> None:
        """Before this step's optimizer step, if it is an update step: new masks from the weights and the dense
        gradient of this step; dropped weights are zeroed with their optimizer state, grown ones start at zero."""
        due = self.due(trainer)
        if due is None:
            return
        k, step, total = due
        self.done_at = step
        masks = grown = None
        if trainer.is_global_zero:
            params = dict(module.named_parameters(remove_duplicate=False))
            grads = None
            if self.method.needs_grads:  # the gradient is dense until the masker zeroes its pruned entries
                grads = {n: (params[n].grad if params[n].grad is not None else torch.zeros_like(params[n])).detach()
                         for n in plan.names}
            seed = rng.derived_seed(base_seed, f"update:{step}")
            u = Update(plan, module, live.masks, pruner, self.density, k, self.method.updates(total), step, total, seed,
                       grads, trainer.train_dataloader)
            with rng.seeded(seed):
                masks, grown = self.method.update(u)
            grown = packed(grown)
        live.install(trainer, module, masks)
        # a weight dropped and grown again in one update is in both masks: rank zero says which entered
        grown = trainer.strategy.broadcast(grown, src=0)
        # grown weights and their per-weight optimizer state start at zero (Evci et al. 2020): a Masker of what
        # did not grow zeroes exactly those entries
        masks = live.masks
        entered = Masker(module, {n: ~unpack_bits(g, masks[n].shape).to(masks[n].device) for n, g in grown.items()})
        entered.apply()
        for opt in trainer.optimizers:
            entered.mask_optimizer_state(opt)
