"""Scores to masks, shared by every pruner: exact counts, global or layerwise, deterministic ties."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from lottery.schedule import kept_count

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.modules.conv._ConvNd)
SCOPES = ("global", "layerwise")

Group = tuple[tuple[str, ...], int]  # parameter names pooled together, survivors to keep among them


def default_prunable(model: nn.Module) -> list[str]:
    """Names of the `weight` of every Linear and Conv layer, in `named_parameters()` order."""
    names = {f"{m}.weight" if m else "weight" for m, mod in model.named_modules() if isinstance(mod, PRUNABLE_TYPES)}
    return [n for n, _ in model.named_parameters() if n in names]


def match_patterns(patterns: Iterable[str], names: Sequence[str], what: str) -> dict[str, list[str]]:
    """Map each glob pattern to the names it matches; raise if one matches nothing."""
    out = {}
    for pattern in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise ValueError(f"{what} pattern {pattern!r} matches no prunable parameter. Prunable parameters: {shown}")
        out[pattern] = hits
    return out


def prunable(model: nn.Module, exclude: Iterable[str] = ()) -> list[str]:
    """Prunable parameter names of `model` minus those matching `exclude`; raise if none is left."""
    names = default_prunable(model)
    if not names:
        raise ValueError(
            f"{type(model).__name__} has nothing to prune: it has no nn.Linear or nn.Conv layer with a weight. "
            "lottery prunes the weights of Linear and Conv layers."
        )
    excluded = {n for hits in match_patterns(exclude, names, "exclude").values() for n in hits}
    kept = [n for n in names if n not in excluded]
    if not kept:
        raise ValueError(f"exclude={tuple(exclude)!r} excludes every prunable parameter of {type(model).__name__}.")
    return kept


def layer_fractions(names: Sequence[str], default: float, fractions: Mapping[str, float] | None) -> dict[str, float]:
    """Per-round prune fraction of each name: the first matching pattern of `fractions`, else `default`."""
    matched = match_patterns(fractions or {}, names, "fractions")
    out = {}
    for n in names:
        out[n] = next((float(fractions[p]) for p, hits in matched.items() if n in hits), default)
    return out


def groups(
    sizes: Mapping[str, int], round: int, default: float, fractions: Mapping[str, float], scope: str
) -> list[Group]:
    """Selection groups after `round` rounds: one per layer (layerwise or overridden), else one global pool."""
    if scope not in SCOPES:
        raise ValueError(f"scope={scope!r} is not allowed; use one of {SCOPES}")
    out: list[Group] = []
    pool = [n for n in sizes if scope == "global" and fractions[n] == default]
    for n in sizes:
        if n not in pool:
            out.append(((n,), kept_count(sizes[n], fractions[n], round)))
    if pool:
        out.append((tuple(pool), kept_count(sum(sizes[n] for n in pool), default, round)))
    return out


def kth_largest(values: Tensor, k: int) -> Tensor:
    """The k-th largest entry of a 1-D tensor, exactly, without sorting it.

    Large inputs: a fixed random sample brackets the answer, a few comparisons count what lies above the
    bracket, and only the entries inside it go through `kthvalue` (Floyd-Rivest); the sample affects the
    speed, never the result. A bracket that misses falls back to `kthvalue` on everything.
    """
    n = values.numel()
    if n > 1_000_000:
        gen = torch.Generator(device=values.device).manual_seed(0)
        sample = values[torch.randint(0, n, (100_000,), generator=gen, device=values.device)]
        q = 1.0 - k / n
        margin = 4.0 / 100_000**0.5
        lo = torch.quantile(sample.double(), max(0.0, q - margin)).to(values.dtype)
        hi = torch.quantile(sample.double(), min(1.0, q + margin)).to(values.dtype)
        above = int(torch.count_nonzero(values > hi))
        band = values[(values >= lo) & (values <= hi)]
        if above < k <= above + band.numel():
            return torch.kthvalue(band, band.numel() - (k - above) + 1).values
    return torch.kthvalue(values, n - k + 1).values


def top_k_mask(values: Tensor, k: int) -> Tensor:
    """Boolean mask of exactly the `k` largest of a 1-D tensor; ties go to the lower index.

    Uses a k-th value and the tie positions instead of a full sort, so it stays linear in size.
    """
    n = values.numel()
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=values.device)
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=values.device)
    threshold = kth_largest(values, k)
    keep = values > threshold
    ties = values == threshold
    needed = k - int(torch.count_nonzero(keep))  # count_nonzero: 20x faster than a bool sum on CPU
    if needed == int(torch.count_nonzero(ties)):
        return keep | ties
    tie_idx = ties.nonzero().squeeze(1)
    keep[tie_idx[:needed]] = True  # nonzero() lists ties by index: the lower ones win
    return keep


def select(
    scores: Mapping[str, Tensor], masks: Mapping[str, Tensor], groups: Sequence[Group], revive: bool = False
) -> dict[str, Tensor]:
    """New masks keeping the highest-scored weights of each group, exactly as many as the group asks.

    Without `revive` only current survivors compete, so a pruned weight never comes back.
    """
    new = {}
    for names, k in groups:
        missing = [n for n in names if n not in scores]
        if missing:
            raise KeyError(f"the pruner returned no scores for {missing}")
        device = masks[names[0]].device
        dtype = torch.promote_types(torch.float32, scores[names[0]].dtype)
        for n in names[1:]:
            dtype = torch.promote_types(dtype, scores[n].dtype)
        flat = torch.cat([scores[n].detach().reshape(-1).to(device=device, dtype=dtype) for n in names])
        if torch.isnan(flat).any():
            raise ValueError(f"the pruner returned NaN scores for {list(names)}; cannot rank them")
        old = torch.cat([masks[n].reshape(-1) for n in names])
        if revive:
            keep = top_k_mask(flat, k)
        elif int(torch.count_nonzero(old)) * 2 >= old.numel() and not torch.isneginf(flat).any():
            # most weights still compete: rank in place, the pruned ones below every candidate
            keep = top_k_mask(flat.masked_fill_(~old, float("-inf")), k) & old
        else:
            idx = old.nonzero().squeeze(1)
            keep = torch.zeros_like(old)
            keep[idx[top_k_mask(flat[idx], k)]] = True
        for n, part in zip(names, keep.split([masks[n].numel() for n in names])):
            new[n] = part.view_as(masks[n])
    return new
