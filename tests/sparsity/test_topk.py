"""lottery.sparsity.topk: kth_largest, top_k_mask (ties to the lower index) and flat_nonzero."""

import pytest
import torch

from lottery import sparsity as sel


def test_ties_are_broken_by_index_and_counts_are_exact():
    values = torch.tensor([1.0, 3.0, 2.0, 2.0, 2.0, 0.0])
    keep = sel.top_k_mask(values, 3)
    assert keep.tolist() == [False, True, True, True, False, False]
    for k in range(0, 7):
        assert int(sel.top_k_mask(values, k).sum()) == k
    assert sel.top_k_mask(torch.zeros(10), 4).tolist() == [True] * 4 + [False] * 6


@pytest.mark.parametrize("dist", ["normal", "ties", "inf"])
def test_kth_largest_on_large_inputs_is_exact(dist):
    g = torch.Generator().manual_seed(0)
    v = torch.randn(1_500_000, generator=g, dtype=torch.float64)
    if dist == "ties":
        v = (v * 3).round()  # few distinct values: thresholds fall inside big tie groups
    if dist == "inf":
        v[:900_000] = float("-inf")
    for k in [1, 10, 123_457, 750_000, 1_499_999]:
        expected = torch.sort(v, descending=True).values[k - 1]
        assert sel.kth_largest(v, k) == expected
        keep = sel.top_k_mask(v, k)
        assert int(keep.sum()) == k and v[keep].min() >= v[~keep].max()


@pytest.mark.parametrize("n", [70_001, 1 << 17, 1_000_003])
@pytest.mark.parametrize("density", [0.0, 0.002, 0.05, 0.6])
def test_flat_nonzero_equals_nonzero(n, density):
    g = torch.Generator().manual_seed(n)
    flags = torch.rand(n, generator=g) < density
    flags[-1] = True  # the tail past the last full 8-byte word
    flags[n // 3: n // 3 + 5000] = True  # a dense cluster among sparse flags
    for f in (flags, flags[8:], flags[3:]):  # views: aligned and unaligned storage offsets
        assert torch.equal(sel.flat_nonzero(f), f.nonzero().squeeze(1))
