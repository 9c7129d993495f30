"""Linear mode connectivity and instability (Frankle et al., ICML 2020).

Train two copies from the same point (a rewind point) with different SGD noise, evaluate the error along the
straight line between the two results; instability = the highest error on the path minus the mean of the two
end errors. Below about 2% the point counts as stable, and rewinding to it is expected to find a ticket.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn


def interpolate(a: Mapping[str, Tensor], b: Mapping[str, Tensor], alpha: float) -> dict[str, Tensor]:
    """(1 - alpha)·a + alpha·b for floating entries of two state dicts; other entries (counters) from a."""
    return {k: torch.lerp(v, b[k].to(v.dtype), alpha) if v.is_floating_point() else v.clone() for k, v in a.items()}


@torch.no_grad()
def classification_error(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]]) -> float:
    """Fraction of examples misclassified (eval mode)."""
    was_training = model.training
    model.eval()
    wrong = total = 0
    device = next(model.parameters()).device
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        wrong += int(torch.count_nonzero(model(x).argmax(1) != y))
        total += len(y)
    model.train(was_training)
    return wrong / total


def linear_path(a: nn.Module, b: nn.Module, evaluate: Callable[[nn.Module], float], points: int = 11) -> list[float]:
    """`evaluate` (an error) at `points` evenly spaced networks on the line from `a` to `b`."""
    if points < 2:
        raise ValueError(f"points must be at least 2 (the two ends), got {points}")
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys():
        raise ValueError("the two networks have different state-dict keys; train two copies of one model")
    probe = copy.deepcopy(a)
    errors = []
    for i in range(points):
        probe.load_state_dict(interpolate(sa, sb, i / (points - 1)))
        errors.append(float(evaluate(probe)))
    return errors


def instability(errors: list[float]) -> float:
    """Error barrier of a path: max error minus the mean of the two end errors."""
    return max(errors) - (errors[0] + errors[-1]) / 2
