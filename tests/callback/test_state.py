import pytest
import torch

from lottery import LotteryTicket, Ticket
from lottery.callback.snapshot import Snapshot
from lottery.callback.state import RunState, pack_tickets, unpack_tickets


def test_a_checkpoint_of_another_state_version_is_refused():
    state = LotteryTicket().state_dict()
    assert state["version"] == 1
    LotteryTicket().load_state_dict(state)
    with pytest.raises(ValueError, match="state version 2"):
        LotteryTicket().load_state_dict({**state, "version": 2})
    with pytest.raises(ValueError, match="state version None"):
        LotteryTicket().load_state_dict({k: v for k, v in state.items() if k != "version"})


def test_run_state_round_trips():
    snap = Snapshot({"w": torch.arange(3.0)}, [{"state": {}, "param_groups": []}], [], 7)
    run = RunState(round=2, round_start_step=30, snapshot=snap, finished=True, base_seed=5, label="magnitude")
    back = RunState()
    back.load(run.state())
    assert (back.round, back.round_start_step, back.finished, back.base_seed, back.label) == (2, 30, True, 5, "magnitude")
    assert back.snapshot.step == 7 and torch.equal(back.snapshot.model["w"], snap.model["w"])
    assert back.ticket_weights() is back.snapshot.model  # rewound rounds start from the snapshot


def test_tickets_stored_without_weights_get_the_shared_snapshot():
    masks = {"w": torch.tensor([True, False, True])}
    shared = {"w": torch.tensor([1.0, 0.0, 3.0])}
    t = Ticket(masks, shared, {"round": 1})
    back = unpack_tickets(pack_tickets([t], with_weights=False), shared)
    assert back[0].weights is shared and torch.equal(back[0].masks["w"], masks["w"])
    own = unpack_tickets(pack_tickets([t], with_weights=True), None)
    assert torch.equal(own[0].weights["w"], shared["w"])


def test_a_snapshot_taken_before_training_has_no_optimizer_state_to_restore():
    with pytest.raises(RuntimeError, match="before training"):
        Snapshot({"w": torch.zeros(1)}).restore(None, None, "restart")


def test_from_ticket_and_its_old_spelling(tmp_path):
    t = Ticket({"w": torch.tensor([True, False])}, {}, {"round": 1})
    path = tmp_path / "t.safetensors"
    t.save(path)
    new = LotteryTicket(from_ticket=str(path), epochs_per_round=0)
    old = LotteryTicket(ticket=str(path), epochs_per_round=0)
    assert torch.equal(new.from_ticket.masks["w"], old.from_ticket.masks["w"]) and old.ticket is old.from_ticket


def test_from_ticket_and_ticket_together_are_refused():
    t = Ticket({"w": torch.tensor([True, False])}, {}, {"round": 1})
    with pytest.raises(ValueError, match="not both"):
        LotteryTicket(from_ticket=t, ticket=t, epochs_per_round=0)
