"""Sparse training inside the loop (GMP, SET, RigL): update steps, exact counts, grown weights at zero, resume."""

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from helpers import Kill, Module, trainer
from lottery import LotteryTicket
from lottery.plan import Plan
from lottery.pruning import get
from lottery.sparse_training import SET, Gradual, RigL
from lottery.sparsity.schedule import Cubic

STEPS = 6  # per epoch: 96 examples in batches of 16


class Spy(pl.Callback):
    """After LotteryTicket's hook of every optimizer step: the masks, weights and optimizer state the step starts from."""

    def __init__(self, cb):
        self.cb, self.seen = cb, []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        params = dict(pl_module.named_parameters())
        state = {n: optimizer.state.get(params[n], {}).get("momentum_buffer") for n in self.cb.live.masks}
        self.seen.append((trainer.global_step, {n: m.clone() for n, m in self.cb.live.masks.items()},
                          {n: params[n].detach().clone() for n in self.cb.live.masks},
                          {n: None if s is None else s.clone() for n, s in state.items()}))


class Recording:
    """Wraps a method's update to keep what it was given and what it returned."""

    def __init__(self, method):
        self.method, self.calls = method, []
        inner = method.update

        def update(u):
            masks, grown = inner(u)
            self.calls.append(({n: m.clone() for n, m in u.masks.items()}, masks, grown, u))
            return masks, grown
        method.update = update


def run(tmp_path, method, density=0.2, epochs=3, lr=0.1, callbacks=(), ckpt_path=None, **kw):
    pl.seed_everything(0)
    cb = LotteryTicket(sparse_training=method, density=density, epochs_per_round=0, dirpath=str(tmp_path / "t"), **kw)
    spy = Spy(cb)
    module = Module(scheduler=None, lr=lr)
    trainer(tmp_path, [cb, spy, *callbacks], max_epochs=epochs).fit(module, ckpt_path=ckpt_path)
    return cb, spy, module


def test_gmp_follows_the_cubic_schedule_exactly_and_reaches_the_target(tmp_path):
    method = Gradual(every=2, start=0.1, stop=0.8)  # 18 steps: t0 = 1, last update at step <= 14: 1 + 2k, k = 1..6
    cb, spy, _ = run(tmp_path, method, scope="layerwise")
    assert method.updates(18) == 6
    sizes = {n: m.numel() for n, m in cb.live.masks.items()}
    schedule = Cubic(0.2, 6)
    for step, masks, weights, _ in spy.seen:
        k = min(max((step - 1) // 2, 0), 6)  # updates made up to and including this step
        for n, m in masks.items():
            assert int(m.sum()) == schedule.kept(sizes[n], k), (step, n)
            assert not weights[n][~m].any()
    assert [s for s, *_ in spy.seen if s >= 13] and all(int(sum(int(m.sum()) for m in masks.values())) ==
                                                         sum(schedule.kept(v, 6) for v in sizes.values())
                                                         for s, masks, *_ in spy.seen if s >= 13)
    assert cb.tickets[-1].metadata["sparse_training"]["method"] == "gmp"


def test_gmp_with_one_step_updates_is_magnitude_pruning_in_as_many_steps(tmp_path):
    # lr 0: the weights never move, so n updates of one step each score what n pruning steps at init score
    pl.seed_everything(0)
    init = Module(scheduler=None, lr=0.0)
    method = Gradual(every=1, start=0.0, stop=0.5)  # 18 steps: 9 updates, at steps 1..9
    cb, _, module = run(tmp_path, method, lr=0.0)
    n = method.updates(18)
    assert n == 9
    expected = Plan(init, Cubic(0.2, n)).prune_steps(init, get("magnitude"), n)
    for name, m in cb.live.masks.items():
        assert torch.equal(m, expected[name]), name


@pytest.mark.parametrize("make", [lambda: SET(every=2, stop=0.75), lambda: RigL(every=2, stop=0.75)])
def test_dynamic_sparse_training_keeps_counts_drops_and_grows_the_scheduled_number(tmp_path, make):
    method = make()
    recording = Recording(method)
    cb, spy, _ = run(tmp_path, method)
    total = 18
    expected_steps = [2 * k for k in range(1, method.updates(total) + 1)]
    assert [u.step for *_, u in recording.calls] == expected_steps == [2, 4, 6, 8, 10, 12]  # none after 75% (13.5)
    counts = {n: int(m.sum()) for n, m in spy.seen[0][1].items()}
    assert sum(counts.values()) == round(0.2 * sum(m.numel() for m in cb.live.masks.values()))
    for step, masks, weights, momentum in spy.seen:
        assert {n: int(m.sum()) for n, m in masks.items()} == counts  # per layer, constant
        assert all(not weights[n][~m].any() for n, m in masks.items())  # pruned weights exactly zero
    moved = 0
    for before, after, grown, u in recording.calls:
        f = method.fraction(u.step, total)
        for n in before:
            n_moved = int(f * counts[n] + 0.5)
            assert int(grown[n].sum()) == n_moved and not (grown[n] & ~after[n]).any()
            assert int((before[n] & ~after[n]).sum()) == n_moved - int((grown[n] & before[n]).sum())
            moved += n_moved
    assert moved > 0
    # grown weights start at zero, and so does their momentum, when the step after the update begins
    by_step = {s: (masks, weights, momentum) for s, masks, weights, momentum in spy.seen}
    for before, after, grown, u in recording.calls:
        masks, weights, momentum = by_step[u.step]
        for n, g in grown.items():
            assert not weights[n][g].any()
            if momentum[n] is not None:
                assert not momentum[n][g].any()


def test_rigl_grows_where_the_dense_gradient_is_largest(tmp_path):
    method = RigL(every=2, stop=0.75)
    recording = Recording(method)
    run(tmp_path, method)
    before, after, grown, u = recording.calls[0]
    for n, m in before.items():
        dense = u.grads[n].abs()
        assert dense[~m].any()  # read before the masker zeroes the pruned entries: the gradient is dense
        kept_active = after[n] & ~grown[n]
        candidates = dense[~kept_active]
        k = int(grown[n].sum())
        if k:
            threshold = candidates.topk(k).values[-1]
            assert bool((dense[grown[n]] >= threshold).all())


@pytest.mark.parametrize("make", [lambda: RigL(every=2), lambda: SET(every=2), lambda: Gradual(every=2)])
def test_kill_and_resume_is_bit_identical(tmp_path, make):
    def attempt(folder, kill=None, resume=False):
        ckpt = ModelCheckpoint(dirpath=folder / "ckpt", save_last=True, save_on_train_epoch_end=True)
        extra = [ckpt] + ([Kill(kill)] if kill is not None else [])
        return run(folder, make(), callbacks=extra, ckpt_path=str(folder / "ckpt" / "last.ckpt") if resume else None)

    ref, _, ref_module = attempt(tmp_path / "ref")
    with pytest.raises(SystemExit):
        attempt(tmp_path / "run", kill=STEPS + 3)  # in epoch 1, after updates at steps 2, 4 and 6
    cb, spy, module = attempt(tmp_path / "run", resume=True)
    assert spy.seen[0][0] == STEPS  # continued from the end of epoch 0
    for n in ref.live.masks:
        assert torch.equal(ref.live.masks[n], cb.live.masks[n])
    for (n, a), b in zip(ref_module.state_dict().items(), module.state_dict().values()):
        assert torch.equal(a, b), n


@pytest.mark.parametrize("kwargs,match", [
    ({"sparse_training": "rigl", "density": 0.1, "epochs_per_round": 2}, "set epochs_per_round=0"),
    ({"sparse_training": "rigl", "epochs_per_round": 0}, "needs density="),
    ({"sparse_training": "set", "density": 0.1, "epochs_per_round": 0, "rounds": 3}, "rounds= .* does not apply"),
    ({"sparse_training": "gmp", "density": 0.1, "epochs_per_round": 0, "distribution": "erk"}, "distribution= does not"),
    ({"sparse_training": "lottery.sparse_training.gradual.Gradual", "density": 0.1, "epochs_per_round": 0,
      "distribution": "erk"}, "distribution= does not"),
    ({"sparse_training": "nope", "density": 0.1, "epochs_per_round": 0}, "unknown sparse training method 'nope'"),
    ({"pruner": "random", "density": 0.1, "epochs_per_round": 0, "distribution": "xx"}, "unknown layer distribution"),
    ({"density": 0.1, "epochs_per_round": 2, "distribution": "erk"}, "IMP rounds prune by scope"),
])
def test_bad_sparse_training_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LotteryTicket(**kwargs)


def test_pruning_at_init_with_erk_gives_each_layer_its_exact_share(tmp_path):
    from lottery.sparsity.distribution import layer_counts

    pl.seed_everything(0)
    cb = LotteryTicket(pruner="random", density=0.1, epochs_per_round=0, distribution="erk", dirpath=str(tmp_path / "t"))
    module = Module(scheduler=None)
    shapes = {n: tuple(p.shape) for n, p in module.named_parameters() if n.endswith("weight")}
    trainer(tmp_path, [cb], max_epochs=1).fit(module)
    assert {n: int(m.sum()) for n, m in cb.tickets[-1].masks.items()} == layer_counts(shapes, 0.1, "erk")


def test_gradual_pruning_that_would_never_prune_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="would make no pruning update in this run .*lower every="):
        run(tmp_path, Gradual(every=100))


def test_prune_with_a_distribution():
    from helpers import MLP
    from lottery import prune
    from lottery.sparsity.distribution import layer_counts

    model = MLP()
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if n.endswith("weight")}
    ticket = prune(model, "magnitude", density=0.2, rounds=3, distribution="er")
    assert {n: int(m.sum()) for n, m in ticket.masks.items()} == layer_counts(shapes, 0.2, "er")
    assert ticket.metadata["distribution"] == "er"


def test_gradual_pruning_seeks_its_early_stopping_iteration_only_at_its_density(tmp_path):
    # lr 0 and mode="max": the best validation would be the first one (step 6), while the pruning is not done (updates
    # end at step 9); the best of a GMP run must be one at its target density
    method = Gradual(every=2, start=0.1, stop=0.5)
    cb, _, _ = run(tmp_path, method, lr=0.0, mode="max")
    assert method.last_update(18) == 9
    assert cb.tickets[-1].metrics["best_step"] in (12, 18)


def test_a_method_named_by_class_path_alone():
    from lottery.sparse_training import get

    assert isinstance(LotteryTicket(sparse_training="lottery.sparse_training.gradual.Gradual", density=0.1,
                                    epochs_per_round=0).sparse_training, Gradual)
    method = LotteryTicket(sparse_training="lottery.sparse_training.RigL", density=0.1, epochs_per_round=0,
                           distribution="er").sparse_training
    assert isinstance(method, RigL) and method.distribution == "er"
    with pytest.raises(ValueError, match="names no lottery.sparse_training.SparseTraining subclass"):
        get("torch.nn.Linear")


def test_masks_changing_within_a_step_train_the_same_on_sparse_kernels(tmp_path):
    """GMP changes masks inside a step, after the backward pass: the sparse layers then run on the new survivors,
    and the step that follows still updates every weight as masked dense training would."""
    ref_cb, _, ref = run(tmp_path / "dense", Gradual(every=2))
    cb, _, module = run(tmp_path / "sparse", Gradual(every=2), sparse_below=1.0)
    assert any("_lottery_pattern" in m.__dict__ for m in module.modules())
    for n, m in ref_cb.live.masks.items():
        assert torch.equal(m, cb.live.masks[n]), n
    for (n, a), b in zip(ref.state_dict().items(), module.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4), n
