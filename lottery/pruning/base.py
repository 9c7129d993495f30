"""The Pruner interface: a pruner only scores weights; selection and masks are shared."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from lottery.sparsity.selection import Survivors
from lottery.sparsity.targets import scored_names


def zero_positions(t: Tensor, mask: Tensor, positions: Tensor | None) -> None:
    """Zero `t` at `positions` (flat) when given, else wherever `mask` is False."""
    if positions is not None:
        t.view(-1).index_fill_(0, positions.to(t.device), 0.0)
    else:
        t.masked_fill_(~mask.to(t.device), 0.0)  # 2x faster than mul_ by a bool mask on CPU


class Pruner:
    """Scores the prunable weights of a model; higher scores survive.

    A new method overrides `scores` alone; the class attributes below declare what the loop hands it. What a
    pruner reads: the model (always, with its pruned weights zeroed unless it `revives`), `batches` labelled
    batches (or `per_class` examples of each class) when it `needs_data`, the current masks, passed as
    ``masks=`` only to a pruner that `reads_masks`, and the user's ``loss_fn=(module, batch) -> loss``, passed
    (when given) only to a pruner that `reads_loss_fn`.
    """

    name: ClassVar[str] = ""
    needs_data: ClassVar[bool] = False  # scores need batches from the data
    batches: int = 1  # labelled batches a data-driven pruner scores on (drawn once, or at every step if fresh)
    per_class: int | None = None  # or exactly this many examples of every class, in one batch
    revives: ClassVar[bool] = False  # pruned weights compete again at the next selection (FORCE)
    reads_masks: ClassVar[bool] = False  # `scores` is given the current masks (FORCE scores at the masked point)
    reads_loss_fn: ClassVar[bool] = False  # `scores` is given loss_fn= (the data-driven pruners: SNIP, GraSP, ...)
    default_rounds: ClassVar[int] = 1  # scoring steps when `prune` is given none
    fresh_batches: ClassVar[bool] = False  # each step draws its batches anew (iterative data-driven pruners)

    def scores(self, model: nn.Module, batches: Iterable[Any] | None = None,
               masks: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Scores for every prunable weight of `model`, keyed like `named_parameters()`."""
        raise NotImplementedError

    @contextmanager
    def session(self, survivors: Survivors | None = None) -> Iterator[None]:
        """Scope of the consecutive scoring steps of one pruning loop, in which a pruner may keep buffers.

        `survivors` is the loop's `select.Survivors`: a pruner may score its tracked parameters at their
        survivors only.
        """
        yield

    @torch.no_grad()
    def zero_pruned(self, model: nn.Module, masks: Mapping[str, Tensor], dropped: Mapping[str, Tensor]) -> None:
        """Between steps: zero the weights pruned by the last step where this pruner reads them (the model).

        `dropped` holds, for some parameters, the flat positions the last step pruned; the others go by mask.
        """
        params = dict(model.named_parameters())
        for n, m in masks.items():
            zero_positions(params[n], m, dropped.get(n))

    @staticmethod
    def prunable_parameters(model: nn.Module, names: Iterable[str] | None = None) -> dict[str, nn.Parameter]:
        """The parameters a pruner scores: `names`, else the prunable names of the plan scoring now (`include=`d
        ones too, set by `Plan.step` with `lottery.sparsity.scoring`), else Linear and Conv weights."""
        params = dict(model.named_parameters())
        return {n: params[n] for n in (scored_names(model) if names is None else names)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def score(pruner: Pruner, model: nn.Module, batches: Iterable[Any] | None, masks: Mapping[str, Tensor] | None,
          loss_fn: Callable[[nn.Module, Any], Tensor] | None = None) -> dict[str, Tensor]:
    """`pruner.scores`, given the masks and the loss_fn only if it declares that it reads them.

    `reads_masks` and `reads_loss_fn` say so; a two-argument pruner is called `scores(model, batches)`, and so
    is every pruner when no loss_fn is given.
    """
    extra: dict[str, Any] = {}
    if pruner.reads_masks:
        extra["masks"] = masks
    if pruner.reads_loss_fn and loss_fn is not None:
        extra["loss_fn"] = loss_fn
    return pruner.scores(model, batches, **extra)
