"""Rewind points: where survivors go back to after pruning (open_lth's step strings: 2ep, 500it, 1ep100it)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_STEP = re.compile(r"^\s*(?:(\d+)\s*ep)?\s*(?:(\d+)\s*it)?\s*$")


@dataclass(frozen=True)
class RewindPoint:
    """Where survivors are rewound to: ``init``, ``none`` or a point of round 0 (``2ep``, ``500it``, ``1ep100it``)."""

    kind: str  # "init" | "none" | "step"
    epochs: int = 0
    iterations: int = 0

    @classmethod
    def parse(cls, text: str | RewindPoint) -> RewindPoint:
        """Parse a rewind string; raise ValueError saying what is allowed."""
        if isinstance(text, RewindPoint):
            return text
        if not isinstance(text, str):
            raise ValueError(f"rewind must be a string, got {type(text).__name__}: {text!r}")
        t = text.strip().lower()
        if t in ("init", "0it", "0ep"):
            return cls("init")
        if t == "none":
            return cls("none")
        m = _STEP.match(t)
        if not t or m is None or (m.group(1) is None and m.group(2) is None):
            raise ValueError(
                f"rewind={text!r} is not understood. Use 'init' (values before the first step), "
                "'none' (keep the trained weights), or a point of round 0 such as '2ep', '500it' or '1ep100it'."
            )
        ep, it = int(m.group(1) or 0), int(m.group(2) or 0)
        if ep == 0 and it == 0:
            return cls("init")
        return cls("step", ep, it)

    def step(self, steps_per_epoch: int) -> int:
        """Optimizer step of round 0 at which the rewind values are taken (0 for init and none)."""
        if self.kind != "step":
            return 0
        return self.epochs * steps_per_epoch + self.iterations

    def __str__(self) -> str:
        if self.kind != "step":
            return self.kind
        return (f"{self.epochs}ep" if self.epochs else "") + (f"{self.iterations}it" if self.iterations else "")

