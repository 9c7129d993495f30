"""Scores to masks, shared by every pruner: exact counts per group, deterministic ties, survivors tracked."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from lottery.sparsity.groups import Group
from lottery.sparsity.topk import _Candidates


class Survivors:
    """Flat positions of the survivors of sparse parameters, carried from one `select` call to the next.

    `select` ranks a parameter whose survivors are rarer than COMPACT_BELOW on a gather of their scores. Given
    the same Survivors at every step of a loop (masks only shrink), it finds those positions once and then
    shrinks them, so a sparse parameter costs in proportion to its survivors instead of a scan of its mask at
    every step, and it records in `dropped` the positions each call pruned, for whoever zeroes them. A pruner
    given the Survivors (`Pruner.session`) may score a tracked parameter at its survivors only: a 1-D tensor
    with one score per entry of `positions[name]`, in that order.
    """

    def __init__(self) -> None:
        self.positions: dict[str, Tensor] = {}
        self.dropped: dict[str, Tensor] = {}


def select(
    scores: Mapping[str, Tensor], masks: Mapping[str, Tensor], groups: Sequence[Group], revive: bool = False,
    survivors: Survivors | None = None,
) -> dict[str, Tensor]:
    """New masks keeping the highest-scored weights of each group, exactly as many as the group asks.

    Without `revive` only current survivors compete, so a pruned weight never comes back. Ties go to the
    lower index in the group's order (parameters in order, then their flattened positions). `survivors`
    (without `revive`) must have come through every earlier call that produced `masks`.
    """
    track = survivors is not None and not revive
    if track:
        survivors.dropped = {}
    new = {}
    for names, k in groups:
        missing = [n for n in names if n not in scores]
        if missing:
            raise KeyError(f"the pruner returned no scores for {missing}")
        device = masks[names[0]].device
        dtype = torch.promote_types(torch.float32, scores[names[0]].dtype)
        for n in names[1:]:
            dtype = torch.promote_types(dtype, scores[n].dtype)
        parts = [scores[n].detach().reshape(-1).to(device=device, dtype=dtype) for n in names]
        known = [survivors.positions.get(n) for n in names] if track else None
        candidates = _Candidates(parts, None if revive else [masks[n].reshape(-1) for n in names], names, known)
        flags = candidates.top_k(k)
        if candidates.zero_kept:
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            warnings.warn(f"only {k - candidates.zero_kept} of the {k} weights to keep in {shown} have a non-zero "
                          f"score at this step; the other {candidates.zero_kept} (score 0) are kept by lowest index, "
                          "not by merit. Prune less per step (more steps or a higher density).", stacklevel=2)
        for i, (n, keep) in enumerate(zip(names, flags)):
            idx = candidates.index[i]
            kept = None if idx is None or not track else idx[keep]
            new[n] = candidates.expand(i, keep, kept).view_as(masks[n])
            if kept is not None:
                survivors.positions[n] = kept
                survivors.dropped[n] = idx[~keep]
    return new
