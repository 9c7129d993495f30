"""`compact`: smaller dense layers without the neurons and channels a ticket disconnected, found with torch.fx.

A unit (a Linear layer's output neuron, a Conv2d's output channel) whose incoming weights are all pruned outputs
a constant (its bias through the per-unit ops that follow); one whose outgoing weights are all pruned is unused.
Both are removed from the layer and from the next one's inputs. A constant that is not zero is folded into the next
layer's bias where that is exact: the next layer is Linear (after a flatten, a channel is H·W input features), or a
Conv2d without padding. Before a padded conv the constant map meets zero padding at the border, so the channel stays.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from lottery.export.layers import set_module

# elementwise ops that may sit between two layers of a chain `compact` shrinks: f(constant) is a constant
ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.ELU, nn.Identity,
                       nn.Dropout, nn.Hardtanh, nn.Softplus)
ELEMENTWISE_FUNCTIONS = (torch.relu, torch.tanh, torch.sigmoid, nn.functional.relu, nn.functional.gelu,
                         nn.functional.silu, nn.functional.leaky_relu, nn.functional.elu, nn.functional.dropout)
# per-channel ops of a conv's output that keep a constant map constant (max over a window of one value is that
# value; an average is, up to rounding) and keep the channels apart
POOLS = (nn.MaxPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d)


def compact(model: nn.Module, masks: Mapping[str, Tensor]) -> nn.Module:
    """`model` (masked, changed in place) with the units that the ticket disconnected removed from Linear → Linear,
    Conv2d → Conv2d and Conv2d → flatten → Linear chains (elementwise ops, pooling and BatchNorm2d between them);
    `model.compact_removed` says how many. The graph is found by torch.fx; a model it cannot trace is refused."""
    from torch import fx

    try:
        graph = fx.symbolic_trace(model)
    except Exception as err:  # fx raises many kinds
        raise ValueError(f"to='compact' follows the model's graph with torch.fx, which cannot trace {type(model).__name__} "
                         f"({err}); export to='csr' instead") from err
    modules = dict(model.named_modules())
    calls = Counter(n.target for n in graph.graph.nodes if n.op == "call_module")
    removed = 0
    for node in graph.graph.nodes:
        first = _layer(node, modules, calls)
        if first is None or (isinstance(first, nn.Conv2d) and first.groups != 1):
            continue
        chain, user, flat = [], node, False
        while len(user.users) == 1:
            user = next(iter(user.users))
            if _layer(user, modules, calls) is not None:
                break
            if _flatten(user, modules) and isinstance(first, nn.Conv2d) and not flat:
                flat = True
            elif not _per_unit(user, modules, conv=isinstance(first, nn.Conv2d) and not flat):
                user = None
                break
            chain.append(user)
        # the layer's output used twice (a skip connection) ends the walk at the layer itself: not a chain
        second = None if user is None or user is node else _layer(user, modules, calls)
        if second is None or not _fits(first, second, flat):
            continue
        removed += _shrink(model, node.target, user.target, chain, modules, flat)
    model.compact_removed = removed  # units taken out, for the caller's log
    return model


def _layer(node: object, modules: dict[str, nn.Module], calls: Counter) -> nn.Linear | nn.Conv2d | None:
    """The Linear or Conv2d a node calls, when that module is called once (a shared one is left as it is)."""
    if getattr(node, "op", None) != "call_module" or calls[node.target] != 1:
        return None
    module = modules.get(node.target)
    return module if isinstance(module, (nn.Linear, nn.Conv2d)) else None


def _fits(first: nn.Module, second: nn.Module, flat: bool) -> bool:
    """Whether the units of `first` are the inputs of `second` (after a flatten: channel c is features c·H·W…)."""
    units = first.out_features if isinstance(first, nn.Linear) else first.out_channels
    if isinstance(second, nn.Conv2d):
        return not flat and isinstance(first, nn.Conv2d) and second.groups == 1 and second.in_channels == units
    if flat:
        return second.in_features % units == 0
    return isinstance(first, nn.Linear) and second.in_features == units


def _flatten(node: object, modules: dict[str, nn.Module]) -> bool:
    """Flatten from dimension 1 to the end (NCHW → N, C·H·W: channel-major, as `_fits` assumes)."""
    if node.op == "call_module":
        module = modules.get(node.target)
        return isinstance(module, nn.Flatten) and module.start_dim == 1 and module.end_dim == -1
    if (node.op == "call_function" and node.target is torch.flatten) or (node.op == "call_method"
                                                                         and node.target == "flatten"):
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        return start == 1 and end == -1
    return False


def _per_unit(node: object, modules: dict[str, nn.Module], conv: bool) -> bool:
    """An op that acts on each unit apart and maps a constant to a constant (pooling and BatchNorm2d: conv maps)."""
    if node.op == "call_function":
        return node.target in ELEMENTWISE_FUNCTIONS
    if node.op != "call_module":
        return False
    module = modules.get(node.target)
    if isinstance(module, ELEMENTWISE_MODULES):
        return True
    if not conv:
        return False
    if isinstance(module, nn.AvgPool2d):  # padding or a clipped last window would change a constant at the border
        return module.padding in (0, (0, 0)) and not module.ceil_mode
    return isinstance(module, (*POOLS, nn.BatchNorm2d))


def _through(constant: Tensor, chain: list, modules: dict[str, nn.Module]) -> Tensor:
    """The per-unit constants after the ops of `chain` (a BatchNorm2d in eval mode applies its own arithmetic)."""
    for node in chain:
        if node.op == "call_function":
            if node.target in ELEMENTWISE_FUNCTIONS:  # not a flatten
                constant = node.target(constant, *node.args[1:], **node.kwargs)
            continue
        module = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(module, nn.BatchNorm2d):
            constant = module(constant.view(1, -1, 1, 1)).view(-1)
        elif isinstance(module, ELEMENTWISE_MODULES):
            constant = module(constant)
        # pooling and flatten leave a constant map's value as it is
    return constant


@torch.no_grad()
def _shrink(model: nn.Module, a: str, b: str, chain: list, modules: dict[str, nn.Module], flat: bool) -> int:
    """Drop the units between layers `a` and `b` that no weight reaches or none leaves; how many."""
    first, second = modules[a], modules[b]
    units = first.weight.shape[0]
    incoming = first.weight.reshape(units, -1)
    # second's weight as [out, units, per-unit inputs]: a column, a flattened channel's H·W, a conv's kh·kw
    outgoing = second.weight.reshape(second.weight.shape[0], units, -1)
    dead_in = ~(incoming != 0).any(1)  # no incoming weight: the unit outputs a constant
    dead_out = ~(outgoing != 0).any(2).any(0)  # no outgoing weight: its output is never used
    constant = torch.zeros(units, dtype=first.weight.dtype, device=first.weight.device)
    if first.bias is not None:
        constant = first.bias.clone()
    constant[~dead_in] = 0
    constant = _through(constant, chain, modules)
    constant[~dead_in] = 0
    if isinstance(second, nn.Conv2d) and any(p != 0 for p in second.padding):
        dead_in &= constant == 0  # a constant map meets the zero padding: not one bias, so the channel stays
    drop = dead_in | dead_out
    if not bool(drop.any()) or bool(drop.all()):
        return 0
    keep, fold = ~drop, dead_in & ~dead_out
    folded = (outgoing[:, fold].sum(2) * constant[fold]).sum(1)
    set_module(model, a, _resized(first, first.weight[keep], None if first.bias is None else first.bias[keep]))
    for node in chain:
        module = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(module, nn.BatchNorm2d):
            set_module(model, node.target, _sliced_norm(module, keep))
    w2 = outgoing[:, keep].reshape(second.weight.shape[0], -1, *second.weight.shape[2:])
    bias2 = (second.bias if second.bias is not None else 0) + folded
    set_module(model, b, _resized(second, w2, bias2))
    modules.update(dict(model.named_modules()))
    return int(drop.sum())


def _resized(layer: nn.Module, weight: Tensor, bias: Tensor | None) -> nn.Module:
    """A layer like `layer` (Linear or Conv2d) holding `weight` and `bias`, its sizes taken from `weight`."""
    new = resized(layer, int(weight.shape[0]), int(weight.shape[1]), bias is not None)
    new.weight.copy_(weight)
    if bias is not None:
        new.bias.copy_(bias)
    return new


def resized(layer: nn.Module, out_size: int, in_size: int, bias: bool) -> nn.Module:
    """An empty copy of Linear, Conv2d or BatchNorm2d `layer` with other unit counts (for export and for load)."""
    kw = {"device": layer.weight.device, "dtype": layer.weight.dtype}
    if isinstance(layer, nn.Linear):
        return nn.Linear(in_size, out_size, bias=bias, **kw)
    if isinstance(layer, nn.Conv2d):
        return nn.Conv2d(in_size, out_size, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                         bias=bias, padding_mode=layer.padding_mode, **kw)
    if isinstance(layer, nn.BatchNorm2d):
        return nn.BatchNorm2d(out_size, layer.eps, layer.momentum, layer.affine, layer.track_running_stats, **kw).eval()
    raise TypeError(f"cannot resize a {type(layer).__name__}")


def _sliced_norm(norm: nn.BatchNorm2d, keep: Tensor) -> nn.BatchNorm2d:
    """`norm` with the statistics and affine parameters of the kept channels only."""
    new = resized(norm, int(keep.sum()), 0, bias=True)
    state = {k: (v[keep] if v.dim() == 1 else v) for k, v in norm.state_dict().items()}
    new.load_state_dict(state)
    return new
