"""Ticket speed: LeNet-300-100 tickets on sparse kernels against masked dense, at IMP's 15 densities.

For each density of Frankle & Carbin's LeNet schedule (hidden layers 20% per round, the output layer 10%):
- a training step (forward, backward, Adam step) of the masked dense model against the same model whose Linear
  layers run on CSR kernels (`lottery.sparsity.execution`), in adjacent pairs in this process, median ratio; with
  the fused Adam a `lottery fit` run uses and with torch's default Adam;
- inference at batch 1 and batch 60: the masked dense model against `lottery.export(..., to="csr")`, and at batch 1
  against `export(..., to="csr", batch_size=1)`, which keeps a layer dense where CSR is slower at that batch;
- and the crossover density of each layer shape (`lottery.sparsity.execution.crossover`).
A ratio above 1 means the sparse path is faster; below 1 it is slower, and is reported so.

    python benchmarks/ticket_speed.py [--pairs 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from lottery import export
from lottery.sparsity import Masker
from lottery.sparsity.execution import SurvivorsStep, apply_sparse, crossover, make_sparse

LAYERS = {"0.weight": 0.2, "2.weight": 0.2, "4.weight": 0.1}  # per-round prune fraction


def lenet300() -> nn.Sequential:
    return nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))


def ticket(model: nn.Module, round: int) -> dict[str, torch.Tensor]:
    """Layerwise magnitude masks of IMP round `round` (exact counts)."""
    params = dict(model.named_parameters())
    masks = {}
    for name, p in LAYERS.items():
        w = params[name].detach().abs().flatten()
        keep = int(w.numel() * (1 - p) ** round + 0.5)
        mask = torch.zeros_like(w, dtype=torch.bool)
        mask[w.topk(keep).indices] = True
        masks[name] = mask.view_as(params[name])
    return masks


def median_ratio(slow, fast, pairs: int) -> float:
    """Median over adjacent pairs of time(slow) / time(fast), the order alternating."""
    ratios = []
    for i in range(pairs + 2):
        times = {}
        for which in ((slow, fast) if i % 2 else (fast, slow)):
            start = time.perf_counter()
            which()
            times[which] = time.perf_counter() - start
        if i >= 2:  # warm-up pairs
            ratios.append(times[slow] / times[fast])
    return statistics.median(ratios)


def train_step(model: nn.Module, masks: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, fused: bool):
    """One Adam step as LotteryTicket trains a ticket: pruned gradients zeroed before the step (its Masker), sparse
    layers' gradients handed to the optimizer by a SurvivorsStep. `fused`: the kernels ClassificationModule asks for
    (the optimizer of a `lottery fit` run); otherwise torch's default Adam, as a plain training loop has it."""
    opt, masker = torch.optim.Adam(model.parameters(), 1.2e-3, fused=fused or None), Masker(model, masks)
    survivors = SurvivorsStep(model, opt)  # sparse layers (none in the masked dense model) step over survivors only

    def step() -> None:
        opt.zero_grad()  # gradients set to None, as Lightning's loop does
        nn.functional.cross_entropy(model(x), y).backward()
        masker.zero_grads()
        survivors.gather()
        opt.step()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = lenet300()
    x60, y60, x1 = torch.randn(60, 784), torch.randint(0, 10, (60,)), torch.randn(1, 784)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.pairs} adjacent pairs per figure")
    print("train step: masked dense / sparse path, with the run's fused Adam (ClassificationModule) and with torch's "
          "default Adam; inference: masked dense / csr export")
    print("round  density  train fused, all sparse  train fused, auto  train default Adam, auto  inference b1  "
          "b1 per-layer  inference b60")
    for round in range(16):
        masks = ticket(base, round)
        density = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
        dense, sparse = copy.deepcopy(base), copy.deepcopy(base)
        with torch.no_grad():
            for model in (dense, sparse):
                for n, p in model.named_parameters():
                    if n in masks:
                        p.mul_(masks[n])
        auto = copy.deepcopy(sparse)
        for name, mask in masks.items():
            make_sparse(sparse.get_submodule(name.rsplit(".", 1)[0]), mask, sparse_grad=True)
        # only the layers below their shape's measured crossover, as LotteryTicket(sparse_below="auto") runs them
        apply_sparse(auto, masks, "auto", 60, sparse_grad=True)
        ratios = []
        for fused, model in ((True, sparse), (True, auto), (False, auto)):
            ratios.append(median_ratio(train_step(dense, masks, x60, y60, fused), train_step(model, masks, x60, y60, fused),
                                       args.pairs))
        csr, chosen = export(base, masks, to="csr"), export(base, masks, to="csr", batch_size=1)
        with torch.no_grad():
            b1 = median_ratio(lambda: dense(x1), lambda: csr(x1), args.pairs)
            b1_chosen = median_ratio(lambda: dense(x1), lambda: chosen(x1), args.pairs)
            b60 = median_ratio(lambda: dense(x60), lambda: csr(x60), args.pairs)
        print(f"{round:5d}  {100 * density:6.2f}%  {ratios[0]:22.2f}x  {ratios[1]:16.2f}x  {ratios[2]:23.2f}x  "
              f"{b1:11.2f}x  {b1_chosen:11.2f}x  {b60:12.2f}x")
    print("crossover density (sparse forward+backward faster below it; 0 = never at the densities tried):")
    for shape in ((300, 784), (100, 300), (10, 100)):
        print(f"  Linear {shape[1]}->{shape[0]} at batch 60: {crossover(shape, 60):.2f}")


if __name__ == "__main__":
    main()
