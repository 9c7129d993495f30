import torch

from lottery.data import augment as D


def test_random_crop_flip_gives_shifted_crops():
    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    fill = torch.tensor([-1.0, -2.0, -3.0])
    out = D.random_crop_flip(x, 2, fill)
    padded = fill.view(1, 3, 1, 1).expand(2, 3, 9, 9).clone()
    padded[:, :, 2:7, 2:7] = x
    for n in range(2):
        candidates = [padded[n, :, i : i + 5, j : j + 5] for i in range(5) for j in range(5)]
        candidates += [c.flip(2) for c in candidates]
        assert any(torch.equal(out[n], c) for c in candidates)
    seen = {tuple(D.random_crop_flip(x, 2, fill)[0, 0, 0].tolist()) for _ in range(40)}
    assert len(seen) > 5  # crops really vary
