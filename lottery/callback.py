"""LotteryTicket: iterative magnitude pruning (train, prune, rewind, repeat) inside one `trainer.fit`."""

from __future__ import annotations

import copy
import csv
import io
import math
import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor

from lottery.integrations import wandb as wandb_integration
from lottery.io import atomic_write_text
from lottery.loop import Plan, seeded
from lottery.masking import Masker, preserves_zeros
from lottery.pruning import Pruner, get
from lottery.pruning.inverted import Inverted
from lottery.schedule import RewindPoint, per_round_fraction
from lottery.select import check_fraction, check_fractions
from lottery.ticket import Ticket, pack_bits, unpack_bits

OPTIMIZER_STATES = ("restart", "rewind")

# Batch-level hooks this callback never uses. Lightning dispatches every hook of every callback on every
# batch, each inside a profiler context (~5 us, 0.2% of a LeNet step each); it skips an attribute that is
# not callable, so they are set to None on the instance (benchmarks/masking_overhead.py).
_UNUSED_BATCH_HOOKS = (
    "on_before_backward", "on_after_backward", "on_before_zero_grad", "on_train_batch_end",
    "on_validation_batch_start", "on_validation_batch_end", "on_test_batch_start", "on_test_batch_end",
    "on_predict_batch_start", "on_predict_batch_end",
)


class LotteryTicket(Callback):
    """Iterative magnitude pruning with rewinding, as a Lightning callback.

    Round 0 trains the dense model for `epochs_per_round` epochs. At the end of every round the callback
    saves that round's ticket, scores the surviving weights, keeps the scheduled number, rewinds the
    survivors and trains again, until `rounds` pruning rounds have been trained. It sets the Trainer's
    epoch budget itself (any `max_epochs` given to the Trainer is replaced, and the log says so).

    Args:
        pruner: registry name (``"magnitude"``, ``"random"``, ...) or a `lottery.pruning.Pruner`.
        rounds: pruning rounds after the dense round 0.
        epochs_per_round: epochs each round trains.
        prune_fraction: fraction of the surviving weights removed per round (default 0.2).
        density: final fraction of weights kept; the per-round fraction is then 1 - density^(1/rounds).
        scope: ``"global"`` ranks all prunable weights together, ``"layerwise"`` each layer on its own.
        fractions: per-round prune fraction by glob pattern, e.g. ``{"fc3.weight": 0.1}``; such layers are
            always pruned on their own, the rest by `scope`.
        exclude: glob patterns of weights never pruned (biases and norms never are).
        rewind: ``"init"``, ``"Nep"``, ``"Nit"``, ``"NepMit"`` (values at that point of round 0), or
            ``"none"`` (keep training from the trained weights, optimizer and schedule as they are).
        optimizer_state: ``"restart"`` (fresh optimizer state, as open_lth) or ``"rewind"`` (the state
            saved at the rewind point, with pruned entries zeroed).
        monitor, mode: metric whose best value and step are recorded per round; the step of the minimum
            validation loss is the early-stopping iteration of Frankle & Carbin.
        dirpath: where tickets and ``rounds.csv`` go (default ``<trainer.log_dir>/tickets``).
        seed: seed of the scoring randomness (random pruner); default torch's initial seed.
        invert: prune the highest scores instead of the lowest (the inversion sanity check).
        ticket: with ``epochs_per_round=0``, train this ticket (a path or a Ticket) instead of pruning: its
            masks, and its rewind weights where it has them, are loaded before the first step.
        sanity: transform `ticket` first: ``"shuffle"`` (same per-layer densities, random positions; the
            shuffled survivors start from the module's own values, the ticket's other values are loaded) or
            ``"reinit"`` (same masks, fresh initial weights: each layer's ``reset_parameters()``, then the
            module's ``init`` hyperparameter when it names one of ``lottery.models.INITIALIZERS``), seeded by `seed`.
        remask_after_step: also zero pruned weights after every optimizer step. Gradients of pruned
            weights are always zeroed before the step; for SGD, Adam, AdamW, RMSprop and Adagrad that
            alone keeps them exactly zero (zero gradient and zero state give a zero update, weight decay
            included), so the second pass is skipped for them unless asked; other optimizers always get it.

    Pruning at initialization: with ``epochs_per_round=0`` the callback runs `rounds` scoring steps (the
    exponential schedule d^(k/rounds)) before the first training step, data-driven pruners drawing their
    batches from the train dataloader on rank zero, logs the result as round 1, and the Trainer then trains
    that ticket for its own `max_epochs`.

    Rewinding and epochs: Lightning runs whole epochs, so every round starts at an epoch boundary. A
    rewound round restores the model, the learning-rate schedulers (epoch and step interval) and, with
    ``optimizer_state="rewind"``, the optimizer state of step k = N·S + M of round 0 (S optimizer steps
    per epoch) and trains E - N epochs (E = `epochs_per_round`). For ``init`` and ``Nep`` rewinds this is
    exactly the T - k steps round 0 had from k. With an iteration part M > 0 the round trains M steps more
    than round 0 had from k: its schedule continues M steps past round 0's end and the data order restarts
    at an epoch start instead of replaying batch M. With ``rewind="none"`` every round trains E epochs.

    Resume: all state (round, masks, rewind snapshot with optimizer and scheduler state, tickets, the
    random generators at the checkpoint) is in `state_dict`, so ``trainer.fit(..., ckpt_path="last")``
    after a kill continues to the same tickets as an uninterrupted run when it restarts from an
    epoch-end checkpoint.
    """

    def __init__(
        self,
        pruner: str | Pruner = "magnitude",
        rounds: int = 10,
        epochs_per_round: int = 1,
        prune_fraction: float | None = None,
        density: float | None = None,
        scope: str = "global",
        fractions: Mapping[str, float] | None = None,
        exclude: Iterable[str] = (),
        rewind: str = "init",
        optimizer_state: str = "restart",
        monitor: str = "val_loss",
        mode: str = "min",
        dirpath: str | None = None,
        seed: int | None = None,
        remask_after_step: bool = False,
        invert: bool = False,
        ticket: str | Ticket | None = None,
        sanity: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
            raise ValueError(f"rounds must be a positive integer (pruning rounds after the dense round 0), got {rounds!r}")
        if not isinstance(epochs_per_round, int) or epochs_per_round < 0:
            raise ValueError(f"epochs_per_round must be a positive integer, or 0 for pruning at initialization; "
                             f"got {epochs_per_round!r}")
        if prune_fraction is not None and density is not None:
            raise ValueError("pass either prune_fraction (removed per round) or density (final fraction kept), not both")
        check_fraction("prune_fraction", prune_fraction)
        check_fraction("density", density)
        check_fractions(fractions)
        if scope not in ("global", "layerwise"):
            raise ValueError(f"scope={scope!r} is not allowed; use 'global' or 'layerwise'")
        if optimizer_state not in OPTIMIZER_STATES:
            raise ValueError(f"optimizer_state={optimizer_state!r} is not allowed; use one of {OPTIMIZER_STATES}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode={mode!r} is not allowed; use 'min' or 'max'")
        if isinstance(exclude, str):
            exclude = (exclude,)
        if ticket is not None and epochs_per_round != 0:
            raise ValueError("ticket= trains a given ticket and needs epochs_per_round=0 (no pruning rounds)")
        if sanity not in (None, "shuffle", "reinit"):
            raise ValueError(f"sanity={sanity!r} is not allowed; use 'shuffle', 'reinit' or None")
        if sanity is not None and ticket is None:
            raise ValueError("sanity= transforms a given ticket: pass ticket= too")
        self.ticket = Ticket.load(ticket) if isinstance(ticket, (str, Path)) else ticket  # bad files fail here
        self.sanity = sanity
        self.pruner = Inverted(pruner) if invert else get(pruner)
        self.rewind = RewindPoint.parse(rewind)
        if epochs_per_round == 0 and self.rewind.kind != "init":
            raise ValueError(f"pruning at initialization (epochs_per_round=0) keeps the initial values; rewind={rewind!r} "
                             "needs training rounds: leave rewind='init' or set epochs_per_round > 0")
        if self.rewind.kind == "step" and (
            self.rewind.epochs > epochs_per_round or (self.rewind.epochs == epochs_per_round and self.rewind.iterations == 0)
        ):
            raise ValueError(
                f"rewind={rewind!r} lies beyond the round length ({epochs_per_round} epochs); "
                "choose a point inside round 0, e.g. a few hundred iterations ('500it')."
            )
        self.rounds = rounds
        self.epochs_per_round = epochs_per_round
        self.prune_fraction = per_round_fraction(prune_fraction, density, rounds)
        self.density = density
        self.scope = scope
        self.fractions = dict(fractions or {})
        self.exclude = tuple(exclude)
        self.optimizer_state = optimizer_state
        self.monitor = monitor
        self.mode = mode
        self.dirpath = dirpath
        self.seed = seed
        self.remask_after_step = remask_after_step

        self.tickets: list[Ticket] = []
        self._plan: Plan | None = None
        self._masker: Masker | None = None
        self._hooks: list[Any] = []
        self._folder: Path | None = None
        self._label = self.pruner.name
        # run state, all of it in state_dict()
        self._round = 0
        self._masks: dict[str, Tensor] | None = None
        self._snapshot: dict[str, Any] | None = None
        self._round_weights: dict[str, Tensor] | None = None  # rewind="none": weights the round started from
        self._round_start_step = 0
        self._best: float | None = None
        self._best_step: int | None = None
        self._at_best: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._finished = False
        self._base_seed: int | None = None
        self._rng_to_restore: dict[str, Any] | None = None
        self._rewind_step: int | None = None
        self._later_epochs = epochs_per_round
        unused = [(hook, Callback) for hook in _UNUSED_BATCH_HOOKS]
        if epochs_per_round == 0:  # it only takes round 0's rewind snapshot
            unused.append(("on_train_batch_start", LotteryTicket))
        for hook, owner in unused:
            if getattr(type(self), hook) is getattr(owner, hook):  # a subclass's own hook stays
                setattr(self, hook, None)

    # -- schedule -------------------------------------------------------------------------------------
    def _round_start_epoch(self, round: int) -> int:
        return 0 if round == 0 else self.epochs_per_round + (round - 1) * self._later_epochs

    def _set_budget(self, trainer: pl.Trainer) -> None:
        total = self._round_start_epoch(self.rounds + 1)
        if trainer.fit_loop.max_epochs != total:
            trainer.fit_loop.max_epochs = total
            rank_zero_info(
                f"LotteryTicket: {self.rounds} pruning rounds after a dense round 0; round 0 trains "
                f"{self.epochs_per_round} epochs, each later round {self._later_epochs} (rewind={self.rewind}): "
                f"Trainer max_epochs set to {total}."
            )
        if trainer.max_steps not in (-1, None):
            rank_zero_warn(f"Trainer(max_steps={trainer.max_steps}) may stop training before the {self.rounds} rounds end.")

    # -- Lightning hooks ------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._plan = Plan(pl_module, self.prune_fraction, self.scope, self.fractions, self.exclude)
        if self._base_seed is None:
            self._base_seed = self.seed if self.seed is not None else torch.initial_seed()
        if self.rewind.kind == "step" and self.rewind.iterations == 0:
            self._later_epochs = self.epochs_per_round - self.rewind.epochs
        if self.epochs_per_round > 0:
            self._set_budget(trainer)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._masks is None:
            self._masks = self._plan.dense_masks(pl_module)
        self._masker = Masker(pl_module, self._masks)
        self._masker.apply()
        # zeroed gradients keep pruned weights at zero under the usual optimizers; others are re-masked
        self._hooks = [opt.register_step_post_hook(self._after_step) for opt in trainer.optimizers
                       if self.remask_after_step or not preserves_zeros(opt)]
        if self._rng_to_restore is not None:
            _set_rng(self._rng_to_restore)
            self._rng_to_restore = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if math.isinf(trainer.num_training_batches):
            if self.rewind.kind == "step":
                raise ValueError(f"rewind={self.rewind} needs a train dataloader with a length to count steps per epoch")
            steps_per_epoch = 0
        else:
            steps_per_epoch = math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)
        self._folder = None
        self._dir(trainer)
        wandb_integration.define_metrics(trainer)
        self._rewind_step = self.rewind.step(steps_per_epoch)
        if self.rewind.kind == "step":
            if self._rewind_step >= self.epochs_per_round * steps_per_epoch:
                raise ValueError(
                    f"rewind={self.rewind} is step {self._rewind_step}, but round 0 has only "
                    f"{self.epochs_per_round * steps_per_epoch} steps ({self.epochs_per_round} epochs of "
                    f"{steps_per_epoch}); choose a point inside round 0."
                )
            self._later_epochs = self.epochs_per_round - self._rewind_step // steps_per_epoch
            self._set_budget(trainer)
        for ticket in self.tickets:  # after a resume into a new log folder, earlier tickets go there too
            self._save(trainer, ticket, overwrite=False)
        if self.epochs_per_round == 0 and self._round == 0:
            self._prune_at_init(trainer, pl_module)

    def _load_ticket(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start from the given ticket (after its sanity transform): its weights where it has them, its masks."""
        from lottery import sanity

        ticket = self.ticket
        if self.sanity == "shuffle":
            ticket = sanity.shuffle(ticket, self._base_seed)
        elif self.sanity == "reinit":
            ticket = sanity.reinitialize(ticket, pl_module, self._base_seed, init=sanity.named_init(pl_module))
        if ticket.weights:
            ticket.rewind(pl_module)
        ticket.apply(pl_module)  # also checks that the masks fit this model
        self._snapshot = {"model": {k: v.detach().clone() for k, v in pl_module.state_dict().items()}}
        self._masks = {n: torch.ones_like(m, device=pl_module.device) for n, m in ticket.masks.items()}
        packed = {n: pack_bits(m) for n, m in ticket.masks.items()} if trainer.is_global_zero else None
        self._install_masks(trainer, pl_module, packed)
        self._label = ticket.metadata.get("pruner", "ticket") + (f"+{self.sanity}" if self.sanity else "")
        self._round = 1
        self._round_start_step = trainer.global_step
        rank_zero_info(f"LotteryTicket: training the given ticket ({self._label}, density {ticket.density:.6f}) "
                       f"for max_epochs={trainer.max_epochs}.")

    def _prune_at_init(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """All scoring steps before training: the zero-training case of the loop."""
        if self.ticket is not None:
            return self._load_ticket(trainer, pl_module)
        self._snapshot = {"model": {k: v.detach().clone() for k, v in pl_module.state_dict().items()}}
        # data-driven pruners score on the train loader (as in _next_round); SynFlow reads its input shape there
        # when the module has no example_input_array
        batches = trainer.train_dataloader
        packed = None
        if trainer.is_global_zero:
            masks = self._plan.prune_steps(pl_module, self.pruner, self.rounds, batches, seed=self._base_seed)
            packed = {n: pack_bits(m) for n, m in masks.items()}
        self._install_masks(trainer, pl_module, packed)
        self._round = 1
        self._round_start_step = trainer.global_step
        density = sum(int(torch.count_nonzero(m)) for m in self._masks.values()) / sum(m.numel() for m in self._masks.values())
        rank_zero_info(f"LotteryTicket: {self.pruner.name} pruned at initialization in {self.rounds} steps to "
                       f"density {density:.6f}; training the ticket for max_epochs={trainer.max_epochs}.")

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._snapshot is None and self._round == 0 and self.epochs_per_round and trainer.global_step >= self._rewind_step:
            self._snapshot = {
                "step": trainer.global_step,
                "model": {k: v.detach().clone() for k, v in pl_module.state_dict().items()},
                "optimizers": [copy.deepcopy(opt.state_dict()) for opt in trainer.optimizers],
                "schedulers": [copy.deepcopy(cfg.scheduler.state_dict()) for cfg in trainer.lr_scheduler_configs],
            }

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        self._masker.zero_grads()

    def _after_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._masker.apply()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or self.monitor not in trainer.callback_metrics:
            return
        # kept in the checkpoint: a run resumed at a round boundary closes the round with these metrics
        self._last = _scalars(trainer.callback_metrics)
        value = float(trainer.callback_metrics[self.monitor])
        if self._best is None or (value < self._best if self.mode == "min" else value > self._best):
            self._best = value
            self._best_step = trainer.global_step - self._round_start_step
            # what else was measured then (test accuracy at the early-stopping iteration, say)
            self._at_best = _scalars(trainer.callback_metrics)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        while (self.epochs_per_round and self._round < self.rounds
               and trainer.current_epoch >= self._round_start_epoch(self._round + 1)):
            self._close_round(trainer, pl_module)
            self._next_round(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._finished:
            return
        if self.epochs_per_round and self._round < self.rounds:
            rank_zero_warn(f"LotteryTicket: training stopped in round {self._round} of {self.rounds}; "
                           "its ticket is saved with the metrics reached so far.")
        self._close_round(trainer, pl_module)
        self._finished = True
        wandb_integration.log_summary(trainer, self.tickets, self._dir(trainer))
        rank_zero_info(f"LotteryTicket: {len(self.tickets)} tickets and rounds.csv in {self._dir(trainer)}")

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    # -- rounds ---------------------------------------------------------------------------------------
    def _close_round(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record the ticket trained in the current round, with its metrics, on disk and in the loggers."""
        metrics = {**self._last, **_scalars(trainer.callback_metrics)}
        metrics.update({f"{k}_at_best": v for k, v in self._at_best.items() if k != self.monitor})
        metrics[f"best_{self.monitor}"] = self._best if self._best is not None else float("nan")
        metrics["best_step"] = self._best_step if self._best_step is not None else -1
        if self._round_weights is not None:
            weights = self._round_weights
        else:
            weights = self._snapshot["model"] if self._snapshot is not None else {}
        meta = {
            "round": self._round,
            "pruner": self._label,
            "rewind": str(self.rewind),
            "scope": self.scope,
            "prune_fraction": self.prune_fraction,
            "steps": trainer.global_step - self._round_start_step,
            "metrics": metrics,
        }
        ticket = Ticket({n: m.cpu() for n, m in self._masks.items()}, weights, meta)
        ticket.metadata["density"] = ticket.density
        self.tickets.append(ticket)
        path = self._save(trainer, ticket)
        wandb_integration.log_round(trainer, ticket, path)
        log = {"lottery/round": float(self._round), "lottery/density": ticket.density,
               f"lottery/best_{self.monitor}": metrics[f"best_{self.monitor}"],
               f"lottery/best_{self.monitor}_step": float(metrics["best_step"])}
        for logger in trainer.loggers:
            logger.log_metrics(log, step=trainer.global_step)
        rank_zero_info(f"LotteryTicket: round {self._round} done, density {ticket.density:.4f}, "
                       f"best {self.monitor} {metrics[f'best_{self.monitor}']:.4f} at step {metrics['best_step']}")

    def _next_round(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Prune the survivors (decided on rank zero, broadcast to all), then rewind them."""
        new_round = self._round + 1
        packed = None
        if trainer.is_global_zero:
            with seeded(self._base_seed + 1_000_003 * new_round):
                masks = self._plan.step(pl_module, self.pruner, self._masks, new_round, trainer.train_dataloader)
            packed = {n: pack_bits(m) for n, m in masks.items()}
        self._install_masks(trainer, pl_module, packed)
        self._round = new_round
        self._rewind_survivors(trainer, pl_module)
        self._round_start_step = trainer.global_step
        self._best = self._best_step = None
        self._at_best = {}
        self._last = {}

    def _install_masks(self, trainer: pl.Trainer, pl_module: pl.LightningModule, packed: dict[str, Tensor] | None) -> None:
        """Take rank zero's masks (bit-packed, broadcast to every rank) and zero the pruned weights."""
        packed = trainer.strategy.broadcast(packed, src=0)
        self._masks = {n: unpack_bits(packed[n], m.shape).to(m.device) for n, m in self._masks.items()}
        self._masker = Masker(pl_module, self._masks)
        self._masker.apply()
        for opt in trainer.optimizers:
            self._masker.mask_optimizer_state(opt)

    def _rewind_survivors(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.rewind.kind == "none":
            self._masker.apply()
            for opt in trainer.optimizers:
                self._masker.mask_optimizer_state(opt)
            self._round_weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
            return
        # load_state_dict copies into the live tensors, so the snapshot itself is never mutated
        pl_module.load_state_dict(self._snapshot["model"])
        self._masker.apply()
        for opt, saved in zip(trainer.optimizers, self._snapshot["optimizers"]):
            saved = copy.deepcopy(saved)  # Optimizer.load_state_dict keeps references to what it is given
            if self.optimizer_state == "restart":
                saved["state"] = {}
            opt.load_state_dict(saved)
            self._masker.mask_optimizer_state(opt)
        for cfg, saved in zip(trainer.lr_scheduler_configs, self._snapshot["schedulers"]):
            cfg.scheduler.load_state_dict(copy.deepcopy(saved))

    # -- output ---------------------------------------------------------------------------------------
    def _dir(self, trainer: pl.Trainer) -> Path:
        """Ticket folder; resolved on every rank because `trainer.log_dir` is a collective call."""
        if self._folder is None:
            root = self.dirpath or Path(trainer.log_dir or trainer.default_root_dir) / "tickets"
            self._folder = Path(root)
        return self._folder

    def _save(self, trainer: pl.Trainer, ticket: Ticket, overwrite: bool = True) -> Path | None:
        folder = self._dir(trainer)
        if not trainer.is_global_zero:
            return None
        path = folder / f"round_{ticket.round:02d}.safetensors"
        if overwrite or not path.exists():
            ticket.save(path)
        atomic_write_text(folder / "rounds.csv", rounds_csv(self.tickets, self.monitor))
        return path

    # -- checkpointing --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        tickets = []
        for t in self.tickets:
            tensors, header = t.pack(with_weights=self.rewind.kind == "none")
            tickets.append({"tensors": tensors, "header": header})
        return {
            "version": 1,
            "round": self._round,
            "masks": None if self._masks is None else {n: pack_bits(m) for n, m in self._masks.items()},
            "shapes": None if self._masks is None else {n: tuple(m.shape) for n, m in self._masks.items()},
            "snapshot": self._snapshot,
            "round_weights": self._round_weights,
            "round_start_step": self._round_start_step,
            "best": self._best,
            "best_step": self._best_step,
            "at_best": self._at_best,
            "last": self._last,
            "finished": self._finished,
            "base_seed": self._base_seed,
            "label": self._label,
            "tickets": tickets,
            "rng": _get_rng(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._round = state["round"]
        self._masks = None if state["masks"] is None else {
            n: unpack_bits(p, state["shapes"][n]) for n, p in state["masks"].items()}
        self._snapshot = state["snapshot"]
        self._round_weights = state["round_weights"]
        self._round_start_step = state["round_start_step"]
        self._best = state["best"]
        self._best_step = state["best_step"]
        self._at_best = dict(state.get("at_best", {}))
        self._last = dict(state.get("last", {}))
        self._finished = state["finished"]
        self._base_seed = state["base_seed"]
        self._label = state.get("label", self._label)
        self.tickets = []
        for entry in state["tickets"]:
            ticket = Ticket.unpack(entry["tensors"], entry["header"])
            if self.rewind.kind != "none" and self._snapshot is not None:
                ticket.weights = self._snapshot["model"]
            self.tickets.append(ticket)
        self._rng_to_restore = state["rng"]


def rounds_csv(tickets: list[Ticket], monitor: str = "val_loss") -> str:
    """One row per ticket: round, density, pruner, rewind, steps, best monitored value and step, final metrics."""
    first = ["round", "density", "pruner", "rewind", "steps", f"best_{monitor}", "best_step"]
    extra = sorted({k for t in tickets for k in t.metrics} - set(first))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=first + extra, lineterminator="\n")
    writer.writeheader()
    for t in tickets:
        row = {**t.metrics, **{k: t.metadata.get(k, "") for k in first[:5]}}
        row["density"] = f"{t.density:.6f}"
        writer.writerow(row)
    return out.getvalue()


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The one-number entries of a metrics dict, as floats."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, Tensor) and v.numel() == 1}


def _get_rng() -> dict[str, Any]:
    """Global random states as tensors and tuples (loadable with weights_only)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np

        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        state["numpy"] = (kind, torch.from_numpy(keys.astype("int64")), int(pos), int(has_gauss), float(gauss))
    except ImportError:
        pass
    return state


def _set_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy as np

        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, gauss))


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x
