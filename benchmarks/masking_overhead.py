"""Masking overhead: seconds per epoch with LotteryTicket holding a 20%-density ticket / without the callback.

On a 2-core VM the speed of identical epochs drifts by 10-20% within seconds, far more than the few
per cent being measured, so comparing two long runs measures the machine. Instead one model is trained
in adjacent pairs of epochs in this one process: one epoch without the callback and one under
`LotteryTicket(ticket=...)` holding a 20%-density magnitude ticket (the same per-step hooks as a pruned
IMP round, which re-zeroes the pruned weights first), in alternating order (ABBA) so drift cancels. The ratio printed is the median of the pairs' ratios, with its interquartile range; the time
spent inside masking (zeroing gradients) is measured in extra ticket epochs after the pairs, so the
timing wrapper does not slow the measured ones. Goal: at most 1.03.

    python benchmarks/masking_overhead.py [--pairs 40] [--examples 6000]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lottery
from lottery import LotteryTicket, Ticket
from lottery.masking import Masker

# each pair runs two fits: Lightning's per-fit banners, tips and advice would drown the figures
warnings.filterwarnings("ignore")
for _name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lottery"):
    logging.getLogger(_name).setLevel(logging.ERROR)


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
    """Wall time of the training epoch (first in the callback list, so it brackets the others' epoch hooks)."""

    def on_train_epoch_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.seconds = time.perf_counter() - self.start


def one_epoch(module: Classifier, loader: DataLoader, ticket: Ticket | None) -> float:
    """Seconds of one training epoch of `module`, under LotteryTicket holding `ticket` when given."""
    timer = EpochTimer()
    callbacks: list[pl.Callback] = [timer]
    if ticket is not None:
        callbacks.append(LotteryTicket(ticket=ticket, epochs_per_round=0, dirpath="/tmp/lottery-bench"))
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)
    trainer.fit(module, loader)
    return timer.seconds


def masking_share(module: Classifier, loader: DataLoader, ticket: Ticket, epochs: int = 3) -> float:
    """Fraction of a ticket epoch spent in `Masker.zero_grads`, timed by wrapping it."""
    spent = [0.0]
    original = Masker.zero_grads

    def timed(self):
        t = time.perf_counter()
        original(self)
        spent[0] += time.perf_counter() - t

    Masker.zero_grads = timed
    try:
        total = sum(one_epoch(module, loader, ticket) for _ in range(epochs))
    finally:
        Masker.zero_grads = original
    return spent[0] / total


def measure(make_net, loader: DataLoader, pairs: int) -> tuple[list[float], list[float], float]:
    """Plain and ticket epoch times of `pairs` adjacent pairs, and the masking share of a ticket epoch."""
    torch.manual_seed(0)
    module = Classifier(make_net())
    ticket = Ticket(lottery.prune(module, "magnitude", density=0.2).masks)  # masks only: training goes on
    one_epoch(module, loader, None), one_epoch(module, loader, ticket)  # warm-up
    plain_times, ticket_times = [], []
    for i in range(pairs):
        if i % 2 == 0:
            plain_times.append(one_epoch(module, loader, None))
            ticket_times.append(one_epoch(module, loader, ticket))
        else:
            ticket_times.append(one_epoch(module, loader, ticket))
            plain_times.append(one_epoch(module, loader, None))
    return plain_times, ticket_times, masking_share(module, loader, ticket)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=40, help="adjacent plain/ticket epoch pairs per model")
    parser.add_argument("--examples", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=60)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(args.examples, 1, 28, 28, generator=g), torch.randint(0, 10, (args.examples,), generator=g))
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True)
    print(f"torch {torch.__version__}, pytorch-lightning {pl.__version__}, {torch.get_num_threads()} threads, "
          f"{args.examples} examples, batch {args.batch_size}, {args.pairs} pairs of epochs")
    for name, make in [("LeNet-300-100", lenet300), ("small CNN", small_cnn)]:
        plain, sparse, share = measure(make, loader, args.pairs)
        ratios = [s / p for p, s in zip(plain, sparse)]
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        print(f"{name:14s} plain {statistics.median(plain):.3f} s/epoch  with 20% ticket "
              f"{statistics.median(sparse):.3f} s/epoch  ratio {statistics.median(ratios):.3f} "
              f"(median of {len(ratios)} pairs, IQR {q1:.3f}-{q3:.3f}; goal <= 1.03); "
              f"time inside masking {100 * share:.2f}% of a ticket epoch")


if __name__ == "__main__":
    main()
