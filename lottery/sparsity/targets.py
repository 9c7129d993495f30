"""Which weights can be pruned: Linear and Conv weights by default, minus `exclude` glob patterns."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

from torch import nn

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.modules.conv._ConvNd)


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

