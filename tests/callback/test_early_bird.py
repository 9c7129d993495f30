"""Early-bird tickets: the distance between consecutive would-be masks, the firing rule, and rounds ended early."""

import math

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from helpers import Kill, Module, trainer
from lottery import LotteryTicket
from lottery.callback.early_bird import EarlyBird

STEPS = 6  # per epoch


def masks_with(changed, size=100):
    m = torch.ones(size, dtype=torch.bool)
    m[:changed] = False
    return {"w": m}


def test_fires_once_the_last_epochs_distances_are_all_below_epsilon_and_not_before():
    bird = EarlyBird(0.1, epochs=3)
    # distances between consecutive masks: 0.5, 0.3, 0.05, 0.02, 0.01
    fired = []
    for changed in (0, 50, 20, 25, 27, 28):
        bird.observe(masks_with(changed))
        fired.append(bird.fired)
    assert bird.distances == pytest.approx([0.5, 0.3, 0.05, 0.02, 0.01])
    assert fired == [False, False, False, False, False, True]
    restored = EarlyBird(0.1, epochs=3)
    restored.load(bird.state())
    assert restored.distances == bird.distances and torch.equal(restored.previous["w"], bird.previous["w"])
    bird.reset()
    assert not bird.fired and bird.previous is None


def run(tmp_path, lr, callbacks=(), ckpt_path=None, **kw):
    pl.seed_everything(0)
    cb = LotteryTicket(rounds=2, epochs_per_round=6, early_bird=0.1, early_bird_epochs=2, dirpath=str(tmp_path / "t"),
                       **kw)
    module = Module(scheduler=None, lr=lr)
    module.record = True
    t = trainer(tmp_path, [cb, *callbacks])
    t.fit(module, ckpt_path=ckpt_path)
    return cb, t, module


def test_a_round_whose_mask_settles_ends_early_and_the_run_is_shorter(tmp_path):
    # lr 0: the weights never move, so the would-be mask is the same every epoch: distances 0 from epoch 1 on,
    # and the window of 2 distances is full at the end of the round's third epoch
    cb, t, _ = run(tmp_path, lr=0.0)
    rounds = [tk.metadata for tk in cb.tickets]
    assert [m["metrics"]["early_bird_epochs"] for m in rounds[:2]] == [3.0, 3.0]
    assert math.isnan(rounds[2]["metrics"]["early_bird_epochs"])  # the last round prunes nothing after it
    assert [m["steps"] for m in rounds] == [3 * STEPS, 3 * STEPS, 6 * STEPS]
    assert t.fit_loop.max_epochs == 3 + 3 + 6 and t.current_epoch == 12
    # each round's wall time is recorded beside its steps (not compared here: timings belong in benchmarks/)
    assert all(m["metrics"]["round_wall_s"] > 0 for m in rounds)


def test_a_round_whose_mask_keeps_changing_runs_its_length(tmp_path):
    cb, t, _ = run(tmp_path, lr=0.5)
    assert all(math.isnan(tk.metadata["metrics"]["early_bird_epochs"]) for tk in cb.tickets)
    assert [tk.metadata["steps"] for tk in cb.tickets] == [6 * STEPS] * 3


def test_kill_and_resume_after_an_early_end_is_identical(tmp_path):
    def attempt(folder, kill=None, resume=False):
        ckpt = ModelCheckpoint(dirpath=folder / "ckpt", save_last=True, save_on_train_epoch_end=True)
        extra = [ckpt] + ([Kill(kill)] if kill is not None else [])
        return run(folder, 0.0, extra, str(folder / "ckpt" / "last.ckpt") if resume else None)

    ref, ref_t, ref_module = attempt(tmp_path / "ref")
    with pytest.raises(SystemExit):
        attempt(tmp_path / "run", kill=4 * STEPS + 2)  # in round 1, after round 0 ended early at epoch 3
    cb, t, module = attempt(tmp_path / "run", resume=True)
    assert module.trace[0][0] == 4 * STEPS
    assert [tk.metadata["steps"] for tk in cb.tickets] == [tk.metadata["steps"] for tk in ref.tickets]
    assert [tk.metadata["metrics"]["early_bird_epochs"] for tk in cb.tickets][:2] == [3.0, 3.0]
    assert t.current_epoch == ref_t.current_epoch == 12
    for a, b in zip(ref.tickets, cb.tickets):
        for n in a.masks:
            assert torch.equal(a.masks[n], b.masks[n])


def test_early_bird_needs_training_rounds():
    with pytest.raises(ValueError, match="needs training rounds"):
        LotteryTicket(pruner="random", density=0.1, epochs_per_round=0, early_bird=0.1)
    with pytest.raises(ValueError, match=r"must be in \(0, 1\)"):
        LotteryTicket(early_bird=1.5)
