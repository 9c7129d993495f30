"""Small models and data shared by the tests."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class MLP(nn.Module):
    def __init__(self, sizes=(20, 32, 16, 4)):
        super().__init__()
        self.fc1 = nn.Linear(sizes[0], sizes[1])
        self.fc2 = nn.Linear(sizes[1], sizes[2])
        self.fc3 = nn.Linear(sizes[2], sizes[3])

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


class Module(pl.LightningModule):
    """A classifier with SGD + momentum and an optional scheduler, recording what the tests inspect."""

    lottery_loss = "cross_entropy"  # its training_step: cross-entropy of forward(x) (and it reads its Trainer)

    def __init__(self, net=None, lr=0.1, momentum=0.9, scheduler="step", n=96, batch_size=16, seed=0):
        super().__init__()
        self.net = net or MLP()
        self.lr, self.momentum, self.scheduler_kind = lr, momentum, scheduler
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.trace = []  # (global_step, lr, {name: weight clone}) at each batch start
        self.record = False

    def forward(self, x):
        return self.net(x)

    def _data(self, offset):
        g = torch.Generator().manual_seed(self.seed + offset)
        x = torch.randn(self.n, 20, generator=g)
        y = (x[:, :4].argmax(1)).long()
        return TensorDataset(x, y)

    def train_dataloader(self):
        return DataLoader(self._data(0), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self._data(1), batch_size=32)

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.record:
            lr = self.trainer.optimizers[0].param_groups[0]["lr"]
            self.trace.append((self.global_step, lr, {k: v.detach().clone() for k, v in self.net.named_parameters()}))
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=self.momentum)
        if self.scheduler_kind == "step":
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        if self.scheduler_kind == "iter":
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + 0.1 * s))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        return opt


def trainer(tmp_path, callbacks, **kwargs):
    kwargs.setdefault("logger", pl.loggers.CSVLogger(tmp_path, name="logs"))
    return pl.Trainer(
        callbacks=callbacks, accelerator="cpu", devices=1, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0, **kwargs,
    )


class Kill(pl.Callback):
    """Raise at the given global step, as a killed job would stop."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


def killed_and_resumed(tmp_path, make_module, kill: int, **ticket):
    """A LotteryTicket run to its end, and the same run killed at global step `kill` and resumed from its last
    epoch-end checkpoint: (uninterrupted module, resumed module)."""
    import pytest
    from pytorch_lightning.callbacks import ModelCheckpoint

    from lottery import LotteryTicket

    def attempt(folder, kill=None, resume=False):
        pl.seed_everything(0)
        cb = LotteryTicket(dirpath=str(folder / "t"), **ticket)
        ckpt = ModelCheckpoint(dirpath=folder / "ckpt", save_last=True, save_on_train_epoch_end=True)
        module = make_module()
        trainer(folder, [cb, ckpt, *([Kill(kill)] if kill else [])]).fit(
            module, ckpt_path=str(folder / "ckpt" / "last.ckpt") if resume else None)
        return module

    ref = attempt(tmp_path / "ref")
    with pytest.raises(SystemExit):
        attempt(tmp_path / "run", kill=kill)
    return ref, attempt(tmp_path / "run", resume=True)


def two_round_run(tmp_path, module, **ticket):
    """`module` trained by a 2-round LotteryTicket (one epoch a round, 60% pruned): (callback, module). Seed before
    making the module."""
    from lottery import LotteryTicket

    cb = LotteryTicket(rounds=2, epochs_per_round=1, prune_fraction=0.6, dirpath=str(tmp_path / "t"), **ticket)
    trainer(tmp_path, [cb]).fit(module)
    return cb, module
