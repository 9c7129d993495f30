"""lottery.plan: Plan's score -> select steps, prune(), and how the loop draws batches."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from helpers import MLP, SmallCNN
from lottery import prune
from lottery.plan import Plan
from lottery.pruning import PRUNERS, get
from lottery.sparsity import kept_count


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


class Counting(DataLoader):
    """A DataLoader that counts how many times it is iterated."""

    passes = 0

    def __iter__(self):
        type(self).passes += 1
        return super().__iter__()


def labelled(n):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 20, generator=g), torch.randint(0, 4, (n,), generator=g))


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("pruner", sorted(PRUNERS))
@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_prune_reaches_density_and_leaves_model_unchanged(pruner, scope):
    torch.manual_seed(0)
    model = SmallCNN()
    model.example_input_array = torch.zeros(1, 1, 8, 8)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(2)]
    before = state(model)
    ticket = prune(model, pruner=pruner, density=0.1, rounds=4, scope=scope, seed=1, batches=batches)
    total = 36 + 432
    assert abs(ticket.density * total - round(0.1 * total)) <= 1
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert model.training and all(p.grad is None and p.requires_grad for p in model.parameters())
    again = prune(model, pruner=pruner, density=0.1, rounds=4, scope=scope, seed=1, batches=batches)
    assert all(torch.equal(ticket.masks[n], again.masks[n]) for n in ticket.masks)
    assert ticket.metadata["pruner"] == pruner and ticket.metadata["steps"] == 4


def test_prune_argument_errors():
    model = MLP()
    with pytest.raises(ValueError, match="pass density="):
        prune(model)
    with pytest.raises(ValueError, match="not both"):
        prune(model, density=0.5, prune_fraction=0.2)
    with pytest.raises(ValueError, match="density must be strictly between 0 and 1"):
        prune(model, density=0.0)
    with pytest.raises(ValueError, match="rounds must be a positive integer"):
        prune(model, density=0.5, rounds=0)


def test_fractions_name_their_own_group_and_are_checked_in_prune():
    torch.manual_seed(0)
    model = MLP()
    # fc3 at the default fraction but named: pruned on its own to exactly (1 - p) of its weights
    ticket = prune(model, "magnitude", prune_fraction=0.2, rounds=2, fractions={"fc3.weight": 0.2})
    assert int(ticket.masks["fc3.weight"].sum()) == round(64 * 0.8 ** 2)
    pooled = prune(model, "magnitude", prune_fraction=0.2, rounds=2)
    assert int(pooled.masks["fc3.weight"].sum()) != round(64 * 0.8 ** 2)  # in the pool it is not held to its own rate
    for bad in (1.5, 1.0, 0.0, "0.2"):
        with pytest.raises(ValueError, match=r"fractions\['fc3.weight'\] must be strictly between 0 and 1"):
            prune(model, "magnitude", density=0.5, fractions={"fc3.weight": bad})


def test_iterative_snip_and_force_draw_fresh_batches_at_every_step():
    data = labelled(64)
    torch.manual_seed(0)
    model = MLP()
    for name in ("iter_snip", "force", "snip"):
        Counting.passes = 0
        loader = Counting(data, batch_size=8, shuffle=True)
        a = prune(model, name, density=0.3, rounds=5, batches=loader, seed=2)
        assert Counting.passes == (5 if name != "snip" else 1), name  # one draw per step, or one for all
        b = prune(model, name, density=0.3, rounds=5, batches=loader, seed=2)
        assert all(torch.equal(a.masks[n], b.masks[n]) for n in a.masks)  # fresh, yet reproducible with a seed
    Counting.passes = 0
    prune(model, "iter_snip", density=0.3, rounds=5, batches=iter(Counting(data, batch_size=8)), seed=2)
    assert Counting.passes == 1  # a one-pass iterator is drawn from once


def test_a_loader_is_iterated_once_per_loop_and_only_by_pruners_that_read_it():
    data = labelled(32)
    torch.manual_seed(0)
    model = MLP()  # no example_input_array: SynFlow reads its input shape from one batch
    for name, passes in (("synflow", 1), ("magnitude", 0), ("snip", 1)):
        Counting.passes = 0
        prune(model, name, density=0.3, rounds=5, batches=Counting(data, batch_size=8), seed=1)
        assert Counting.passes == passes, name


def test_step_and_prune_steps_hand_the_loss_fn_to_pruners_that_read_it():
    from lottery.pruning import Magnitude, Pruner

    class ReadsLoss(Pruner):
        name = "reads_loss"
        needs_data = True
        reads_loss_fn = True

        def __init__(self):
            self.seen = []

        def scores(self, model, batches=None, *, loss_fn=None):
            self.seen.append(loss_fn)
            return Magnitude().scores(model)

    def loss_fn(module, batch):
        return module(batch["x"]).sum()

    model, pr = MLP(), ReadsLoss()
    plan = Plan(model, 0.5, "global")
    plan.step(model, pr, plan.dense_masks(model), 1, [{"x": torch.zeros(2, 20)}], loss_fn=loss_fn)
    plan.prune_steps(model, pr, 2, [{"x": torch.zeros(2, 20)}], loss_fn=loss_fn)
    plan.step(model, pr, plan.dense_masks(model), 1, [{"x": torch.zeros(2, 20)}])
    assert pr.seen == [loss_fn] * 3 + [None]  # without one: scores(model, batches), as for any pruner
    prune(model, pr, density=0.5, batches=[{"x": torch.zeros(2, 20)}], loss_fn=loss_fn)
    assert pr.seen[-1] is loss_fn


def test_include_in_plan_and_prune_and_one_value_per_tied_tensor():
    from torch import nn

    model = MLP()
    assert Plan(model, 0.2, "global", None, (), ["fc1.bias"]).names == ["fc1.weight", "fc1.bias", "fc2.weight",
                                                                          "fc3.weight"]
    ticket = prune(model, "magnitude", density=0.5, scope="layerwise", include=["fc1.bias"])
    assert int(ticket.masks["fc1.bias"].sum()) == kept_count(32, 0.5, 1)
    tied = nn.ModuleDict({"emb": nn.Embedding(7, 4), "dec": nn.Linear(4, 7, bias=False)})
    tied["dec"].weight = tied["emb"].weight
    ticket = prune(tied, "magnitude", density=0.5)
    assert list(ticket.masks) == ["emb.weight"] and "dec.weight" not in ticket.weights
    ticket.rewind(tied)
    assert int(tied["dec"].weight.count_nonzero()) == kept_count(28, 0.5, 1)
