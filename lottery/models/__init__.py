"""Built-in models of the lottery-ticket papers, and any torchvision classifier by name."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from lottery.models.conv import ConvNet
from lottery.models.init import INITIALIZERS, initialize
from lottery.models.lenet import LeNet300
from lottery.models.resnet import CifarResNet
from lottery.models.vgg import CifarVGG

MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet300": LeNet300,
    "conv2": lambda **kw: ConvNet(2, **kw),
    "conv4": lambda **kw: ConvNet(4, **kw),
    "conv6": lambda **kw: ConvNet(6, **kw),
    **{f"resnet{d}": (lambda d: lambda **kw: CifarResNet(d, **kw))(d) for d in (20, 32, 44, 56, 110)},
    **{f"vgg{d}": (lambda d: lambda **kw: CifarVGG(d, **kw))(d) for d in (11, 13, 16, 19)},
}


def build(name: str, num_classes: int = 10, init: str = "kaiming_normal", **kwargs) -> nn.Module:
    """A model by name: a built-in one (`lenet300`, `conv2`, `resnet20`, `vgg16`, ...) or `torchvision.NAME`."""
    if name.startswith("torchvision."):
        import torchvision  # kept out of the core: only torchvision models need it

        arch = name.split(".", 1)[1]
        available = torchvision.models.list_models(module=torchvision.models)
        if arch not in available:
            raise ValueError(f"torchvision has no classification model {arch!r}; e.g. {', '.join(sorted(available)[:8])}")
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
    elif name in MODELS:
        model = MODELS[name](num_classes=num_classes, **kwargs)
    else:
        raise ValueError(f"unknown model {name!r}; built-in: {', '.join(MODELS)}, or 'torchvision.<name>' (e.g. torchvision.resnet18)")
    return initialize(model, init)


__all__ = ["MODELS", "INITIALIZERS", "build", "LeNet300", "ConvNet", "CifarResNet", "CifarVGG"]
