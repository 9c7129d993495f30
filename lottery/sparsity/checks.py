"""Argument checks shared by `prune` and the callback: each rule, with its message, in one place."""

from __future__ import annotations

from collections.abc import Mapping

SCOPES = ("global", "layerwise")


def check_fraction(name: str, value: float | None) -> None:
    """Raise unless `value` is None or strictly between 0 and 1."""
    if value is not None and not (isinstance(value, (int, float)) and 0.0 < float(value) < 1.0):
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value!r}")


def check_fractions(fractions: Mapping[str, float] | None) -> None:
    """Raise unless every per-pattern fraction is strictly between 0 and 1."""
    for pattern, value in (fractions or {}).items():
        check_fraction(f"fractions[{pattern!r}]", value)



def check_scope(scope: str) -> None:
    """Raise unless `scope` is one of SCOPES."""
    if scope not in SCOPES:
        raise ValueError(f"scope={scope!r} is not allowed; use 'global' or 'layerwise'")


def check_amount(prune_fraction: float | None, density: float | None, required: bool = False) -> None:
    """Raise unless at most one of `prune_fraction` / `density` is given (exactly one if `required`), each in (0, 1)."""
    if required and density is None and prune_fraction is None:
        raise ValueError("pass density= (the final fraction of weights kept) or prune_fraction= (removed per round)")
    if density is not None and prune_fraction is not None:
        raise ValueError("pass either prune_fraction= (removed per round) or density= (final fraction kept), not both")
    check_fraction("prune_fraction", prune_fraction)
    check_fraction("density", density)
