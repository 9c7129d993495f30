"""The top-k engine: exactly the k highest scores of a group kept in parts, ties to the lower index, no full sort."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def kth_largest(values: Tensor, k: int) -> Tensor:
    """The k-th largest entry of a 1-D tensor, exactly, without sorting it."""
    return _Candidates([values], None).kth_largest(k)


def top_k_mask(values: Tensor, k: int) -> Tensor:
    """Boolean mask of exactly the `k` largest of a 1-D tensor; ties go to the lower index."""
    return _Candidates([values], None).top_k(k)[0]  # not compacted: the flags are the mask


def flat_nonzero(flags: Tensor) -> Tensor:
    """Ascending positions of the True entries of a 1-D bool tensor; ~3x faster than `nonzero` on CPU when few are True.

    `nonzero` on CPU costs about 1 ns per entry however few are set (a bracket's band on VGG-16: 15 ms for
    15M flags, 0.8% set). Read as 64-bit words, eight flags at a time, the scan finds the few non-zero words
    and only their bytes are scanned flag by flag. When many words hold a flag the plain scan is faster.
    """
    n = flags.numel()
    head = n - n % 8
    if flags.device.type != "cpu" or head < 1 << 16 or flags.storage_offset() % 8:
        return flags.nonzero().squeeze(1)
    words = flags[:head].view(torch.int64).nonzero().squeeze(1)
    if words.numel() * 4 > head // 8:  # a quarter of the words hold a flag: the plain scan wins
        return flags.nonzero().squeeze(1)
    hits = flags[:head].view(-1, 8).index_select(0, words).nonzero()  # (word row, byte), row-major: ascending
    positions = words[hits[:, 0]] * 8 + hits[:, 1]
    if head < n:
        positions = torch.cat([positions, flags[head:].nonzero().squeeze(1) + head])
    return positions


class NaNScoresError(ValueError):
    """A pruner's scores hold NaN where they compete: they cannot be ranked."""


SAMPLE = 100_000  # entries sampled to bracket the k-th value of a large pool
COMPACT_BELOW = 0.2  # a part whose survivors are rarer than this is gathered into a compact array


class _Band:
    """Where a bracket found the threshold: per part the flags above the band, and the band's positions and values."""

    def __init__(self, above_flags: list[Tensor], above: int, positions: list[Tensor], values: list[Tensor]) -> None:
        self.above_flags, self.above, self.positions, self.values = above_flags, above, positions, values


class _Candidates:
    """The competing scores of a selection group, kept in their parts (one per parameter), never concatenated.

    A part is either all of a parameter's scores, or those scores with a mask of the ones that compete, or
    (when few compete) a compact gather of the competing scores with their positions. Every pass is one
    elementwise sweep: on a 15M-weight VGG-16 a concatenation alone costs more than the whole selection.
    """

    def __init__(self, parts: Sequence[Tensor], olds: Sequence[Tensor] | None, names: Sequence[str] = (),
                 known: Sequence[Tensor | None] | None = None) -> None:
        self.names = list(names)
        self.sizes = [p.numel() if olds is None else olds[i].numel() for i, p in enumerate(parts)]
        self.values: list[Tensor] = []
        self.masks: list[Tensor | None] = []  # which entries of values compete (None: all)
        self.index: list[Tensor | None] = []  # positions of compacted values in the part (None: not compacted)
        self.total = 0  # competing scores in all parts
        self.zero_kept = 0  # of the last top_k: weights kept with a score of exactly 0 (ties at a zero threshold)
        for i, (part, size) in enumerate(zip(parts, self.sizes)):
            old = None if olds is None else olds[i]
            idx = None if known is None else known[i]  # the survivors' positions, when the caller tracks them
            count = size if old is None else idx.numel() if idx is not None else int(torch.count_nonzero(old))
            if old is not None and count == size:
                old = None
            if part.numel() != size and (idx is None or part.numel() != idx.numel()):
                raise ValueError(f"scores for {self.names[i] if self.names else 'a part'} have {part.numel()} entries; "
                                 f"expected {size} (or one per tracked survivor)")
            if old is not None and count < COMPACT_BELOW * size:
                if idx is None:
                    idx = old.nonzero().squeeze(1)
                # tracked parameters' scores may come at their survivors only (see Survivors)
                self.values.append(part if part.numel() != size else part.index_select(0, idx))  # 2x faster than part[idx]
                self.index.append(idx)
                self.masks.append(None)
            else:
                self.values.append(part)
                self.index.append(None)
                self.masks.append(old)
            self.total += count

    def _competing(self, flags: Tensor, i: int) -> Tensor:
        mask = self.masks[i]
        return flags if mask is None else flags & mask

    def _nan(self) -> NaNScoresError:
        return NaNScoresError(f"the pruner returned NaN scores for {self.names}; cannot rank them")

    def check_nan(self) -> None:
        """Raise if a competing score is NaN (a sum first: one cheap reduction when there is none)."""
        for i, v in enumerate(self.values):
            if v.numel() and torch.isnan(v.sum()) and bool(self._competing(torch.isnan(v), i).any()):
                raise self._nan()

    def _all(self) -> Tensor:
        return torch.cat([v if m is None else v[m] for v, m in zip(self.values, self.masks)])

    def _bracket(self, k: int) -> tuple[Tensor, Tensor] | None:
        """Values lo <= hi between which the k-th largest almost surely lies, from a fixed random sample."""
        gen = torch.Generator(device=self.values[0].device).manual_seed(0)
        n_all = sum(v.numel() for v in self.values)
        samples = []
        for i, v in enumerate(self.values):
            m = min(v.numel(), max(1, round(SAMPLE * v.numel() / n_all)))
            if m:
                # stratified: one random position in each of m equal strides, so the reads run forward
                # through memory (independent random positions cost ~10x more on a 120 MB part)
                stride = v.numel() // m
                pos = torch.arange(m, device=v.device) * stride
                pos += torch.randint(0, stride, (m,), generator=gen, device=v.device)
                s = v.index_select(0, pos)
                samples.append(s if self.masks[i] is None else s[self.masks[i][pos]])
        sample = torch.cat(samples)
        n = sample.numel()
        if n < 1000:
            return None
        # the sample quantile's standard error is sqrt(q(1-q)/n): 6 of them either side (a miss only costs time)
        q = 1.0 - k / self.total
        margin = 6.0 * (q * (1.0 - q) / n) ** 0.5 + 2.0 / n
        if q - margin <= 0:
            return None
        lo = torch.kthvalue(sample, max(1, math.floor((q - margin) * n))).values  # order statistics, 1-based
        hi = torch.kthvalue(sample, min(n, math.ceil((q + margin) * n) + 1)).values
        return lo, hi

    def kth_largest(self, k: int) -> Tensor:
        """The k-th largest competing score (1 <= k <= total), exact."""
        return self._threshold(k)[0]

    def _threshold(self, k: int) -> tuple[Tensor, _Band | None]:
        """The k-th largest, and the band it was found in when the bracket held it."""
        bracket = self._bracket(k) if self.total > 1_000_000 else None
        if bracket is not None:
            lo, hi = bracket
            above_flags, positions = [], []
            for i, v in enumerate(self.values):
                above = v > hi
                inside = torch.lt(v, lo)
                inside |= above
                inside.logical_not_()  # lo <= v <= hi, or NaN (which fails both comparisons)
                if self.masks[i] is not None:
                    above &= self.masks[i]
                    inside &= self.masks[i]
                above_flags.append(above)
                positions.append(flat_nonzero(inside))
            values = [v.index_select(0, p) for v, p in zip(self.values, positions)]
            band = torch.cat(values)
            if bool(torch.isnan(band).any()):  # every competing NaN is in the band: no separate pass
                raise self._nan()
            above = sum(int(torch.count_nonzero(a)) for a in above_flags)
            if above < k <= above + band.numel():
                threshold = torch.kthvalue(band, band.numel() - (k - above) + 1).values
                return threshold, _Band(above_flags, above, positions, values)
        self.check_nan()
        everything = self._all()
        return torch.kthvalue(everything, everything.numel() - k + 1).values, None

    def top_k(self, k: int) -> list[Tensor]:
        """Per part, flags over its values (see `expand`) of exactly the k highest competing scores; ties go to lower positions."""
        if k >= self.total or k <= 0:
            self.check_nan()
        if k >= self.total:  # every competing score stays
            return [self._competing(torch.ones(v.numel(), dtype=torch.bool, device=v.device), i)
                    for i, v in enumerate(self.values)]
        if k <= 0:
            return [torch.zeros(v.numel(), dtype=torch.bool, device=v.device) for v in self.values]
        threshold, band = self._threshold(k)
        keeps, ties = [], []
        if band is not None:  # only the band can hold entries at or above the threshold besides the flags above it
            needed = k - band.above
            for keep, pos, bv in zip(band.above_flags, band.positions, band.values):
                over = pos[bv > threshold]
                keep[over] = True
                needed -= over.numel()
                keeps.append(keep)
                ties.append(pos[bv == threshold])  # ascending positions
        else:
            for i, v in enumerate(self.values):
                keeps.append(self._competing(v > threshold, i))
                ties.append(self._competing(v == threshold, i).nonzero().squeeze(1))
            needed = k - sum(int(torch.count_nonzero(keep)) for keep in keeps)
        self.zero_kept = needed if bool(threshold == 0) else 0
        for keep, tie in zip(keeps, ties):  # lower positions first, part by part
            take = min(needed, tie.numel())
            keep[tie[:take]] = True
            needed -= take
        return keeps

    def expand(self, i: int, keep: Tensor, kept: Tensor | None = None) -> Tensor:
        """A full-size mask of part i from `keep` (flags over its values, already limited to competing ones).

        `kept`: the positions `index[i][keep]`, when the caller has them already.
        """
        idx = self.index[i]
        if idx is None:
            return keep
        full = torch.zeros(self.sizes[i], dtype=torch.bool, device=keep.device)
        full[idx[keep] if kept is None else kept] = True
        return full
