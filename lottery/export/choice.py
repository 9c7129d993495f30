"""CSR or dense per layer: each masked layer timed at the batch it will run, on this machine, by adjacent pairs.

At batch 1 the small layers of a ticket lose on CSR (a kernel call costs more than their few multiply-adds), while
the large ones win; which is which depends on the shape, the density and the machine, so it is measured, in the style
of `lottery.sparsity.execution.crossover` (alternating order, a warm-up, the median).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from lottery.export.layers import CSRLinear, relu_after

log = logging.getLogger(__name__)
TARGET_S = 2e-3  # one timed sample: enough calls of a layer to take about this long (a call can be a few µs)


def choose(model: nn.Module, candidates: dict[str, nn.Module], batch_size: int, example_input: Tensor | None,
           repeats: int = 7) -> dict[str, str]:
    """For each layer name of `candidates` (its CSR form; the dense one is in `model`): "csr (…)" where CSR is the
    faster at `batch_size`, else "dense (…)", with the two median times."""
    inputs = layer_inputs(model, list(candidates), batch_size, example_input)
    choices = {}
    with torch.no_grad():
        for name, sparse in candidates.items():
            dense, x, relu = model.get_submodule(name), inputs[name], relu_after(model, name)
            if relu is not None and isinstance(sparse, CSRLinear):  # the export computes it in the CSR layer's call
                dense_t, sparse_t = pair(lambda d=dense, x=x, r=model.get_submodule(relu): r(d(x)),
                                         lambda s=sparse, x=x: s(x, relu=True), repeats)
            else:
                dense_t, sparse_t = pair(lambda d=dense, x=x: d(x), lambda s=sparse, x=x: s(x), repeats)
            kind = "csr" if sparse_t < dense_t else "dense"
            # the thread count is part of the answer: on this project's 2-core machine, busy with other work, a kernel
            # that runs on 2 threads (CSR's matrix-vector product, a dense batch of 60) took ~8 ms waiting for the
            # other core, and 10-300 us on one thread
            choices[name] = (f"{kind} (at batch {batch_size}, threads={torch.get_num_threads()}: csr "
                             f"{1e6 * sparse_t:.1f} us, dense {1e6 * dense_t:.1f} us, {dense_t / sparse_t:.2f}x)")
            log.info("export: %s runs %s", name, choices[name])
    return choices


def layer_inputs(model: nn.Module, names: list[str], batch_size: int, example: Tensor | None) -> dict[str, Tensor]:
    """A random input of each named layer at `batch_size`: Linear ones from their sizes, others (convs) from a forward
    of the model on `example` (or its `example_input_array`) repeated to the batch."""
    modules = {n: model.get_submodule(n) for n in names}
    gen = torch.Generator().manual_seed(0)
    if all(isinstance(m, nn.Linear) for m in modules.values()):
        return {n: torch.randn(batch_size, m.in_features, generator=gen).to(m.weight)
                for n, m in modules.items()}
    example = example if example is not None else getattr(model, "example_input_array", None)
    if not torch.is_tensor(example):
        convs = [n for n, m in modules.items() if not isinstance(m, nn.Linear)]
        raise ValueError(f"export(batch_size=...) times each layer at its input size, and {', '.join(convs)} take "
                         "inputs whose size depends on the image: pass example_input=<a tensor of one input> (e.g. "
                         "torch.zeros(1, 3, 32, 32)), or give the model an example_input_array")
    batch = example[:1].expand(batch_size, *example.shape[1:]).clone()
    shapes: dict[str, torch.Size] = {}

    def record(name: str) -> Callable:
        def hook(module: nn.Module, args: tuple) -> None:  # returns None: the layer's input is left as it is
            shapes.setdefault(name, args[0].shape)
        return hook

    hooks = [m.register_forward_pre_hook(record(n)) for n, m in modules.items()]
    try:
        with torch.no_grad():
            model(batch.to(next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    return {n: torch.randn(shapes[n], generator=gen).to(m.weight) for n, m in modules.items()}


def pair(dense: Callable[[], object], sparse: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median seconds per call of `dense` and `sparse`, timed in adjacent pairs of alternating order after a warm-up."""
    dense(), sparse()  # first calls allocate and pick kernels
    calls = max(1, int(TARGET_S / max(_once(dense), _once(sparse), 1e-7)))
    times: dict[Callable, list[float]] = {dense: [], sparse: []}
    for i in range(repeats):
        for f in (dense, sparse) if i % 2 else (sparse, dense):
            start = time.perf_counter()
            for _ in range(calls):
                f()
            times[f].append((time.perf_counter() - start) / calls)
    return statistics.median(times[dense]), statistics.median(times[sparse])


def _once(f: Callable[[], object]) -> float:
    start = time.perf_counter()
    f()
    return time.perf_counter() - start
