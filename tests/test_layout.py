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


def test_find_picks_the_newest_version_by_number(tmp_path):
    for v in (2, 9, 10):
        layout = RunLayout.under(tmp_path / "run" / f"version_{v}")
        layout.save(ticket(0, [True, True]), [ticket(0, [True, True])], "val_loss")
    assert RunLayout.find(tmp_path / "run").folder == tmp_path / "run" / "version_10" / "tickets"
    assert RunLayout.find(tmp_path).folder == tmp_path / "run" / "version_10" / "tickets"


@pytest.mark.parametrize("text,problem", [
    ("round,density,pruner,rewind,steps,best_val_loss,best_step,val_acc,test_acc\n1,0.5", r"line 2 has 2 of 9 fields"),
    ("round,density,pruner,rewind,steps,best_val_loss,best_step,val_acc,test_acc\n0,1.0,m,init,10,0.1,3,0.5,0.4\n1,0.5,m",
     r"line 3 has 3 of 9 fields"),
    ("round,density,pruner\n0,1.0,m,extra", r"line 2 has 4 fields, the header 3"),
    ("", r"is empty"),
    ("round,dens", r"has no density column"),
])
def test_an_incomplete_rounds_csv_is_refused_naming_the_file(tmp_path, text, problem):
    layout = RunLayout(tmp_path / "tickets")
    layout.folder.mkdir()
    layout.rounds.write_text(text)
    with pytest.raises(ValueError, match=f"{tmp_path}/tickets/rounds.csv .*{problem}"):
        layout.read_rounds()
