"""Drop and grow: the mask update of dynamic sparse training, with per-layer counts kept exactly constant."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
from torch import Tensor

from lottery.sparsity.selection import select


def drop_and_grow(drop_scores: Mapping[str, Tensor], grow_scores: Mapping[str, Tensor], masks: Mapping[str, Tensor],
                  fraction: float) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """New masks and the grown positions: per layer, n = round(fraction · active) active weights with the lowest
    `drop_scores` leave and the n inactive ones (after the drop, so a weight dropped now may come back) with the
    highest `grow_scores` enter. Ties go to the lower index, as in every selection here."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"the update fraction must be in [0, 1], got {fraction}")
    new, grown = {}, {}
    for name, mask in masks.items():
        active = int(mask.count_nonzero())
        n = int(fraction * active + 0.5)
        if n == 0:
            new[name], grown[name] = mask.clone(), torch.zeros_like(mask)
            continue
        with warnings.catch_warnings():  # weights grown at zero and not yet trained score 0: normal here
            warnings.filterwarnings("ignore", message="only .* have a non-zero score")
            kept = select({name: drop_scores[name]}, {name: mask}, [((name,), active - n)])[name]
            entered = select({name: grow_scores[name]}, {name: ~kept}, [((name,), n)])[name]
        new[name], grown[name] = kept | entered, entered
    return new, grown
