"""Ticket speed: LeNet-300-100 tickets on sparse kernels against masked dense, at IMP's 15 densities.

For each density of Frankle & Carbin's LeNet schedule (hidden layers 20% per round, the output layer 10%):
- a training step (forward, backward, Adam step) of the masked dense model against the same model whose Linear
  layers run on CSR kernels (`lottery.sparsity.execution`), in adjacent pairs of blocks of steps in this process
  (each model's steps back to back, as a run takes them), median ratio; with the fused Adam a `lottery fit` run
  uses and with torch's default Adam; and, as earlier versions measured it, single steps alternating between the
  two models;
- inference at batch 1 and batch 60: the masked dense model against `lottery.export(..., to="csr")`, and at batch 1
  against `export(..., to="csr", batch_size=1)`, which keeps a layer dense where CSR is slower at that batch;
- the crossover density of each layer shape (`lottery.sparsity.execution.crossover`), on lottery's C kernels and
  on torch's CSR kernels (the training step on torch's kernels is shown too);
- and the 784->300 layer's forward and weight gradient alone: dense, torch's CSR kernels, lottery's.
A ratio above 1 means the sparse path is faster; below 1 it is slower, and is reported so.

    python benchmarks/ticket_speed.py [--pairs 300] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings

import torch
from torch import nn

from lottery import export
from lottery.sparsity import Masker
from lottery.sparsity import kernels
from lottery.sparsity.execution import (Pattern, SurvivorsStep, apply_sparse, conv_crossover, crossover,
                                        decisions, make_sparse)

LAYERS = {"0.weight": 0.2, "2.weight": 0.2, "4.weight": 0.1}  # per-round prune fraction


def lenet300() -> nn.Sequential:
    return nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))


def ticket(model: nn.Module, round: int, layers: dict[str, float] = LAYERS) -> dict[str, torch.Tensor]:
    """Layerwise magnitude masks of IMP round `round` (exact counts)."""
    params = dict(model.named_parameters())
    masks = {}
    for name, p in layers.items():
        w = params[name].detach().abs().flatten()
        keep = int(w.numel() * (1 - p) ** round + 0.5)
        mask = torch.zeros_like(w, dtype=torch.bool)
        mask[w.topk(keep).indices] = True
        masks[name] = mask.view_as(params[name])
    return masks


DEVICE = torch.device("cpu")  # set by --device


def median_ratio(slow, fast, pairs: int, block: int = 1, warm: int = 0) -> float:
    """Median over adjacent pairs of time(slow) / time(fast), the order alternating (a GPU synchronized around each).
    With `block` > 1 each side of a pair is `warm` untimed calls, then the mean of `block` timed ones: steps of one
    model back to back, as a run takes them, not each step right after the other model's (see TRAIN_BLOCK)."""
    sync = torch.cuda.synchronize if DEVICE.type == "cuda" else (lambda: None)
    ratios = []
    for i in range(pairs + 2):
        times = {}
        for which in ((slow, fast) if i % 2 else (fast, slow)):
            for _ in range(warm):
                which()
            sync()
            start = time.perf_counter()
            for _ in range(block):
                which()
            sync()
            times[which] = time.perf_counter() - start
        if i >= 2:  # warm-up pairs
            ratios.append(times[slow] / times[fast])
    return statistics.median(ratios)


# A training step's figures compare blocks of steps (2 untimed, then 8 timed, per side of a pair): a run takes one
# model's steps back to back. Single steps taken alternately start each sparse step with the caches full of the
# dense model's 4 MB of weights, gradients and Adam moments, which no run does; the "step by step" column keeps that
# measure, and reads lower (e.g. 1.82x against 2.08x at round 14 on the development machine)
TRAIN_BLOCK, TRAIN_WARM = 8, 2


def train_step(model: nn.Module, masks: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, fused: bool):
    """One Adam step as LotteryTicket trains a ticket: pruned gradients zeroed before the step (its Masker), sparse
    layers' gradients handed to the optimizer by a SurvivorsStep. `fused`: the kernels ClassificationModule asks for
    (the optimizer of a `lottery fit` run); otherwise torch's default Adam, as a plain training loop has it."""
    opt, masker = torch.optim.Adam(model.parameters(), 1.2e-3, fused=fused or None), Masker(model, masks)
    survivors = SurvivorsStep(model, opt)  # sparse layers' gradients as the optimizer reads them (none when dense)

    def step() -> None:
        opt.zero_grad()  # gradients set to None, as Lightning's loop does
        nn.functional.cross_entropy(model(x), y).backward()
        masker.zero_grads()
        survivors.gather()
        opt.step()
    return step


def masked_copy(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of `model` with its pruned weights at zero."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in masks:
                p.mul_(masks[n])
    return model


def chosen_csr(model: nn.Module, masks: dict[str, torch.Tensor], x1: torch.Tensor) -> nn.Module:
    """The csr export with the per-layer choice at batch 1; on a GPU (whose kernels that choice does not time
    synchronously) the all-CSR one."""
    if DEVICE.type == "cuda":
        return export(model, masks, to="csr")
    return export(model, masks, to="csr", batch_size=1, example_input=x1)


def semi_structured_section(pairs: int) -> None:
    """CUDA only: a 2:4 ticket of a 4096x4096 Linear layer (half precision), masked dense against
    export(to="semi-structured"), torch's 2:4 kernels, at batches 60 and 2048."""
    torch.manual_seed(0)
    layer = nn.Sequential(nn.Linear(4096, 4096)).half().to(DEVICE)
    w = layer[0].weight.detach().abs().reshape(-1, 4)
    keep = torch.zeros_like(w, dtype=torch.bool).scatter_(1, w.topk(2, dim=1).indices, True)  # 2 of every 4 inputs
    masks = {"0.weight": keep.view_as(layer[0].weight)}
    dense = masked_copy(layer, masks)
    semi = export(layer, masks, to="semi-structured")
    print("2:4 ticket, Linear 4096->4096 in float16; ratio = masked dense / semi-structured")
    with torch.no_grad():
        for batch in (60, 2048):
            x = torch.randn(batch, 4096, dtype=torch.half, device=DEVICE)
            torch.testing.assert_close(semi(x), dense(x), atol=0.05, rtol=0.01)
            print(f"  batch {batch}: {median_ratio(lambda x=x: dense(x), lambda x=x: semi(x), pairs):.2f}x")


def conv_section(pairs: int) -> None:
    """Conv-2 (Frankle & Carbin's CIFAR-10 network: two 3x3 convs, then Linear 16384->256->256->10) at IMP rounds
    with their rates (convs 10%, hidden Linear 20%, output 10% per round): a training step at batch 60 with
    sparse_below="auto" (every layer below its measured crossover on sparse kernels, convs included), the same with
    the convs kept dense (what the conv path adds), and inference with each export format. Conv-2's steps take
    ~0.1 s, so its pairs are single steps, alternating."""
    from lottery.models import build

    torch.manual_seed(0)
    base = build("conv2").to(DEVICE)
    layers = {n: (0.1 if n.startswith("features") or n == "classifier.5.weight" else 0.2)
              for n, p in base.named_parameters() if p.dim() > 1}
    x60, y60, x1 = (t.to(DEVICE) for t in (torch.randn(60, 3, 32, 32), torch.randint(0, 10, (60,)),
                                            torch.randn(1, 3, 32, 32)))
    print(f"Conv-2 (CIFAR-10 shapes), {pairs} adjacent pairs per figure; ratio = masked dense time / the other")
    print("round  density  convs    train fused, auto  convs dense  csr b1  csr b1 per-layer  csr b60  compact b1  "
          "compact b60  (convs: what auto chose for features.0, features.2)")
    for round in (0, 10, 20, 30):
        masks = ticket(base, round, layers)
        density = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
        conv_density = masks["features.2.weight"].float().mean().item()
        dense, auto, linear = masked_copy(base, masks), masked_copy(base, masks), masked_copy(base, masks)
        chose = apply_sparse(auto, masks, "auto", 60, sparse_grad=True)
        apply_sparse(linear, {n: m for n, m in masks.items() if not n.startswith("features")}, "auto", 60,
                     sparse_grad=True)
        train_step(auto, masks, x60, y60, True)()  # the convs decide at their first forward (their input size)
        chose.update(decisions(auto))
        train = median_ratio(train_step(dense, masks, x60, y60, True), train_step(auto, masks, x60, y60, True), pairs)
        train_linear = median_ratio(train_step(dense, masks, x60, y60, True),
                                    train_step(linear, masks, x60, y60, True), pairs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # export's notes on layers it keeps dense
            formats = {"csr": export(base, masks, to="csr"), "compact": export(base, masks, to="compact"),
                       "chosen": chosen_csr(base, masks, x1)}
        with torch.no_grad():
            r = {(f, b): median_ratio(lambda x=x: dense(x), lambda m=m, x=x: m(x), pairs)
                 for f, m in formats.items() for b, x in ((1, x1), (60, x60)) if not (f == "chosen" and b == 60)}
        said = ", ".join(chose.get(f"features.{i}.weight", "?").split(" (")[0] for i in (0, 2))
        print(f"{round:5d}  {100 * density:6.2f}%  {100 * conv_density:5.2f}%  {train:16.2f}x  {train_linear:10.2f}x  "
              f"{r['csr', 1]:5.2f}x  {r['chosen', 1]:15.2f}x  {r['csr', 60]:6.2f}x  {r['compact', 1]:9.2f}x  "
              f"{r['compact', 60]:10.2f}x  ({said})")
    if DEVICE.type != "cpu":
        return  # the sparse convs run on lottery's C kernels: CPU only
    conv = base.features[2]
    print(f"  conv crossover (64->64, 3x3, input [64, 32, 32], batch 60): "
          f"{conv_crossover(conv, (64, 32, 32), 60, DEVICE):.3f}; first conv (3->64, no input gradient): "
          f"{conv_crossover(base.features[0], (3, 32, 32), 60, DEVICE, input_grad=False):.3f}")


def kernel_section(base: nn.Module, x: torch.Tensor, runs: int) -> None:
    """The 784->300 layer of the 3.6% ticket at batch 60 alone: its forward and its weight gradient, dense, on torch's
    CSR kernels and on lottery's (the one C call each that the sparse path makes: with the transposes of the input
    and of the result, and for the gradient of the output gradient), each median µs of `runs` runs taken in turn."""
    mask = ticket(base, 15)["0.weight"]
    weight, bias = base[0].weight.detach() * mask, base[0].bias.detach()
    gy = torch.randn(x.shape[0], weight.shape[0])
    pattern = Pattern(mask)
    values = weight[mask]
    csr, zeros = pattern.csr(values), torch.zeros_like(values)
    xt_torch = x.t().contiguous()
    xt, _ = kernels.linear_forward(pattern.crow, pattern.col, values, bias, x)
    arrays = (pattern.crow, pattern.col, pattern.t_crow, pattern.t_col, pattern.t_perm, values, xt)
    cases = {
        "forward": (lambda: nn.functional.linear(x, weight, bias),
                    lambda: torch.sparse.mm(csr, x.t().contiguous()).t() + bias,
                    lambda: kernels.linear_forward(pattern.crow, pattern.col, values, bias, x)),
        "weight gradient": (lambda: gy.t() @ x,
                            lambda: torch.sparse.sampled_addmm(pattern.csr(zeros), gy.t().contiguous(), xt_torch.t(),
                                                               beta=0.0),
                            lambda: kernels.linear_backward(*arrays, gy, (False, True, False))),
    }
    print(f"Linear 784->300 at {100 * mask.float().mean():.2f}% density, batch {x.shape[0]}, alone: median µs of "
          f"{runs} runs each, in turn (the sparse ones include transposing their input)")
    print("                  dense  torch CSR  lottery C  dense/torch  dense/C")
    for name, fns in cases.items():
        times = [[], [], []]
        for _ in range(runs):
            for t, fn in zip(times, fns):
                start = time.perf_counter()
                fn()
                t.append(time.perf_counter() - start)
        d, c_torch, c_ours = (1e6 * statistics.median(t) for t in times)
        print(f"{name:16s}  {d:5.0f}  {c_torch:9.0f}  {c_ours:9.0f}  {d / c_torch:10.2f}x  {d / c_ours:6.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=300, help="adjacent pairs per figure (a training step is ~1 ms: "
                        "30 pairs moved a figure by up to 0.2 between runs on this shared machine)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, nargs="+", default=list(range(16)), help="IMP rounds to time (0-15)")
    parser.add_argument("--conv-pairs", type=int, default=5, help="adjacent pairs per Conv-2 figure (0: skip it)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (adds the 2:4 semi-structured figures)")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = lenet300().to(DEVICE)
    x60, y60, x1 = (t.to(DEVICE) for t in (torch.randn(60, 784), torch.randint(0, 10, (60,)), torch.randn(1, 784)))
    train_pairs = max(1, args.pairs // 5)  # blocks of steps: a pair is 20 steps, so a fifth as many pairs
    where = torch.cuda.get_device_name() if DEVICE.type == "cuda" else f"{args.threads} thread(s)"
    print(f"torch {torch.__version__}, {where}, {args.pairs} adjacent pairs per figure")
    print("train step: masked dense / sparse path, with the run's fused Adam (ClassificationModule) and with torch's "
          f"default Adam, {train_pairs} pairs of blocks ({TRAIN_WARM} untimed + {TRAIN_BLOCK} timed steps "
          "per side); step by step: single steps alternating; inference: masked dense / csr export")
    print("round  density  train fused, all sparse  train fused, auto  (torch's kernels)  train default Adam, auto  "
          "fused auto, step by step  inference b1  b1 per-layer  inference b60")
    for round in args.rounds:
        masks = ticket(base, round)
        density = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
        dense, sparse, auto = masked_copy(base, masks), masked_copy(base, masks), masked_copy(base, masks)
        for name, mask in masks.items():
            make_sparse(sparse.get_submodule(name.rsplit(".", 1)[0]), mask, sparse_grad=True)
        # only the layers below their shape's measured crossover, as LotteryTicket(sparse_below="auto") runs them
        apply_sparse(auto, masks, "auto", 60, sparse_grad=True)
        with kernels.using("torch"):  # the same, on torch's CSR kernels (their own crossover)
            on_torch = masked_copy(base, masks)
            apply_sparse(on_torch, masks, "auto", 60, sparse_grad=True)
        ratios = []
        for fused, model, which in ((True, sparse, "auto"), (True, auto, "auto"), (True, on_torch, "torch"),
                                    (False, auto, "auto")):
            with kernels.using(which):
                ratios.append(median_ratio(train_step(dense, masks, x60, y60, fused),
                                           train_step(model, masks, x60, y60, fused), train_pairs,
                                           TRAIN_BLOCK, TRAIN_WARM))
        one_by_one = median_ratio(train_step(dense, masks, x60, y60, True), train_step(auto, masks, x60, y60, True),
                                  args.pairs)
        csr, chosen = export(base, masks, to="csr"), chosen_csr(base, masks, x1)
        with torch.no_grad():
            b1 = median_ratio(lambda: dense(x1), lambda: csr(x1), args.pairs)
            b1_chosen = median_ratio(lambda: dense(x1), lambda: chosen(x1), args.pairs)
            b60 = median_ratio(lambda: dense(x60), lambda: csr(x60), args.pairs)
        print(f"{round:5d}  {100 * density:6.2f}%  {ratios[0]:22.2f}x  {ratios[1]:16.2f}x  {ratios[2]:16.2f}x  "
              f"{ratios[3]:23.2f}x  {one_by_one:20.2f}x  {b1:11.2f}x  {b1_chosen:11.2f}x  {b60:12.2f}x")
    print("crossover density (sparse forward+backward faster below it; 0 = never at the densities tried):")
    for shape in ((300, 784), (100, 300), (10, 100)):
        with kernels.using("torch"):
            on_torch = crossover(shape, 60, DEVICE)
        print(f"  Linear {shape[1]}->{shape[0]} at batch 60: {crossover(shape, 60, DEVICE):.2f} "
              f"(on torch's kernels: {on_torch:.2f})")
    if DEVICE.type == "cpu" and kernels.library() is not None:
        kernel_section(base, x60, args.pairs * 10)
    if args.conv_pairs:
        conv_section(args.conv_pairs)
    if DEVICE.type == "cuda":
        semi_structured_section(args.pairs)


if __name__ == "__main__":
    main()
