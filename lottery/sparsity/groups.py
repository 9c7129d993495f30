"""Selection groups: which prunable weights compete together, and how many of each group survive a round."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lottery.sparsity.checks import check_fractions, check_scope
from lottery.sparsity.schedule import DensitySchedule
from lottery.sparsity.targets import match_patterns

Group = tuple[tuple[str, ...], int]  # parameter names pooled together, survivors to keep among them


def layer_fractions(names: Sequence[str], fractions: Mapping[str, float] | None) -> dict[str, float]:
    """Per-round prune fraction of each name some pattern of `fractions` matches (the first that does)."""
    check_fractions(fractions)
    matched = match_patterns(fractions or {}, names, "fractions")
    out = {}
    for n in names:
        hit = next((p for p, hits in matched.items() if n in hits), None)
        if hit is not None:
            out[n] = float(fractions[hit])
    return out


def groups(
    sizes: Mapping[str, int], step: int, schedule: DensitySchedule, layer_schedules: Mapping[str, DensitySchedule],
    scope: str,
) -> list[Group]:
    """Selection groups after `step` steps: one per layer (layerwise, or with a schedule of its own), else one pool.

    A layer with its own schedule (named in `fractions`) is pruned on its own, even when its schedule equals
    the default one.
    """
    check_scope(scope)
    out: list[Group] = []
    pool = [n for n in sizes if scope == "global" and n not in layer_schedules]
    for n in sizes:
        if n not in pool:
            out.append(((n,), layer_schedules.get(n, schedule).kept(sizes[n], step)))
    if pool:
        out.append((tuple(pool), schedule.kept(sum(sizes[n] for n in pool), step)))
    return out
