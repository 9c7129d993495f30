"""Layer densities: how a target density is spread over the prunable layers (uniform, ER, ERK).

Erdős–Rényi (ER; Mocanu et al., Nature Communications 2018, SET) gives a layer of fan-in n_in and fan-out n_out a
density proportional to (n_in + n_out) / (n_in · n_out); ERK (Evci et al., ICML 2020, RigL, section 3) adds the
kernel dimensions, ∝ (n_in + n_out + k_h + k_w) / (n_in · n_out · k_h · k_w), i.e. sum(shape) / prod(shape). The
scale ε is chosen so that the whole model keeps the target fraction; a layer whose density ε·raw would exceed 1 is
kept dense and ε is solved again for the others, the largest raw value first, as in RigL's own code. Counts are
exact: each layer keeps round(d_l · n_l) weights, and the remainders are handed out largest first so that the
layers together keep exactly round(density · N).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

DISTRIBUTIONS = ("uniform", "er", "erk")


def check_distribution(kind: str) -> None:
    """Raise ValueError unless `kind` is a known layer distribution."""
    if kind not in DISTRIBUTIONS:
        raise ValueError(f"unknown layer distribution {kind!r}; choose one of {', '.join(DISTRIBUTIONS)}")


def raw_density(shape: Sequence[int], kind: str) -> float:
    """A layer's unscaled density: 1 (uniform), (n_out + n_in) / (n_out · n_in) (ER), sum/prod of its shape (ERK)."""
    if kind == "uniform":
        return 1.0
    if kind == "er":
        dims = list(shape[:2]) if len(shape) >= 2 else [shape[0], 1]  # (out, in): kernel dimensions do not count
    elif kind == "erk":
        dims = list(shape)
    else:
        check_distribution(kind)
    return sum(dims) / math.prod(dims)


def layer_densities(shapes: Mapping[str, Sequence[int]], density: float, kind: str = "erk") -> dict[str, float]:
    """Per-layer densities of `kind` whose weighted mean over the layers' sizes is `density`; layers the scale would
    push above 1 are dense (d = 1) and the others rescaled."""
    check_distribution(kind)
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: raw_density(s, kind) for n, s in shapes.items()}
    dense: set[str] = set()
    while True:
        sparse = [n for n in shapes if n not in dense]
        if not sparse:
            break
        budget = density * sum(sizes.values()) - sum(sizes[n] for n in dense)
        eps = budget / sum(raw[n] * sizes[n] for n in sparse)
        top = max(raw[n] for n in sparse)
        if eps * top <= 1.0:
            break
        dense |= {n for n in sparse if raw[n] == top}  # the largest raw density first, then solve again
    return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}


def layer_counts(shapes: Mapping[str, Sequence[int]], density: float, kind: str = "erk") -> dict[str, int]:
    """Weights each layer keeps: round(d_l · n_l) with the remainders handed out largest first, so that the total is
    exactly round(density · N) (Hamilton's method), never more than a layer holds."""
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    want = {n: d * sizes[n] for n, d in layer_densities(shapes, density, kind).items()}
    counts = {n: min(sizes[n], math.floor(w)) for n, w in want.items()}
    short = int(math.floor(density * sum(sizes.values()) + 0.5)) - sum(counts.values())
    # ties in the remainder go to the earlier layer, so the counts are deterministic
    order = sorted((n for n in shapes if counts[n] < sizes[n]), key=lambda n: -(want[n] - math.floor(want[n])))
    for n in order[:max(short, 0)]:
        counts[n] += 1
    return counts
