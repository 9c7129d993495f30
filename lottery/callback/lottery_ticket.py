"""LotteryTicket: iterative magnitude pruning (train, prune, rewind, repeat) inside one `trainer.fit`.

The class holds the Lightning hooks and the round transitions only; the pieces they delegate to are named
modules of this package: argument checks (`arguments`), the round clock (`clock`), the rewind snapshot
(`snapshot`), the live masks (`masks`), the round's metrics (`metrics`), the zero-training starts (`start`),
the checkpointed run state (`state`), the output (`output`) and the hooks switched off (`hooks`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor

from lottery import rng
from lottery.callback import hooks, loss, start
from lottery.callback.arguments import check_arguments, check_rounds_trainer, check_sparse_training
from lottery.callback.clock import RoundClock, iteration
from lottery.callback.early_bird import EarlyBird
from lottery.callback.masks import LiveMasks
from lottery.callback.metrics import RoundMetrics
from lottery.callback.output import RunOutput
from lottery.callback.rewind import RewindPoint
from lottery.callback.snapshot import Snapshot, module_state
from lottery.callback.state import RunState, pack_tickets, unpack_tickets
from lottery.callback.updates import MaskUpdates
from lottery.plan import Plan
from lottery.pruning import Pruner, get
from lottery.pruning.inverted import Inverted
from lottery.sparse_training import SparseTraining, with_distribution as sparse_training_method
from lottery.sparsity import kernels, per_round_fraction, preserves_zeros, summary
from lottery.sparsity.execution import SurvivorsStep, apply_sparse, decisions
from lottery.sparsity.structure import NM
from lottery.ticket import Ticket

DEFAULT_ROUNDS = 10  # IMP rounds after the dense round 0 when `rounds` is not given


class LotteryTicket(Callback):
    """Iterative magnitude pruning with rewinding, as a Lightning callback.

    Round 0 trains the dense model for `epochs_per_round` epochs. At the end of every round the callback
    saves that round's ticket, scores the surviving weights, keeps the scheduled number, rewinds the
    survivors and trains again, until `rounds` pruning rounds have been trained. It sets the Trainer's
    epoch budget itself (any `max_epochs` given to the Trainer is replaced, and the log says so).

    Args:
        pruner: registry name (``"magnitude"``, ``"random"``, ...) or a `lottery.pruning.Pruner`.
        rounds: pruning rounds after the dense round 0 (default 10); with ``epochs_per_round=0``, the scoring
            steps (default: the pruner's own, e.g. 1 for SNIP, 100 for SynFlow, 60 for Iterative SNIP and FORCE).
        epochs_per_round: epochs each round trains.
        prune_fraction: fraction of the surviving weights removed per round (default 0.2).
        density: final fraction of weights kept; the per-round fraction is then 1 - density^(1/rounds).
        scope: ``"global"`` ranks all prunable weights together, ``"layerwise"`` each layer on its own.
        fractions: per-round prune fraction by glob pattern, e.g. ``{"fc3.weight": 0.1}``; such layers are
            always pruned on their own, the rest by `scope`.
        exclude: glob patterns of weights never pruned (biases and norms never are).
        include: glob patterns of further floating-point parameters to prune besides Linear and Conv weights
            (attention in-projections, embeddings: ``["*in_proj_weight", "embed.weight"]``).
        rewind: ``"init"``, ``"Nep"``, ``"Nit"``, ``"NepMit"`` (values at that point of round 0), or
            ``"none"`` (keep training from the trained weights, optimizer and schedule as they are).
        optimizer_state: ``"restart"`` (fresh optimizer state, as open_lth) or ``"rewind"`` (the state
            saved at the rewind point, with pruned entries zeroed).
        monitor, mode: metric whose best value and step are recorded per round; the step of the minimum
            validation loss is the early-stopping iteration of Frankle & Carbin.
        dirpath: where tickets and ``rounds.csv`` go (default ``tickets`` in the run's own folder: the logger's
            ``version_N`` folder, for W&B ``<save_dir>/<project>/<run id>``); a folder holding another run's
            tickets is refused unless this run resumes that one.
        seed: seed of the scoring randomness (random pruner); default torch's initial seed.
        invert: prune the highest scores instead of the lowest (the inversion sanity check).
        from_ticket: with ``epochs_per_round=0``, train this ticket (a path or a Ticket) instead of pruning:
            its masks, and its rewind weights where it has them, are loaded before the first step.
        sanity: transform `from_ticket` first, by a variant registered in `lottery.sanity.VARIANTS`: ``"shuffle"`` (same per-layer densities, random positions; the
            shuffled survivors start from the module's own values, the ticket's other values are loaded) or
            ``"reinit"`` (same masks, fresh initial weights: each layer's ``reset_parameters()``, then the
            module's ``init`` hyperparameter when it names one of ``lottery.models.INITIALIZERS``), seeded by `seed`.
        remask_after_step: also zero pruned weights after every optimizer step. Gradients of pruned
            weights are always zeroed before the step; for SGD, Adam, AdamW, RMSprop and Adagrad that
            alone keeps them exactly zero (zero gradient and zero state give a zero update, weight decay
            included), so the second pass is skipped for them unless asked; other optimizers always get it.
        ticket: the old spelling of `from_ticket` (the output tickets are `self.tickets`).
        loss_fn: what data-driven pruners (SNIP, GraSP, Iterative SNIP, FORCE) score with: ``"training_step"``
            (default: the module's own loss on its own batches), ``"cross_entropy"`` (the pruner's cross-entropy
            of ``forward(inputs)`` on ``(inputs, labels)`` batches, as in the papers; GraSP divides the logits by
            its temperature), or a callable ``(module, batch) -> loss``. A module whose training_step is that
            cross-entropy may declare ``lottery_loss = "cross_entropy"`` (ClassificationModule does).
        sparse_training: train one sparse run (``epochs_per_round=0``, the Trainer's ``max_epochs``) whose masks
            change as it trains: ``"gmp"`` (gradual magnitude pruning from dense to `density`, Zhu & Gupta 2017),
            ``"set"`` or ``"rigl"`` (dynamic sparse training at `density`: Mocanu et al. 2018, Evci et al. 2020),
            or a `lottery.sparse_training` instance for other settings (``RigL(every=100, stop=0.75, alpha=0.3)``).
            The pruner scores what GMP removes and what SET/RigL drop (magnitude by default).
        distribution: layer densities of pruning at initialization, SET and RigL: ``"uniform"``, ``"er"`` or
            ``"erk"`` (each layer keeps its exact share of `density`; default for SET "er", for RigL "erk").
        early_bird: end an IMP round once the mask the next pruning would give has changed by less than this
            normalised Hamming distance (You et al. 2020 used 0.1) for `early_bird_epochs` epochs in a row; the
            epochs it trained are recorded as ``early_bird_epochs`` in the round's metrics (NaN: ran its length),
            its wall time as ``round_wall_s``.
        structure: ``"2:4"`` or any ``"N:M"``: at most N of every M consecutive weights along a layer's input
            dimension survive (every pruner, IMP, pruning at init, GMP); a density at or above N/M gives an exact
            N:M mask, lower ones keep fewer among its survivors (`lottery.sparsity.structure`).
        sparse_below: Linear and Conv2d layers whose density is below this run forward and both gradients on
            sparse kernels (survivors only; results equal masked dense up to summation order), or ``"auto"``: below
            the crossover measured for each layer's shape and batch on this device at fit start (a conv's at its
            first forward, which gives its input size). The log says which and why.
            With an elementwise optimizer (SGD, Adam, AdamW, RMSprop, Adagrad) their update runs on the survivors
            only (`SurvivorsStep`); a module's own on_before_optimizer_step then sees their survivors' gradients.

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

    Resume: all state (round, masks, rewind snapshot with optimizer and scheduler state, tickets, the last
    epoch's training metrics, the random generators at the checkpoint) is in `state_dict`, so
    ``trainer.fit(..., ckpt_path=PATH)`` from an epoch-end checkpoint (``ModelCheckpoint(save_on_train_epoch_end=True)``)
    continues to the same tickets and rounds.csv as an uninterrupted run; a run resumed after its last epoch
    records its last round at once. (``ckpt_path="last"`` finds last.ckpt only in the checkpoint folder of the
    new Trainer: give the ModelCheckpoint a fixed ``dirpath``. From the command line, ``lottery fit ... --resume``.)
    """


    def __init__(
        self,
        pruner: str | Pruner = "magnitude",
        rounds: int | None = None,
        epochs_per_round: int = 1,
        prune_fraction: float | None = None,
        density: float | None = None,
        scope: str = "global",
        fractions: Mapping[str, float] | None = None,
        exclude: Iterable[str] = (),
        include: Iterable[str] = (),
        rewind: str = "init",
        optimizer_state: str = "restart",
        monitor: str = "val_loss",
        mode: str = "min",
        dirpath: str | None = None,
        seed: int | None = None,
        remask_after_step: bool = False,
        invert: bool = False,
        from_ticket: str | Ticket | None = None,
        sanity: str | None = None,
        ticket: str | Ticket | None = None,
        loss_fn: str | Callable[[pl.LightningModule, Any], Tensor] = "training_step",
        sparse_training: str | SparseTraining | None = None,
        distribution: str | None = None,
        early_bird: float | None = None,
        early_bird_epochs: int = 5,
        structure: str | None = None,
        sparse_below: float | str | None = None,
    ) -> None:
        super().__init__()
        if ticket is not None:
            if from_ticket is not None:
                raise ValueError("pass from_ticket= only (ticket= is its old spelling), not both")
            from_ticket = ticket
        self.pruner = Inverted(pruner) if invert else get(pruner)
        check_sparse_training(sparse_training, distribution, rounds, epochs_per_round, density, fractions, from_ticket)
        self.sparse_training = None if sparse_training is None else sparse_training_method(sparse_training, distribution)
        self.distribution = distribution
        if rounds is None:  # pruning at initialization takes the pruner's own number of scoring steps
            rounds = self.pruner.default_rounds if epochs_per_round == 0 else DEFAULT_ROUNDS
        check_arguments(rounds, epochs_per_round, prune_fraction, density, scope, fractions, optimizer_state,
                        from_ticket, sanity)
        self.from_ticket = Ticket.load(from_ticket) if isinstance(from_ticket, (str, Path)) else from_ticket  # bad files fail here
        self.sanity = sanity
        self.rewind = RewindPoint.parse(rewind)
        if epochs_per_round == 0 and self.rewind.kind != "init":
            raise ValueError(f"pruning at initialization (epochs_per_round=0) keeps the initial values; rewind={rewind!r} "
                             "needs training rounds: leave rewind='init' or set epochs_per_round > 0")
        self.clock = RoundClock(rounds, epochs_per_round, self.rewind)
        self.rounds, self.epochs_per_round = rounds, epochs_per_round
        self.prune_fraction = per_round_fraction(prune_fraction, density, rounds)
        self.density, self.scope = density, scope
        self.fractions, self.exclude = dict(fractions or {}), (exclude,) if isinstance(exclude, str) else tuple(exclude)
        self.include = (include,) if isinstance(include, str) else tuple(include)
        loss.check_loss(loss_fn)
        self.loss_fn = loss_fn
        self.optimizer_state, self.monitor, self.mode = optimizer_state, monitor, mode
        self.dirpath, self.seed, self.remask_after_step = dirpath, seed, remask_after_step

        self.updates = None if self.sparse_training is None else MaskUpdates(self.sparse_training, density)
        if early_bird is not None and epochs_per_round == 0:
            raise ValueError("early_bird= ends IMP rounds early; it needs training rounds (epochs_per_round > 0)")
        self.early_bird = None if early_bird is None else EarlyBird(early_bird, early_bird_epochs)
        self.structure = None if structure is None else NM.parse(structure)  # bad text fails here
        if self.structure is not None and self.sparse_training is not None and self.sparse_training.fixed_density:
            raise ValueError(f"structure={structure!r} with sparse_training={self.sparse_training.name!r}: dynamic "
                             "sparse training grows weights anywhere, which would break the N:M blocks; use it with "
                             "IMP, pruning at initialization or sparse_training='gmp'")
        self.tickets: list[Ticket] = []  # one per round closed, round 0 included
        self.metrics = RoundMetrics(monitor, mode)
        self.output = RunOutput(dirpath, monitor)
        self.live = LiveMasks()
        if sparse_below is not None:
            if not (sparse_below == "auto" or (isinstance(sparse_below, (int, float)) and 0 < sparse_below <= 1)):
                raise ValueError(f"sparse_below={sparse_below!r}: give a density in (0, 1] below which Linear and "
                                 "Conv2d layers run on sparse kernels, or 'auto' (the crossover measured for each "
                                 "layer's shape)")
            if self.sparse_training is not None and self.sparse_training.fixed_density:
                # a grown weight's first update (RigL: its very choice) reads the dense gradient of the update step
                raise ValueError(f"sparse_below={sparse_below!r} with sparse_training={self.sparse_training.name!r}: "
                                 "it grows weights that take the dense gradient of their step, which sparse "
                                 "execution does not compute at pruned positions; drop sparse_below, or use it with "
                                 "IMP or sparse_training='gmp'")
            self.live.listeners.append(self._run_sparse)
            # optimizer state the survivors' steps hold compacted goes back whole before the Masker zeroes it
            self.live.before.append(self._expand_steps)
        self.sparse_below = sparse_below
        self.run = RunState(label=self.pruner.name)  # with live, metrics and tickets: all of it in state_dict()
        self._plan: Plan | None = None
        self._loss: Callable[..., Tensor] | None = None  # what data-driven pruners score with (None: their own)
        self._hooks: list[Any] = []
        self._steps: list[SurvivorsStep] = []  # survivors-only optimizer steps of the sparse layers
        self._said: dict[str, str] | None = None  # what the layers run on (sparse or dense), as last logged
        self._deciding: set[str] = set()  # convs that decide at their next forward (sparse_below="auto")
        self._rng_to_restore: dict[str, Any] | None = None
        unused = dict.fromkeys(hooks.UNUSED_BATCH_HOOKS, Callback)
        if epochs_per_round == 0:  # it only takes round 0's rewind snapshot
            unused["on_train_batch_start"] = LotteryTicket
        hooks.switch_off(self, unused)

    @property
    def ticket(self) -> Ticket | None:
        """The old name of `from_ticket`."""
        return self.from_ticket

    # -- Lightning hooks ------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._plan = Plan(pl_module, self.prune_fraction, self.scope, self.fractions, self.exclude, include=self.include,
                          structure=self.structure)
        if self.distribution is not None and self.sparse_training is None:  # pruning at init to layer shares
            self._plan = self._plan.distributed(self.density, self.distribution, self.rounds)
        self._loss = loss.resolve(self.loss_fn, pl_module) if self.pruner.needs_data else None
        rank_zero_info(f"LotteryTicket: {summary(pl_module, self._plan.names)}")
        if self.structure is not None:  # what the sparse kernels make of each layer, said before any work
            params = dict(pl_module.named_parameters(remove_duplicate=False))
            rank_zero_info("LotteryTicket: structure " + str(self.structure) + "; " + "; ".join(
                f"{n}: {self.structure.kernel_note(tuple(params[n].shape))}" for n in self._plan.names))
        if self.run.base_seed is None:
            self.run.base_seed = self.seed if self.seed is not None else torch.initial_seed()
        if self.epochs_per_round > 0:
            check_rounds_trainer(trainer, self.monitor)
            self.clock.set_budget(trainer)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after a checkpoint's state is loaded (so a resumed run keeps its id), before any pruning or training
        self.output.claim(trainer, self.run.identify(), resuming=trainer.ckpt_path is not None)
        self.live.attach(pl_module, self._plan.dense_masks(pl_module))
        # zeroed gradients keep pruned weights at zero under the usual optimizers; others are re-masked
        self._hooks = [opt.register_step_post_hook(self._after_step) for opt in trainer.optimizers
                       if self.remask_after_step or not preserves_zeros(opt)]
        if self.sparse_below is not None:  # sparse layers' gradients as each optimizer expects them
            self._steps = [SurvivorsStep(pl_module, opt) for opt in trainer.optimizers]
        if self.clock.early:  # a resumed run whose earlier rounds ended early: its budget is shorter
            self.clock.set_budget(trainer, quiet=True)
        if self._rng_to_restore is not None:
            rng.set_state(self._rng_to_restore)
            self._rng_to_restore = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        batches = trainer.num_training_batches
        self.clock.start(trainer, None if math.isinf(batches) else math.ceil(batches / trainer.accumulate_grad_batches))
        self.clock.check_schedulers(trainer)
        self.output.open(trainer, self.tickets)
        if self.early_bird is not None:
            self.early_bird.start_clock()
        if self.epochs_per_round == 0 and self.run.round == 0:
            self._start_sparse(trainer, pl_module)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        for step in self._steps:  # the survivors a skipped optimizer step (GradScaler, inf gradients) left swapped in
            step.restore()
        if self.run.snapshot is None and self.run.round == 0 and self.epochs_per_round:
            step = iteration(trainer)
            if step >= self.clock.rewind_step:
                self.run.snapshot = Snapshot.of_training(trainer, pl_module, step)

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        if self.updates is not None and self.run.round == 1:  # before the masker hides the dense gradient
            self.updates.run(trainer, pl_module, self.live, self._plan, self.pruner, self.run.base_seed)
        if self._deciding:  # convs under "auto" chose at this step's forward
            self._log_decisions(pl_module)
        self.live.masker.zero_grads()
        for step in self._steps:
            if step.optimizer is optimizer:
                step.gather()

    def _after_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.live.masker.apply()

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for step in self._steps:  # as at a batch's start
            step.restore()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        # gradual pruning's early-stopping iteration is sought once it has reached its density, not before
        settled = self.updates is None or self.updates.settled(trainer)
        self.metrics.observe(trainer.callback_metrics, iteration(trainer) - self.run.round_start_step,
                             trainer.current_epoch, self.run.round, may_be_best=settled)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self.output.mark_epoch(pl_module, self.run.round, iteration(trainer) - self.run.round_start_step)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.output.mark_epoch(pl_module, self.run.round, iteration(trainer) - self.run.round_start_step)
        if self.early_bird is not None:
            self._watch_early_bird(trainer, pl_module)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        # a checkpoint saved at an epoch's end comes after the module logged that epoch's training metrics, which
        # the round's record needs after a resume; state_dict() ran before this hook, so its entry is updated
        self.metrics.end_epoch(trainer.callback_metrics, _ended_epoch(trainer))
        if self.state_key in checkpoint.get("callbacks", {}):  # absent from weights-only checkpoints
            checkpoint["callbacks"][self.state_key].update(self.metrics.state())

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.metrics.end_epoch(trainer.callback_metrics, _ended_epoch(trainer))
        while (self.epochs_per_round and self.run.round < self.rounds
               and trainer.current_epoch >= self.clock.round_start_epoch(self.run.round + 1)):
            self.close_round(trainer, pl_module)
            self.next_round(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish(trainer, pl_module)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # resumed from a checkpoint taken after the last epoch, Lightning skips training and on_train_end: the
        # last round was trained but never recorded
        if not self.run.finished and trainer.fit_loop.epoch_progress.current.completed > 0:
            self.output.open(trainer, self.tickets)
            self._finish(trainer, pl_module)

    def _finish(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record the round being trained when training ends (once)."""
        if self.run.finished:
            return
        if self.epochs_per_round and self.run.round < self.rounds:
            rank_zero_warn(f"LotteryTicket: training stopped in round {self.run.round} of {self.rounds}; "
                           "its ticket is saved with the metrics reached so far.")
        self.metrics.end_epoch(trainer.callback_metrics, _ended_epoch(trainer))
        self.close_round(trainer, pl_module)
        self.run.finished = True
        self.output.close(trainer, self.tickets)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        for step in self._steps:
            step.remove()
        self._steps = []

    def _expand_steps(self) -> None:
        for step in self._steps:
            step.expand()

    def _run_sparse(self, pl_module: pl.LightningModule, masks: dict[str, Tensor]) -> None:
        """New masks: Linear and Conv2d layers below `sparse_below` run on their survivors (lottery.sparsity.execution)."""
        batch = getattr(pl_module.trainer.train_dataloader, "batch_size", None) or 60  # the crossover's batch
        # survivor-sized weight gradients, except where DDP's reducer expects dense ones
        said = apply_sparse(pl_module, masks, self.sparse_below, batch, sparse_grad=pl_module.trainer.world_size == 1)
        for step in self._steps:
            step.refresh()
        self._deciding = {n for n, how in said.items() if how.startswith("decides")}
        self._say(pl_module, said)

    def _log_decisions(self, pl_module: pl.LightningModule) -> None:
        """What the convs deciding at their first forward chose: the optimizers' steps and the log told (a conv that
        no forward reached yet stays pending)."""
        decided = decisions(pl_module, self._deciding)
        self._deciding -= decided.keys()
        if decided:
            for step in self._steps:
                step.refresh()
            self._say(pl_module, {**(self._said or {}), **decided})

    def _say(self, pl_module: pl.LightningModule, said: dict[str, str]) -> None:
        """Log which layers run sparse and why, when that changed."""
        if said and said != self._said:
            on = (f" (on {kernels.name()})" if pl_module.device.type == "cpu"
                  and any(how.startswith("sparse") for how in said.values()) else "")
            rank_zero_info("LotteryTicket: " + "; ".join(f"{n}: {how}" for n, how in said.items()) + on)
        self._said = said

    # -- rounds ---------------------------------------------------------------------------------------
    def _watch_early_bird(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """At an epoch's end: compare the mask the next pruning would give now with the last epoch's; once it has
        settled, end the round with this epoch (before the checkpoint of this epoch is written)."""
        round, epoch = self.run.round, trainer.current_epoch
        if round >= self.rounds or self.run.snapshot is None or epoch + 1 >= self.clock.round_start_epoch(round + 1):
            return  # nothing is pruned after the last round; the rewind point comes first; the round ends anyway
        fired = None
        if trainer.is_global_zero:
            with rng.seeded(self._pruning_seed(round + 1)):  # the randomness next_round prunes with
                masks = self._plan.step(pl_module, self.pruner, self.live.masks, round + 1, trainer.train_dataloader,
                                        loss_fn=self._loss)
            self.early_bird.observe(masks)
            fired = self.early_bird.fired
        if trainer.strategy.broadcast(fired, src=0):
            self.early_bird.fired_at = epoch + 1 - self.clock.round_start_epoch(round)
            self.clock.end_early(trainer, round)
            rank_zero_info(f"LotteryTicket: early-bird ticket in round {round} after {self.early_bird.fired_at} epochs "
                           f"(mask distance below {self.early_bird.epsilon} for {self.early_bird.epochs} epochs); "
                           f"the round ends now, Trainer max_epochs {trainer.fit_loop.max_epochs}.")

    def _start_sparse(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Round 1 before any training: the given ticket, or all scoring steps at initialization."""
        if self.from_ticket is not None:
            ticket = start.load_given(self.from_ticket, self.sanity, pl_module, self.run.base_seed, self._plan.names)
            self.run.snapshot = Snapshot.of_module(pl_module)
            like = {n: torch.ones_like(m, device=pl_module.device) for n, m in ticket.masks.items()}
            self.live.install(trainer, pl_module, ticket.masks if trainer.is_global_zero else None, like)
            self.run.label = ticket.metadata.get("pruner", "ticket") + (f"+{self.sanity}" if self.sanity else "")
            done = f"training the given ticket ({self.run.label}, density {ticket.density:.6f})"
        elif self.updates is not None:
            self.run.snapshot = Snapshot.of_module(pl_module)
            done = self.updates.start(trainer, pl_module, self.live, self._plan, self.run.base_seed)
            self.run.label = self.updates.method.name
        else:
            self.run.snapshot = Snapshot.of_module(pl_module)
            masks = start.pruned_at_init(trainer, pl_module, self._plan, self.pruner, self.rounds, self.run.base_seed,
                                         self._loss)
            self.live.install(trainer, pl_module, masks)
            done = (f"{self.pruner.name} pruned at initialization in {self.rounds} steps to density "
                    f"{self.live.density:.6f}; training the ticket")
        self.run.round = 1
        self.run.round_start_step = iteration(trainer)
        rank_zero_info(f"LotteryTicket: {done} for max_epochs={trainer.max_epochs}.")

    def close_round(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record the ticket trained in the current round, with its metrics, on disk and in the loggers."""
        meta = {"round": self.run.round, "pruner": self.run.label, "rewind": str(self.rewind), "scope": self.scope,
                "prune_fraction": self.prune_fraction, "steps": iteration(trainer) - self.run.round_start_step,
                "metrics": self.metrics.summary()}
        if self.sparse_training is not None:
            meta["sparse_training"] = {**self.sparse_training.describe(), "target_density": self.density}
        if self.distribution is not None:
            meta["distribution"] = self.distribution
        if self.structure is not None:
            meta["structure"] = str(self.structure)
        if self.early_bird is not None:  # epochs trained when the round was ended early, NaN when it ran its length
            fired = self.early_bird.fired_at
            meta["metrics"]["early_bird_epochs"] = float("nan") if fired is None else float(fired)
            meta["metrics"]["round_wall_s"] = self.early_bird.elapsed()
        if self.metrics.best is None:
            self.metrics.warn_unmeasured(trainer, self.run.round, self.epochs_per_round)
        ticket = Ticket({n: m.cpu() for n, m in self.live.masks.items()}, self.run.ticket_weights(), meta)
        ticket.metadata["density"] = ticket.density
        self.tickets.append(ticket)
        self.output.record(trainer, ticket, self.tickets)

    def _pruning_seed(self, round: int) -> int:
        """The seed of the pruning step that opens `round` (and of early-bird's look at it)."""
        return self.run.base_seed + 1_000_003 * round

    def next_round(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Prune the survivors (decided on rank zero, broadcast to all), then rewind them."""
        new_round = self.run.round + 1
        masks = None
        if trainer.is_global_zero:
            with rng.seeded(self._pruning_seed(new_round)):
                masks = self._plan.step(pl_module, self.pruner, self.live.masks, new_round, trainer.train_dataloader,
                                        loss_fn=self._loss)
        self.live.install(trainer, pl_module, masks)
        self.run.round = new_round
        if self.rewind.kind == "none":
            self.run.round_weights = module_state(pl_module)
        else:
            self.run.snapshot.restore(trainer, pl_module, self.optimizer_state)
            self.live.masker.apply()
            self.live.mask_optimizers(trainer)
        self.run.round_start_step = iteration(trainer)
        self.metrics.reset()
        if self.early_bird is not None:
            self.early_bird.reset()

    # -- checkpointing --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        # rewound rounds share the snapshot's weights: stored once, with it
        tickets = pack_tickets(self.tickets, with_weights=self.rewind.kind == "none")
        early = {**self.early_bird.state(), "clock_early": dict(self.clock.early)} if self.early_bird is not None else {}
        return {**self.run.state(), **self.live.state(), **self.metrics.state(), **early, "tickets": tickets,
                "rng": rng.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.run.load(state)
        self.live.load(state)
        self.metrics.load(state)
        if self.early_bird is not None:
            self.early_bird.load(state)
            self.clock.early = {int(r): int(e) for r, e in state.get("clock_early", {}).items()}
        shared = self.run.snapshot.model if self.rewind.kind != "none" and self.run.snapshot is not None else None
        self.tickets = unpack_tickets(state["tickets"], shared)
        self._rng_to_restore = state["rng"]


def _ended_epoch(trainer: pl.Trainer) -> int:
    """The last epoch whose end the module has logged (Lightning counts an epoch processed before its end hooks)."""
    return trainer.fit_loop.epoch_progress.current.processed - 1
