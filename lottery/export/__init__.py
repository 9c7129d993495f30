"""A trained ticket as an inference model: CSR sparse Linear and Conv2d layers (CPU), 2:4 semi-structured Linear
ones (CUDA), or compact dense layers without the neurons and channels the ticket disconnected.

`export(model, ticket, to=FORMAT)` returns a new module (the given one is left as it is) whose outputs match the
masked dense model's within floating-point summation order. Only the weights the ticket masks change form; the
rest of the model is copied as it is. `save(module, DIR)` writes it as tensors (safetensors) and a JSON description,
and `load(DIR)` rebuilds it without unpickling anything; both are also attributes of `lottery.export`, the function.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lottery.export import saved
from lottery.export.choice import choose
from lottery.export.compact import compact
from lottery.export.layers import (
    Chain,
    CSRConv2d,
    CSRLinear,
    chain_relus,
    csr_refusal,
    semi_structured,
    set_module,
)
from lottery.export.saved import ExportFormatError, load, save
from lottery.ticket import Ticket

FORMATS = ("csr", "semi-structured", "compact")

__all__ = ["FORMATS", "CSRConv2d", "Chain", "CSRLinear", "ExportFormatError", "compact", "export", "export_ticket", "load", "save"]


def export(model: nn.Module, ticket: Ticket | Mapping[str, Tensor], to: str = "csr", batch_size: int | None = None,
           example_input: Tensor | None = None) -> nn.Module:
    """An inference copy of `model` with the masks of `ticket` (a Ticket or {name: mask}) applied in format `to`.

    With `to="csr"` every masked Linear and Conv2d becomes CSR, unless `batch_size` is given: then each layer is
    timed at that batch (dense and CSR, adjacent pairs) and stays dense where CSR is slower. `module.export_choices`
    says what each layer runs and why. `example_input` (one sample's shape, or a batch) sizes conv layers' inputs
    for that timing; a LightningModule's `example_input_array` is used when it is not given. An nn.ReLU right after
    a CSR Linear in an nn.Sequential runs in that layer's call (the Sequential becomes a `Chain`, its modules and
    names unchanged); a ReLU applied in a model's own `forward` stays a call of its own.
    """
    if to not in FORMATS:
        raise ValueError(f"unknown export format {to!r}; choose one of {', '.join(FORMATS)}")
    if batch_size is not None and (to != "csr" or batch_size < 1):
        raise ValueError(f"batch_size={batch_size!r} chooses CSR or dense per layer: it goes with to='csr' and is a "
                         "positive number of examples")
    masks = ticket.masks if isinstance(ticket, Ticket) else dict(ticket)
    params = dict(model.named_parameters())
    missing = [n for n in masks if n not in params]
    if missing:
        raise KeyError(f"the ticket masks {', '.join(missing)}, which this model does not have: export the model the "
                       "ticket was made for")
    Ticket(masks).check(model, weights=False)  # shapes and a kept weight, before any work
    if to == "semi-structured":
        _check_cuda(model)
    out = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, p in out.named_parameters():
            if name in masks:
                p.mul_(masks[name].to(device=p.device, dtype=p.dtype))
    out.export_format = to
    if to == "compact":
        return compact(out, masks)
    if to == "semi-structured":
        for name, module in list(out.named_modules()):
            if isinstance(module, nn.Linear) and _key(name) in masks:
                set_module(out, name, semi_structured(name, module))
        return out
    candidates, choices = {}, {}
    for name, module in list(out.named_modules()):
        if _key(name) not in masks:
            continue
        if isinstance(module, nn.Linear):
            candidates[name] = CSRLinear(module.weight, module.bias)
        elif isinstance(module, nn.Conv2d):
            problem = csr_refusal(module)
            if problem is None:
                candidates[name] = CSRConv2d(module)
            else:  # one layer the kernels cannot compute should not stop the rest from exporting
                choices[name] = f"dense: CSR cannot compute it, {problem}"
                warnings.warn(f"export(to='csr'): {name} stays dense, {problem}", stacklevel=2)
    if batch_size is None:
        choices.update({name: "csr" for name in candidates})
    else:
        choices.update(choose(out, candidates, batch_size, example_input))
    for name, layer in candidates.items():
        if choices[name].startswith("csr"):
            set_module(out, name, layer)
    for layer, relu in chain_relus(out).items():
        choices[layer] += f", with the ReLU {relu} in its call"
    out.export_choices = choices
    return out


def export_ticket(ticket: str | os.PathLike, spec: dict[str, Any], to: str, out: str | os.PathLike,
                  weights: str | os.PathLike | None, batch_size: int | None = None) -> list[str]:
    """`lottery export`: the ticket file applied to the model `spec` ({class_path, init_args}) with trained `weights`
    (a .ckpt or .safetensors state dict; "ticket": the ticket's own rewind values), exported and saved to `out`.
    Everything is checked before the export runs. Returns what it did, a line each."""
    if to not in FORMATS:
        raise ValueError(f"unknown export format {to!r}; choose one of {', '.join(FORMATS)}")
    found = Ticket.load(ticket)
    if Path(out).is_file():
        raise FileExistsError(f"--out {out} is a file; give a folder (it gets model.safetensors and export.json)")
    if weights is None:
        raise FileNotFoundError(f"no trained weights for {ticket}: no checkpoint beside it (<run>/checkpoints/*.ckpt). "
                                "Pass --weights CKPT_OR_SAFETENSORS, or --weights ticket to export the ticket's rewind "
                                "values (untrained: for sizes and speed, not for predictions)")
    if str(weights) != "ticket" and not Path(weights).is_file():
        raise FileNotFoundError(f"--weights {weights}: no such file; pass a .ckpt or .safetensors state dict, or 'ticket'")
    if to == "semi-structured" and not torch.cuda.is_available():
        _check_cuda(None)
    model = saved.build(spec).eval()
    found.check(model, weights=str(weights) == "ticket")  # the ticket's layers against the model's
    state = found.weights if str(weights) == "ticket" else saved.read_weights(weights)
    if str(weights) == "ticket":
        state = {**model.state_dict(), **state}  # parameters and buffers the ticket does not hold keep their init
    saved.check_weights(state, found.masks, model, "the ticket" if str(weights) == "ticket" else str(weights))
    model.load_state_dict(state, strict=True)
    if to == "semi-structured":  # torch's 2:4 kernels take CUDA half-precision weights
        model = model.to("cuda", torch.float16)
    exported = export(model, found, to=to, batch_size=batch_size)
    source = {"ticket": str(ticket), "round": found.round, "density": found.density, "weights": str(weights)}
    path = save(exported, out, init_args=spec.get("init_args") or {}, extra={"source": source})
    lines = [f"{name}: {how}" for name, how in getattr(exported, "export_choices", {}).items()]
    if to == "compact":
        lines.append(f"compact: {exported.compact_removed} neurons and channels removed")
    return [*lines, f"wrote {path} and {Path(out) / 'model.safetensors'}"]


def _key(module_name: str) -> str:
    """The parameter name of a module's weight (the model itself: "weight")."""
    return f"{module_name}.weight" if module_name else "weight"


def _check_cuda(model: nn.Module | None) -> None:
    """Refuse semi-structured export where its kernels cannot run (`model` None: only the machine is checked)."""
    if not torch.cuda.is_available():
        raise RuntimeError("to='semi-structured' needs CUDA: torch's 2:4 kernels (torch.sparse.to_sparse_semi_structured) "
                           "run on NVIDIA GPUs only, and this machine has none. Export to='csr' (CPU) or 'compact' here.")
    if model is not None and next(model.parameters()).device.type != "cuda":
        raise RuntimeError("to='semi-structured': move the model to the GPU first (model.cuda().half()); 2:4 kernels "
                           "run on CUDA float16/bfloat16 weights")


# `lottery.export` is this function once `lottery` is imported (lottery/__init__.py), so the saved format's entry
# points are also its attributes: lottery.export.save(module, DIR), lottery.export.load(DIR)
export.save = save
export.load = load
export.FORMATS = FORMATS
