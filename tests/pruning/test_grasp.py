"""lottery.pruning.grasp: GraSP's scores against the Hessian-gradient product."""

import torch
from torch import nn

from lottery import prune
from lottery.pruning import get


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
