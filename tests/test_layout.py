import pytest
import torch

from lottery import Ticket
from lottery.files import read_csv
from lottery.layout import RunLayout, rounds_csv


def ticket(round, keep):
    return Ticket({"w": torch.tensor(keep)}, {}, {"round": round, "pruner": "magnitude", "rewind": "init",
                                                   "steps": 10, "metrics": {"val_acc": 0.5, "best_val_loss": 0.1,
                                                                            "best_step": 3}})


def test_a_run_folder_holds_one_file_per_round_and_rounds_csv(tmp_path):
    layout = RunLayout.under(tmp_path / "run")
    assert layout.folder == tmp_path / "run" / "tickets"
    tickets = [ticket(0, [True, True]), ticket(1, [True, False])]
    for i, t in enumerate(tickets):
        assert layout.save(t, tickets[: i + 1], "val_loss") == layout.ticket(t.round)
    assert [p.name for p in layout.tickets()] == ["round_00.safetensors", "round_01.safetensors"]
    rows = layout.read_rounds()
    assert [(r["round"], r["density"], r["val_acc"]) for r in rows] == [("0", "1.000000", "0.5"), ("1", "0.500000", "0.5")]
    assert read_csv(layout.rounds) == rows and layout.rounds.read_text() == rounds_csv(tickets)
    assert RunLayout.find(tmp_path).folder == layout.folder  # from any folder above it
    with pytest.raises(FileNotFoundError, match="no rounds.csv"):
        RunLayout.find(tmp_path / "elsewhere")


def test_an_existing_ticket_is_kept_unless_overwritten(tmp_path):
    layout = RunLayout(tmp_path)
    first, second = ticket(1, [True, False]), ticket(1, [False, True])
    layout.save(first, [first], "val_loss")
    layout.save(second, [second], "val_loss", overwrite=False)
    assert torch.equal(Ticket.load(layout.ticket(1)).masks["w"], first.masks["w"])
