"""Image datasets as Lightning DataModules, with the file readers, in-memory loader and augmentation they use."""

from lottery.data.augment import random_crop_flip
from lottery.data.files import (
    DEBIAN_FASHION_MNIST,
    IDX_FILES,
    Arrays,
    read_cifar_batches,
    read_idx,
    read_idx_folder,
)
from lottery.data.loader import TensorLoader
from lottery.data.modules import (
    CIFAR10,
    CIFAR100,
    MNIST,
    DataNotFoundError,
    FashionMNIST,
    VisionDataModule,
)

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "DEBIAN_FASHION_MNIST",
    "IDX_FILES",
    "MNIST",
    "Arrays",
    "DataNotFoundError",
    "FashionMNIST",
    "TensorLoader",
    "VisionDataModule",
    "random_crop_flip",
    "read_cifar_batches",
    "read_idx",
    "read_idx_folder",
]
