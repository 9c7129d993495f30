"""Early-bird tickets (You et al., ICLR 2020, "Drawing Early-Bird Tickets"): end a round once the mask that pruning
would give now has stopped changing.

At the end of every epoch of a round that prunes afterwards, the mask the next pruning step would give from the
current weights is compared with the previous epoch's; the normalised Hamming distance (the fraction of prunable
weights whose keep/prune decision differs) is recorded, and the round ends when the largest of the last `epochs`
distances is below `epsilon`. You et al. used channel masks from batch-norm scales with a window of 5 and ε = 0.1;
the same test is applied here to the masks of the run's own pruner and scope.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from lottery.callback.masks import packed
from lottery.ticket import unpack_bits


class EarlyBird:
    """The distances between consecutive epochs' would-be masks in the current round, and the firing rule."""

    def __init__(self, epsilon: float, epochs: int = 5) -> None:
        if not 0.0 < epsilon < 1.0:
            raise ValueError(f"early_bird (the distance ε below which a mask counts as settled) must be in (0, 1), got "
                             f"{epsilon!r}; You et al. used 0.1")
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"early_bird_epochs must be a positive integer (the window of epochs), got {epochs!r}")
        self.epsilon, self.epochs = epsilon, epochs
        self.previous: dict[str, Tensor] | None = None
        self.distances: list[float] = []
        self.fired_at: int | None = None  # epochs the round had trained when it was ended early
        self.seconds, self._since = 0.0, None  # the round's wall time (the saving is reported per round)

    def reset(self) -> None:
        """A new round: no earlier mask to compare with, its clock at zero."""
        self.previous, self.distances, self.fired_at = None, [], None
        self.seconds, self._since = 0.0, time.perf_counter()

    def start_clock(self) -> None:
        """Training (re)starts: the round's wall time runs from here (on top of what a checkpoint recorded)."""
        self._since = time.perf_counter()

    def elapsed(self) -> float:
        """Wall seconds the current round has trained (in this process and before its checkpoint)."""
        return self.seconds + (0.0 if self._since is None else time.perf_counter() - self._since)

    def observe(self, masks: Mapping[str, Tensor]) -> float | None:
        """Record this epoch's would-be mask; its distance to the previous epoch's (None for the round's first)."""
        now = {n: m.detach().bool().cpu() for n, m in masks.items()}
        distance = None
        if self.previous is not None:
            changed = sum(int(torch.count_nonzero(now[n] ^ self.previous[n])) for n in now)
            distance = changed / sum(m.numel() for m in now.values())
            self.distances.append(distance)
        self.previous = now
        return distance

    @property
    def fired(self) -> bool:
        """True once the last `epochs` distances are all below ε."""
        return len(self.distances) >= self.epochs and max(self.distances[-self.epochs:]) < self.epsilon

    def state(self) -> dict[str, Any]:
        """Checkpoint values (bit-packed mask)."""
        previous = None if self.previous is None else {
            "bits": packed(self.previous), "shapes": {n: tuple(m.shape) for n, m in self.previous.items()}}
        return {"early_bird": {"previous": previous, "distances": list(self.distances), "fired_at": self.fired_at,
                               "seconds": self.elapsed()}}

    def load(self, state: Mapping[str, Any]) -> None:
        """Inverse of `state` (a checkpoint from before early-bird: nothing recorded)."""
        saved = state.get("early_bird") or {}
        previous = saved.get("previous")
        self.previous = None if previous is None else {
            n: unpack_bits(b, previous["shapes"][n]) for n, b in previous["bits"].items()}
        self.distances = list(saved.get("distances", []))
        self.fired_at = saved.get("fired_at")
        self.seconds, self._since = float(saved.get("seconds", 0.0)), None
