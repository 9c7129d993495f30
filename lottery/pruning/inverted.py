"""Score inversion: any pruner turned around, so that its highest-scored weights go first (a sanity check)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from torch import Tensor, nn

from lottery.pruning.base import Pruner, score


class Inverted(Pruner):
    """Any pruner with its scores negated: the highest-scored weights are pruned first."""

    def __init__(self, pruner: str | Pruner) -> None:
        from lottery.pruning import get  # the registry imports the pruner modules; import it when used

        self.inner = get(pruner)
        self.name = f"{self.inner.name}_inverted"
        self.needs_data = self.inner.needs_data
        self.revives = self.inner.revives
        self.default_rounds = self.inner.default_rounds
        self.fresh_batches = self.inner.fresh_batches
        self.reads_masks = self.inner.reads_masks
        self.reads_loss_fn = self.inner.reads_loss_fn

    @property
    def batches(self) -> int:  # type: ignore[override]
        """The inner pruner's number of scoring batches (the loop draws them for every step)."""
        return self.inner.batches

    @property
    def per_class(self) -> int | None:  # type: ignore[override]
        """The inner pruner's examples per class, if it scores on those."""
        return self.inner.per_class

    def scores(self, model: nn.Module, batches: Iterable[Any] | None = None,
               masks: Mapping[str, Tensor] | None = None, *,
               loss_fn: Callable[[nn.Module, Any], Tensor] | None = None) -> dict[str, Tensor]:
        """The inner pruner's scores, negated (never NaN: no division is involved)."""
        return {n: -s for n, s in score(self.inner, model, batches, masks, loss_fn).items()}

    def session(self, survivors=None):  # type: ignore[override]
        """The inner pruner's session."""
        return self.inner.session(survivors)

    def zero_pruned(self, model, masks, dropped) -> None:  # type: ignore[override]
        """The inner pruner's zeroing: inside its session it may keep the weights it reads itself."""
        self.inner.zero_pruned(model, masks, dropped)

    def __repr__(self) -> str:
        return f"Inverted({self.inner!r})"
