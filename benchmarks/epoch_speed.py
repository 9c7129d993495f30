"""Epoch speed: LeNet-300-100 on Fashion-MNIST through lottery (with the callback) / a plain PyTorch loop.

Both sides do the same work in this one process: the in-memory training split in batches of 60 drawn by
index from a seeded permutation, Adam 1.2e-3, cross-entropy, training loss and accuracy, then the
validation split and the test set evaluated in batches of 1000. Each side runs the same number of epochs;
the ratio uses the fastest epoch after the first of each (and the median is printed too). Goal: <= 1.25.

    python benchmarks/epoch_speed.py [--epochs 4] [--full]

`--full` also times the whole quickstart, `lottery fit --config configs/lenet300_fashion_imp.yaml`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar
import torch
from torch import nn

from lottery import LotteryTicket
from lottery.data import FashionMNIST
from lottery.models import build
from lottery.module import ClassificationModule


def plain_loop(dm: FashionMNIST, epochs: int, device: str = "cpu") -> list[float]:
    """Seconds per epoch of a hand-written loop doing the same work."""
    torch.manual_seed(0)
    model = build("lenet300", init="glorot_normal").to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1.2e-3)
    splits = {k: (xs.to(device), ys.to(device)) for k, (xs, ys) in dm._splits.items()}
    x, y = splits["train"]
    times = []
    for epoch in range(epochs):
        t = time.perf_counter()
        model.train()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch)).to(device)
        loss_sum, correct = torch.zeros((), device=device), torch.zeros((), dtype=torch.long, device=device)
        for i in range(0, len(x), dm.batch_size):
            idx = order[i : i + dm.batch_size]
            xb, yb = x[idx], y[idx]
            logits = model(xb)
            loss = nn.functional.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
            correct += (logits.detach().argmax(1) == yb).sum()
        model.eval()
        with torch.no_grad():
            for split in ("val", "test"):
                xs, ys = splits[split]
                for i in range(0, len(xs), 1000):
                    logits = model(xs[i : i + 1000])
                    nn.functional.cross_entropy(logits, ys[i : i + 1000])
                    (logits.argmax(1) == ys[i : i + 1000]).sum()
        float(loss_sum), int(correct)
        times.append(time.perf_counter() - t)
    return times


class EpochTimer(pl.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self._t = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):  # after the epoch's validation
        self.times.append(time.perf_counter() - self._t)


def lottery_loop(dm: FashionMNIST, epochs: int, progress_bar: bool, device: str = "cpu") -> list[float]:
    """Seconds per epoch of `lottery`: ClassificationModule, the data module's fast path, LotteryTicket."""
    pl.seed_everything(0, verbose=False)
    timer = EpochTimer()
    # round 0 dense for half the epochs, then a 20%-pruned round: masked epochs are timed too
    cb = LotteryTicket(rounds=1, epochs_per_round=max(1, epochs // 2), dirpath="/tmp/lottery-epoch-speed")
    trainer = pl.Trainer(accelerator="gpu" if device == "cuda" else "cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_model_summary=False, enable_progress_bar=progress_bar, num_sanity_val_steps=0,
                         callbacks=[cb, timer] + ([TQDMProgressBar(refresh_rate=20)] if progress_bar else []))
    model = ClassificationModule("lenet300", init="glorot_normal", optimizer="adam", lr=1.2e-3)
    trainer.fit(model, dm)
    return timer.times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="also time the full quickstart config")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    dm = FashionMNIST(batch_size=60)
    dm.setup("fit")
    where = torch.cuda.get_device_name(0) if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, data from {dm.source}")
    plain, ours, bar = [], [], []
    for _ in range(args.repeats):  # alternate, so slow spells of a shared machine hit all three alike
        plain += plain_loop(dm, args.epochs, args.device)[1:]
        ours += lottery_loop(dm, 2 * (args.epochs // 2), False, args.device)[1:]
        bar += lottery_loop(dm, 2 * (args.epochs // 2), True, args.device)[1:]
    p, o, b = min(plain), min(ours), min(bar)
    med = statistics.median
    print(f"plain PyTorch loop                 {p:.3f} s/epoch (median {med(plain):.3f})")
    print(f"lottery, no progress bar           {o:.3f} s/epoch (median {med(ours):.3f})  ratio {o / p:.3f}"
          f" (median ratio {med(ours) / med(plain):.3f})")
    print(f"lottery, progress bar every 20 it  {b:.3f} s/epoch (median {med(bar):.3f})  ratio {b / p:.3f}"
          f" (median ratio {med(bar) / med(plain):.3f}; goal <= 1.25)")
    if args.full:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "lottery.cli", "fit", "--config", "configs/lenet300_fashion_imp.yaml",
                        "--trainer.default_root_dir", "runs/epoch_speed_full"], check=True)
        print(f"full lenet300_fashion_imp.yaml run: {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
