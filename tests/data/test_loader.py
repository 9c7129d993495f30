import torch

from lottery.data import loader as D


def test_tensor_loader_shuffles_per_epoch_and_shards():
    x, y = torch.arange(10).float().view(10, 1), torch.arange(10)
    loader = D.TensorLoader(x, y, batch_size=4, seed=3)
    assert len(loader) == 3
    loader.set_epoch(0)
    e0 = torch.cat([b[1] for b in loader])
    loader.set_epoch(1)
    e1 = torch.cat([b[1] for b in loader])
    loader.set_epoch(0)
    again = torch.cat([b[1] for b in loader])
    assert sorted(e0.tolist()) == list(range(10)) and not torch.equal(e0, e1) and torch.equal(e0, again)
    shards = [torch.cat([b[1] for b in D.TensorLoader(x, y, 2, seed=3, rank=r, world_size=2)]) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 5 and set(shards[0].tolist()) | set(shards[1].tolist()) == set(range(10))
