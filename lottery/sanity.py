"""Sanity checks of Frankle et al. (ICLR 2021): shuffle a ticket within layers, reinitialize it, invert a pruner.

A method that only chooses good per-layer densities loses nothing under `shuffle` or `reinitialize`; IMP with
rewinding does. Every ticket can go through these transforms; the results are ordinary Tickets. The ticket
transforms are registered by name in `VARIANTS` (the callback's ``sanity=`` and the comparison grid's
experiment kinds read it): a new sanity variant is one registered function here.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import torch
from torch import nn

from lottery.rng import derived_seed, seeded
from lottery.models.init import INITIALIZERS, initialize
from lottery.pruning import Pruner
from lottery.pruning.inverted import Inverted
from lottery.ticket import Ticket


def shuffle(ticket: Ticket, seed: int) -> Ticket:
    """The same per-layer densities at random positions (each layer's mask permuted).

    The ticket's values of masked parameters are dropped: they are the old survivors' values (a saved ticket
    holds nothing else), so kept they would start most new survivors at exactly zero. The shuffled survivors
    start from the model's own values instead (its initialization, when the run starts from the same seed,
    as in Frankle et al. 2021); the ticket's other values (biases, batch norm) are kept.
    """
    gen = torch.Generator().manual_seed(seed)
    masks = {}
    for name, mask in ticket.masks.items():
        flat = mask.reshape(-1).cpu()
        masks[name] = flat[torch.randperm(flat.numel(), generator=gen)].view(mask.shape)
    meta = {**ticket.metadata, "sanity": "shuffled", "sanity_seed": seed}
    weights = {n: v for n, v in ticket.weights.items() if n not in masks}
    return Ticket(masks, weights, meta)


def reinitialize(ticket: Ticket, model: nn.Module, seed: int, init: str | None = None) -> Ticket:
    """The same masks with freshly drawn initial weights (every parameter and buffer of `model` re-initialized).

    Each module's own `reset_parameters` is used (PyTorch's defaults), then `init` (a name from
    `lottery.models.INITIALIZERS`) if given; `model` itself is not changed. The draw happens on a CPU copy,
    so a seed gives the same weights whichever device `model` is on. The generator is seeded from `seed`
    through a hash: seeded with `seed` itself it would replay the draws of a model built right after
    `seed_everything(seed)` (the usual run), and the "reinitialized" ticket would start from its own init.
    """
    fresh = copy.deepcopy(model).to("cpu")
    with seeded(derived_seed(seed, "reinitialize")):
        for module in fresh.modules():
            if hasattr(module, "reset_parameters") and module is not fresh:
                module.reset_parameters()
        if init is not None:
            initialize(fresh, init)
    weights = {k: v.detach().clone() for k, v in fresh.state_dict().items()}
    missing = [n for n in ticket.masks if n not in weights]
    if missing:
        raise KeyError(f"ticket masks {missing[:5]} name no parameter of {type(model).__name__}")
    meta = {**ticket.metadata, "sanity": "reinitialized", "sanity_seed": seed}
    return Ticket({n: m.clone() for n, m in ticket.masks.items()}, weights, meta)


def named_init(module: nn.Module) -> str | None:
    """The module's `init` hyperparameter when it names one of lottery's initializers (reinit draws from it)."""
    init = getattr(module, "hparams", {}).get("init")
    if init is None:
        return None
    if isinstance(init, str) and init in INITIALIZERS:
        return init
    warnings.warn(f"sanity='reinit': the module's init={init!r} is not one of lottery's initializers "
                  f"{sorted(INITIALIZERS)}; the reinitialized ticket draws from each layer's reset_parameters().")
    return None


def invert(pruner: str | Pruner) -> Pruner:
    """`pruner` with inverted scores (prune the highest scores)."""
    return Inverted(pruner)


Variant = Callable[[Ticket, nn.Module, int], Ticket]  # (ticket, the module it will train in, seed) -> ticket
VARIANTS: dict[str, Variant] = {}


def register(name: str) -> Callable[[Variant], Variant]:
    """Register a ticket transform as the sanity variant `name` (usable as a decorator)."""
    def add(fn: Variant) -> Variant:
        VARIANTS[name] = fn
        return fn
    return add


@register("shuffle")
def _shuffled(ticket: Ticket, module: nn.Module, seed: int) -> Ticket:
    return shuffle(ticket, seed)


@register("reinit")
def _reinitialized(ticket: Ticket, module: nn.Module, seed: int) -> Ticket:
    return reinitialize(ticket, module, seed, init=named_init(module))


def check_variant(name: str | None) -> None:
    """Raise unless `name` is None or a registered sanity variant."""
    if name is not None and name not in VARIANTS:
        allowed = ", ".join(repr(v) for v in VARIANTS)
        raise ValueError(f"sanity={name!r} is not allowed; use one of {allowed} or None")
