"""lottery.pruning: the registry of pruners and get()."""

import pytest
import torch

from helpers import MLP
from lottery.pruning import PRUNERS, Magnitude, Pruner, get


def test_registry_and_scores():
    assert isinstance(get("magnitude"), Magnitude)
    inst = Magnitude()
    assert get(inst) is inst
    with pytest.raises(ValueError, match="unknown pruner 'snipp'"):
        get("snipp")
    model = MLP()
    s = get("magnitude").scores(model)
    assert set(s) == {"fc1.weight", "fc2.weight", "fc3.weight"}
    assert torch.equal(s["fc2.weight"], model.fc2.weight.detach().abs())
    r1, r2 = get("random", seed=5).scores(model), get("random", seed=5).scores(model)
    assert torch.equal(r1["fc1.weight"], r2["fc1.weight"])
    assert issubclass(PRUNERS["random"], Pruner)
