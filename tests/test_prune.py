import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from helpers import MLP, SmallCNN
from lottery import prune
from lottery.pruning import PRUNERS, Magnitude, Pruner, get


class Counting(DataLoader):
    """A DataLoader that counts how many times it is iterated."""

    passes = 0

    def __iter__(self):
        type(self).passes += 1
        return super().__iter__()


def labelled(n):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 20, generator=g), torch.randint(0, 4, (n,), generator=g))


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


def test_inverted_pruner_scores_on_its_inner_pruner_batches():
    from lottery.pruning.inverted import Inverted

    torch.manual_seed(0)
    model = MLP()
    seen = []
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(5, 20, generator=g), torch.randint(0, 4, (5,), generator=g)) for _ in range(4)]
    snip = get("snip", batches=3)
    original = snip.scores

    def counting(net, data=None):
        seen.append(sum(len(y) for _, y in data))
        return original(net, data)

    snip.scores = counting
    inverted = Inverted(snip)
    assert inverted.batches == 3 and inverted.per_class is None
    prune(model, inverted, density=0.5, batches=batches)
    plain = prune(model, snip, density=0.5, batches=batches)
    assert seen == [15, 15]  # three batches of five each time, inverted or not
    flipped = prune(model, snip, density=0.5, batches=batches, invert=True)
    assert seen[-1] == 15 and not torch.equal(flipped.masks["fc1.weight"], plain.masks["fc1.weight"])


def test_fractions_name_their_own_group_and_are_checked_in_prune():
    torch.manual_seed(0)
    model = MLP()
    # fc3 at the default fraction but named: pruned on its own to exactly (1 - p) of its weights
    ticket = prune(model, "magnitude", prune_fraction=0.2, rounds=2, fractions={"fc3.weight": 0.2})
    assert int(ticket.masks["fc3.weight"].sum()) == round(64 * 0.8 ** 2)
    pooled = prune(model, "magnitude", prune_fraction=0.2, rounds=2)
    assert int(pooled.masks["fc3.weight"].sum()) != round(64 * 0.8 ** 2)  # in the pool it is not held to its own rate
    for bad in (1.5, 1.0, 0.0, "0.2"):
        with pytest.raises(ValueError, match=r"fractions\['fc3.weight'\] must be strictly between 0 and 1"):
            prune(model, "magnitude", density=0.5, fractions={"fc3.weight": bad})


def test_seeded_leaves_cuda_generators_alone_when_cuda_is_unused(monkeypatch):
    from lottery.loop import seeded

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        pytest.skip("CUDA is in use in this process: seeded seeds and restores its generators")
    calls = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(seed))
    before = torch.get_rng_state()
    with seeded(7):
        a = torch.rand(3)
    with seeded(7):
        assert torch.equal(torch.rand(3), a)
    assert torch.equal(torch.get_rng_state(), before) and calls == []  # no CUDA seeding queued for later


def test_iterative_snip_and_force_draw_fresh_batches_at_every_step():
    data = labelled(64)
    torch.manual_seed(0)
    model = MLP()
    for name in ("iter_snip", "force", "snip"):
        Counting.passes = 0
        loader = Counting(data, batch_size=8, shuffle=True)
        a = prune(model, name, density=0.3, rounds=5, batches=loader, seed=2)
        assert Counting.passes == (5 if name != "snip" else 1), name  # one draw per step, or one for all
        b = prune(model, name, density=0.3, rounds=5, batches=loader, seed=2)
        assert all(torch.equal(a.masks[n], b.masks[n]) for n in a.masks)  # fresh, yet reproducible with a seed
    Counting.passes = 0
    prune(model, "iter_snip", density=0.3, rounds=5, batches=iter(Counting(data, batch_size=8)), seed=2)
    assert Counting.passes == 1  # a one-pass iterator is drawn from once


def test_a_loader_is_iterated_once_per_loop_and_only_by_pruners_that_read_it():
    data = labelled(32)
    torch.manual_seed(0)
    model = MLP()  # no example_input_array: SynFlow reads its input shape from one batch
    for name, passes in (("synflow", 1), ("magnitude", 0), ("snip", 1)):
        Counting.passes = 0
        prune(model, name, density=0.3, rounds=5, batches=Counting(data, batch_size=8), seed=1)
        assert Counting.passes == passes, name
