import copy

import pytest
import torch
from torch import nn

from lottery.stability import classification_error, instability, interpolate, linear_path


def data(seed=0, n=512):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    y = ((x[:, 0] * x[:, 1]) > 0).long()  # XOR-like: needs the hidden layer
    return x, y


def trained(seed):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
    x, y = data()
    opt = torch.optim.Adam(net.parameters(), lr=0.03)
    for _ in range(400):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net


def test_identical_copies_are_perfectly_stable():
    a = trained(0)
    b = copy.deepcopy(a)
    x, y = data(1)
    errors = linear_path(a, b, lambda m: classification_error(m, [(x, y)]), points=7)
    assert len(errors) == 7 and len(set(errors)) == 1
    assert instability(errors) == 0.0


def test_permuted_twin_has_a_barrier():
    a = trained(0)
    x, y = data(1)
    end = classification_error(a, [(x, y)])
    assert end < 0.1
    # the same function with its hidden units permuted: equally good, but the straight line mixes unrelated units
    perm = torch.roll(torch.arange(16), 5)
    b = copy.deepcopy(a)
    with torch.no_grad():
        b[0].weight.copy_(a[0].weight[perm])
        b[0].bias.copy_(a[0].bias[perm])
        b[2].weight.copy_(a[2].weight[:, perm])
    errors = linear_path(a, b, lambda m: classification_error(m, [(x, y)]), points=11)
    assert errors[0] == errors[-1] == end
    assert instability(errors) > 0.1


def test_interpolate_and_errors():
    a = {"w": torch.zeros(3), "n": torch.tensor(4)}
    b = {"w": torch.ones(3), "n": torch.tensor(9)}
    mid = interpolate(a, b, 0.25)
    assert torch.allclose(mid["w"], torch.full((3,), 0.25)) and int(mid["n"]) == 4
    with pytest.raises(ValueError, match="points must be at least 2"):
        linear_path(nn.Linear(1, 1), nn.Linear(1, 1), lambda m: 0.0, points=1)


def test_stability_command_writes_table_and_plot(tmp_path, fashion_mnist):
    import csv

    from lottery.cli import main

    main(["stability", "--config", "configs/lenet300_fashion_imp.yaml", "--rewinds", "0", "10", "--points", "3",
          "--out", str(tmp_path), "--trainer.limit_train_batches", "15", "--ticket.epochs_per_round", "1"])
    rows = list(csv.DictReader(open(tmp_path / "stability.csv")))
    assert [int(r["rewind_iteration"]) for r in rows] == [0, 10]
    for r in rows:
        assert 0 <= float(r["error_a"]) <= 1 and float(r["max_error"]) >= max(float(r["error_a"]), float(r["error_b"]))
        assert float(r["instability"]) >= 0
    assert (tmp_path / "stability.png").read_bytes()[:4] == b"\x89PNG"
