"""N:M structured sparsity: in every block of M consecutive weights along a layer's input dimension, at most N survive.

A weight of shape (out, in, ...) is read as the (out, in·...) matrix a kernel multiplies (a convolution's input
channels and kernel positions flattened, as im2col lays them out), and each row is cut into blocks of M. Selection
first finds, in every block, the N highest-scored current survivors (ties to the lower index); only those compete
for the schedule's count, which is capped at N/M of the layers. So a target density at or above N/M gives an exact
N:M mask (density N/M), and lower densities (later IMP rounds, a GMP target below N/M) keep fewer, by score, among
the N:M survivors: every block still holds at most N (2:4 kernels take such blocks: a pruned entry is a zero).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class NM:
    """At most `n` survivors in every block of `m` consecutive weights along the input dimension."""

    n: int
    m: int

    @classmethod
    def parse(cls, text: str | NM) -> NM:
        """From ``"2:4"`` (or an NM)."""
        if isinstance(text, NM):
            return text
        match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", str(text))
        if not match or not 0 < int(match[1]) < int(match[2]):
            raise ValueError(f"structure={text!r} is not understood: write N:M with 0 < N < M, e.g. '2:4' (2 of every 4 "
                             "consecutive weights along the input dimension kept)")
        return cls(int(match[1]), int(match[2]))

    @property
    def density(self) -> float:
        """N/M, the density of an exact N:M mask."""
        return self.n / self.m

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"

    def check(self, name: str, shape: tuple[int, ...]) -> None:
        """Refuse a layer whose rows cannot be cut into blocks of M (a vector, or an input size not divisible by M)."""
        if len(shape) < 2:
            raise ValueError(f"structure={self}: {name} has shape {tuple(shape)}, not a matrix of rows to cut into blocks "
                             f"of {self.m}; leave it out with exclude=")
        width = 1
        for d in shape[1:]:
            width *= d
        if width % self.m:
            raise ValueError(f"structure={self}: {name} has {width} inputs per output (shape {tuple(shape)}), not a "
                             f"multiple of {self.m}; leave it out with exclude=, or choose M dividing {width}")

    def capacity(self, numel: int) -> int:
        """The most weights an N:M mask of `numel` weights keeps."""
        return numel // self.m * self.n

    def candidates(self, scores: Tensor, mask: Tensor) -> Tensor:
        """The N highest-scored survivors (`mask`) of every block of M, as a mask shaped like `scores` (ties: lower index)."""
        blocks = scores.detach().reshape(-1, self.m).float().clone()
        alive = mask.reshape(-1, self.m).to(blocks.device)
        blocks[~alive] = float("-inf")
        order = torch.sort(blocks, dim=1, descending=True, stable=True).indices[:, : self.n]
        keep = torch.zeros_like(alive)
        keep.scatter_(1, order, True)
        return (keep & alive).reshape(mask.shape)

    def kernel_note(self, shape: tuple[int, ...]) -> str:
        """What torch's 2:4 semi-structured kernels (CUDA) say of a layer this shape, for the fit-start summary."""
        if (self.n, self.m) != (2, 4):
            return f"{self}: no sparse kernel of torch runs {self} (only 2:4); the mask is exact, the speed-up is not there"
        rows = shape[0]
        cols = 1
        for d in shape[1:]:
            cols *= d
        min_rows, min_cols = 32, 64  # torch's CUTLASS 2:4 minimum (and multiple) for float16 and bfloat16 weights
        if rows % min_rows or cols % min_cols:
            return (f"2:4 kernels need a weight of rows a multiple of {min_rows} and columns of {min_cols} (float16): "
                    f"{rows}x{cols} would be padded")
        return f"2:4 kernels take {rows}x{cols} as it is (float16/bfloat16, CUDA)"
