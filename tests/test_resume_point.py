"""The run `--resume` continues, for loggers that name runs by id (W&B): its own folder and its own W&B run."""

import os
import time

import pytest
import pytorch_lightning as pl
import torch

from lottery.layout import run_folder
from lottery.resume import resume_point


def test_resume_continues_the_newest_wandb_run_in_its_own_folder(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from pytorch_lightning.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    for i, run in enumerate(["older1", "newer2"]):
        checkpoints = tmp_path / "proj" / run / "checkpoints"
        checkpoints.mkdir(parents=True)
        torch.save({"epoch": i}, checkpoints / "epoch=0-step=1.ckpt")
        os.utime(checkpoints / "epoch=0-step=1.ckpt", (time.time() + i, time.time() + i))
    logger = WandbLogger(project="proj", save_dir=str(tmp_path), offline=True)
    trainer = pl.Trainer(logger=logger, default_root_dir=tmp_path, accelerator="cpu")
    folder, checkpoint = resume_point(trainer)
    assert folder == tmp_path / "proj" / "newer2"
    assert checkpoint == folder / "checkpoints" / "epoch=0-step=1.ckpt"
    assert logger.version == "newer2" and run_folder(trainer) == folder  # tickets and config.yaml go there again
    assert logger._experiment is None  # nothing started before the resumed run starts
