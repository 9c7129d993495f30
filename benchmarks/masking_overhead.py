"""Masking overhead: time per epoch with LotteryTicket holding a 20%-density ticket / without the callback.

On a 2-core VM the speed of identical epochs drifts by 10-20% within seconds (even adjacent epochs of one
process: 40 pairs left the median ratio uncertain by about +-3%), far more than the few per cent being
measured. So the two conditions alternate step by step inside one `trainer.fit`: a small switch callback,
first in the list, adds `LotteryTicket(from_ticket=<20% magnitude ticket>)` to the Trainer's callbacks for one
step and takes it out for the next (the ticket callback masks like a pruned IMP round, which also
dispatches one batch-start hook for its rewind snapshot, ~5 us). Each step's time runs from its `on_train_batch_start` to the next one's, so it includes every hook,
the optimizer step and the next batch's loading; the order within a pair alternates by epoch (ABBA). The
ratio printed first is the median of the ~1000 pair ratios, with its IQR; the ratio of summed step times
(epoch times but for the epoch-boundary work) is printed beside it, but a few steps stalled by the
machine move it by several per cent either way (0.95-1.04 for LeNet on the same code), so the median
is the figure. Pruned weights
pick up updates in the steps without the callback: the timing is what is measured, not a ticket.
The same switch with an empty `pl.Callback` (no hooks of its own) shows what the method reads when
nothing is added beyond Lightning's dispatch of an empty callback. Goal: at most 1.03.

    python benchmarks/masking_overhead.py [--epochs 20] [--examples 6000]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lottery
from lottery import LotteryTicket, Ticket
from lottery.sparsity import Masker

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


def quiet_trainer(epochs: int, callbacks: list[pl.Callback]) -> pl.Trainer:
    """A CPU Trainer without logger, checkpoints, progress bar or summary."""
    return pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)


def ticket_callback(ticket: Ticket) -> LotteryTicket:
    """LotteryTicket training the given ticket (the per-step masking of a pruned IMP round)."""
    return LotteryTicket(from_ticket=ticket, epochs_per_round=0, dirpath=tempfile.mkdtemp(prefix="lottery-bench-"))


class Switch(pl.Callback):
    """Adds `other` to the Trainer's callbacks for every other step and times each step."""

    def __init__(self, other: pl.Callback) -> None:
        self.other = other
        self.steps: list[tuple[int, int, bool, float]] = []  # (epoch, batch, other present, start time)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        present = (batch_idx + trainer.current_epoch) % 2 == 0  # pairs (on, off) and (off, on) by epoch
        callbacks = trainer.callbacks
        if present and self.other not in callbacks:
            callbacks.append(self.other)  # appended during this hook's loop: its own batch start runs too
        elif not present and self.other in callbacks:
            callbacks.remove(self.other)
        self.steps.append((trainer.current_epoch, batch_idx, present, time.perf_counter()))

    def pairs(self) -> list[tuple[float, float]]:
        """(with, without) seconds of adjacent steps of one epoch."""
        seconds = [(e, i, on, t1 - t0) for (e, i, on, t0), (e1, _, _, t1) in zip(self.steps, self.steps[1:]) if e1 == e]
        out = []
        for (e, i, on, s), (e2, i2, _, s2) in zip(seconds[::2], seconds[1::2]):
            if e == e2 and i2 == i + 1:
                out.append((s, s2) if on else (s2, s))
        return out


def switched(module: Classifier, loader: DataLoader, other: pl.Callback, epochs: int) -> list[tuple[float, float]]:
    """(with, without) step-time pairs of `epochs` epochs with `other` switched in and out step by step."""
    switch = Switch(other)
    quiet_trainer(epochs, [switch, other]).fit(module, loader)
    return switch.pairs()


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
        trainer = quiet_trainer(epochs, [ticket_callback(ticket)])
        t = time.perf_counter()
        trainer.fit(module, loader)
        total = time.perf_counter() - t
    finally:
        Masker.zero_grads = original
    return spent[0] / total


def summary(name: str, pairs: list[tuple[float, float]]) -> str:
    """The median pair ratio with its IQR, the ratio of summed times and the mean step times."""
    ratios = [w / wo for w, wo in pairs]
    q1, median, q3 = statistics.quantiles(ratios, n=4)
    with_, without = sum(w for w, _ in pairs), sum(wo for _, wo in pairs)
    return (f"{name:14s} step {1e3 * without / len(pairs):.2f} ms without, {1e3 * with_ / len(pairs):.2f} ms with: "
            f"ratio {median:.3f} (median of {len(pairs)} pairs, IQR {q1:.3f}-{q3:.3f}; summed times {with_ / without:.3f})")


def measure(make_net, loader: DataLoader, epochs: int) -> tuple[list[tuple[float, float]], float]:
    """Step-time pairs with/without the ticket callback, and the masking share of a ticket epoch."""
    torch.manual_seed(0)
    module = Classifier(make_net())
    ticket = Ticket(lottery.prune(module, "magnitude", density=0.2).masks)  # masks only: training goes on
    pairs = switched(module, loader, ticket_callback(ticket), epochs)
    return pairs, masking_share(module, loader, ticket)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="epochs per model (steps alternate within each)")
    parser.add_argument("--examples", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=60)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(args.examples, 1, 28, 28, generator=g), torch.randint(0, 10, (args.examples,), generator=g))
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True)
    print(f"torch {torch.__version__}, pytorch-lightning {pl.__version__}, {torch.get_num_threads()} threads, "
          f"{args.examples} examples, batch {args.batch_size}, {args.epochs} epochs per model, steps alternating")
    torch.manual_seed(0)
    empty = switched(Classifier(lenet300()), loader, pl.Callback(), args.epochs)
    print(summary("empty callback", empty) + "  (LeNet-300-100; the method's reading for nothing added)")
    for name, make in [("LeNet-300-100", lenet300), ("small CNN", small_cnn)]:
        pairs, share = measure(make, loader, args.epochs)
        print(summary(name, pairs) + f"; goal <= 1.03; time inside masking {100 * share:.2f}% of a ticket epoch")


if __name__ == "__main__":
    main()
