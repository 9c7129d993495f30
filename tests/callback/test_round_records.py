"""What each round records (rounds.csv, ticket metadata), also across a kill and resume (issue: never lose a run)."""

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from helpers import Module, trainer
from lottery import LotteryTicket, Ticket, prune
from lottery.pruning import Pruner


class EpochMetrics(Module):
    """Logs a train metric at the end of each epoch, as ClassificationModule does (after callbacks' epoch-end hooks)."""

    def on_train_epoch_end(self):
        self.log("train_wsum", sum(p.detach().abs().sum() for p in self.net.parameters()))


class KillAt(pl.Callback):
    """Stop as a killed job would: at the start of an epoch (before a round closes) or at the end of training."""

    def __init__(self, epoch=None):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt

    def on_train_end(self, trainer, pl_module):
        if self.epoch is None:
            raise KeyboardInterrupt


def run(folder, kill=None, resume=False, rounds=2):
    pl.seed_everything(0)
    cb = LotteryTicket(rounds=rounds, epochs_per_round=1, dirpath=str(folder / "tickets"))
    # epoch-end checkpoints, as `lottery fit` and comparison cells write them
    ckpt = ModelCheckpoint(dirpath=folder / "ckpt", save_last=True, save_on_train_epoch_end=True)
    callbacks = ([kill] if kill is not None else []) + [cb, ckpt]  # the kill runs before the callback's hooks
    trainer(folder, callbacks).fit(EpochMetrics(scheduler=None), ckpt_path="last" if resume else None)
    return cb


def test_train_metrics_at_best_are_those_of_the_best_epoch(tmp_path):
    cb = run(tmp_path)
    for t in cb.tickets:  # one epoch per round: the best validation is in the round's only epoch
        assert t.metrics["train_wsum_at_best"] == pytest.approx(t.metrics["train_wsum"]), t.round


@pytest.mark.parametrize("kill_epoch", [1, 2, None])  # at a round boundary (twice), after the last checkpoint
def test_a_resumed_run_records_what_an_uninterrupted_one_does(tmp_path, kill_epoch):
    ref = run(tmp_path / "ref")
    with pytest.raises(SystemExit):
        run(tmp_path / "run", kill=KillAt(kill_epoch))
    cb = run(tmp_path / "run", resume=True)
    assert [t.round for t in cb.tickets] == [0, 1, 2]
    assert (tmp_path / "run" / "tickets" / "rounds.csv").read_text() == (tmp_path / "ref" / "tickets" / "rounds.csv").read_text()
    for r in range(3):
        a, b = (Ticket.load(tmp_path / f / "tickets" / f"round_{r:02d}.safetensors") for f in ("ref", "run"))
        assert all(torch.equal(a.masks[n], b.masks[n]) for n in a.masks)
        assert all(torch.equal(a.weights[n], b.weights[n]) for n in a.weights)


def test_a_monitored_metric_that_is_never_logged_fails_at_the_first_validation(tmp_path):
    cb = LotteryTicket(rounds=1, epochs_per_round=1, monitor="val_los")
    with pytest.raises(ValueError, match=r"monitor='val_los'.*val_acc, val_loss"):
        trainer(tmp_path, [cb]).fit(Module(scheduler=None))
    assert cb.tickets == []


def test_a_diverged_run_is_named_before_its_nan_scores_fail(tmp_path):
    pl.seed_everything(0)
    cb = LotteryTicket(rounds=1, epochs_per_round=1, scope="layerwise")
    with pytest.warns(UserWarning, match="val_loss is nan"):
        with pytest.raises(ValueError, match=r"round 1.*net\.fc1\.weight, net\.fc2\.weight, net\.fc3\.weight.*diverged"):
            trainer(tmp_path, [cb]).fit(Module(lr=1e12, scheduler=None))


def test_both_amounts_say_how_to_drop_one_on_the_command_line():
    with pytest.raises(ValueError, match=r"not both.*--ticket.prune_fraction null"):
        LotteryTicket(density=0.1, prune_fraction=0.2)


class Sparse(Pruner):
    """Scores that are zero for most weights (as FORCE's can be at high compression), none at all for fc1."""

    name = "sparse_scores"

    def scores(self, model, batches=None):
        out = {}
        for n, p in self.prunable_parameters(model).items():
            s = torch.zeros(p.numel())
            if not n.startswith("fc1"):
                s[:3] = torch.arange(1.0, 4.0)
            out[n] = s.view_as(p)
        return out


def test_keeping_weights_without_a_score_and_emptying_a_layer_are_said(recwarn):
    from helpers import MLP

    ticket = prune(MLP(), Sparse(), density=0.3)
    messages = [str(w.message) for w in recwarn]
    assert any("only 6 of the" in m and "non-zero score" in m for m in messages), messages
    assert not any("left no weights" in m for m in messages)
    ticket = prune(MLP(), Sparse(), density=0.001, scope="global")
    assert ticket.layer_densities()["fc1.weight"] == 0.0
    assert any("left no weights" in str(w.message) and "fc1.weight" in str(w.message) for w in recwarn), [str(w.message) for w in recwarn]
