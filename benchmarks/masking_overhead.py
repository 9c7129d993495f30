"""Masking overhead: seconds per epoch with LotteryTicket holding a 20%-density ticket / without the callback.

Both runs train the same model on the same in-memory data in this one process, alternating, and the
ratio uses the fastest epoch of each (the least disturbed by other load on a shared machine; the median
ratio is printed too), and the share of the ticket epochs spent inside masking. Goal: at most 1.03.

    python benchmarks/masking_overhead.py [--epochs 6] [--examples 12000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lottery import LotteryTicket
from lottery.masking import Masker

MASKING_SECONDS = [0.0]


def _timed(fn):
    """Wrap a Masker method to add its wall time to MASKING_SECONDS."""

    def wrapper(self):
        t = time.perf_counter()
        fn(self)
        MASKING_SECONDS[0] += time.perf_counter() - t

    return wrapper


Masker.apply, Masker.zero_grads = _timed(Masker.apply), _timed(Masker.zero_grads)


def lenet300() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))


def small_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


class Classifier(pl.LightningModule):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


class EpochTimer(pl.Callback):
    def __init__(self, skip: int = 0) -> None:
        self.times: list[float] = []
        self.skip = skip
        self.masking_in_timed_epochs = 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        self._t = time.perf_counter()
        self._m = MASKING_SECONDS[0]

    def on_train_epoch_end(self, trainer, pl_module):
        self.times.append(time.perf_counter() - self._t)
        if len(self.times) > self.skip:
            self.masking_in_timed_epochs += MASKING_SECONDS[0] - self._m


def epoch_times(make_net, loader, epochs: int, with_ticket: bool, timed_masking: bool = False) -> list[float]:
    """Times of the last epochs - 1 of 2·epochs: plain, or round 1 (20% density) under LotteryTicket."""
    torch.manual_seed(0)
    timer = EpochTimer(skip=epochs + 1)
    callbacks: list[pl.Callback] = [timer]
    if with_ticket:
        # round 0 trains dense for `epochs` epochs, round 1 at 20% density for `epochs` more
        callbacks.insert(0, LotteryTicket(rounds=1, density=0.2, epochs_per_round=epochs, dirpath="/tmp/lottery-bench"))
    trainer = pl.Trainer(max_epochs=2 * epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)
    trainer.fit(Classifier(make_net()), loader)
    if timed_masking:
        MASKING_SECONDS[0] = timer.masking_in_timed_epochs
    return timer.times[epochs + 1 :]  # the same epochs in both runs; the first of round 1 is skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per run + 1")
    parser.add_argument("--examples", type=int, default=12000)
    parser.add_argument("--batch-size", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5, help="alternating plain/ticket runs")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(args.examples, 1, 28, 28, generator=g), torch.randint(0, 10, (args.examples,), generator=g))
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.examples} examples, batch {args.batch_size}")
    for name, make in [("LeNet-300-100", lenet300), ("small CNN", small_cnn)]:
        plain, masked, shares = [], [], []
        for _ in range(args.repeats):
            plain += epoch_times(make, loader, args.epochs, False)
            MASKING_SECONDS[0] = 0.0
            times = epoch_times(make, loader, args.epochs, True, timed_masking=True)
            masked += times
            shares.append(MASKING_SECONDS[0] / sum(times))
        p, m = min(plain), min(masked)
        med = statistics.median(masked) / statistics.median(plain)
        print(f"{name:14s} plain {p:.3f} s/epoch  with 20% ticket {m:.3f} s/epoch  ratio {m / p:.3f}  "
              f"(median ratio {med:.3f}; goal <= 1.03); time inside masking {100 * statistics.median(shares):.2f}% "
              "of the ticket epochs")


if __name__ == "__main__":
    main()
