import math

import pytest
import torch
from torch import nn

from helpers import MLP, SmallCNN
from lottery import select as sel
from lottery.loop import Plan
from lottery.pruning import get
from lottery.schedule import RewindPoint, kept_count, per_round_fraction


def run_rounds(model, p, scope, fractions=None, rounds=6, pruner="magnitude"):
    plan = Plan(model, p, scope, fractions)
    masks = plan.dense_masks(model)
    history = [masks]
    for r in range(1, rounds + 1):
        # perturb weights between rounds as training would, so rankings change
        with torch.no_grad():
            for n, prm in model.named_parameters():
                prm.add_(0.01 * torch.randn_like(prm))
                if n in masks:
                    prm.mul_(masks[n])
        masks = plan.step(model, get(pruner), masks, r)
        history.append(masks)
    return plan, history


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_density_is_exactly_geometric(scope):
    torch.manual_seed(0)
    model = MLP((50, 60, 40, 10))
    plan, history = run_rounds(model, 0.2, scope)
    total = sum(plan.sizes.values())
    for r, masks in enumerate(history):
        kept = sum(int(m.sum()) for m in masks.values())
        assert abs(kept - total * 0.8**r) <= 1.0, (r, kept, total * 0.8**r)
        if scope == "layerwise":
            for n, m in masks.items():
                assert abs(int(m.sum()) - plan.sizes[n] * 0.8**r) <= 0.5 + 1e-9


def test_per_layer_fractions_by_pattern():
    torch.manual_seed(0)
    model = MLP((50, 60, 40, 10))
    plan, history = run_rounds(model, 0.2, "layerwise", {"fc3.*": 0.1})
    for r, masks in enumerate(history):
        assert abs(int(masks["fc3.weight"].sum()) - 400 * 0.9**r) <= 0.5 + 1e-9
        assert abs(int(masks["fc1.weight"].sum()) - 3000 * 0.8**r) <= 0.5 + 1e-9
    # global pool with an override: the pool holds exactly (1-p)^r of its own weights
    plan, history = run_rounds(MLP((50, 60, 40, 10)), 0.2, "global", {"fc3.weight": 0.1})
    pool = 3000 + 2400
    for r, masks in enumerate(history):
        assert abs(int(masks["fc1.weight"].sum() + masks["fc2.weight"].sum()) - pool * 0.8**r) <= 0.5 + 1e-9
        assert abs(int(masks["fc3.weight"].sum()) - 400 * 0.9**r) <= 0.5 + 1e-9


def test_masks_are_nested_and_pruned_never_return():
    torch.manual_seed(1)
    _, history = run_rounds(MLP(), 0.3, "global", rounds=5, pruner="random")
    for before, after in zip(history, history[1:]):
        for n in before:
            assert not (after[n] & ~before[n]).any()


def test_global_prunes_the_smallest_magnitudes():
    model = MLP((4, 3, 2, 2))
    with torch.no_grad():
        for i, (_, p) in enumerate(sorted(model.named_parameters())):
            p.copy_(torch.arange(p.numel(), dtype=torch.float32).view_as(p) + 100 * i)
    plan = Plan(model, 0.5, "global")
    masks = plan.step(model, get("magnitude"), plan.dense_masks(model), 1)
    kept = torch.cat([model.get_parameter(n).detach().flatten()[masks[n].flatten()] for n in plan.names])
    dropped = torch.cat([model.get_parameter(n).detach().flatten()[~masks[n].flatten()] for n in plan.names])
    assert kept.min() > dropped.max()
    assert len(kept) == kept_count(12 + 6 + 4, 0.5, 1)


def test_ties_are_broken_by_index_and_counts_are_exact():
    values = torch.tensor([1.0, 3.0, 2.0, 2.0, 2.0, 0.0])
    keep = sel.top_k_mask(values, 3)
    assert keep.tolist() == [False, True, True, True, False, False]
    for k in range(0, 7):
        assert int(sel.top_k_mask(values, k).sum()) == k
    assert sel.top_k_mask(torch.zeros(10), 4).tolist() == [True] * 4 + [False] * 6


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


def test_prunable_defaults_and_errors():
    cnn = SmallCNN()
    assert sel.prunable(cnn) == ["conv.weight", "fc.weight"]
    assert sel.prunable(cnn, exclude=["fc.*"]) == ["conv.weight"]
    with pytest.raises(ValueError, match="matches no prunable parameter"):
        sel.prunable(cnn, exclude=["nothing*"])
    with pytest.raises(ValueError, match="nothing to prune"):
        sel.prunable(nn.Sequential(nn.BatchNorm1d(3)))
    with pytest.raises(ValueError, match="excludes every"):
        sel.prunable(cnn, exclude=["*"])
    with pytest.raises(ValueError, match="fractions pattern"):
        Plan(cnn, 0.2, "global", {"fc9.weight": 0.1})


def test_schedule_values():
    assert RewindPoint.parse("init").kind == "init"
    assert RewindPoint.parse("none").kind == "none"
    assert RewindPoint.parse("1ep100it").step(50) == 150
    assert RewindPoint.parse("500it").step(50) == 500
    assert RewindPoint.parse("2ep").step(7) == 14
    assert str(RewindPoint.parse("1ep100it")) == "1ep100it"
    for bad in ["", "abc", "ep", "3x", "-1it", "1.5ep"]:
        with pytest.raises(ValueError, match="not understood"):
            RewindPoint.parse(bad)
    assert math.isclose(per_round_fraction(None, 0.01, 2), 0.9)
    assert kept_count(1000, 0.2, 3) == 512


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
