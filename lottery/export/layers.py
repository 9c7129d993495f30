"""Inference layers of an exported ticket: Linear and Conv2d with CSR weights (CPU), and 2:4 semi-structured Linear."""

from __future__ import annotations

import copy
import warnings

import torch
from torch import Tensor, nn

from lottery.sparsity import kernels
from lottery.sparsity.execution import conv_geometry, conv_out_size, conv_refusal


def to_csr(weight: Tensor) -> Tensor:
    """`weight` (2-D, zeros where pruned) as a CSR tensor of its non-zero entries; a CSR tensor is returned as it is."""
    if weight.layout == torch.sparse_csr:
        return weight
    with warnings.catch_warnings():  # torch calls its CSR support beta on first use; the tests here pin its results
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return weight.detach().to_sparse_csr()


def c_parts(layer: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None] | None:
    """A CSR layer's arrays and bias as lottery's C kernels read them, or None where those do not apply to `x`
    (float32 on CPU only, and no gradient to `x` asked for: the C kernels have no backward). Found again only when
    the weight or bias is another tensor (after `.to()`, `load`), as reading them costs ~3 us a call."""
    if x.dtype != torch.float32 or not x.is_cpu or (x.requires_grad and torch.is_grad_enabled()):
        return None
    if kernels.library() is None:
        return None
    w, bias, seen = layer.weight, layer.bias, layer.__dict__.get("_parts_of")
    if seen is None or seen[0] is not w or seen[1] is not bias:
        layer.__dict__["_parts_of"] = (w, bias)
        ok = kernels.usable(w) and w.crow_indices().dtype == torch.int64 and (bias is None or kernels.usable(bias))
        layer.__dict__["_parts"] = (w.crow_indices(), w.col_indices(), w.values().contiguous(),
                                    None if bias is None else bias.contiguous()) if ok else None
    return layer.__dict__["_parts"]


class _KernelLayer(nn.Module):
    """A CSR layer whose C-kernel arrays are cached in its `__dict__` (see `c_parts`)."""

    CACHES = ("_parts_of", "_parts", "_one")

    def __getstate__(self) -> dict:
        # a copy binds its own arrays: the cached ones (and the raw pointers bound into `_one`) are the original's
        # memory, which a deep copy would otherwise keep reading after the original changed or was freed
        return {k: v for k, v in super().__getstate__().items() if k not in self.CACHES}

    def __deepcopy__(self, memo: dict) -> _KernelLayer:
        # torch cannot deep-copy a CSR tensor (it has no storage to copy): its arrays are copied here instead
        for t in self._buffers.values():
            if t is not None and t.layout == torch.sparse_csr and id(t) not in memo:
                memo[id(t)] = torch.sparse_csr_tensor(t.crow_indices().clone(), t.col_indices().clone(),
                                                      t.values().clone(), t.shape, check_invariants=False)  # copies
        twin = self.__class__.__new__(self.__class__)
        memo[id(self)] = twin
        twin.__setstate__(copy.deepcopy(self.__getstate__(), memo))
        return twin


class CSRLinear(_KernelLayer):
    """A Linear layer whose weight is a CSR sparse matrix (survivors only): y = x Wᵀ + b."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        # buffers so that .to() moves them; the CSR weight is not persistent: safetensors holds no sparse tensors, so
        # `lottery.export.save` writes its index arrays and values itself
        self.register_buffer("weight", to_csr(weight), persistent=False)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, x: Tensor, relu: bool = False) -> Tensor:
        """x Wᵀ + b, then max(0, ·) where `relu` (the ReLU that follows, computed in this call: see `Chain`)."""
        one = self.__dict__.get("_one")
        # batch-1 inference, where the layer's few microseconds are mostly the call: only what can change between
        # calls is checked (~0.5 us), then one C call (lottery.sparsity.kernels.bound_mv)
        if (one is not None and x.shape == one[2] and x.dtype is torch.float32 and x.is_cpu and not x.requires_grad
                and x.is_contiguous() and self._buffers["weight"] is one[0] and self._buffers["bias"] is one[1]
                and kernels.generation == one[4]):
            return one[3](x, relu)
        parts = c_parts(self, x)
        if parts is not None:  # lottery's C kernels (lottery.sparsity.kernels)
            if x.dim() == 2 and x.shape[0] == 1 and x.shape[1] == self.in_features:
                if one is None or one[0] is not self.weight or one[1] is not self.bias or one[4] != kernels.generation:
                    self.__dict__["_one"] = one = (self.weight, self.bias, x.shape, kernels.bound_mv(*parts),
                                                   kernels.generation)
                return one[3](x.contiguous(), relu)
            _, y = kernels.linear_forward(*parts, x.reshape(-1, self.in_features))  # the sparse path's one call
            y = y.reshape(*x.shape[:-1], self.out_features)
        else:
            y = self._on_torch(x)
        return y.relu_() if relu else y

    def _on_torch(self, x: Tensor) -> Tensor:
        """The product on torch's CSR kernels (any dtype and device, and differentiable in `x`)."""
        flat = x.reshape(-1, self.in_features)
        if x.dim() == 2 and x.shape[0] == 1:  # one example: one CSR matrix-vector call that adds the bias too
            y = torch.mv(self.weight, x[0]) if self.bias is None else torch.addmv(self.bias, self.weight, x[0])
            return y.unsqueeze(0)
        # (out × in, sparse) @ (in × N), a contiguous right side (1.4x faster than the transposed view)
        y = torch.sparse.mm(self.weight, flat.t().contiguous()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.weight._nnz()}"


class Chain(nn.Sequential):
    """An nn.Sequential whose ReLU right after a CSRLinear runs in that layer's call (`relu=True`): at batch 1 a
    ReLU module's call (~2.5 us here) is a large part of a small sparse layer's time. Modules, names and state are
    the Sequential's. Where a hook could tell (a hook on the ReLU, a forward hook on the layer, global ones), the two
    are called as usual."""

    def forward(self, x: Tensor) -> Tensor:
        modules = tuple(self._modules.values())
        plan = self.__dict__.get("_plan")
        if plan is None or plan[0] != modules:  # modules replaced since: planned again
            plan = self.__dict__["_plan"] = (modules, _fused(modules))
        for module, relu in plan[1]:
            if relu is None:
                x = module(x)
            elif relu._forward_hooks or relu._forward_pre_hooks or module._forward_hooks or _global_hooks():
                x = relu(module(x))  # a hook must see the ReLU called, or the layer's own output before it
            else:
                x = module(x, relu=True)
        return x


def _fused(modules: tuple[nn.Module, ...]) -> list[tuple[nn.Module, nn.Module | None]]:
    """What `Chain` calls: each module, paired with the ReLU that follows a CSRLinear (then not called itself)."""
    plan, i = [], 0
    while i < len(modules):
        pair = i + 1 < len(modules) and type(modules[i]) is CSRLinear and type(modules[i + 1]) is nn.ReLU
        plan.append((modules[i], modules[i + 1] if pair else None))
        i += 2 if pair else 1
    return plan


def _global_hooks() -> bool:
    """Whether forward hooks for every module are registered (nn.modules.module.register_module_forward_hook)."""
    module = nn.modules.module
    # private to torch: read with defaults, so that a torch that renames them costs the fusion's check, not the call
    return bool(getattr(module, "_global_forward_hooks", None) or getattr(module, "_global_forward_pre_hooks", None))


def relu_after(model: nn.Module, name: str) -> str | None:
    """The name of the nn.ReLU right after layer `name` in a plain nn.Sequential (the pair a `Chain` fuses), else
    None."""
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    if type(parent) is not nn.Sequential:
        return None
    keys = list(parent._modules)
    after = keys.index(leaf) + 1
    if after < len(keys) and type(parent._modules[keys[after]]) is nn.ReLU:
        return f"{parent_name}.{keys[after]}".lstrip(".")
    return None


def chain_relus(model: nn.Module) -> dict[str, str]:
    """Make each plain nn.Sequential of `model` (itself included) that has a CSRLinear followed by a ReLU a `Chain`,
    in place: {CSRLinear's name: the name of the ReLU now computed in its call}."""
    fused = {name: relu for name, m in model.named_modules()
             if type(m) is CSRLinear and (relu := relu_after(model, name)) is not None}
    for name in fused:  # the same object: its parent, hooks and state are unchanged
        model.get_submodule(name.rpartition(".")[0]).__class__ = Chain
    return fused


csr_refusal = conv_refusal  # the same conditions as the sparse path's (its old name, kept)


class CSRConv2d(_KernelLayer):
    """A Conv2d (groups=1, zero padding) computed as its CSR weight [out, in·kh·kw] times the unfolded input."""

    def __init__(self, conv: nn.Conv2d, weight: Tensor | None = None, bias: Tensor | None = None) -> None:
        super().__init__()
        problem = csr_refusal(conv)
        if problem is not None:
            raise ValueError(f"CSRConv2d cannot compute this conv: {problem}")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation = conv.padding, conv.dilation
        weight = conv.weight.detach() if weight is None else weight
        if weight.layout != torch.sparse_csr:
            weight = weight.reshape(self.out_channels, -1)  # [out, in, kh, kw] rows in unfold's (in, kh, kw) order
        self.register_buffer("weight", to_csr(weight), persistent=False)
        if bias is None and conv.bias is not None:
            bias = conv.bias.detach().clone()
        self.register_buffer("bias", bias)

    def forward(self, x: Tensor) -> Tensor:
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        n, _, h, w = x.shape
        size = conv_out_size(h, w, conv_geometry(self))
        parts = c_parts(self, x)
        if parts is not None:  # a direct sparse convolution: no unfolded copy of the input (lottery.sparsity.kernels)
            y = kernels.sparse_conv2d(x.contiguous(), *parts, self.out_channels, size, self.kernel_size, self.stride,
                                      self.padding, self.dilation)
            return y[0] if unbatched else y
        cols = nn.functional.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)  # N, C·kh·kw, L
        # one product per sample, each with a contiguous (C·kh·kw) × L right side as unfold gives it: measured 1.6x
        # faster at batch 8 and 60 than one product with the batch moved into the columns (a copy of every column)
        y = torch.stack([torch.sparse.mm(self.weight, cols[i]) for i in range(n)])
        if self.bias is not None:
            y = y + self.bias[:, None]
        y = y.reshape(n, self.out_channels, *size)
        return y[0] if unbatched else y

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, nnz={self.weight._nnz()}")


def semi_structured(name: str, module: nn.Linear) -> nn.Linear:
    """The layer with its weight in torch's 2:4 semi-structured form (the mask must be 2:4)."""
    w = module.weight.detach()
    if bool((w.reshape(-1, 4) != 0).sum(1).gt(2).any()):
        raise ValueError(f"{name}.weight is not 2:4 sparse (some block of 4 has more than 2 non-zero weights): make the "
                         "ticket with structure='2:4'")
    module.weight = nn.Parameter(torch.sparse.to_sparse_semi_structured(w), requires_grad=False)
    return module


def set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    """Put `module` at dotted `name` inside `root`."""
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)
