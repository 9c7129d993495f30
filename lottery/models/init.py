"""Weight initializers named in configs: Kaiming normal and Gaussian Glorot."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

PRUNABLE = (nn.Linear, nn.modules.conv._ConvNd)


def _initializer(weight_init: Callable[[Tensor], Tensor]) -> Callable[[nn.Module], None]:
    """An initializer that applies `weight_init` to Linear/Conv weights and sets batch norm to (1, 0)."""

    def init(m: nn.Module) -> None:
        if isinstance(m, PRUNABLE):
            weight_init(m.weight)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    return init


kaiming_normal = _initializer(nn.init.kaiming_normal_)  # He et al.: fan-in, ReLU gain
glorot_normal = _initializer(nn.init.xavier_normal_)  # Gaussian Glorot, as Frankle & Carbin's LeNet and Conv nets


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
