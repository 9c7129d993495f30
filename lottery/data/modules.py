"""DataModules for MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100, with an in-memory fast path and offline discovery.

Each dataset is held as one uint8 tensor, normalized once, split into train/validation with a fixed seed, and
served either by `TensorLoader` (the fast path: batches by index on the training device, reshuffled each epoch
from `seed + epoch`) or by a plain `DataLoader`. CIFAR augmentation (random crop with padding 4, horizontal
flip) runs batched on the device in `on_after_batch_transfer`, for both paths.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from lottery.data.augment import random_crop_flip
from lottery.data.files import DEBIAN_FASHION_MNIST, Arrays, read_cifar_batches, read_idx_folder
from lottery.data.loader import TensorLoader


class DataNotFoundError(FileNotFoundError):
    """No copy of a dataset could be found or downloaded."""


class VisionDataModule(pl.LightningDataModule):
    """Common logic of the image datasets: discovery, split, normalization, loaders, augmentation."""

    name: ClassVar[str] = ""
    num_classes: ClassVar[int] = 10
    image_shape: ClassVar[tuple[int, int, int]] = (1, 28, 28)
    mean: ClassVar[tuple[float, ...]] = (0.5,)
    std: ClassVar[tuple[float, ...]] = (0.5,)
    default_val_size: ClassVar[int] = 5000
    default_augment: ClassVar[bool] = False

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 128,
        val_size: int | None = None,
        in_memory: bool = True,
        augment: bool | None = None,
        test_in_validation: bool = True,
        eval_batch_size: int = 1000,
        num_workers: int = 0,
        seed: int = 0,
        download: bool = True,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.val_size = self.default_val_size if val_size is None else val_size
        self.in_memory = in_memory
        self.augment = self.default_augment if augment is None else augment
        self.test_in_validation = test_in_validation
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.download = download
        self.source: str | None = None
        self._splits: dict[str, tuple[Tensor, Tensor]] | None = None

    # discovery
    def _read_local(self, root: Path) -> Arrays | None:
        """Read the dataset from a local folder in any supported layout, or None."""
        raise NotImplementedError

    def _download(self, root: Path) -> Arrays:
        """Download with torchvision into `root` and return the arrays."""
        raise NotImplementedError

    def _fallbacks(self) -> list[Path]:
        return []

    def locate(self) -> Arrays:
        """Find the data: `data_dir`, then $LOTTERY_DATA, then torchvision's download, then system copies."""
        looked: list[str] = []
        roots = [("data_dir", self.data_dir), ("LOTTERY_DATA", os.environ.get("LOTTERY_DATA"))]
        for label, root in roots:
            if root:
                arrays = self._read_local(Path(root))
                if arrays is not None:
                    self.source = str(root)
                    return arrays
                looked.append(f"{label}={root} (no {self.name} files there)")
        if self.download:
            root = Path(self.data_dir or os.environ.get("LOTTERY_DATA") or Path.home() / ".cache" / "lottery")
            try:
                arrays = self._download(root)
                self.source = f"torchvision download into {root}"
                return arrays
            except Exception as err:  # offline machines fail here with URL errors of several types
                looked.append(f"torchvision download into {root} ({type(err).__name__}: {str(err).strip()[:120]})")
        for folder in self._fallbacks():
            arrays = self._read_local(folder)
            if arrays is not None:
                self.source = str(folder)
                return arrays
            looked.append(f"{folder} (not there)")
        raise DataNotFoundError(
            f"could not find {self.name}. Looked in: " + "; ".join(looked) + ". "
            + f"Pass data_dir=<folder with the {self.name} files>, set LOTTERY_DATA, or allow the download"
            + (" (on Debian/Ubuntu: apt-get install dataset-fashion-mnist)." if self._fallbacks() else ".")
        )

    # preparation
    def prepare_data(self) -> None:
        if self.download and self._splits is None:  # set up already: the files are here, no need to read them again
            self.locate()  # downloads once, on the first process only

    def setup(self, stage: str | None = None) -> None:
        if self._splits is not None:
            return
        x_tr, y_tr, x_te, y_te = self.locate()
        if not 0 <= self.val_size < len(x_tr):
            raise ValueError(f"val_size={self.val_size} must be between 0 and {len(x_tr) - 1}")
        perm = torch.randperm(len(x_tr), generator=torch.Generator().manual_seed(12345))  # a fixed split
        val, train = perm[: self.val_size], perm[self.val_size :]
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)

        def norm(x: Tensor) -> Tensor:
            return (x.float().div_(255) - mean) / std

        self._fill = ((0 - mean) / std).flatten()
        self._splits = {"train": (norm(x_tr[train]), y_tr[train]), "val": (norm(x_tr[val]), y_tr[val]),
                        "test": (norm(x_te), y_te)}

    @property
    def example_input_array(self) -> Tensor:
        """One all-zero input of the dataset's shape (for summaries and SynFlow's all-ones input)."""
        return torch.zeros(1, *self.image_shape)

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _loader(self, split: str, train: bool) -> Any:
        x, y = self._splits[split]
        bs = self.batch_size if train else self.eval_batch_size
        if self.in_memory:
            device = self._device()
            trainer = getattr(self, "trainer", None)
            rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None and train else (0, 1)
            trained = None
            if train and trainer is not None:
                def trained() -> int:  # batches of the current epoch trained so far (on_train_batch_end included)
                    return trainer.fit_loop.epoch_loop.batch_progress.current.processed
            return TensorLoader(x.to(device), y.to(device), bs, shuffle=train, seed=self.seed, rank=rank,
                                world_size=world, trained=trained)
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(TensorDataset(x, y), batch_size=bs, shuffle=train, generator=gen if train else None,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> Any:
        return self._loader("train", True)

    @property
    def val_splits(self) -> tuple[str, ...]:
        """Names of the validation loaders, in order: the validation split, then the test set if measured too."""
        return (("val",) if self.val_size > 0 else ()) + (("test",) if self.test_in_validation else ())

    def val_dataloader(self) -> Any:
        loaders = [self._loader("val", False)] if self.val_size > 0 else []
        if self.test_in_validation:
            loaders.append(self._loader("test", False))
        return loaders[0] if len(loaders) == 1 else loaders

    def test_dataloader(self) -> Any:
        return self._loader("test", False)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # the in-memory path already yields batches on the device; skip Lightning's generic walk
        if isinstance(batch, (tuple, list)) and all(isinstance(t, Tensor) and t.device == device for t in batch):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = getattr(self, "trainer", None)
        if self.augment and trainer is not None and trainer.training:
            x, y = batch
            return random_crop_flip(x, 4, self._fill.to(x.device, x.dtype)), y
        return batch


class _MNISTLike(VisionDataModule):
    torchvision_class: ClassVar[str] = "MNIST"
    default_val_size = 5000  # 55K train / 5K validation

    def _read_local(self, root: Path) -> Arrays | None:
        for folder in (root, root / self.torchvision_class / "raw", root / self.torchvision_class):
            arrays = read_idx_folder(folder)
            if arrays is not None:
                return arrays
        return None

    def _download(self, root: Path) -> Arrays:
        import torchvision

        cls = getattr(torchvision.datasets, self.torchvision_class)
        train, test = cls(str(root), train=True, download=True), cls(str(root), train=False, download=True)
        return train.data.unsqueeze(1), train.targets.long(), test.data.unsqueeze(1), test.targets.long()


class MNIST(_MNISTLike):
    """MNIST: 55K train / 5K validation / 10K test, 28x28 grey."""

    name = "MNIST"
    mean, std = (0.1307,), (0.3081,)


class FashionMNIST(_MNISTLike):
    """Fashion-MNIST: 55K / 5K / 10K; also found in Debian's /usr/share/datasets/fashion-mnist."""

    name = "Fashion-MNIST"
    torchvision_class = "FashionMNIST"
    mean, std = (0.2860,), (0.3530,)

    def _fallbacks(self) -> list[Path]:
        return [DEBIAN_FASHION_MNIST]


class _CIFAR(VisionDataModule):
    image_shape = (3, 32, 32)
    default_val_size = 5000  # 45K train / 5K validation
    default_augment = True
    folder: ClassVar[str] = ""
    torchvision_class: ClassVar[str] = ""
    train_files: ClassVar[list[str]] = []
    test_files: ClassVar[list[str]] = []
    label_key: ClassVar[str] = "labels"

    def _read_local(self, root: Path) -> Arrays | None:
        folder = root / self.folder
        if not all((folder / f).is_file() for f in self.train_files + self.test_files):
            return None
        return (*read_cifar_batches(folder, self.train_files, self.label_key),
                *read_cifar_batches(folder, self.test_files, self.label_key))

    def _download(self, root: Path) -> Arrays:
        import torchvision

        getattr(torchvision.datasets, self.torchvision_class)(str(root), train=True, download=True)
        arrays = self._read_local(root)
        if arrays is None:
            raise FileNotFoundError(f"torchvision's download left no {self.folder} in {root}")
        return arrays


class CIFAR10(_CIFAR):
    """CIFAR-10: 45K train / 5K validation / 10K test, crop+flip augmentation."""

    name = "CIFAR-10"
    folder, torchvision_class = "cifar-10-batches-py", "CIFAR10"
    train_files, test_files = [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class CIFAR100(_CIFAR):
    """CIFAR-100: 45K train / 5K validation / 10K test, crop+flip augmentation."""

    name = "CIFAR-100"
    num_classes = 100
    folder, torchvision_class = "cifar-100-python", "CIFAR100"
    train_files, test_files, label_key = ["train"], ["test"], "fine_labels"
    mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
