"""lottery.pruning.synflow: conservation, the scoring session, survivors-only scores, float64 range, layer collapse."""

import copy

import pytest
import torch
from torch import nn

from lottery import prune
from lottery.models import build
from lottery.pruning import get
from pruning_nets import bn_net


def synflow_R(net):
    """R = 1ᵀ∏|θ|1 computed independently: |θ|, biases / shifts / running means zero, float64, eval."""
    net = copy.deepcopy(net).double().eval()
    with torch.no_grad():
        for n, p in net.named_parameters():
            p.copy_(torch.zeros_like(p) if n.endswith("bias") else p.abs())
        for n, b in net.named_buffers():
            if n.endswith("running_mean"):
                b.zero_()
        return float(net(torch.ones(1, 3, 8, 8, dtype=torch.float64)).sum())


def test_synflow_conservation_per_layer():
    net = bn_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    scores = get("synflow").scores(net)
    R = synflow_R(net)
    assert len(scores) == 4
    for name, s in scores.items():
        assert s.dtype == torch.float64
        assert abs(float(s.sum()) - R) <= 1e-9 * R, name
    # the user's model is untouched: values, signs, dtype, mode, requires_grad, grads
    assert net.training and all(p.dtype == torch.float32 and p.requires_grad and p.grad is None for p in net.parameters())
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_synflow_session_keeps_stand_ins_and_zeroes_them_where_a_step_prunes():
    net, pruner = bn_net(), get("synflow")
    names = [n for n, p in net.named_parameters() if n.endswith("weight") and p.dim() > 1]
    masks = {n: torch.rand_like(net.get_parameter(n)) < 0.6 for n in names}
    dropped = {names[0]: (~masks[names[0]]).reshape(-1).nonzero().squeeze(1)}  # by position; the others by mask
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pruner.session():
        first = pruner.scores(net)
        kept = {n: t.data_ptr() for n, t in pruner._kept.items()}
        pruner.zero_pruned(net, masks, dropped)
        second = pruner.scores(net)
        assert {n: t.data_ptr() for n, t in pruner._kept.items()} == kept  # the same buffers
    assert pruner._kept is None  # released with the session
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # the session left the model alone
    with torch.no_grad():
        for n in names:
            net.get_parameter(n).mul_(masks[n])
    fresh = pruner.scores(net)
    R = synflow_R(net)
    for n in names:
        assert torch.equal(second[n], fresh[n]) and abs(float(second[n].sum()) - R) <= 1e-9 * R
        assert float(second[n][~masks[n]].abs().sum()) == 0.0 and not torch.equal(first[n], second[n])


def test_synflow_scores_tracked_parameters_at_their_survivors():
    from lottery.sparsity import Survivors

    net, pruner = bn_net(), get("synflow")
    full = pruner.scores(net)
    survivors = Survivors()
    survivors.positions["0.weight"] = torch.tensor([0, 5, 17, 200])
    with pruner.session(survivors):
        scores = pruner.scores(net)
    assert torch.equal(scores["0.weight"], full["0.weight"].reshape(-1)[[0, 5, 17, 200]])
    assert all(torch.equal(scores[n], full[n]) for n in full if n != "0.weight")


def test_synflow_is_finite_where_float32_overflows():
    net = build("resnet110", init="kaiming_normal")
    net.example_input_array = torch.zeros(1, 3, 32, 32)
    scores = get("synflow").scores(net)
    assert all(torch.isfinite(s).all() for s in scores.values())
    flow = float(scores["conv.weight"].sum())  # every path crosses the first layer: its scores sum to R
    assert flow > torch.finfo(torch.float32).max and flow < float("inf")


def test_layer_collapse_synflow_vs_magnitude_on_vgg16():
    torch.manual_seed(0)
    net = build("vgg16", init="default")  # PyTorch's default init and conv biases, as in the SynFlow paper
    net.example_input_array = torch.zeros(1, 3, 32, 32)
    synflow = prune(net, "synflow", density=1e-5, rounds=100)
    assert min(kept for kept, _ in synflow.counts().values()) > 0
    magnitude = prune(net, "magnitude", density=1e-3)
    assert min(kept for kept, _ in magnitude.counts().values()) == 0


class TwoTensors(nn.Module):
    """forward(a, b): an MLP on the concatenated inputs."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(7, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, a, b):
        return self.net(torch.cat([a, b], 1))


class Keywords(TwoTensors):
    """forward(image, extra=None), called with keywords (a dict example_input_array)."""

    def forward(self, image, extra=None):
        return self.net(torch.cat([image, extra], 1))


class OneDict(TwoTensors):
    """forward(inputs): one dict of tensors."""

    def forward(self, inputs):
        return self.net(torch.cat([inputs["a"], inputs["b"]], 1))


@pytest.mark.parametrize("cls, example", [
    (TwoTensors, (torch.zeros(2, 4), torch.zeros(2, 3))),
    (Keywords, {"image": torch.zeros(2, 4), "extra": torch.zeros(2, 3)}),
    (OneDict, ({"a": torch.zeros(2, 4), "b": torch.zeros(2, 3)},)),
])
def test_synflow_input_follows_the_structure_of_example_input_array(cls, example):
    torch.manual_seed(0)
    model = cls()
    model.example_input_array = example
    scores = get("synflow").scores(model)
    one = copy.deepcopy(model.net)  # the same network on one input of 7 features
    one.example_input_array = torch.zeros(1, 7)
    reference = get("synflow").scores(one)
    assert all(torch.equal(scores[f"net.{n}"], s) for n, s in reference.items())
    with torch.no_grad():
        d = copy.deepcopy(one).double()
        R = float(d[2].weight.abs().sum(0) @ d[0].weight.abs().sum(1))
    assert all(abs(float(s.sum()) - R) <= 1e-9 * R for s in scores.values())  # conservation
    ticket = prune(model, "synflow", density=0.1, rounds=10)
    assert ticket.counts() and abs(sum(k for k, _ in ticket.counts().values()) - round(0.1 * (7 * 16 + 16 * 3))) <= 1


class Tokens(nn.Module):
    """Token ids -> embedding -> flattened -> two Linear layers."""

    def __init__(self, vocab=50, length=6):
        super().__init__()
        self.embed = nn.Embedding(vocab, 8)
        self.fc1, self.fc2 = nn.Linear(8 * length, 16), nn.Linear(16, 4)

    def forward(self, ids):
        return self.fc2(torch.relu(self.fc1(self.embed(ids).flatten(1))))


def test_synflow_feeds_integer_inputs_token_id_one():
    torch.manual_seed(0)
    model = Tokens()
    model.example_input_array = torch.randint(0, 50, (3, 6))
    scores = get("synflow").scores(model)
    with torch.no_grad():
        d = copy.deepcopy(model).double()
        e = d.embed.weight[1].abs().repeat(6)  # every token is id 1
        R = float(d.fc2.weight.abs().sum(0) @ (d.fc1.weight.abs() @ e))
    for n in ("fc1.weight", "fc2.weight"):  # every path crosses both Linear layers: each one's scores sum to R
        assert abs(float(scores[n].sum()) - R) <= 1e-9 * R
    ticket = prune(model, "synflow", density=0.2, rounds=5)
    assert sum(k for k, _ in ticket.counts().values()) == round(0.2 * (48 * 16 + 16 * 4))
    # without example_input_array, from one (ids, labels) batch: the same input
    model.example_input_array = None
    again = get("synflow").scores(model, [(torch.randint(0, 50, (5, 6)), torch.zeros(5, dtype=torch.long))])
    assert all(torch.equal(again[n], s) for n, s in scores.items())


def test_synflow_refuses_inputs_it_cannot_build_clearly():
    model = TwoTensors()
    with pytest.raises(ValueError, match=r"SynFlow.*dict batch.*set model.example_input_array"):
        get("synflow").scores(model, [{"a": torch.zeros(2, 4), "b": torch.zeros(2, 3), "y": torch.zeros(2)}])
    with pytest.raises(ValueError, match=r"forward of TwoTensors cannot take.*set model.example_input_array"):
        get("synflow").scores(model, [(torch.zeros(2, 4), torch.zeros(2, 3), torch.zeros(2))])
    model.example_input_array = (torch.zeros(2, 4), torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        get("synflow").scores(model)
