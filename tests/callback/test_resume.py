"""A run killed inside an epoch and resumed from a mid-epoch checkpoint trains exactly the batches still to come."""

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from helpers import Kill
from lottery import LotteryTicket
from lottery.data import FashionMNIST
from lottery.module import ClassificationModule


class Synthetic(FashionMNIST):
    """Fashion-MNIST's shapes with 640 random training images: 10 batches of 64 per epoch."""

    def locate(self):
        g = torch.Generator().manual_seed(0)
        return (torch.randint(0, 256, (740, 1, 28, 28), generator=g, dtype=torch.uint8),
                torch.randint(0, 10, (740,), generator=g), torch.randint(0, 256, (50, 1, 28, 28), generator=g,
                                                                            dtype=torch.uint8),
                torch.randint(0, 10, (50,), generator=g))


def fit(tmp_path, kill=None, ckpt=None, at_validation=False):
    pl.seed_everything(0)
    module = ClassificationModule("lenet300", optimizer="sgd", lr=0.05)
    # checkpoints every 3 steps (saved in on_train_batch_end), or at each validation, every half epoch
    saver = (ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, save_on_train_epoch_end=False) if at_validation
             else ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1))
    callbacks = [LotteryTicket(rounds=1, epochs_per_round=1, dirpath=str(tmp_path / "tickets")), saver]
    if kill is not None:
        callbacks.append(Kill(kill))
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=callbacks, num_sanity_val_steps=0, val_check_interval=0.5 if at_validation else 1.0)
    trainer.fit(module, datamodule=Synthetic(batch_size=64, val_size=100), ckpt_path=ckpt)
    return {k: v.clone() for k, v in module.state_dict().items()}, callbacks[0]


@pytest.mark.parametrize("kill, step, at_validation", [(5, 3, False), (14, 12, False), (8, 5, True)])
def test_resume_from_a_mid_epoch_checkpoint_is_exact(tmp_path, kill, step, at_validation):
    """Killed inside round 0 (epoch 0) or round 1 (epoch 1), from a step or a mid-epoch validation checkpoint."""
    reference, ref_cb = fit(tmp_path / "ref", at_validation=at_validation)
    with pytest.raises(SystemExit):  # Lightning turns the interrupt into a graceful exit
        fit(tmp_path / "run", kill=kill, at_validation=at_validation)
    ckpt = tmp_path / "run" / "ckpt" / f"epoch={step // 10}-step={step}.ckpt"
    assert ckpt.exists()
    resumed, cb = fit(tmp_path / "run", ckpt=str(ckpt), at_validation=at_validation)
    for k in reference:
        assert torch.equal(resumed[k], reference[k]), k
    assert all(torch.equal(a.masks[n], b.masks[n]) for a, b in zip(cb.tickets, ref_cb.tickets) for n in a.masks)
