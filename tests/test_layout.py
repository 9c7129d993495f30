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


def test_a_folder_is_claimed_by_one_run(tmp_path):
    from lottery.layout import FolderTakenError

    layout = RunLayout(tmp_path / "tickets")
    layout.claim("run-a", resuming=False)
    assert layout.owner() == "run-a"
    layout.claim("run-b", resuming=False)  # no tickets written yet: nothing of run-a's is at stake
    assert layout.owner() == "run-b"
    layout.save(ticket(0, [True, True]), [ticket(0, [True, True])], "val_loss")
    layout.claim("run-b", resuming=True)  # the same run resumed
    for resuming in (False, True):
        with pytest.raises(FolderTakenError, match=r"holds the tickets of another run \(run run-b; rounds 00\).*dirpath"):
            layout.claim("run-c", resuming=resuming)
    assert layout.owner() == "run-b" and layout.ticket(0).is_file()


def test_a_folder_written_before_runs_claimed_folders_is_refused_unless_resuming(tmp_path):
    from lottery.layout import FolderTakenError

    layout = RunLayout(tmp_path / "tickets")
    layout.save(ticket(0, [True, True]), [ticket(0, [True, True])], "val_loss")  # no run.json
    with pytest.raises(FolderTakenError, match="a run that did not record its id"):
        layout.claim("new", resuming=False)
    layout.claim("old-run-resumed", resuming=True)
    assert layout.owner() == "old-run-resumed"


def test_run_folder_is_the_runs_own_for_every_kind_of_logger(tmp_path):
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger, Logger

    from lottery.layout import run_folder

    class Plain(Logger):  # a logger without a log_dir, such as W&B: name and version say whose run it is
        name, version = "proj", "abc123"
        save_dir = str(tmp_path / "plain")

        def log_metrics(self, metrics, step=None):
            pass

        def log_hyperparams(self, params, *args, **kwargs):
            pass

    def folder(logger):
        return run_folder(pl.Trainer(logger=logger, default_root_dir=tmp_path, accelerator="cpu"))

    csv_logger = CSVLogger(tmp_path, name="logs")
    assert folder(csv_logger) == tmp_path / "logs" / "version_0"  # its log_dir, as before
    assert folder(Plain()) == tmp_path / "plain" / "proj" / "abc123"
    assert folder(False) == tmp_path


def test_find_picks_the_newest_run_named_by_id(tmp_path):
    import os

    for i, run_id in enumerate(["zz9older", "aa1newer"]):  # W&B run ids: their names say nothing of their order
        layout = RunLayout.under(tmp_path / "proj" / run_id)
        layout.save(ticket(0, [True, True]), [ticket(0, [True, True])], "val_loss")
        os.utime(layout.rounds, (1_000_000 + i, 1_000_000 + i))
    assert RunLayout.find(tmp_path).folder == tmp_path / "proj" / "aa1newer" / "tickets"
