"""A round's metrics: the best monitored value and its step (Frankle & Carbin's early-stopping iteration),
what else was measured then, and the last validation's values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The one-number entries of a metrics dict, as floats."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, Tensor) and v.numel() == 1}


class RoundMetrics:
    """Tracks one round's validations: the best value of `monitor` (by `mode`), its step, and the metrics then."""

    def __init__(self, monitor: str = "val_loss", mode: str = "min") -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode={mode!r} is not allowed; use 'min' or 'max'")
        self.monitor, self.mode = monitor, mode
        self.reset()

    def reset(self) -> None:
        """Forget the round (a new one starts)."""
        self.best: float | None = None
        self.best_step: int | None = None
        self.at_best: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def observe(self, metrics: Mapping[str, Any], step: int) -> None:
        """One validation's metrics at `step` of the round (`metrics` must hold the monitored value)."""
        # kept in the checkpoint: a run resumed at a round boundary closes the round with these metrics
        self.last = scalars(metrics)
        value = float(metrics[self.monitor])
        if self.best is None or (value < self.best if self.mode == "min" else value > self.best):
            self.best = value
            self.best_step = step
            # what else was measured then (test accuracy at the early-stopping iteration, say)
            self.at_best = scalars(metrics)

    def summary(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        """The round's record: the last values (updated by `metrics`, the Trainer's now), those at the best, best value and step."""
        out = {**self.last, **scalars(metrics)}
        out.update({f"{k}_at_best": v for k, v in self.at_best.items() if k != self.monitor})
        out[f"best_{self.monitor}"] = self.best if self.best is not None else float("nan")
        out["best_step"] = self.best_step if self.best_step is not None else -1
        return out

    def state(self) -> dict[str, Any]:
        """Checkpoint values."""
        return {"best": self.best, "best_step": self.best_step, "at_best": self.at_best, "last": self.last}

    def load(self, state: Mapping[str, Any]) -> None:
        """Inverse of `state`."""
        self.best, self.best_step = state["best"], state["best_step"]
        self.at_best, self.last = dict(state.get("at_best", {})), dict(state.get("last", {}))
