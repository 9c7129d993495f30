"""lottery.pruning.magnitude: the largest magnitudes survive."""

import torch

from helpers import MLP
from lottery import prune


def test_magnitude_keeps_the_largest_per_layer():
    torch.manual_seed(0)
    model = MLP()
    ticket = prune(model, "magnitude", density=0.25, scope="layerwise")
    for n, m in ticket.masks.items():
        w = model.get_parameter(n).detach().abs()
        assert w[m].min() >= w[~m].max()
