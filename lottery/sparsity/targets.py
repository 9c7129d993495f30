"""Which weights can be pruned: Linear and Conv weights by default, plus `include` and minus `exclude` glob patterns.

Names are those of `named_parameters()`. A weight under `torch.nn.utils.parametrize` (or the older hook-based
`weight_norm` / `spectral_norm`) is pruned at the tensor the parametrization computes it from (its original),
which works when a zero of the original is a zero of the weight: weight_norm's direction v (w = g·v/‖v‖) and
spectral_norm's original (w = W/σ). A tied (shared) tensor is pruned once, under the name `named_parameters()`
lists it by; its other names work in patterns too.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm, _WeightNorm
from torch.nn.utils.spectral_norm import SpectralNorm as _OldSpectralNorm
from torch.nn.utils.weight_norm import WeightNorm as _OldWeightNorm

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.modules.conv._ConvNd)

# Parametrizations whose weight is zero wherever their original is zero, and the original pruned by default when
# the parametrization comes first on a Linear/Conv weight. Add a class of your own if it maps zeros to zeros.
ZERO_KEEPING: dict[type[nn.Module], str] = {_WeightNorm: "original1", _SpectralNorm: "original"}
_SHORT = {_WeightNorm: "weight_norm", _SpectralNorm: "spectral_norm"}


@dataclass(frozen=True)
class Source:
    """A parameter that a computed weight is made from (a parametrization's original, weight_norm's v or g)."""

    weight: str  # the weight it computes, e.g. "fc.weight"
    how: str  # the parametrizations, e.g. "weight_norm"
    keeps_zeros: bool  # a zero of this parameter is a zero of the weight
    default: bool  # pruned by default when the weight is a Linear/Conv weight
    divides: tuple[int, ...] = ()  # norms the weight is divided by: -1 the whole tensor's, d each slice along dim d


def _count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def aliases(model: nn.Module) -> dict[str, str]:
    """The other names of tied (shared) parameters -> the name `named_parameters()` lists them under."""
    first: dict[int, str] = {}
    out = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        name = first.setdefault(id(p), n)
        if name != n:
            out[n] = name
    return out


def sources(model: nn.Module) -> dict[str, Source]:
    """The parameters that computed weights are made from, by parameter name."""
    out = {}
    for m, mod in model.named_modules():
        prefix = f"{m}." if m else ""
        if parametrize.is_parametrized(mod):
            for tensor, chain in mod.parametrizations.items():
                kinds = [type(p) for p in chain]
                keeps = all(k in ZERO_KEEPING for k in kinds)
                how = " + ".join(_SHORT.get(k, k.__name__) for k in kinds)
                default = ZERO_KEEPING.get(kinds[0])
                for orig, _ in chain.named_parameters(recurse=False):
                    scale = kinds[0] is _WeightNorm and orig == "original0"  # weight_norm's g: no division by it
                    divides = tuple(-1 if k is _SpectralNorm else p.dim for k, p in zip(kinds, chain)
                                    if k is _SpectralNorm or (k is _WeightNorm and not scale))
                    out[f"{prefix}parametrizations.{tensor}.{orig}"] = Source(
                        f"{prefix}{tensor}", how, keeps, keeps and orig == default, divides)
        for hook in mod._forward_pre_hooks.values():
            if isinstance(hook, _OldWeightNorm):
                out[f"{prefix}{hook.name}_v"] = Source(f"{prefix}{hook.name}", "weight_norm", True, True, (hook.dim,))
                out[f"{prefix}{hook.name}_g"] = Source(f"{prefix}{hook.name}", "weight_norm", True, False)
            elif isinstance(hook, _OldSpectralNorm):
                out[f"{prefix}{hook.name}_orig"] = Source(f"{prefix}{hook.name}", "spectral_norm", True, True, (-1,))
    return out


def default_prunable(model: nn.Module) -> list[str]:
    """The `weight` of every Linear and Conv layer (its original when parametrized), in `named_parameters()` order.

    A weight tied to another parameter is named as `named_parameters()` lists it, whichever attribute comes first.
    """
    weights = {f"{m}.weight" if m else "weight" for m, mod in model.named_modules() if isinstance(mod, PRUNABLE_TYPES)}
    alias = aliases(model)
    names = {alias.get(n, n) for n in weights}
    names |= {n for n, s in sources(model).items() if s.default and s.weight in weights}
    return [n for n, _ in model.named_parameters() if n in names]


def match_patterns(patterns: Iterable[str], names: Sequence[str], what: str, listed: Sequence[str] | None = None,
                   kind: str = "prunable parameter", limit: int | None = 12) -> dict[str, list[str]]:
    """Map each glob pattern to the names it matches; raise if one matches nothing, listing `listed` (or `names`)."""
    out = {}
    for pattern in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            shown = list(names if listed is None else listed)
            more = limit is not None and len(shown) > limit
            text = ", ".join(shown[:limit] if more else shown) + (", ..." if more else "")
            raise ValueError(f"{what} pattern {pattern!r} matches no {kind}. {kind[0].upper()}{kind[1:]}s: {text}")
        out[pattern] = hits
    return out


def included(model: nn.Module, patterns: Iterable[str]) -> list[str]:
    """Names of the parameters `include` patterns match (tied names mapped to the listed one), checked prunable."""
    params = dict(model.named_parameters())
    alias = aliases(model)
    floats = [n for n, p in params.items() if p.is_floating_point()]
    hits = match_patterns(patterns, list(params) + list(alias), "include", floats, "floating-point parameter", None)
    found: dict[str, str] = {}  # listed name -> the first pattern that matches it
    for pattern, names in hits.items():
        for n in names:
            found.setdefault(alias.get(n, n), pattern)
    made = sources(model)
    for n, pattern in found.items():
        if not params[n].is_floating_point():
            raise ValueError(f"include pattern {pattern!r} matches {n}, which is not floating-point ({params[n].dtype}): "
                             "only floating-point parameters can be pruned. Make the pattern narrower.")
        src = made.get(n)
        if src is not None and not src.keeps_zeros:
            raise ValueError(
                f"{n} is the original of {src.weight}, whose parametrization ({src.how}) does not keep zeros: a zero of "
                f"{n} is not a zero of {src.weight}, so pruning it would not prune the weight. Remove the parametrization "
                "(torch.nn.utils.parametrize.remove_parametrizations) before pruning, or, if it maps zero entries to zero "
                "entries, add its class to lottery.sparsity.targets.ZERO_KEEPING.")
    return [n for n in params if n in found]


def prunable(model: nn.Module, exclude: Iterable[str] = (), include: Iterable[str] = ()) -> list[str]:
    """Linear and Conv weights plus the parameters `include` matches, minus those `exclude` matches; raise if none.

    Patterns are globs over `named_parameters()` names (a tied parameter's other names match too). The result is
    in `named_parameters()` order.
    """
    extra = set(included(model, tuple(include)))
    default = set(default_prunable(model))
    names = [n for n, _ in model.named_parameters() if n in default or n in extra]
    if not names:
        raise ValueError(
            f"{type(model).__name__} has nothing to prune: it has no nn.Linear or nn.Conv layer with a weight. "
            "lottery prunes the weights of Linear and Conv layers, and the parameters named with include= (glob patterns)."
        )
    alias = {a: c for a, c in aliases(model).items() if c in extra or c in default}
    hits = match_patterns(exclude, names + list(alias), "exclude", names)
    excluded = {alias.get(n, n) for ns in hits.values() for n in ns}
    kept = [n for n in names if n not in excluded]
    if not kept:
        raise ValueError(f"exclude={tuple(exclude)!r} excludes every prunable parameter of {type(model).__name__}.")
    return kept


def emptied_norms(model: nn.Module, masks: dict[str, Tensor]) -> list[str]:
    """What `masks` empty that a weight is divided by the norm of (weight_norm's rows, spectral_norm's matrix).

    Such a weight is NaN there (0/0), so these masks cannot be used; empty when there is none.
    """
    out = []
    for n, src in sources(model).items():
        mask = masks.get(n)
        for dim in src.divides if mask is not None else ():
            if dim == -1 or mask.dim() == 0:
                if not bool(mask.any()):
                    out.append(f"all of {n} ({src.how} divides {src.weight} by its norm)")
                continue
            alive = mask.movedim(dim, 0).reshape(mask.shape[dim], -1).any(1)
            dead = [int(i) for i in (~alive).nonzero().flatten()]
            if dead:
                rows = ", ".join(map(str, dead[:8])) + (f" and {len(dead) - 8} more" if len(dead) > 8 else "")
                out.append(f"row{'s' if len(dead) > 1 else ''} {rows} (along dim {dim}) of {n} ({src.how} divides each "
                           f"row of {src.weight} by its norm)")
    return out


def summary(model: nn.Module, names: Sequence[str], shown: int = 8, matrices: int = 4) -> str:
    """One line for the log: the weights pruned, the large matrices left dense and the tied parameters.

    A large matrix is a floating-point parameter with at least two dimensions longer than 1 that `names` leaves out.
    """
    params = dict(model.named_parameters())
    chosen = set(names)
    total = sum(params[n].numel() for n in names)
    listed = ", ".join(list(names)[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
    line = f"pruning {len(names)} weight{'' if len(names) == 1 else 's'} ({_count(total)} entries): {listed}"
    dense = [(n, p.numel()) for n, p in params.items()
             if n not in chosen and p.is_floating_point() and sum(s > 1 for s in p.shape) >= 2]
    dense.sort(key=lambda t: -t[1])
    if dense:
        made = sources(model)
        parts = [f"{n} {_count(k)}" + ("" if n not in made or made[n].keeps_zeros else
                                        f" [{made[n].how}: keeps no zeros, cannot be pruned]") for n, k in dense[:matrices]]
        more = f" and {len(dense) - matrices} more" if len(dense) > matrices else ""
        word = "matrix" if len(dense) == 1 else "matrices"
        entries = _count(sum(k for _, k in dense))
        line += (f"; left dense: {len(dense)} large {word}, {entries} entries ({', '.join(parts)}{more}), add them "
                 "with include= to prune them")
    shared = aliases(model)
    if shared:
        line += "; shared: " + ", ".join(f"{a} = {c}" + (" (one mask)" if c in chosen else "") for a, c in shared.items())
    return line


# The names a plan asks its pruner to score, while it scores (`scoring`); `Pruner.prunable_parameters` reads them.
_SCORED: ContextVar[tuple[str, ...] | None] = ContextVar("lottery_scored", default=None)


@contextmanager
def scoring(names: Iterable[str]) -> Iterator[None]:
    """Within this block pruners score `names` (a plan's prunable parameters, included ones too)."""
    token = _SCORED.set(tuple(names))
    try:
        yield
    finally:
        _SCORED.reset(token)


def scored_names(model: nn.Module) -> list[str]:
    """The names a pruner scores now: those of the plan scoring (`scoring`), else `default_prunable(model)`."""
    names = _SCORED.get()
    return default_prunable(model) if names is None else list(names)
