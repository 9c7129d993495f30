"""Conv-2/4/6 of Frankle & Carbin 2019 (scaled VGG for CIFAR-10): 3x3 convs, max-pool pairs, FC 256-256-10."""

from __future__ import annotations

from torch import Tensor, nn


class ConvNet(nn.Module):
    """`depth` in (2, 4, 6) conv layers of widths 64, 64, 128, 128, 256, 256, then FC 256, 256, classes."""

    def __init__(self, depth: int = 2, num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        if depth not in (2, 4, 6):
            raise ValueError(f"Conv-{depth} does not exist; depth must be 2, 4 or 6")
        widths = [64, 64, 128, 128, 256, 256][:depth]
        layers: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU()]
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
            c = w
        self.features = nn.Sequential(*layers)
        side = image_size // 2 ** (depth // 2)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c * side * side, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
