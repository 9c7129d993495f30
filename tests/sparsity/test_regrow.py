"""Drop and grow: constant counts, exactly n dropped and n grown, grown by the highest scores among the inactive."""

import torch

from lottery.sparsity.regrow import drop_and_grow


def test_rigl_update_by_hand():
    # 4 active of 8; fraction 0.5 drops round(0.5·4) = 2: the two smallest magnitudes among the active (0.1, 0.2)
    mask = torch.tensor([True, True, True, True, False, False, False, False])
    w = torch.tensor([0.1, -0.9, 0.2, 0.5, 0.0, 0.0, 0.0, 0.0])
    grad = torch.tensor([5.0, 0.0, 0.0, 0.0, 0.3, -2.0, 0.1, 1.5])
    new, grown = drop_and_grow({"w": w.abs()}, {"w": grad.abs()}, {"w": mask}, 0.5)
    # the inactive after the drop are 0, 2, 4..7; the largest |grad| among them: position 0 (5.0) and 5 (2.0)
    assert new["w"].tolist() == [True, True, False, True, False, True, False, False]
    assert grown["w"].tolist() == [True, False, False, False, False, True, False, False]


def test_counts_stay_constant_and_masks_exact():
    g = torch.Generator().manual_seed(0)
    masks = {"a": torch.rand(50, 40, generator=g) < 0.2, "b": torch.rand(30, generator=g) < 0.5}
    for fraction in (0.0, 0.1, 0.3, 1.0):
        drop = {n: torch.rand(m.shape, generator=g) for n, m in masks.items()}
        grow = {n: torch.rand(m.shape, generator=g) for n, m in masks.items()}
        new, grown = drop_and_grow(drop, grow, masks, fraction)
        for n, m in masks.items():
            active = int(m.sum())
            assert int(new[n].sum()) == active
            n_moved = int(fraction * active + 0.5)
            assert int((m & ~new[n]).sum()) + int((grown[n] & m).sum()) == n_moved  # left (some may come back)
            assert int(grown[n].sum()) == n_moved and not (grown[n] & ~new[n]).any()
