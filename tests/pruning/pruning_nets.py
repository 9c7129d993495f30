"""Small networks shared by the pruner tests."""

import torch
from torch import nn


def bn_net():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10),
    )
    with torch.no_grad():  # non-trivial affine parameters and running statistics, non-zero biases
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(-2, 2)
                m.bias.uniform_(-1, 1)
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.bias.uniform_(-1, 1)
    net.example_input_array = torch.zeros(1, 3, 8, 8)
    return net
