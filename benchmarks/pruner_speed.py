"""Pruner speed on CPU, and the maximal critical compression of each pruner on CIFAR VGG-16.

- 100 SynFlow steps on CIFAR VGG-16 and ResNet-20, and their ratio to 100 float64 forward+backward passes of
  one example (what SynFlow's scoring itself needs), one timed after each step: selection adds the rest.
- one SNIP and one GraSP step on a batch of 128, as a ratio to one float32 forward+backward of that batch.
- with --collapse: the highest compression 10^x (x in steps of 0.25) at which no layer of VGG-16 (PyTorch's
  default init and conv biases) is emptied, per pruner (SynFlow 100 steps, others one shot). No CIFAR-10 is
  available offline here, so SNIP and GraSP score on random CIFAR-shaped batches with random labels; say so.

    python benchmarks/pruner_speed.py [--collapse]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from lottery import prune
from lottery.plan import Plan
from lottery.models import build
from lottery.pruning import get


def model(name: str, init: str = "default") -> nn.Module:
    torch.manual_seed(0)
    net = build(name, init=init)
    net.example_input_array = torch.zeros(1, 3, 32, 32)
    return net


def fwd_bwd(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, repeats: int = 3, warmup: int = 0) -> float:
    """Seconds of one forward+backward (median of `repeats`, after `warmup` untimed passes)."""
    times = []
    for i in range(warmup + repeats):
        net.zero_grad()
        t = time.perf_counter()
        out = net(x)
        (out.sum() if y is None else nn.functional.cross_entropy(out, y)).backward()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def batch(n: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def synflow_against_fwd_bwd(name: str) -> tuple[float, float]:
    """Seconds of 100 SynFlow steps, and the summed seconds of 100 float64 fwd+bwd passes timed between them.

    One baseline pass runs after every step (on a float64 copy of the model, outside SynFlow's time), so
    both sides see the same machine speed and allocator state: this VM drifts by 20-50% within a minute,
    and a process's first passes page-fault fresh gradients (105-160 ms on VGG-16 for the same pass).
    """
    net, base_net = model(name), model(name).double().eval()
    ones = torch.ones(1, 3, 32, 32, dtype=torch.float64)
    fwd_bwd(base_net, ones, repeats=1, warmup=3)
    passes: list[float] = []
    original = Plan.step

    def step_then_baseline(self, *args, **kwargs):
        masks = original(self, *args, **kwargs)
        passes.append(fwd_bwd(base_net, ones, repeats=1))
        base_net.zero_grad()  # its gradients go back to the allocator before the next step, as SynFlow's do
        return masks

    Plan.step = step_then_baseline
    try:
        t = time.perf_counter()
        prune(net, "synflow", density=0.01, rounds=100)
        total = time.perf_counter() - t
    finally:
        Plan.step = original
    return total - sum(passes), sum(passes)


def speed() -> None:
    for name in ("vgg16", "resnet20"):
        synflow, base = synflow_against_fwd_bwd(name)
        print(f"SynFlow 100 steps {name:8s} {synflow:7.2f} s   = {synflow / base:.2f} x 100 float64 fwd+bwd "
              f"timed between its steps ({base * 10:.1f} ms each)")
    x, y = batch()
    for name in ("vgg16", "resnet20"):
        net = model(name).train()
        base = fwd_bwd(net, x, y)
        for pruner in ("snip", "grasp"):
            t = time.perf_counter()
            get(pruner).scores(net, [(x, y)])
            total = time.perf_counter() - t
            print(f"{pruner:5s} 1 step, batch 128, {name:8s} {total:6.2f} s   = {total / base:.2f} x one fwd+bwd "
                  f"({base:.2f} s)")


def collapses(ticket) -> bool:
    return min(kept for kept, _ in ticket.counts().values()) == 0


def critical_compression() -> list[dict]:
    """Print and return, per pruner and init, the maximal critical compression exponent x (10^x)."""
    nets = {"default": model("vgg16"), "kaiming_normal": model("vgg16", "kaiming_normal")}
    batches = [batch()]
    print("maximal critical compression on CIFAR VGG-16 (10^x, steps of 0.25; paper: SynFlow 10^5.75-10^6, "
          "magnitude 10^2.75, SNIP/GraSP 10^3.5-10^3.75)")
    runs = [("synflow", 100, "default"), ("magnitude", 1, "default"), ("magnitude", 1, "kaiming_normal"),
            ("snip", 1, "default"), ("grasp", 1, "default"), ("random", 1, "default")]
    found = []
    for pruner, rounds, init in runs:
        net = nets[init]
        lo, hi = 0, 28  # x = k/4 for k in [lo, hi]: lo known fine, hi assumed collapsed
        t = time.perf_counter()
        while hi - lo > 1:
            mid = (lo + hi) // 2
            ticket = prune(net, pruner, density=10 ** (-mid / 4), rounds=rounds, batches=batches, seed=0)
            lo, hi = (lo, mid) if collapses(ticket) else (mid, hi)
        seconds = time.perf_counter() - t
        print(f"  {pruner:9s} {init:14s} init  10^{lo / 4:.2f}   ({seconds:.0f} s)")
        found.append({"pruner": pruner, "init": init, "x": lo / 4, "seconds": seconds})
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collapse", action="store_true", help="also find each pruner's maximal critical compression")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    speed()
    if args.collapse:
        critical_compression()


if __name__ == "__main__":
    main()
