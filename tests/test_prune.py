import pytest
import torch

from helpers import MLP, SmallCNN
from lottery import prune
from lottery.pruning import PRUNERS, Magnitude, Pruner, get


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("pruner", sorted(PRUNERS))
@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_prune_reaches_density_and_leaves_model_unchanged(pruner, scope):
    torch.manual_seed(0)
    model = SmallCNN()
    model.example_input_array = torch.zeros(1, 1, 8, 8)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(2)]
    before = state(model)
    ticket = prune(model, pruner=pruner, density=0.1, rounds=4, scope=scope, seed=1, batches=batches)
    total = 36 + 432
    assert abs(ticket.density * total - round(0.1 * total)) <= 1
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert model.training and all(p.grad is None and p.requires_grad for p in model.parameters())
    again = prune(model, pruner=pruner, density=0.1, rounds=4, scope=scope, seed=1, batches=batches)
    assert all(torch.equal(ticket.masks[n], again.masks[n]) for n in ticket.masks)
    assert ticket.metadata["pruner"] == pruner and ticket.metadata["steps"] == 4


def test_magnitude_keeps_the_largest_per_layer():
    torch.manual_seed(0)
    model = MLP()
    ticket = prune(model, "magnitude", density=0.25, scope="layerwise")
    for n, m in ticket.masks.items():
        w = model.get_parameter(n).detach().abs()
        assert w[m].min() >= w[~m].max()


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


def test_prune_argument_errors():
    model = MLP()
    with pytest.raises(ValueError, match="pass density="):
        prune(model)
    with pytest.raises(ValueError, match="not both"):
        prune(model, density=0.5, prune_fraction=0.2)
    with pytest.raises(ValueError, match="density must be strictly between 0 and 1"):
        prune(model, density=0.0)
    with pytest.raises(ValueError, match="rounds must be a positive integer"):
        prune(model, density=0.5, rounds=0)
