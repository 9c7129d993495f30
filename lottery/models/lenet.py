"""LeNet-300-100 (LeCun et al. 1998) as in Frankle & Carbin 2019: 266,610 parameters on 28x28 inputs."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LeNet300(nn.Module):
    """784-300-100-10 fully connected network with ReLU."""

    def __init__(self, num_classes: int = 10, in_features: int = 784, hidden: tuple[int, int] = (300, 100)) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))
