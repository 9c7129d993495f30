import copy

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from helpers import Module, trainer
from lottery import LotteryTicket, prune
from lottery.loop import Plan
from lottery.models import build
from lottery.pruning import PRUNERS, get


def bn_net():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10),
    )
    with torch.no_grad():  # non-trivial affine parameters and running statistics, non-zero biases
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(-2, 2)
                m.bias.uniform_(-1, 1)
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.bias.uniform_(-1, 1)
    net.example_input_array = torch.zeros(1, 3, 8, 8)
    return net


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
    from lottery.select import Survivors

    net, pruner = bn_net(), get("synflow")
    full = pruner.scores(net)
    survivors = Survivors()
    survivors.positions["0.weight"] = torch.tensor([0, 5, 17, 200])
    with pruner.session(survivors):
        scores = pruner.scores(net)
    assert torch.equal(scores["0.weight"], full["0.weight"].reshape(-1)[[0, 5, 17, 200]])
    assert all(torch.equal(scores[n], full[n]) for n in full if n != "0.weight")


def test_inverted_synflow_zeroes_through_its_inner_session(monkeypatch):
    from lottery.pruning.base import Pruner
    from lottery.pruning.synflow import SynFlow

    net = bn_net()
    with_session = prune(net, "synflow", density=0.05, rounds=20, invert=True).masks
    monkeypatch.setattr(SynFlow, "session", Pruner.session)  # the plain loop: model re-masked, fresh stand-ins
    monkeypatch.setattr(SynFlow, "zero_pruned", Pruner.zero_pruned)
    plain = prune(net, "synflow", density=0.05, rounds=20, invert=True).masks
    assert all(torch.equal(with_session[n], plain[n]) for n in plain)


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


def test_snip_equals_hand_gradient():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2))
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
    W, b = net[0].weight.detach(), net[0].bias.detach()
    p = torch.softmax(x @ W.T + b, 1)
    grad = (p - nn.functional.one_hot(y, 2).float()).T @ x / 5  # dL/dW of the mean cross-entropy
    scores = get("snip").scores(net, [(x, y)])
    assert torch.allclose(scores["0.weight"], (W * grad).abs(), atol=1e-7)


def test_grasp_matches_hessian_gradient_product():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x, y = torch.randn(6, 3), torch.tensor([0, 1, 1, 0, 1, 0])
    w1, w2 = net[0].weight.detach(), net[2].weight.detach()
    b1, b2 = net[0].bias.detach(), net[2].bias.detach()

    def loss(flat):
        a, c = flat[:12].view(4, 3), flat[12:].view(2, 4)
        logits = torch.tanh(x @ a.T + b1) @ c.T + b2
        return nn.functional.cross_entropy(logits / 200.0, y)

    theta = torch.cat([w1.flatten(), w2.flatten()])
    g = torch.autograd.functional.jacobian(loss, theta)
    H = torch.autograd.functional.hessian(loss, theta)
    S = -theta * (H @ g)  # GraSP's score: the highest S are removed
    scores = get("grasp").scores(net, [(x, y)])
    ours = torch.cat([scores["0.weight"].flatten(), scores["2.weight"].flatten()])
    assert torch.allclose(ours, -S, rtol=1e-4, atol=1e-12)
    # keeping 5 of 20 by our scores removes exactly the 15 highest S
    ticket = prune(net, "grasp", density=0.25, batches=[(x, y)])
    kept = torch.cat([ticket.masks["0.weight"].flatten(), ticket.masks["2.weight"].flatten()])
    assert set(torch.nonzero(kept).flatten().tolist()) == set(torch.argsort(S)[:5].tolist())
    absolute = get("grasp_abs").scores(net, [(x, y)])
    assert torch.allclose(absolute["2.weight"], scores["2.weight"].abs())


def readmitted(pruner, seed):
    """Weights pruned at one step and alive at a later one, over 3 steps of `pruner`."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    batches = [(torch.randn(32, 4), torch.randint(0, 3, (32,)))]
    pr = get(pruner)
    plan = Plan(net, 1 - 0.1 ** (1 / 3), "global")
    masks, back = plan.dense_masks(net), 0
    ever_pruned = {n: torch.zeros_like(m) for n, m in masks.items()}
    from lottery.masking import masked

    for r in (1, 2, 3):
        if pr.revives:
            masks = plan.step(net, pr, masks, r, batches)
        else:
            with masked(net, masks):
                masks = plan.step(net, pr, masks, r, batches)
        back += sum(int((ever_pruned[n] & masks[n]).sum()) for n in masks)
        for n in masks:
            ever_pruned[n] |= ~masks[n]
    return back


def test_force_readmits_what_iterative_snip_keeps_pruned():
    force = [readmitted("force", s) for s in range(10)]
    assert sum(force) > 0  # FORCE brings pruned weights back on these small problems
    assert all(readmitted("iter_snip", s) == 0 for s in range(10))


@pytest.mark.parametrize("pruner", sorted(PRUNERS))
def test_every_pruner_through_the_callback(tmp_path, pruner):
    masks = []
    for run in range(2):
        pl.seed_everything(0)
        module = Module(scheduler=None)
        module.example_input_array = torch.zeros(1, 20)
        module.record = True
        init = {k: v.clone() for k, v in module.net.named_parameters()}
        steps = 1 if pruner in ("snip", "grasp", "grasp_abs") else 5
        cb = LotteryTicket(pruner=pruner, density=0.1, rounds=steps, epochs_per_round=0)
        trainer(tmp_path / str(run), [cb], max_epochs=2).fit(module)
        assert len(cb.tickets) == 1 and cb.tickets[0].round == 1
        ticket = cb.tickets[0]
        total = 640 + 512 + 64
        assert abs(ticket.density * total - round(0.1 * total)) <= 1
        first = module.trace[0][2]  # the first step trains the survivors at their initial values
        for key, m in ticket.masks.items():
            name = key[len("net.") :]
            assert torch.equal(first[name], init[name] * m)
        assert module.trainer.current_epoch == 2
        masks.append(ticket.masks)
    assert all(torch.equal(masks[0][n], masks[1][n]) for n in masks[0])


def test_pruning_at_init_arguments():
    with pytest.raises(ValueError, match="keeps the initial values"):
        LotteryTicket(pruner="synflow", density=0.01, rounds=10, epochs_per_round=0, rewind="2ep")
    with pytest.raises(ValueError, match="pass batches="):
        prune(nn.Linear(3, 2), "snip", density=0.5)
