import pytest
import torch

from helpers import MLP, SmallCNN
from lottery import LotteryTicket, Ticket, prune, sanity
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


def test_shuffled_saved_ticket_keeps_no_old_survivor_values(tmp_path):
    torch.manual_seed(0)
    model = SmallCNN()
    ticket = prune(model, "magnitude", density=0.1)
    loaded = type(ticket).load(ticket.save(tmp_path / "t.safetensors"))  # zeros wherever the mask is False
    shuffled = shuffle(loaded, seed=1)
    assert set(shuffled.weights) == set(loaded.weights) - set(loaded.masks)
    target = SmallCNN()
    shuffled.rewind(target)
    for n, m in shuffled.masks.items():
        assert bool((dict(target.named_parameters())[n][m] != 0).all())


def test_reinit_in_the_callback_uses_the_module_initializer():
    from lottery.sanity import named_init
    from lottery.module import ClassificationModule

    module = ClassificationModule(arch="lenet300", init="glorot_normal")
    assert named_init(module) == "glorot_normal"
    ticket = prune(module, "magnitude", density=0.2)
    fresh = reinitialize(ticket, module, seed=0, init=named_init(module))
    default = reinitialize(ticket, module, seed=0)
    for n in ticket.masks:  # glorot normal: std sqrt(2 / (fan_in + fan_out)); PyTorch's default is ~half of it
        fan_out, fan_in = fresh.weights[n].shape
        expected = (2.0 / (fan_in + fan_out)) ** 0.5
        assert abs(float(fresh.weights[n].std()) / expected - 1) < 0.15
        assert float(default.weights[n].std()) < 0.75 * expected


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


def test_reinit_never_replays_the_init_of_a_model_built_with_the_same_seed():
    from lottery.module import ClassificationModule

    torch.manual_seed(3)  # what seed_everything(3) does before the module is built
    module = ClassificationModule(arch="lenet300", init="glorot_normal")
    ticket = prune(module, "magnitude", density=0.2)
    fresh = reinitialize(ticket, module, seed=3, init="glorot_normal")
    own = module.state_dict()
    for n, m in ticket.masks.items():
        assert float((fresh.weights[n][m] == own[n][m]).float().mean()) < 1e-3  # survivors do not start at their old values


def test_every_registered_variant_is_a_sanity_choice(monkeypatch):
    assert set(sanity.VARIANTS) == {"shuffle", "reinit"}
    t = Ticket({"w": torch.tensor([True, False])}, {}, {"round": 1})
    with pytest.raises(ValueError, match="sanity='flip' is not allowed; use one of 'shuffle', 'reinit' or None"):
        LotteryTicket(from_ticket=t, sanity="flip", epochs_per_round=0)
    monkeypatch.setitem(sanity.VARIANTS, "flip", lambda ticket, module, seed: ticket)
    assert LotteryTicket(from_ticket=t, sanity="flip", epochs_per_round=0).sanity == "flip"
