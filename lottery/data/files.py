"""File format readers: MNIST's IDX files and CIFAR's python batches, with the paths and names they use."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

Arrays = tuple[Tensor, Tensor, Tensor, Tensor]  # train images, train labels, test images, test labels


def read_idx(path: Path) -> Tensor:
    """Read an IDX file (MNIST format), gzipped or not, as a uint8 tensor."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return torch.from_numpy(data.copy()).reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_idx_folder(folder: Path) -> Arrays | None:
    """The four MNIST-format files in `folder` (plain or .gz), or None if any is missing."""
    paths = [_find_idx(folder, stem) for split in ("train", "test") for stem in IDX_FILES[split]]
    if any(p is None for p in paths):
        return None
    x_tr, y_tr, x_te, y_te = (read_idx(p) for p in paths)
    return x_tr.unsqueeze(1), y_tr.long(), x_te.unsqueeze(1), y_te.long()


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's python batches (dicts of numpy arrays, lists and bytes) and nothing else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")
        return super().find_class(module, name)


def read_cifar_batches(folder: Path, files: list[str], label_key: str) -> tuple[Tensor, Tensor]:
    """Images (N, 3, 32, 32 uint8) and labels from CIFAR python-format batch files."""
    xs, ys = [], []
    for name in files:
        with open(folder / name, "rb") as f:
            entry = _ArrayUnpickler(f, encoding="latin1").load()
        xs.append(torch.from_numpy(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).copy()))
        ys.append(torch.tensor(entry[label_key], dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)
