"""lottery.sparsity.selection: select and Survivors (NaN refusal, revive, agreement with a full sort)."""

import pytest
import torch

from helpers import MLP
from lottery import sparsity as sel
from lottery.plan import Plan


def test_select_refuses_nan_scores():
    model = MLP()
    plan = Plan(model, 0.2, "global")
    scores = {n: torch.full_like(model.get_parameter(n), float("nan")) for n in plan.names}
    with pytest.raises(ValueError, match="NaN"):
        sel.select(scores, plan.dense_masks(model), [(tuple(plan.names), 10)])


def test_revive_lets_pruned_weights_compete():
    masks = {"w": torch.tensor([True, True, False, False])}
    scores = {"w": torch.tensor([1.0, 2.0, 9.0, 0.0])}
    assert sel.select(scores, masks, [(("w",), 1)])["w"].tolist() == [False, True, False, False]
    assert sel.select(scores, masks, [(("w",), 1)], revive=True)["w"].tolist() == [False, False, True, False]


def reference_select(scores, masks, k, revive):
    """Selection by a full stable sort: highest scores first, ties to the lower index of the concatenation."""
    flat = torch.cat([scores[n].reshape(-1).double() for n in scores])
    old = torch.cat([masks[n].reshape(-1) for n in masks])
    competing = torch.ones_like(old) if revive else old
    idx = competing.nonzero().squeeze(1)
    order = torch.sort(-flat[idx], stable=True).indices  # stable: equal scores keep index order
    keep = torch.zeros_like(old)
    keep[idx[order[:k]]] = True
    return dict(zip(scores, keep.split([m.numel() for m in masks.values()])))


@pytest.mark.parametrize("size", [600, 1_400_000])
@pytest.mark.parametrize("kind", ["normal", "ties", "inf"])
def test_select_matches_a_full_sort(size, kind):
    """Parts of different survivor densities (all, most, few: compacted), k over the whole range."""
    g = torch.Generator().manual_seed(size)
    shapes = {"a": (size // 2,), "b": (size // 4, 2), "c": (size // 8,), "d": (size // 8,)}
    scores = {n: torch.randn(s, generator=g, dtype=torch.float64) for n, s in shapes.items()}
    if kind == "ties":
        scores = {n: (v * 2).round() for n, v in scores.items()}
    if kind == "inf":
        scores["a"][: size // 4] = float("-inf")
    keep_p = {"a": 1.0, "b": 0.7, "c": 0.1, "d": 0.0}
    masks = {n: torch.rand(s, generator=g) < keep_p[n] for n, s in shapes.items()}
    competing = sum(int(m.sum()) for m in masks.values())
    for revive in (False, True):
        pool = sum(m.numel() for m in masks.values()) if revive else competing
        for k in [0, 1, 7, pool // 3, pool // 2, pool - 5, pool, pool + 3]:
            got = sel.select(scores, masks, [(tuple(shapes), k)], revive=revive)
            want = reference_select(scores, masks, min(k, pool), revive)
            for n in shapes:
                assert torch.equal(got[n].reshape(-1), want[n]), (kind, size, revive, k, n)


@pytest.mark.parametrize("kind", ["normal", "ties"])
def test_survivors_carried_between_steps_give_the_same_masks(kind):
    """A loop passing one Survivors: identical masks to a full sort at every step, positions and dropped exact."""
    g = torch.Generator().manual_seed(7)
    shapes = {"a": (700_000,), "b": (350_000, 2), "c": (5_000,)}
    masks = {n: torch.ones(s, dtype=torch.bool) for n, s in shapes.items()}
    survivors = sel.Survivors()
    k = sum(m.numel() for m in masks.values())
    for step in range(14):
        scores = {n: torch.randn(s, generator=g, dtype=torch.float64) for n, s in shapes.items()}
        if kind == "ties":
            scores = {n: (v * 3).round() for n, v in scores.items()}
        if step:  # a NaN at a pruned position never competes again
            scores["b"].view(-1)[int((~masks["b"]).reshape(-1).nonzero()[0])] = float("nan")
        k = int(k * 0.7)
        got = sel.select(scores, masks, [(tuple(shapes), k)], survivors=survivors)
        want = reference_select({n: torch.nan_to_num(v, nan=-1e300) for n, v in scores.items()}, masks, k, False)
        for n in shapes:
            assert torch.equal(got[n].reshape(-1), want[n]), (kind, step, n)
            if n in survivors.positions:
                assert torch.equal(survivors.positions[n], got[n].reshape(-1).nonzero().squeeze(1))
                assert torch.equal(survivors.dropped[n], (masks[n] & ~got[n]).reshape(-1).nonzero().squeeze(1))
        masks = got
    assert set(survivors.positions) == {"a", "b", "c"}  # all compacted by the end (0.7^14 < 1%)
    assert sum(int(m.sum()) for m in masks.values()) == k


def test_nan_among_survivors_is_refused_on_the_bracket_path():
    g = torch.Generator().manual_seed(0)
    scores = {"w": torch.rand(2_000_000, generator=g, dtype=torch.float64)}
    masks = {"w": torch.ones(2_000_000, dtype=torch.bool)}
    scores["w"][123] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        sel.select(scores, masks, [(("w",), 1_000_000)])
    masks["w"][123] = False  # a pruned weight's NaN does not compete
    assert int(sel.select(scores, masks, [(("w",), 1_000_000)])["w"].sum()) == 1_000_000


def test_tracked_parameters_may_be_scored_at_their_survivors_only():
    g = torch.Generator().manual_seed(3)
    shapes = {"a": (900_000,), "b": (300, 1000), "c": (4_000,)}
    full_masks = compact_masks = {n: torch.ones(s, dtype=torch.bool) for n, s in shapes.items()}
    full, compact = sel.Survivors(), sel.Survivors()
    k = sum(m.numel() for m in full_masks.values())
    for step in range(12):
        scores = {n: torch.rand(s, generator=g, dtype=torch.float64) for n, s in shapes.items()}
        given = {n: v.reshape(-1).index_select(0, compact.positions[n]) if n in compact.positions else v
                 for n, v in scores.items()}
        k = int(k * 0.66)
        full_masks = sel.select(scores, full_masks, [(tuple(shapes), k)], survivors=full)
        compact_masks = sel.select(given, compact_masks, [(tuple(shapes), k)], survivors=compact)
        assert all(torch.equal(full_masks[n], compact_masks[n]) for n in shapes), step
    assert set(compact.positions) == set(shapes)  # every parameter went through the compact path
    wrong = {n: torch.rand(7, dtype=torch.float64) for n in shapes}
    with pytest.raises(ValueError, match="expected"):
        sel.select(wrong, compact_masks, [(tuple(shapes), 10)], survivors=compact)
