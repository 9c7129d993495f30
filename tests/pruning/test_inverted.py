"""lottery.pruning.inverted: an inverted pruner reads its inner pruner's batches and uses its scoring session."""

import torch

from helpers import MLP
from lottery import prune
from lottery.pruning import get
from pruning_nets import bn_net


def test_inverted_pruner_scores_on_its_inner_pruner_batches():
    from lottery.pruning.inverted import Inverted

    torch.manual_seed(0)
    model = MLP()
    seen = []
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(5, 20, generator=g), torch.randint(0, 4, (5,), generator=g)) for _ in range(4)]
    snip = get("snip", batches=3)
    original = snip.scores

    def counting(net, data=None):
        seen.append(sum(len(y) for _, y in data))
        return original(net, data)

    snip.scores = counting
    inverted = Inverted(snip)
    assert inverted.batches == 3 and inverted.per_class is None
    prune(model, inverted, density=0.5, batches=batches)
    plain = prune(model, snip, density=0.5, batches=batches)
    assert seen == [15, 15]  # three batches of five each time, inverted or not
    flipped = prune(model, snip, density=0.5, batches=batches, invert=True)
    assert seen[-1] == 15 and not torch.equal(flipped.masks["fc1.weight"], plain.masks["fc1.weight"])


def test_inverted_synflow_zeroes_through_its_inner_session(monkeypatch):
    from lottery.pruning.base import Pruner
    from lottery.pruning.synflow import SynFlow

    net = bn_net()
    with_session = prune(net, "synflow", density=0.05, rounds=20, invert=True).masks
    monkeypatch.setattr(SynFlow, "session", Pruner.session)  # the plain loop: model re-masked, fresh stand-ins
    monkeypatch.setattr(SynFlow, "zero_pruned", Pruner.zero_pruned)
    plain = prune(net, "synflow", density=0.05, rounds=20, invert=True).masks
    assert all(torch.equal(with_session[n], plain[n]) for n in plain)
