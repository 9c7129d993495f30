"""SparseTraining: when a method updates the masks during training, and the interface of an update."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from lottery.plan import Plan
from lottery.pruning import Pruner


@dataclass
class Update:
    """What an update step sees: the model and its masks now, which update of how many, and the dense gradient."""

    plan: Plan
    model: nn.Module
    masks: Mapping[str, Tensor]
    pruner: Pruner  # scores the weights that leave (magnitude by default)
    density: float  # the run's target density
    k: int  # this update, 1..n
    n: int  # updates in the run
    step: int  # optimizer steps done before this one
    total: int  # optimizer steps of the run
    seed: int  # for random choices of this update (derived from the run's seed and the step)
    grads: Mapping[str, Tensor] | None = None  # dense gradients of the prunable weights (methods that read them)
    batches: Iterable[Any] | None = None  # the train loader, for data-driven pruners


class SparseTraining:
    """A mask update every `every` optimizer steps, from `start` to `stop` (fractions of the run's total steps).

    Subclasses set `name`, the masks training starts from (`initial_masks`) and the update itself (`update`); the
    update steps are t = t0 + k·every for k = 1..n with t0 = start·T and t0 + n·every <= stop·T (T: total steps).
    """

    name = ""
    needs_grads = False  # the update reads the dense gradient of its step (RigL)
    fixed_density = True  # the masks keep the run's density from the first step (False: they reach it, GMP)

    def __init__(self, every: int = 100, start: float = 0.0, stop: float = 0.75) -> None:
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(f"{self.name}: every must be a positive number of optimizer steps, got {every!r}")
        if not 0.0 <= start < stop <= 1.0:
            raise ValueError(f"{self.name}: need 0 <= start < stop <= 1 (fractions of training), got start={start}, "
                             f"stop={stop}")
        self.every, self.start, self.stop = every, start, stop

    def updates(self, total: int) -> int:
        """n, the updates a run of `total` optimizer steps gets."""
        return max((int(self.stop * total) - int(self.start * total)) // self.every, 0)

    def last_update(self, total: int) -> int:
        """The step of the last update (before any update: the window's start)."""
        return int(self.start * total) + self.updates(total) * self.every

    def index(self, step: int, total: int) -> int | None:
        """k when the optimizer step after `step` done ones is update k (1..n), else None."""
        k, rest = divmod(step - int(self.start * total), self.every)
        return k if rest == 0 and 1 <= k <= self.updates(total) else None

    def initial_masks(self, plan: Plan, model: nn.Module, density: float, seed: int) -> dict[str, Tensor]:
        """The masks training starts from."""
        raise NotImplementedError

    def update(self, u: Update) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The masks after update `u.k` and the positions grown (they start at zero, with zero optimizer state)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Its settings, for a ticket's metadata."""
        return {"method": self.name, "every": self.every, "start": self.start, "stop": self.stop}
