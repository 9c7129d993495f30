"""lottery.pruning.synflow: conservation, the scoring session, survivors-only scores, float64 range, layer collapse."""

import copy

import torch

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
