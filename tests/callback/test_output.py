"""Each run writes its tickets into a folder of its own, and never into another run's."""

import pytest
import pytorch_lightning as pl

from helpers import Module, trainer
from lottery import LotteryTicket
from lottery.layout import FolderTakenError, RunLayout


class Steps(Module):
    def training_step(self, batch, batch_idx):
        self.trained = True
        return super().training_step(batch, batch_idx)


def test_two_wandb_runs_in_one_save_dir_keep_separate_complete_ticket_folders(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from pytorch_lightning.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    folders = []
    for rounds in (2, 1):  # the second run has fewer rounds: none of the first's may be left beside its own
        pl.seed_everything(0)
        logger = WandbLogger(project="lottery-test", save_dir=str(tmp_path), offline=True)
        cb = LotteryTicket(rounds=rounds, epochs_per_round=1)
        trainer(tmp_path, [cb], logger=logger, enable_checkpointing=False).fit(Module(scheduler=None))
        run_id = logger.experiment.id
        logger.experiment.finish()
        folders.append((cb.output.layout(None).folder, run_id, rounds))
    assert folders[0][0] != folders[1][0]
    for folder, run_id, rounds in folders:
        assert folder == tmp_path / "lottery-test" / run_id / "tickets"
        layout = RunLayout(folder)
        assert [p.name for p in layout.tickets()] == [f"round_{r:02d}.safetensors" for r in range(rounds + 1)]
        assert [int(r["round"]) for r in layout.read_rounds()] == list(range(rounds + 1))
    assert not (tmp_path / "tickets").exists()


def test_a_new_run_refuses_a_folder_with_another_runs_tickets_before_any_work(tmp_path):
    folder = tmp_path / "shared"
    pl.seed_everything(0)
    trainer(tmp_path, [LotteryTicket(rounds=1, epochs_per_round=1, dirpath=str(folder))]).fit(Module(scheduler=None))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    module = Steps(scheduler=None)
    second = LotteryTicket(pruner="random", density=0.5, epochs_per_round=0, dirpath=str(folder))
    with pytest.raises(FolderTakenError, match=f"{folder} holds the tickets of another run .*rounds 00, 01"):
        trainer(tmp_path, [second], max_epochs=1).fit(module)
    assert not getattr(module, "trained", False) and not second.tickets  # refused before pruning or training
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_resumed_run_writes_on_in_its_own_folder(tmp_path):
    from pytorch_lightning.callbacks import ModelCheckpoint

    from helpers import Kill

    folder = tmp_path / "tickets"

    def run(callbacks, **kw):
        pl.seed_everything(0)
        cb = LotteryTicket(rounds=2, epochs_per_round=1, dirpath=str(folder))
        ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_on_train_epoch_end=True)
        trainer(tmp_path, [cb, ckpt, *callbacks]).fit(Module(scheduler=None), **kw)
        return cb

    with pytest.raises(SystemExit):  # Lightning turns the interrupt into an exit
        run([Kill(14)])  # killed in round 2, after rounds 0 and 1 were written
    assert [p.name for p in RunLayout(folder).tickets()] == ["round_00.safetensors", "round_01.safetensors"]
    cb = run([], ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert [t.round for t in cb.tickets] == [0, 1, 2]
    assert [int(r["round"]) for r in RunLayout(folder).read_rounds()] == [0, 1, 2]
