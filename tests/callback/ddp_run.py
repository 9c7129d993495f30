"""Run by test_ddp.py: two CPU ranks, random pruner, a different RNG stream per rank; each rank writes its masks."""

import os
import sys

import pytorch_lightning as pl
import torch

from helpers import Module
from lottery import LotteryTicket


class SaveMasks(pl.Callback):
    def on_train_end(self, trainer, pl_module):
        cb = next(c for c in trainer.callbacks if isinstance(c, LotteryTicket))
        torch.save({"masks": [t.masks for t in cb.tickets],
                    "weights": {k: v.clone() for k, v in pl_module.state_dict().items()}},
                   f"{sys.argv[1]}/rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    pl.seed_everything(0)
    module = Module(scheduler=None)
    # a different scoring seed on each rank: without the broadcast each rank would draw its own random mask
    rank = int(os.environ.get("LOCAL_RANK", 0))
    if sys.argv[2] in ("set", "rigl"):  # dynamic sparse training: random starts and SET's growth differ per rank
        from lottery.sparse_training import SET, RigL

        method = SET(every=2) if sys.argv[2] == "set" else RigL(every=2)
        cb = LotteryTicket(sparse_training=method, density=0.2, epochs_per_round=0, seed=rank)
    elif sys.argv[2] == "snip":  # at initialization, each rank scoring its own shard of the data
        cb = LotteryTicket(pruner="snip", density=0.2, rounds=1, epochs_per_round=0)
    else:
        cb = LotteryTicket(pruner="random", rounds=2, epochs_per_round=1, seed=rank)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", callbacks=[cb, SaveMasks()], logger=False,
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                         default_root_dir=sys.argv[1], num_sanity_val_steps=0, max_epochs=2 if sys.argv[2] in ('set', 'rigl') else 1)
    trainer.fit(module)
