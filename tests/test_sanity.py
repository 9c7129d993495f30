import torch

from helpers import MLP, SmallCNN
from lottery import prune
from lottery.sanity import invert, reinitialize, shuffle


def test_shuffle_keeps_layer_densities_and_moves_positions():
    torch.manual_seed(0)
    ticket = prune(MLP(), "magnitude", density=0.3)
    shuffled = shuffle(ticket, seed=1)
    for n, m in ticket.masks.items():
        assert int(shuffled.masks[n].sum()) == int(m.sum())
        assert not torch.equal(shuffled.masks[n], m)
    assert torch.equal(shuffle(ticket, seed=1).masks["fc1.weight"], shuffled.masks["fc1.weight"])
    assert shuffled.metadata["sanity"] == "shuffled"


def test_reinitialize_keeps_masks_and_changes_weights():
    torch.manual_seed(0)
    model = SmallCNN()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ticket = prune(model, "magnitude", density=0.3)
    fresh = reinitialize(ticket, model, seed=5)
    for n in ticket.masks:
        assert torch.equal(fresh.masks[n], ticket.masks[n])
        assert not torch.equal(fresh.weights[n], ticket.weights[n])
    assert torch.equal(reinitialize(ticket, model, seed=5).weights["fc.weight"], fresh.weights["fc.weight"])
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    other = reinitialize(ticket, model, seed=6, init="kaiming_normal")
    assert not torch.equal(other.weights["conv.weight"], fresh.weights["conv.weight"])


def test_inversion_picks_the_complement_ranking():
    torch.manual_seed(0)
    model = MLP()
    for scope in ("global", "layerwise"):
        kept = prune(model, "magnitude", density=0.5, scope=scope)
        inverted = prune(model, invert("magnitude"), density=0.5, scope=scope)
        for n, m in kept.masks.items():  # even sizes, no ties: keeping the lowest half is the complement
            assert torch.equal(inverted.masks[n], ~m)
        assert inverted.metadata["pruner"] == "magnitude_inverted"
        flagged = prune(model, "magnitude", density=0.5, scope=scope, invert=True)
        assert all(torch.equal(flagged.masks[n], inverted.masks[n]) for n in kept.masks)
