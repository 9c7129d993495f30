"""lottery.pruning.snip: SNIP's scores, and FORCE readmitting what Iterative SNIP keeps pruned."""

import torch
from torch import nn

from lottery.plan import Plan
from lottery.pruning import get


def test_snip_equals_hand_gradient():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2))
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
    W, b = net[0].weight.detach(), net[0].bias.detach()
    p = torch.softmax(x @ W.T + b, 1)
    grad = (p - nn.functional.one_hot(y, 2).float()).T @ x / 5  # dL/dW of the mean cross-entropy
    scores = get("snip").scores(net, [(x, y)])
    assert torch.allclose(scores["0.weight"], (W * grad).abs(), atol=1e-7)


def readmitted(pruner, seed):
    """Weights pruned at one step and alive at a later one, over 3 steps of `pruner`."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    batches = [(torch.randn(32, 4), torch.randint(0, 3, (32,)))]
    pr = get(pruner)
    plan = Plan(net, 1 - 0.1 ** (1 / 3), "global")
    masks, back = plan.dense_masks(net), 0
    ever_pruned = {n: torch.zeros_like(m) for n, m in masks.items()}
    from lottery.sparsity import masked

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
