"""CIFAR VGG-11/16/19 with batch norm (as in open_lth and the SynFlow paper): conv stacks, one linear layer."""

from __future__ import annotations

from torch import Tensor, nn

PLANS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
}


class CifarVGG(nn.Module):
    """3x3 conv (with PyTorch's default bias) + BN + ReLU stacks, global average pool, Linear(512, classes)."""

    def __init__(self, depth: int = 16, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if depth not in PLANS:
            raise ValueError(f"VGG-{depth} is not defined; choose one of {sorted(PLANS)}")
        layers: list[nn.Module] = []
        c = in_channels
        for v in PLANS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU()]
                c = v
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.features(x)
        return self.fc(nn.functional.adaptive_avg_pool2d(out, 1).flatten(1))
