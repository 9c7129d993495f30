"""LotteryTicket on the Trainers users build: sparse validation, EarlyStopping, manual optimization with two
optimizers, schedules sized to one round, pruning at init with each pruner's own number of steps."""

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping
from torch import nn

from helpers import Module, trainer
from lottery import LotteryTicket

S = 6  # steps per epoch of helpers.Module (96 examples, batch 16)


def test_a_round_without_validation_reports_no_validation_values(tmp_path):
    pl.seed_everything(0)
    cb = LotteryTicket(rounds=2, epochs_per_round=1)
    with pytest.warns(UserWarning, match="round 0 had no validation.*check_val_every_n_epoch=2"):
        trainer(tmp_path, [cb], check_val_every_n_epoch=2).fit(Module(scheduler=None))
    has_val = ["val_loss" in t.metrics for t in cb.tickets]
    assert has_val == [False, True, False]  # validation runs after epochs 1, 3, ...: round 1 only
    assert cb.tickets[2].metrics["best_val_loss"] != cb.tickets[2].metrics["best_val_loss"]  # NaN, not round 1's


def test_early_stopping_with_imp_rounds_is_refused_before_training(tmp_path):
    module = Module(scheduler=None)
    module.record = True
    cb = LotteryTicket(rounds=2, epochs_per_round=2)
    with pytest.raises(ValueError, match="EarlyStopping.*best_step"):
        trainer(tmp_path, [cb, EarlyStopping("val_loss")]).fit(module)
    assert module.trace == []
    # pruning at initialization trains one ticket: EarlyStopping stops it as usual
    trainer(tmp_path, [LotteryTicket(rounds=1, epochs_per_round=0, density=0.5), EarlyStopping("val_loss")],
            max_epochs=2).fit(Module(scheduler=None))


class TwoOptimizers(Module):
    """Manual optimization with one optimizer per layer group: two optimizer steps per batch."""

    def __init__(self):
        super().__init__(scheduler=None)
        self.automatic_optimization = False
        self.starts = {}  # epoch -> weights at its first batch

    def on_train_epoch_start(self):
        self.starts[self.current_epoch] = {k: v.detach().clone() for k, v in self.net.named_parameters()}

    def training_step(self, batch, batch_idx):
        x, y = batch
        first, second = self.optimizers()
        loss = nn.functional.cross_entropy(self(x), y)
        first.zero_grad()
        second.zero_grad()
        self.manual_backward(loss)
        first.step()
        second.step()
        return loss

    def configure_optimizers(self):
        params = list(self.net.named_parameters())
        a = [p for n, p in params if n.startswith("fc1")]
        b = [p for n, p in params if not n.startswith("fc1")]
        return torch.optim.SGD(a, lr=0.1), torch.optim.SGD(b, lr=0.1)


def test_rewind_points_count_batches_with_two_optimizers(tmp_path):
    pl.seed_everything(0)
    module = TwoOptimizers()
    cb = LotteryTicket(rounds=1, epochs_per_round=3, rewind="1ep")
    t = trainer(tmp_path, [cb])
    t.fit(module)
    assert t.current_epoch == 3 + 2  # round 1 trains the 2 epochs round 0 had after its rewind point
    rewound = cb.tickets[1]
    for n, value in module.starts[1].items():  # the values at the start of epoch 1 (batch S), not half way
        assert torch.equal(rewound.weights[f"net.{n}"], value), n
    assert cb.tickets[0].metadata["steps"] == 3 * S  # iterations: batches, whatever the optimizer steps per batch


def test_a_schedule_too_short_for_the_later_rounds_is_reported_before_training(tmp_path):
    class OneCycle(Module):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=2 * S)  # one round's steps
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    module = OneCycle()
    module.record = True
    cb = LotteryTicket(rounds=1, epochs_per_round=2, rewind="1ep2it")
    with pytest.raises(ValueError, match=r"OneCycleLR.*total_steps=12.*14"):
        trainer(tmp_path, [cb]).fit(module)
    assert module.trace == []


@pytest.mark.parametrize("pruner,steps", [("snip", 1), ("synflow", 100), ("iter_snip", 60), ("magnitude", 1)])
def test_pruning_at_init_takes_each_pruners_own_number_of_steps(pruner, steps):
    assert LotteryTicket(pruner=pruner, density=0.1, epochs_per_round=0).rounds == steps
    assert LotteryTicket(pruner=pruner, density=0.1, epochs_per_round=0, rounds=3).rounds == 3
    assert LotteryTicket(pruner=pruner, epochs_per_round=2).rounds == 10  # IMP rounds: the documented default
