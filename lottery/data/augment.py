"""Batched augmentation on the device: random crop with padding and horizontal flip."""

from __future__ import annotations

import torch
from torch import Tensor


def random_crop_flip(x: Tensor, pad: int, fill: Tensor) -> Tensor:
    """Per-example random crop of a padded batch (padding = `fill`, per channel) and horizontal flip."""
    n, c, h, w = x.shape
    padded = fill.view(1, c, 1, 1).expand(n, c, h + 2 * pad, w + 2 * pad).clone()
    padded[:, :, pad : pad + h, pad : pad + w] = x
    i = torch.randint(0, 2 * pad + 1, (n, 1, 1, 1), device=x.device)
    j = torch.randint(0, 2 * pad + 1, (n, 1, 1, 1), device=x.device)
    rows = (i + torch.arange(h, device=x.device).view(1, 1, h, 1)).expand(n, c, h, w + 2 * pad)
    out = padded.gather(2, rows)
    ar = torch.arange(w, device=x.device).view(1, 1, 1, w)
    flip = torch.rand(n, 1, 1, 1, device=x.device) < 0.5
    cols = torch.where(flip, j + (w - 1 - ar), j + ar).expand(n, c, h, w)
    return out.gather(3, cols)
