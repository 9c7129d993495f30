"""A user's own code, as a package of theirs would hold it: a LightningModule and a LightningDataModule that know
nothing of lottery. The CLI tests run them with `lottery fit --model user_code.TinyModule --data user_code.TinyData`
(tests/ is on sys.path, see conftest.py)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class TinyModule(pl.LightningModule):
    """A two-layer classifier of `features`-long vectors; logs `val_loss`, the callback's default monitor."""

    def __init__(self, features: int = 8, hidden: int = 16, classes: int = 3, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes))
        self.example_input_array = torch.zeros(1, features)  # SynFlow's input shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss(self, batch) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def training_step(self, batch, batch_idx):
        return self.loss(batch)

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.loss(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class TinyData(pl.LightningDataModule):
    """Random vectors labelled by which of their first `classes` entries is largest (no num_classes attribute)."""

    def __init__(self, size: int = 64, features: int = 8, classes: int = 3, batch_size: int = 16) -> None:
        super().__init__()
        self.size, self.features, self.classes, self.batch_size = size, features, classes, batch_size

    def _split(self, seed: int) -> TensorDataset:
        x = torch.randn(self.size, self.features, generator=torch.Generator().manual_seed(seed))
        return TensorDataset(x, x[:, : self.classes].argmax(1))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self._split(0), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._split(1), batch_size=self.batch_size)


class NotAModule:
    """A class that is neither a LightningModule nor a LightningDataModule."""

    def __init__(self, size: int = 1) -> None:
        self.size = size
