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


def _train_ticket(tmp_path, ticket, sanity=None, seed=3):
    import pytorch_lightning as pl

    from helpers import Module, trainer
    from lottery import LotteryTicket

    pl.seed_everything(1)
    module = Module(scheduler=None)
    module.record = True
    cb = LotteryTicket(ticket=ticket, sanity=sanity, epochs_per_round=0, seed=seed)
    trainer(tmp_path, [cb], max_epochs=1).fit(module)
    return module, cb


def test_training_a_given_ticket_and_its_sanity_variants(tmp_path):
    import pytest

    from helpers import Module
    from lottery import LotteryTicket

    torch.manual_seed(0)
    source = Module(scheduler=None)
    ticket = prune(source, "magnitude", density=0.2)
    path = ticket.save(tmp_path / "t.safetensors")

    module, cb = _train_ticket(tmp_path / "plain", str(path))
    first = module.trace[0][2]
    for key, m in ticket.masks.items():  # the first step starts from the ticket's own weights and masks
        assert torch.equal(first[key[4:]], ticket.weights[key] * m)
    assert cb.tickets[0].metadata["pruner"] == "magnitude" and cb.tickets[0].round == 1

    module, cb = _train_ticket(tmp_path / "shuffled", str(path), "shuffle")
    for key, m in ticket.masks.items():
        trained = cb.tickets[0].masks[key]
        assert int(trained.sum()) == int(m.sum()) and not torch.equal(trained, m)
    assert cb.tickets[0].metadata["pruner"] == "magnitude+shuffle"

    module, cb = _train_ticket(tmp_path / "reinit", str(path), "reinit")
    first = module.trace[0][2]
    for key, m in ticket.masks.items():
        assert torch.equal(cb.tickets[0].masks[key], m)
        assert not torch.equal(first[key[4:]], ticket.weights[key] * m) and not first[key[4:]][~m].any()

    with pytest.raises(ValueError, match="needs epochs_per_round=0"):
        LotteryTicket(ticket=str(path), epochs_per_round=2)
    with pytest.raises(ValueError, match="pass ticket= too"):
        LotteryTicket(sanity="shuffle", epochs_per_round=0)
    with pytest.raises(FileNotFoundError, match="no ticket"):
        LotteryTicket(ticket=str(tmp_path / "missing.safetensors"), epochs_per_round=0)
