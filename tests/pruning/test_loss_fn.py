"""A user's loss for the data-driven pruners: dict batches and multi-input modules through loss_fn=(module, batch)."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from helpers import MLP
from lottery import prune
from lottery.pruning import Magnitude, Pruner, get

DATA_DRIVEN = ["snip", "grasp", "grasp_abs", "iter_snip", "force"]


def tuple_batches(n=2, size=16):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(size, 20, generator=g), torch.randint(0, 4, (size,), generator=g)) for _ in range(n)]


def dict_batches(n=2, size=16):
    return [{"inputs": x, "labels": y} for x, y in tuple_batches(n, size)]


def ce(temperature=1.0):
    """The built-in loss (cross-entropy of forward(inputs)) written as a user's loss_fn on dict batches."""
    return lambda module, batch: nn.functional.cross_entropy(module(batch["inputs"]) / temperature, batch["labels"])


def loss_for(pruner):
    return ce(200.0) if pruner.startswith("grasp") else ce()  # the temperature is the loss_fn's to apply


@pytest.mark.parametrize("pruner", DATA_DRIVEN)
def test_dict_batches_with_the_same_cross_entropy_give_the_tuple_masks(pruner):
    torch.manual_seed(0)
    model = MLP()
    rounds = 1 if pruner in ("snip", "grasp", "grasp_abs") else 4
    expected = prune(model, pruner, density=0.2, rounds=rounds, batches=tuple_batches(), seed=1)
    got = prune(model, pruner, density=0.2, rounds=rounds, batches=dict_batches(), seed=1, loss_fn=loss_for(pruner))
    assert all(torch.equal(got.masks[n], expected.masks[n]) for n in expected.masks)
    # the scores: equal up to rounding (with equal-size batches the mean over batches is the mean over examples)
    ours = get(pruner).scores(model, dict_batches(), loss_fn=loss_for(pruner))
    reference = get(pruner).scores(model, tuple_batches())
    for n, s in reference.items():
        assert torch.allclose(ours[n], s, rtol=1e-4, atol=1e-10), n


def test_grasp_with_a_loss_fn_applies_no_temperature():
    torch.manual_seed(0)
    model = MLP()
    plain = get("grasp").scores(model, dict_batches(1), loss_fn=ce())
    tempered = get("grasp", temperature=1.0).scores(model, tuple_batches(1))
    assert all(torch.allclose(plain[n], s, rtol=1e-4, atol=1e-10) for n, s in tempered.items())


class DictData(Dataset):
    def __init__(self, n=64):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 20, generator=g), torch.randint(0, 4, (n,), generator=g)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"inputs": self.x[i], "labels": self.y[i], "name": f"example {i}"}


@pytest.mark.parametrize("pruner", ["snip", "iter_snip"])
def test_a_loader_of_dict_batches_draws_the_same_examples_as_a_tuple_loader(pruner):
    torch.manual_seed(0)
    model = MLP()
    data = DictData()
    tuples = DataLoader([(data.x[i], data.y[i]) for i in range(len(data))], batch_size=8, shuffle=True)
    dicts = DataLoader(data, batch_size=8, shuffle=True)
    expected = prune(model, pruner, density=0.3, rounds=3, batches=tuples, seed=2)
    got = prune(model, pruner, density=0.3, rounds=3, batches=dicts, seed=2, loss_fn=ce())
    assert all(torch.equal(got.masks[n], expected.masks[n]) for n in expected.masks)


class TwoInputs(nn.Module):
    """forward(a, b): the MLP on the concatenated inputs."""

    def __init__(self):
        super().__init__()
        self.net = MLP()

    def forward(self, a, b):
        return self.net(torch.cat([a, b], 1))


def test_a_two_input_module_scores_with_its_loss_fn_as_the_one_input_module():
    torch.manual_seed(0)
    model = TwoInputs()
    three = [(x[:, :12], x[:, 12:], y) for x, y in tuple_batches()]

    def loss_fn(module, batch):
        a, b, y = batch
        return nn.functional.cross_entropy(module(a, b), y)

    for pruner in ("snip", "force"):
        got = prune(model, pruner, density=0.2, rounds=3, batches=three, seed=1, loss_fn=loss_fn)
        expected = prune(model.net, pruner, density=0.2, rounds=3, batches=tuple_batches(), seed=1)
        assert all(torch.equal(got.masks[f"net.{n}"], m) for n, m in expected.masks.items())


def test_without_a_loss_fn_other_batches_and_inputs_are_refused_clearly():
    model = MLP()
    for pruner, who in (("snip", "SNIP"), ("grasp", "GraSP"), ("force", "FORCE"), ("iter_snip", "IterativeSNIP")):
        with pytest.raises(ValueError, match=rf"{who} scores on \(inputs, labels\) batches with cross-entropy of "
                                             r"forward\(inputs\); for other batches pass loss_fn=\(module, batch\) "
                                             r"-> loss \(inside LotteryTicket the module's training_step is used\)"):
            prune(model, pruner, density=0.5, rounds=2, batches=dict_batches())
    three = [(x[:, :12], x[:, 12:], y) for x, y in tuple_batches()]
    with pytest.raises(ValueError, match=r"forward of TwoInputs cannot take one input.*pass loss_fn="):
        prune(TwoInputs(), "snip", density=0.5, batches=three)


def test_per_class_needs_tuple_batches():
    with pytest.raises(ValueError, match=r"per_class= needs \(inputs, labels\) batches; pass batches= instead"):
        prune(MLP(), get("snip", per_class=2), density=0.5, batches=dict_batches(), loss_fn=ce())
    # with tuple batches the per_class batch is an (inputs, labels) tuple, handed to the loss_fn as such
    seen = []

    def loss_fn(module, batch):
        seen.append(batch)
        x, y = batch
        return nn.functional.cross_entropy(module(x), y)

    got = prune(MLP(), get("snip", per_class=2), density=0.5, batches=tuple_batches(), loss_fn=loss_fn)
    assert abs(got.density - 0.5) < 0.01 and len(seen) == 1 and sorted(seen[0][1].tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_a_loss_fn_must_return_a_scalar_tensor():
    with pytest.raises(ValueError, match="loss_fn must return a scalar loss tensor"):
        prune(MLP(), "snip", density=0.5, batches=dict_batches(),
              loss_fn=lambda m, b: nn.functional.cross_entropy(m(b["inputs"]), b["labels"], reduction="none"))
    # a mapping with a 'loss' entry, as training_step may return, is accepted
    got = prune(MLP(), "snip", density=0.5, batches=dict_batches(), loss_fn=lambda m, b: {"loss": ce()(m, b)})
    assert abs(got.density - 0.5) < 0.01


def test_inverted_pruners_pass_the_loss_fn_on():
    torch.manual_seed(0)
    model = MLP()
    expected = prune(model, "snip", density=0.5, batches=tuple_batches(), invert=True)
    got = prune(model, "snip", density=0.5, batches=dict_batches(), invert=True, loss_fn=ce())
    assert all(torch.equal(got.masks[n], expected.masks[n]) for n in expected.masks)
    plain = prune(model, "snip", density=0.5, batches=dict_batches(), loss_fn=ce())
    assert not torch.equal(got.masks["fc1.weight"], plain.masks["fc1.weight"])


class TwoArgumentData(Pruner):
    """A data-driven pruner written against the two-argument interface: never handed loss_fn."""

    name = "two_argument_data"
    needs_data = True

    def scores(self, model, batches=None):
        assert list(batches)
        return Magnitude().scores(model)


def test_a_two_argument_data_pruner_is_not_handed_the_loss_fn():
    got = prune(MLP(), TwoArgumentData(), density=0.5, batches=dict_batches(), loss_fn=ce())
    assert abs(got.density - 0.5) < 0.01
