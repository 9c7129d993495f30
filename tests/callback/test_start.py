"""lottery.callback.start: pruning at initialization through the callback, and training a given ticket."""

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from helpers import Module, trainer
from lottery import LotteryTicket, prune
from lottery.pruning import PRUNERS


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
    with pytest.raises(ValueError, match="pass from_ticket="):
        LotteryTicket(sanity="shuffle", epochs_per_round=0)
    with pytest.raises(FileNotFoundError, match="no ticket"):
        LotteryTicket(ticket=str(tmp_path / "missing.safetensors"), epochs_per_round=0)


def test_a_given_ticket_covering_some_layers_says_which_stay_dense(tmp_path):
    from helpers import Module

    torch.manual_seed(0)
    ticket = prune(Module(scheduler=None), "magnitude", density=0.2)
    del ticket.masks["net.fc2.weight"]
    path = ticket.save(tmp_path / "t.safetensors")
    with pytest.warns(UserWarning, match=r"leaves 1 of the model's 3 prunable layers dense: net\.fc2\.weight"):
        _train_ticket(tmp_path / "partial", str(path))


def test_load_given_refuses_a_broken_ticket_before_changing_the_module():
    from helpers import Module

    from lottery.callback.start import load_given

    torch.manual_seed(0)
    module = Module(scheduler=None)
    ticket = prune(module, "magnitude", density=0.2)
    ticket.weights["net.fc1.bias"][0] = float("nan")
    before = {k: v.clone() for k, v in module.state_dict().items()}
    for variant in (None, "shuffle"):
        with pytest.raises(ValueError, match=r"not finite: net\.fc1\.bias"):
            load_given(ticket, variant, module, 0, list(ticket.masks))
        assert all(torch.equal(v, before[k]) for k, v in module.state_dict().items())
