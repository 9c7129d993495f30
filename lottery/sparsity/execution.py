"""Sparse execution of low-density Linear and Conv2d layers: forward, input gradient and weight gradient on
survivors only.

A masked Linear layer still multiplies by its whole weight. Below some density (it depends on the layer's shape and
the machine: `crossover`), CSR kernels are cheaper: the forward is a CSR × dense product, the input gradient the
transposed one, and the weight gradient is computed at the survivors only (`torch.sparse.sampled_addmm`). That
gradient is either kept survivor-sized (`sparse_grad=True`: a sparse COO tensor, which `SurvivorsStep` hands to the
optimizer as it expects) or scattered into a dense one (pruned entries exactly zero, as the masker would leave them).
A Conv2d (groups 1, zero padding) runs a direct sparse convolution on lottery's C kernels: each survivor adds its
shifted input plane to its output plane, and the gradients walk the same survivors (`conv_crossover`; its weight
gradient is dense, zero at pruned entries).
Parameters, masks and checkpoints are unchanged: only the layer's `forward` is replaced, and restored by `make_dense`.
"""

from __future__ import annotations

import time
import types
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from lottery.sparsity import kernels
from lottery.sparsity.masking import preserves_zeros

_CROSSOVER_CACHE: dict[tuple[tuple[int, int], int, str, str, bool, bool], float] = {}


def _take(t: Tensor, flat: Tensor, c: bool) -> Tensor:
    """t.view(-1)[flat]: on lottery's C kernels (`c`), else torch's index_select (4x faster than [] here)."""
    return kernels.gather(t, flat) if c else t.reshape(-1).index_select(0, flat)


def _put(t: Tensor, flat: Tensor, values: Tensor, c: bool) -> None:
    """t.view(-1)[flat] = values, in place, as `_take`."""
    if c:
        kernels.scatter(t, flat, values)
    else:
        t.view(-1).scatter_(0, flat, values)
# torch warns on every CSR tensor made that its support is beta; the sparse path makes one per step, and the tests
# here pin its results against the dense path
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


class Pattern:
    """The survivors of a weight as CSR index arrays, and those of its transpose (for the input gradient)."""

    def __init__(self, mask: Tensor, sparse_grad: bool = False) -> None:
        self.weight_shape = tuple(mask.shape)  # a conv's [O, C, kh, kw] is the matrix [O, C*kh*kw] (unfold's order)
        mask = mask.reshape(mask.shape[0], -1)
        out_f, in_f = mask.shape
        rows, cols = mask.nonzero(as_tuple=True)  # row-major: CSR order, and the weight's own flat order
        # the weight gradient as a survivor-sized sparse tensor (else dense); a conv's is dense: a COO gradient of
        # the 2-D matrix does not fit its 4-D weight
        self.sparse_grad = sparse_grad and len(self.weight_shape) == 2
        self.coo = torch.stack([rows, cols])  # a coalesced COO tensor's indices: the same row-major order
        self.zeros = torch.zeros(rows.numel(), dtype=torch.float32, device=mask.device)  # sampled_addmm's pattern
        self.flat = rows * in_f + cols
        self.shape = (out_f, in_f)
        self.crow = torch.ops.aten._convert_indices_from_coo_to_csr(rows, out_f)
        self.col = cols.contiguous()  # a view of nonzero()'s pairs: the C kernels read it as a plain array
        order = torch.argsort(cols * out_f + rows)  # the transpose's row-major order
        self.t_perm = order
        self.t_crow = torch.ops.aten._convert_indices_from_coo_to_csr(cols[order], in_f)
        self.t_col = rows[order]
        self.density = rows.numel() / mask.numel()
        # the survivors' values as a SurvivorsStep last left them, valid while `key` is the weight's (data_ptr,
        # _version). A fused optimizer writes without bumping the version, so `keep` is only for whoever sees every
        # write of the weight: a SurvivorsStep (which drops the key after any step it did not make), `crossover`
        self.values: Tensor | None = None
        self.key: tuple[int, int] | None = None

    def keep(self, weight: Tensor, values: Tensor) -> None:
        """Have the forward read `values` as the survivors of `weight` until the weight's version changes (writes
        through `.data` and fused optimizers' are not seen: see above)."""
        self.values, self.key = values, (weight.data_ptr(), weight._version)

    def values_of(self, weight: Tensor) -> Tensor:
        """The survivors' values of `weight` in row-major order (kept by the last SurvivorsStep, else gathered)."""
        if self.key is not None and self.key == (weight.data_ptr(), weight._version):
            return self.values
        w = weight.detach()
        return _take(w, self.flat, kernels.usable(w) and w.is_contiguous())

    def csr(self, values: Tensor) -> Tensor:
        """W as CSR with these survivor values (row-major order)."""
        return torch.sparse_csr_tensor(self.crow, self.col, values, self.shape, check_invariants=False)

    def csr_t(self, values: Tensor) -> Tensor:
        """Wᵀ as CSR from the same survivor values."""
        return torch.sparse_csr_tensor(self.t_crow, self.t_col, values[self.t_perm], self.shape[::-1],
                                       check_invariants=False)

    def survivors_of(self, grad: Tensor) -> Tensor:
        """A weight gradient's survivor values in row-major order, from a dense or a sparse (`gradient`) one."""
        if not grad.is_sparse:
            return grad.reshape(-1).index_select(0, self.flat)
        if grad._indices().data_ptr() == self.coo.data_ptr():  # one backward pass: these survivors' own order
            return grad._values()
        return grad.coalesce()._values()  # several (accumulation): an uncoalesced sum, added up and sorted

    def dense_of(self, grad: Tensor) -> Tensor:
        """A sparse weight gradient (`gradient`, or a sum of them) as a dense one; torch's to_dense is ~10x slower."""
        if grad._indices().data_ptr() == self.coo.data_ptr():
            return self.scattered(grad._values())
        dense = torch.zeros(self.shape[0] * self.shape[1], dtype=grad.dtype, device=grad.device)
        rows, cols = grad._indices()
        return dense.scatter_add_(0, rows * self.shape[1] + cols, grad._values()).view(self.weight_shape)  # repeats

    def scattered(self, values: Tensor) -> Tensor:
        """The survivors' values in a tensor of the weight's shape, zero elsewhere."""
        dense = torch.zeros(self.shape[0] * self.shape[1], dtype=values.dtype, device=values.device)
        return dense.scatter_(0, self.flat, values).view(self.weight_shape)

    def gradient(self, values: Tensor) -> Tensor:
        """The weight gradient from its survivors' values: survivor-sized (sparse COO) or dense with zeros."""
        if not self.sparse_grad:
            return self.scattered(values)
        return torch.sparse_coo_tensor(self.coo, values, self.shape, is_coalesced=True, check_invariants=False)


class _SparseLinear(torch.autograd.Function):
    """y = x Wᵀ + b with W's survivors only; gradients for x, W (at survivors, zero elsewhere) and b."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, pattern: Pattern) -> Tensor:  # noqa: D102
        ctx.pattern, ctx.has_bias = pattern, bias is not None
        values = pattern.values_of(weight)  # contiguous survivors: a few KB, not the whole weight's cache lines
        ctx.c = kernels.usable(x, values, *([] if bias is None else [bias]))
        if ctx.c:  # lottery's kernels: x transposed and padded, W x + b, in one call
            xt, y = kernels.linear_forward(pattern.crow, pattern.col, values,
                                           None if bias is None else bias.contiguous(), x)
            ctx.xt, ctx.values = xt, values  # intermediates, not inputs: kept on ctx, as autograd allows
            return y
        xt = x.t().contiguous()  # a contiguous right side is faster, here and in the weight gradient
        y = torch.sparse.mm(pattern.csr(values), xt).t()
        if bias is not None:
            y = y + bias
        ctx.save_for_backward(xt, values)
        return y

    @staticmethod
    def backward(ctx, grad_y: Tensor):  # noqa: D102
        pattern: Pattern = ctx.pattern
        grad_x = grad_w = grad_b = None
        if ctx.c:  # one call: Wᵀ gy on the transpose's CSR, the weight gradient at survivors, the bias gradient
            need = ctx.needs_input_grad
            grad_x, grad_w, grad_b = kernels.linear_backward(
                pattern.crow, pattern.col, pattern.t_crow, pattern.t_col, pattern.t_perm, ctx.values, ctx.xt,
                grad_y, (need[0], need[1], ctx.has_bias and need[2]))
            return grad_x, None if grad_w is None else pattern.gradient(grad_w), grad_b, None
        xt, values = ctx.saved_tensors
        if ctx.needs_input_grad[0]:
            grad_x = torch.sparse.mm(pattern.csr_t(values), grad_y.t().contiguous()).t()
        if ctx.needs_input_grad[1]:
            zeros = pattern.zeros if pattern.zeros.dtype == values.dtype else torch.zeros_like(values)
            # x as the transpose of its contiguous transpose: sampled_addmm copies a row-major x first (~35 us)
            at = torch.sparse.sampled_addmm(pattern.csr(zeros), grad_y.t().contiguous(), xt.t(), beta=0.0)
            grad_w = pattern.gradient(at.values())
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_y.sum(0)
        return grad_x, grad_w, grad_b, None


def _sparse_forward(self: nn.Linear, x: Tensor) -> Tensor:
    if x.dim() == 2:  # no reshape: each is an autograd node more in both passes
        return _SparseLinear.apply(x, self.weight, self.bias, self._lottery_pattern)
    flat = x.reshape(-1, self.in_features)
    y = _SparseLinear.apply(flat, self.weight, self.bias, self._lottery_pattern)
    return y.reshape(*x.shape[:-1], self.out_features)


Geometry = tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]  # kernel, stride, pad, dilation


def conv_refusal(conv: nn.Conv2d) -> str | None:
    """Why `conv` cannot run on a sparse convolution kernel (None: it can)."""
    if conv.groups != 1:
        return f"groups={conv.groups} (a grouped or depthwise conv is not one matrix product)"
    if isinstance(conv.padding, str):
        return f"padding={conv.padding!r} (give the padding as numbers)"
    if conv.padding_mode != "zeros":
        return f"padding_mode={conv.padding_mode!r} (unfold pads with zeros only)"
    return None


def conv_geometry(conv: nn.Module) -> Geometry:
    """A conv's (kernel_size, stride, padding, dilation), as the sparse kernels take them."""
    return conv.kernel_size, conv.stride, conv.padding, conv.dilation


def conv_out_size(h: int, w: int, geometry: Geometry) -> list[int]:
    """A conv's output height and width (torch.nn.Conv2d's formula)."""
    return [(s + 2 * p - d * (k - 1) - 1) // st + 1 for s, k, st, p, d in zip((h, w), *geometry)]


class _SparseConv2d(torch.autograd.Function):
    """conv2d(x, W, b) with W's survivors only (groups 1, zero padding): lottery's direct sparse convolution, its
    input gradient and its weight gradient at the survivors (dense, zero elsewhere), all on the C kernels."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, pattern: Pattern,  # noqa: D102
                geometry: Geometry) -> Tensor:
        values, x = pattern.values_of(weight), x.contiguous()
        y = kernels.sparse_conv2d(x, pattern.crow, pattern.col, values, None if bias is None else bias.contiguous(),
                                  weight.shape[0], conv_out_size(*x.shape[2:], geometry), *geometry)
        ctx.pattern, ctx.geometry, ctx.has_bias = pattern, geometry, bias is not None
        ctx.x, ctx.values = x, values  # intermediates (x may be a contiguous copy): kept on ctx, as autograd allows
        return y

    @staticmethod
    def backward(ctx, grad_y: Tensor):  # noqa: D102
        pattern, need, gy = ctx.pattern, ctx.needs_input_grad, grad_y.contiguous()
        grad_x, grad_w = kernels.sparse_conv2d_grads(ctx.x, gy, pattern.crow, pattern.col, ctx.values, *ctx.geometry,
                                                     (need[0], need[1]))
        grad_b = gy.sum((0, 2, 3)) if ctx.has_bias and need[2] else None
        return grad_x, None if grad_w is None else pattern.gradient(grad_w), grad_b, None, None


def _sparse_conv_forward(self: nn.Conv2d, x: Tensor) -> Tensor:
    if not kernels.usable(x, self.weight):  # no C kernel for these (dtype, device): the masked weight, dense
        return self._conv_forward(x, self.weight, self.bias)
    if x.dim() == 3:  # unbatched
        return _SparseConv2d.apply(x[None], self.weight, self.bias, self._lottery_pattern, conv_geometry(self))[0]
    return _SparseConv2d.apply(x, self.weight, self.bias, self._lottery_pattern, conv_geometry(self))


def make_sparse(layer: nn.Linear | nn.Conv2d, mask: Tensor, sparse_grad: bool = False) -> None:
    """Run `layer` on the survivors of `mask` from now on (its parameters unchanged); with `sparse_grad`, a Linear
    layer's weight gradient is a survivor-sized sparse tensor, for a `SurvivorsStep` to hand to the optimizer (a
    Conv2d's stays dense). A Conv2d needs lottery's C kernels and `conv_refusal` to have no objection."""
    conv = isinstance(layer, nn.Conv2d)
    if conv and conv_refusal(layer) is not None:
        raise ValueError(f"{layer} cannot run sparse: {conv_refusal(layer)}")
    _densify_grad(layer)
    layer.__dict__.pop("_lottery_deciding", None)
    layer._lottery_pattern = Pattern(mask.to(layer.weight.device).bool(), sparse_grad)
    layer.forward = types.MethodType(_sparse_conv_forward if conv else _sparse_forward, layer)


def make_dense(layer: nn.Linear | nn.Conv2d) -> None:
    """Undo `make_sparse`."""
    _densify_grad(layer)
    layer.__dict__.pop("forward", None)
    layer.__dict__.pop("_lottery_pattern", None)
    layer.__dict__.pop("_lottery_deciding", None)


def _densify_grad(layer: nn.Module) -> None:
    """A survivor-sized gradient pending when the survivors change (SET, GMP: the masks move after the backward
    pass) becomes dense, so the step reads it by position, not in the old survivors' order."""
    grad = getattr(layer.weight, "grad", None)
    if grad is not None and grad.is_sparse:
        layer.weight.grad = layer._lottery_pattern.dense_of(grad)


def is_sparse(layer: nn.Module) -> bool:
    """True when `make_sparse` set this layer to run on its survivors."""
    return "_lottery_pattern" in layer.__dict__


@contextmanager
def dense_gradients(model: nn.Module) -> Iterator[nn.Module]:
    """Within this block the sparse layers of `model` leave dense weight gradients (for code that reads `.grad`
    outside a training step, such as a pruner's scores)."""
    patterns = [m._lottery_pattern for m in model.modules() if is_sparse(m)]
    saved = [p.sparse_grad for p in patterns]
    for p in patterns:
        p.sparse_grad = False
    try:
        yield model
    finally:
        for p, was in zip(patterns, saved):
            p.sparse_grad = was


DENSITIES = (0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01)  # where `crossover` looks, densest first
# the sparse path must be this much faster to be chosen: at a near tie a repeated measurement may choose either way,
# and two runs whose paths differ differ in their last bits (summation order)
MARGIN = 0.95
WARM_UP_S = 0.05  # of both paths before the first measurement of a shape
MEASURE_S, MAX_REPEATS = 0.04, 100  # pairs per measurement: as many as take about MEASURE_S, up to MAX_REPEATS


def crossover(shape: tuple[int, int], batch: int, device: torch.device | str = "cpu", repeats: int = 15,
              sparse_grad: bool = True, bias: bool = True) -> float:
    """The density below which the sparse path (forward and both gradients) beats masked dense by `MARGIN` for a
    Linear weight of `shape` (with a `bias` or without) at `batch` rows on `device`, measured once (adjacent pairs at
    a few densities: at least `repeats` of them, more where a pair is short) and cached. `sparse_grad`: the weight
    gradient as a run will hand it on (see `make_sparse`)."""
    key = (tuple(shape), int(batch), str(device), kernels.name(), sparse_grad, bias)  # torch's kernels differ
    if key in _CROSSOVER_CACHE:
        return _CROSSOVER_CACHE[key]
    out_f, in_f = shape
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, in_f, generator=gen).to(device)
    b = nn.Parameter(torch.randn(out_f, generator=gen).to(device)) if bias else None
    found, warm = 0.0, False
    for density in DENSITIES:
        weight = nn.Parameter(torch.randn(out_f, in_f, generator=gen).to(device))
        mask = torch.rand(out_f, in_f, generator=gen).to(device) < density
        pattern = Pattern(mask, sparse_grad)
        pattern.keep(weight, pattern.values_of(weight))  # as a SurvivorsStep leaves it between steps
        if not warm:  # a cold process (clock, caches, first calls) misjudged a 100->10 layer's crossover as 0.4
            start, calls = time.perf_counter(), 0
            while time.perf_counter() - start < WARM_UP_S:
                _pair(x, weight, b, mask, pattern, 1)
                calls += 1
            warm = True
            # about MEASURE_S a measurement, so that a fast layer's median rests on more than 15 pairs; a large layer
            # keeps the given number (each pair is long). It did not make LeNet-300-100's crossovers stable: 33 of 39
            # fresh processes read 0.4, 0.3, never, as 5 of 6 did with 15 pairs; the rest read lower
            per_pair = (time.perf_counter() - start) / (2 * calls)
            repeats = max(repeats, min(MAX_REPEATS, int(MEASURE_S / per_pair)))
        # a win counts when a second measurement agrees: one noisy sample should not decide a whole run's path
        if all(sparse_t < MARGIN * dense_t for dense_t, sparse_t in
               (_pair(x, weight, b, mask, pattern, repeats) for _ in range(2))):
            found = density
            break
    _CROSSOVER_CACHE[key] = found
    return found


def _pair(x: Tensor, weight: nn.Parameter, bias: nn.Parameter | None, mask: Tensor, pattern: Pattern,
          repeats: int) -> tuple[float, float]:
    """Median seconds of a dense and a sparse training pass of one layer, measured alternately (adjacent pairs):
    forward and backward from gradients set to None (as a training step starts), and on the dense side the pruned
    gradients zeroed (the Masker's work, which the sparse path has none of)."""
    masked = (weight * mask).detach().requires_grad_()
    keep = mask.to(weight.dtype)  # as the Masker holds it

    def dense() -> None:
        nn.functional.linear(x, masked, bias).sum().backward()
        masked.grad.mul_(keep)

    dense_t, sparse_t = _medians([dense, lambda: _SparseLinear.apply(x, weight, bias, pattern).sum().backward()],
                                 repeats, [masked, weight, bias])
    return dense_t, sparse_t


def _medians(passes: list[Callable[[], None]], repeats: int, params: list[Tensor | None]) -> list[float]:
    """Median seconds of each training pass, the passes run in turn `repeats` times after one untimed round, each
    from the gradients of `params` set to None (as a training step starts)."""
    times: list[list[float]] = [[] for _ in passes]
    for i in range(repeats + 1):
        for t, one in zip(times, passes):
            for p in params:
                if p is not None:
                    p.grad = None
            start = time.perf_counter()
            one()
            if i:  # the first round warms up
                t.append(time.perf_counter() - start)
    return [sorted(t)[repeats // 2] for t in times]


CONV_DENSITIES = (0.02, 0.2, 0.5)  # where `conv_crossover` times the sparse path (its cost is near linear in them)
CONV_BATCH = 16  # at most: both paths' costs grow with the batch about alike, and a conv pass is slow
CONV_ELEMENTS = 1 << 21  # and at most this many input values (an ImageNet-sized input is timed one at a time)


def conv_crossover(conv: nn.Conv2d, size: tuple[int, int, int], batch: int, device: torch.device | str = "cpu",
                   input_grad: bool = True, repeats: int = 7) -> float:
    """The density below which the sparse path (forward and both gradients, `input_grad`: with the input's) beats
    masked dense by `MARGIN` for `conv`'s shape on `batch` inputs of `size` (C, H, W; timed at no more than
    CONV_BATCH of them, nor more than CONV_ELEMENTS values) on `device`, measured once and cached. The sparse path
    is timed at CONV_DENSITIES (in turn with the dense one, medians), and where the line through those times first
    crosses MARGIN times the dense time is returned (0: never, as on a device without lottery's C kernels; the
    densest of them when it wins at all: nothing beyond is measured)."""
    if torch.device(device).type != "cpu" or kernels.library() is None:
        return 0.0  # no sparse conv kernel there
    batch = max(1, min(batch, CONV_BATCH, CONV_ELEMENTS // max(1, size[0] * size[1] * size[2])))
    key = ("conv", conv.in_channels, conv.out_channels, conv_geometry(conv), conv.bias is not None, tuple(size),
           batch, str(device), kernels.name(), input_grad)
    if key in _CROSSOVER_CACHE:
        return _CROSSOVER_CACHE[key]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *size, generator=gen).to(device).requires_grad_(input_grad)
    weight = nn.Parameter(torch.randn(conv.weight.shape, generator=gen).to(device))
    bias = nn.Parameter(torch.randn(conv.out_channels, generator=gen).to(device)) if conv.bias is not None else None
    geometry = conv_geometry(conv)
    masks = [torch.rand(conv.weight.shape, generator=gen).to(device) < d for d in CONV_DENSITIES]
    patterns = [Pattern(m) for m in masks]
    for pattern in patterns:
        pattern.keep(weight, pattern.values_of(weight))
    masked = (weight * masks[0]).detach().requires_grad_()
    keep = masks[0].to(weight.dtype)

    def dense() -> None:
        nn.functional.conv2d(x, masked, bias, geometry[1], geometry[2], geometry[3]).sum().backward()
        masked.grad.mul_(keep)

    passes = [dense, *(lambda p=p: _SparseConv2d.apply(x, weight, bias, p, geometry).sum().backward()
                       for p in patterns)]
    dense_t, *sparse_t = _medians(passes, repeats, [x, masked, weight, bias])
    _CROSSOVER_CACHE[key] = found = crossing(MARGIN * dense_t, CONV_DENSITIES, sparse_t)
    return found


def crossing(goal: float, densities: Sequence[float], times: Sequence[float]) -> float:
    """Where the line through (density, time) points, densest last, first rises to `goal` (3 decimals): 0 when the
    sparsest is not below it, the densest density when none reaches it (nothing beyond is measured)."""
    if times[0] >= goal:
        return 0.0
    for d0, t0, d1, t1 in zip(densities, times, densities[1:], times[1:]):
        if t0 < goal <= t1:
            return float(f"{d0 + (goal - t0) * (d1 - d0) / (t1 - t0):.3f}")
    return float(densities[-1])


def _deciding_conv_forward(self: nn.Conv2d, x: Tensor) -> Tensor:
    """A conv under sparse_below="auto" whose input size was unknown: at its first forward with gradients on, its
    crossover measured for this input, and the layer made sparse or left dense (said in `decisions`) before it
    computes."""
    if not torch.is_grad_enabled():  # e.g. validation first: no gradient would be timed as training takes them
        return nn.Conv2d.forward(self, x)
    mask, sparse_grad, batch = self.__dict__.pop("_lottery_deciding")
    self.__dict__.pop("forward", None)
    self._lottery_input = (tuple(x.shape[-3:]), bool(x.requires_grad))
    self._lottery_decided = _conv_decision(self, mask, sparse_grad, "auto", batch)
    return self.forward(x)


def _conv_problem(conv: nn.Conv2d) -> str | None:
    """Why `conv` cannot train on the sparse path here (None: it can)."""
    problem = conv_refusal(conv)
    if problem is None and (kernels.library() is None or conv.weight.device.type != "cpu"
                            or conv.weight.dtype != torch.float32):
        problem = "a conv's sparse path runs on lottery's C kernels: float32 on CPU, with a C compiler"
    return problem


def _conv_decision(conv: nn.Conv2d, mask: Tensor, sparse_grad: bool, below: float | str, batch: int) -> str:
    """Make `conv` sparse or dense for `below` (auto: its measured crossover for the input it last saw); in words."""
    density = float(mask.float().mean())
    problem = _conv_problem(conv)
    if problem is not None:
        make_dense(conv)
        return f"dense ({problem})"
    if below == "auto" and density >= CONV_DENSITIES[-1]:  # no crossover measured could be above it
        make_dense(conv)
        return f"dense (density {density:.4f} >= {CONV_DENSITIES[-1]:g}, the densest a conv's crossover measures)"
    if below == "auto":
        size, input_grad = conv._lottery_input
        limit = conv_crossover(conv, size, batch, conv.weight.device, input_grad)
        how = f"auto crossover at input {list(size)}"
    else:
        limit, how = float(below), "sparse_below"
    if density < limit:
        make_sparse(conv, mask, sparse_grad)
        return f"sparse (density {density:.4f} < {limit:g}, {how})"
    make_dense(conv)
    return f"dense (density {density:.4f} >= {limit:g}, {how})"


def decisions(model: nn.Module, names: Iterable[str] | None = None) -> dict[str, str]:
    """What the convs that decided at their first forward (sparse_below="auto") chose since the last call: of every
    module, or only of these weights' (names as `apply_sparse` gives them)."""
    modules = (model.named_modules() if names is None else
               ((n.rpartition(".")[0], model.get_submodule(n.rpartition(".")[0])) for n in names))
    said = {}
    for name, module in modules:
        text = module.__dict__.pop("_lottery_decided", None)
        if text is not None:
            said[f"{name}.weight" if name else "weight"] = text
    return said


def apply_sparse(model: nn.Module, masks: Mapping[str, Tensor], below: float | str, batch: int,
                 sparse_grad: bool = False) -> dict[str, str]:
    """Make each masked Linear and Conv2d layer of `model` sparse when its density is below `below` (a number, or
    "auto": the measured crossover of its shape); dense otherwise. Returns, per layer, what it runs and why. Under
    "auto" a conv whose input size has not been seen decides at its first forward (see `decisions`)."""
    said = {}
    for name, module in model.named_modules():
        key = f"{name}.weight" if name else "weight"
        if not isinstance(module, (nn.Linear, nn.Conv2d)) or key not in masks:
            continue
        mask = masks[key]
        if isinstance(module, nn.Conv2d):
            if below == "auto" and "_lottery_input" not in module.__dict__ and _conv_problem(module) is None:
                make_dense(module)
                module._lottery_deciding = (mask, sparse_grad, batch)
                module.forward = types.MethodType(_deciding_conv_forward, module)
                said[key] = "decides at its first forward (auto: the crossover depends on the input's size)"
            else:
                said[key] = _conv_decision(module, mask, sparse_grad, below, batch)
            continue
        density = float(mask.float().mean())
        limit = (crossover(tuple(mask.shape), batch, module.weight.device, sparse_grad=sparse_grad,
                           bias=module.bias is not None) if below == "auto" else float(below))
        how = "auto crossover" if below == "auto" else "sparse_below"
        if density < limit:
            make_sparse(module, mask, sparse_grad)
            said[key] = f"sparse (density {density:.4f} < {limit:g}, {how})"
        else:
            make_dense(module)
            said[key] = f"dense (density {density:.4f} >= {limit:g}, {how})"
    for key in masks:
        if key not in said:  # e.g. a Conv1d's weight, attention's in_proj_weight, an embedding
            said[key] = "dense (only the weights of Linear and Conv2d layers have a sparse path)"
    return said


class _Held:
    """A weight's per-weight optimizer state held survivor-sized between steps, and the whole tensors it came from."""

    def __init__(self, flat: Tensor, whole: dict[str, Tensor], c: bool) -> None:
        self.flat, self.whole, self.c = flat, whole, c
        self.compact = {k: _take(v, flat, c) for k, v in whole.items()}

    def current(self, state: Mapping[str, object] | None) -> bool:
        """True while the optimizer's state is still these compact tensors (not replaced, e.g. by load_state_dict)."""
        return state is not None and all(state.get(k) is v for k, v in self.compact.items())

    def put_back(self, state: dict[str, object]) -> None:
        """Write the survivors' state into the whole tensors and hand those back to the optimizer."""
        for k, whole in self.whole.items():
            _put(whole, self.flat, self.compact[k], self.c)
            state[k] = whole


class SurvivorsStep:
    """An optimizer step over the survivors of sparse layers only: their weights, gradients and per-weight state
    are swapped for survivor-sized tensors for the step, and the updated weights scattered back after it (pruned
    entries untouched).

    For optimizers whose update is elementwise (SGD, Adam, AdamW, RMSprop, Adagrad: `lottery.sparsity.masking`'s
    ZERO_PRESERVING), this is the same update at every survivor and none at a pruned entry (zero gradient and zero
    state give zero there), at the cost of the survivors instead of the whole weight. Any other optimizer, a fused
    one where lottery's C kernels do not apply (CUDA, no compiler) and the first step (which makes the optimizer's
    state) get a survivor-sized sparse gradient back as the dense one.

    On lottery's C kernels the per-weight state stays survivor-sized between steps, and so do the weights' values
    the sparse forward reads (`Pattern.values_of`): a step then touches a few KB instead of gathering and scattering
    whole tensors (LeNet-300-100's 784x300 weight and its two Adam moments are 2.8 MB, beyond a core's L2). The
    whole state is written back before anyone else may read it: `expand` (by the optimizer's `state_dict`, a new
    pattern, `remove`, and whoever changes the masks or the state), and it is dropped when `load_state_dict`
    replaces it.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model, self.optimizer = model, optimizer
        # a fused kernel (CPU, CUDA) goes through a whole weight's zeros about as fast as torch's index_select and
        # scatter_ gather and scatter its survivors (LeNet-300-100's 784x300 at 3.6%: 271 against 280 us on a quiet
        # machine), so on torch's kernels a fused step gets the dense gradient. On lottery's C kernels, which gather
        # and scatter in one call each, a compacted fused step measured 256 us against 304 (gather + step, median)
        self.compact = preserves_zeros(optimizer)
        self.fused = any(g.get("fused") for g in optimizer.param_groups)
        self._swapped: list[tuple[nn.Parameter, Tensor, Tensor, bool, Pattern]] = []  # p, whole, grad, c, pattern
        self.held: dict[nn.Parameter, _Held] = {}
        self.handles = [optimizer.register_step_post_hook(self._scatter),
                        optimizer.register_state_dict_pre_hook(lambda opt: self.expand()),
                        optimizer.register_load_state_dict_pre_hook(lambda opt, state: self.held.clear())]
        self.refresh()

    def refresh(self) -> None:
        """Find the sparse layers this optimizer steps (again after `apply_sparse`), so a step scans no other module."""
        self.expand()  # state compacted on the old survivors goes back first
        owned = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
        self.layers = [m for m in self.model.modules() if is_sparse(m) and id(m.weight) in owned]

    @torch.no_grad()
    def expand(self) -> None:
        """Hand the optimizer its whole per-weight state again (written back from the survivors'); the next step
        compacts it anew."""
        for p, held in self.held.items():
            state = self.optimizer.state.get(p)
            if held.current(state):
                held.put_back(state)
        self.held.clear()

    def remove(self) -> None:
        """Stop compacting this optimizer's steps, its state whole again."""
        self.expand()
        for handle in self.handles:
            handle.remove()

    @torch.no_grad()
    def restore(self) -> None:
        """Undo a `gather` whose step never came (a GradScaler skips the step of a batch with inf gradients): the
        whole weights and gradients back, and nothing written."""
        for p, full, grad, c, _ in self._swapped:
            p.data, p.grad = full, grad
            if not c:
                self.held.pop(p).put_back(self.optimizer.state[p])
        self._swapped = []

    @torch.no_grad()
    def gather(self) -> None:
        """Swap the sparse layers' weights, gradients and state for their survivors (the update comes next)."""
        self.restore()  # an earlier gather without its step
        optimizer = self.optimizer
        for module in self.layers:
            pattern, p = module._lottery_pattern, module.weight
            grad = p.grad
            if grad is None:
                continue
            state = optimizer.state.get(p)
            held = self.held.get(p)
            if held is not None and (held.flat is not pattern.flat or not held.current(state)):
                if held.current(state):  # compacted on other survivors: back into the whole tensors first
                    held.put_back(state)
                del self.held[p]  # else replaced behind our back: what the optimizer holds now is the truth
                held = None
            if held is None:
                whole = [p.data, *(v for v in (state or {}).values() if isinstance(v, Tensor) and v.dim())]
                c = kernels.usable(*whole) and all(t.is_contiguous() for t in whole)
                if not self.compact or not state or (self.fused and not c):
                    # the first step makes the optimizer's state, full-sized, on the whole weight; other optimizers
                    # read whole tensors
                    if grad.is_sparse:
                        p.grad = pattern.dense_of(grad)
                    continue
                held = _Held(pattern.flat, {k: v for k, v in state.items()
                                            if isinstance(v, Tensor) and v.shape == p.shape}, c)
                state.update(held.compact)
                self.held[p] = held
            full, values = p.data, pattern.values_of(p)  # p itself: p.data has a version counter of its own
            p.data = values
            p.grad = pattern.survivors_of(grad)
            self._swapped.append((p, full, grad, held.c, pattern))

    @torch.no_grad()
    def _scatter(self, optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        for p, full, grad, c, pattern in self._swapped:
            values = p.data
            _put(full, pattern.flat, values, c)
            p.data, p.grad = full, grad
            pattern.keep(p, values)
            if not c:  # torch's kernels: the whole state back at every step, as it always was
                self.held.pop(p).put_back(optimizer.state[p])
        if len(self._swapped) < len(self.layers):
            swapped = {id(entry[0]) for entry in self._swapped}
            for module in self.layers:
                if id(module.weight) not in swapped:  # stepped whole (or not at all): what the forward kept may be stale
                    module._lottery_pattern.key = None
        self._swapped = []
