"""The Pruner interface: a pruner only scores weights; selection and masks are shared."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from torch import Tensor, nn

from lottery.select import default_prunable


class Pruner:
    """Scores the prunable weights of a model; higher scores survive."""

    name: ClassVar[str] = ""
    needs_data: ClassVar[bool] = False  # scores need batches from the data
    revives: ClassVar[bool] = False  # pruned weights compete again at the next selection (FORCE)
    default_rounds: ClassVar[int] = 1  # scoring steps when `prune` is given none

    def scores(self, model: nn.Module, batches: Iterable[Any] | None = None) -> dict[str, Tensor]:
        """Scores for every prunable weight of `model`, keyed like `named_parameters()`."""
        raise NotImplementedError

    @contextmanager
    def session(self) -> Iterator[None]:
        """Scope of the consecutive scoring steps of one pruning loop, in which a pruner may keep buffers."""
        yield

    @staticmethod
    def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
        """The parameters a pruner scores: Linear and Conv weights."""
        params = dict(model.named_parameters())
        return {n: params[n] for n in default_prunable(model)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
