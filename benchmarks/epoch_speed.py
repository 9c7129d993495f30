"""Epoch speed: LeNet-300-100 on Fashion-MNIST through lottery (with the callback) / a plain PyTorch loop.

Both sides do the same work in this one process: the in-memory training split in batches of 60 drawn by
index from a seeded permutation, Adam 1.2e-3, cross-entropy, training loss and accuracy, then the
validation split and the test set evaluated in batches of 1000. The speed of this 2-core VM drifts by
tens of per cent within seconds, so the two sides run in adjacent pairs: after every lottery epoch (IMP
rounds of 2 epochs, dense and pruned) one plain-loop epoch runs at once, and the ratio is the median of
the pairs' ratios. Goal: <= 1.25.

Two configurations of lottery are timed. The stripped one is a Trainer without logger, checkpoints or (in half
the runs) progress bar, rounds of 2 epochs. The one users run is the quickstart as shipped,
`lottery fit --config configs/lenet300_fashion_imp.yaml`: its Trainer, model, data and LotteryTicket callback
are built in this process by the `lottery` command's own LotteryCLI (`build_cli(..., run=False)`), so it has
the CSV logger, a checkpoint at every epoch end, the progress bar, the config.yaml and the callback's tickets;
each of its epochs is timed from one epoch start to the next (so the epoch-end checkpoint and a round's pruning
and ticket count too), stopped after `--epochs`. What it does once per process (imports, the run lock, reading
the data) is not per epoch and is not counted.

The plain loop is what a user writes: `torch.optim.Adam(params, lr)`, torch's default (unfused on CPU).
lottery's ClassificationModule asks for the fused kernels (same update rule; see its docstring), which
is part of why it keeps up with the plain loop despite Lightning's per-step machinery; the last line
compares with a plain loop given fused Adam too, so both effects can be told apart.

    python benchmarks/epoch_speed.py [--epochs 6] [--repeats 2] [--only-shipped] [--threads N] [--full]

`--full` also times the whole quickstart, `lottery fit --config configs/lenet300_fashion_imp.yaml`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import TQDMProgressBar
from torch import nn

from lottery import LotteryTicket
from lottery.data import FashionMNIST
from lottery.models import build
from lottery.module import ClassificationModule


class PlainLoop:
    """A hand-written loop doing the same work as lottery's epoch, on its own model, one epoch per call."""

    def __init__(self, dm: FashionMNIST, device: str = "cpu", fused: bool | None = None) -> None:
        torch.manual_seed(0)
        self.model = build("lenet300", init="glorot_normal").to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1.2e-3, fused=fused)
        self.splits = {k: (xs.to(device), ys.to(device)) for k, (xs, ys) in dm._splits.items()}
        self.batch_size, self.device, self.epoch = dm.batch_size, device, 0

    def epoch_seconds(self) -> float:
        """Train one epoch, evaluate the validation split and the test set; return the seconds it took."""
        model, opt, (x, y) = self.model, self.opt, self.splits["train"]
        t = time.perf_counter()
        model.train()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.epoch)).to(self.device)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        with torch.enable_grad():  # also when called from inside a Lightning hook
            for i in range(0, len(x), self.batch_size):
                idx = order[i : i + self.batch_size]
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
                xs, ys = self.splits[split]
                for i in range(0, len(xs), 1000):
                    logits = model(xs[i : i + 1000])
                    nn.functional.cross_entropy(logits, ys[i : i + 1000])
                    (logits.argmax(1) == ys[i : i + 1000]).sum()
        float(loss_sum), int(correct)
        if self.device == "cuda":
            torch.cuda.synchronize()
        self.epoch += 1
        return time.perf_counter() - t


class PairedTimer(pl.Callback):
    """Times each lottery epoch (training and its validation), then one epoch of each plain loop right after.

    The epochs of a pair run back to back, so a slow spell of a shared machine hits them alike.
    """

    def __init__(self, plains: list[PlainLoop]) -> None:
        self.plains = plains
        self.pairs: list[tuple[float, ...]] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self._t = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):  # after the epoch's validation
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        ours = time.perf_counter() - self._t
        self.pairs.append((ours, *(plain.epoch_seconds() for plain in self.plains)))


def paired_epochs(dm: FashionMNIST, plains: list[PlainLoop], epochs: int, progress_bar: bool,
                  device: str = "cpu") -> list[tuple[float, ...]]:
    """(lottery, *plain) seconds per epoch: ClassificationModule, the data module's fast path, LotteryTicket."""
    pl.seed_everything(0, verbose=False)
    timer = PairedTimer(plains)
    # IMP rounds of 2 epochs: dense round 0, then pruned rounds, so masked epochs are timed too
    cb = LotteryTicket(rounds=max(1, epochs // 2 - 1), epochs_per_round=2, dirpath=tempfile.mkdtemp(prefix="lottery-epoch-speed-"))
    trainer = pl.Trainer(accelerator="gpu" if device == "cuda" else "cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=progress_bar,
                         num_sanity_val_steps=0,
                         callbacks=[timer, cb] + ([TQDMProgressBar(refresh_rate=20)] if progress_bar else []))
    model = ClassificationModule("lenet300", init="glorot_normal", optimizer="adam", lr=1.2e-3)
    trainer.fit(model, dm)
    return timer.pairs[1:]  # the first epoch warms up both sides


SHIPPED = "configs/lenet300_fashion_imp.yaml"  # the quickstart


class EpochLaps(pl.Callback):
    """Times each epoch of a run from its start to the next epoch's start (or the end of training), then one epoch
    of each plain loop right after; asks the run to stop after `epochs` epochs.

    Put first among the Trainer's callbacks, its lap holds all the run does for an epoch: training, validation, the
    module's and callbacks' epoch-end work, the checkpoint written then, and a round's close at the next epoch start.
    """

    def __init__(self, plains: list[PlainLoop], epochs: int) -> None:
        self.plains, self.epochs = plains, epochs
        self.pairs: list[tuple[float, ...]] = []
        self._t: float | None = None

    def _lap(self, pl_module: pl.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        if self._t is not None:
            ours = time.perf_counter() - self._t
            self.pairs.append((ours, *(plain.epoch_seconds() for plain in self.plains)))
        self._t = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module):
        self._lap(pl_module)

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True  # honoured after this epoch's end work (its checkpoint included)

    def on_train_end(self, trainer, pl_module):
        self._lap(pl_module)


def shipped_epochs(plains: list[PlainLoop], epochs: int, device: str = "cpu") -> list[tuple[float, ...]]:
    """(lottery, *plain) seconds per epoch of the quickstart config as `lottery fit --config` builds it."""
    from lottery.experiment import build_cli

    Path("runs").mkdir(exist_ok=True)
    root = tempfile.mkdtemp(prefix="epoch_speed_shipped_", dir="runs")  # where users' runs go, not a RAM disk
    args = ["--config", SHIPPED, "--trainer.default_root_dir", root]
    if device == "cuda":
        args += ["--trainer.accelerator", "gpu"]
    try:
        cli = build_cli(args, run=False)  # the CLI objects of `lottery fit`, not run: this process calls fit
        laps = EpochLaps(plains, epochs)
        cli.trainer.callbacks.insert(0, laps)
        with warnings.catch_warnings():  # stopped after `epochs` on purpose
            warnings.filterwarnings("ignore", message="LotteryTicket: training stopped")
            cli.trainer.fit(cli.model, cli.datamodule)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return laps.pairs[1:]  # the first epoch warms up both sides


def summary(label: str, pairs: list[tuple[float, ...]], which: int = 1, goal: str = "; goal <= 1.25") -> str:
    """One line: median seconds of both sides and the median of the pairs' ratios with its quartiles."""
    ratios = [p[0] / p[which] for p in pairs]
    q1, med, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
    return (f"{label:34s} {statistics.median(p[0] for p in pairs):.3f} s/epoch, plain loop "
            f"{statistics.median(p[which] for p in pairs):.3f} s/epoch: ratio {med:.3f} "
            f"(median of {len(ratios)} adjacent pairs, IQR {q1:.3f}-{q3:.3f}{goal})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6, help="epochs per lottery run (rounds of 2 epochs; the "
                        "quickstart run keeps its rounds of 3 and stops after these)")
    parser.add_argument("--only-shipped", action="store_true", help="time the quickstart as shipped only")
    parser.add_argument("--repeats", type=int, default=2, help="runs with and without the progress bar, and as shipped")
    parser.add_argument("--full", action="store_true", help="also time the full quickstart config")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default torch's: one per core); on a machine other work keeps busy, "
                             "1 keeps a thread of each op from waiting for the other cores (steadier pairs)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dm = FashionMNIST(batch_size=60)
    dm.setup("fit")
    where = torch.cuda.get_device_name(0) if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, data from {dm.source}", flush=True)
    plains = [PlainLoop(dm, args.device), PlainLoop(dm, args.device, fused=True)]
    for plain in plains:
        plain.epoch_seconds()  # warm-up
    quiet, bar, shipped = [], [], []
    for _ in range(args.repeats):
        if not args.only_shipped:
            quiet += paired_epochs(dm, plains, args.epochs, False, args.device)
            bar += paired_epochs(dm, plains, args.epochs, True, args.device)
        shipped += shipped_epochs(plains, args.epochs, args.device)
    if not args.only_shipped:
        print(summary("lottery, no progress bar", quiet))
        print(summary("lottery, progress bar every 20 it", bar))
        print(summary("  same, plain loop with fused Adam", bar, which=2, goal=""))
    print(summary("lottery, as shipped (quickstart)", shipped))
    print(summary("  same, plain loop with fused Adam", shipped, which=2, goal=""))
    if args.full:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "lottery.cli", "fit", "--config", "configs/lenet300_fashion_imp.yaml",
                        "--trainer.default_root_dir", "runs/epoch_speed_full"], check=True,
                       stdout=subprocess.DEVNULL)
        print(f"full lenet300_fashion_imp.yaml run: {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
