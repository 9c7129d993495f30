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
    import pytorch_lightning as pl

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

    pl.seed_everything(1)
    own = Module(scheduler=None).state_dict()  # what _train_ticket's module starts from
    module, cb = _train_ticket(tmp_path / "shuffled", str(path), "shuffle")
    first = module.trace[0][2]
    for key, m in ticket.masks.items():
        trained = cb.tickets[0].masks[key]
        assert int(trained.sum()) == int(m.sum()) and not torch.equal(trained, m)
        # the shuffled survivors start from the module's own values (none stuck at the old zeros), the rest at 0
        assert torch.equal(first[key[4:]], own[key] * trained) and bool((first[key[4:]][trained] != 0).all())
    assert torch.equal(first["fc1.bias"], ticket.weights["net.fc1.bias"])  # the ticket's other values are loaded
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


def test_reinit_never_replays_the_init_of_a_model_built_with_the_same_seed():
    from lottery.module import ClassificationModule

    torch.manual_seed(3)  # what seed_everything(3) does before the module is built
    module = ClassificationModule(arch="lenet300", init="glorot_normal")
    ticket = prune(module, "magnitude", density=0.2)
    fresh = reinitialize(ticket, module, seed=3, init="glorot_normal")
    own = module.state_dict()
    for n, m in ticket.masks.items():
        assert float((fresh.weights[n][m] == own[n][m]).float().mean()) < 1e-3  # survivors do not start at their old values
