"""Weight initializers named in configs: Kaiming normal and Gaussian Glorot."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

PRUNABLE = (nn.Linear, nn.modules.conv._ConvNd)


def kaiming_normal(m: nn.Module) -> None:
    """He et al. normal init (fan-in, ReLU gain) for Linear/Conv weights; batch norm to (1, 0)."""
    if isinstance(m, PRUNABLE):
        nn.init.kaiming_normal_(m.weight)
    elif isinstance(m, nn.modules.batchnorm._BatchNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def glorot_normal(m: nn.Module) -> None:
    """Gaussian Glorot (Xavier normal) init, as Frankle & Carbin's LeNet and Conv nets."""
    if isinstance(m, PRUNABLE):
        nn.init.xavier_normal_(m.weight)
    elif isinstance(m, nn.modules.batchnorm._BatchNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


INITIALIZERS: dict[str, Callable[[nn.Module], None]] = {
    "kaiming_normal": kaiming_normal,
    "glorot_normal": glorot_normal,
    "default": lambda m: None,
}


def initialize(model: nn.Module, init: str) -> nn.Module:
    """Apply a named initializer to every submodule (biases keep PyTorch's default unless stated)."""
    if init not in INITIALIZERS:
        raise ValueError(f"unknown init {init!r}; choose one of {sorted(INITIALIZERS)}")
    return model.apply(INITIALIZERS[init])
