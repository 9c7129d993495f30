"""An exported ticket on disk: DIR/model.safetensors (tensors only) and DIR/export.json (what to rebuild), read back
by `load` without unpickling anything.

model.safetensors holds the exported module's state dict, and for each CSR layer NAME its
NAME.weight.crow_indices, NAME.weight.col_indices and NAME.weight.values. export.json names the format, the torch
version, the model's class path and init args, and per layer its kind and sizes; `load` instantiates the class from
them, puts back the CSR or resized layers, and loads the tensors with safetensors.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lottery.export.compact import resized
from lottery.export.layers import CSRConv2d, CSRLinear, chain_relus, semi_structured, set_module
from lottery.files import atomic_write_bytes, atomic_write_text

FORMAT = "lottery-export"
VERSION = 1
TENSORS, DESCRIPTION = "model.safetensors", "export.json"
CSR_PARTS = ("crow_indices", "col_indices", "values")


class ExportFormatError(ValueError):
    """A folder that holds no readable exported ticket."""


def class_path(module: nn.Module) -> str:
    """The import path of `module`'s class."""
    return f"{type(module).__module__}.{type(module).__qualname__}"


def save(module: nn.Module, out: str | os.PathLike, init_args: dict[str, Any] | None = None,
         extra: dict[str, Any] | None = None) -> Path:
    """Write an exported `module` to folder `out` (model.safetensors, export.json); `init_args` rebuild its class
    (default: a LightningModule's saved hyperparameters, else none). Returns export.json's path."""
    from safetensors.torch import save as save_tensors

    fmt = getattr(module, "export_format", None)
    if fmt is None:
        raise ValueError("save() writes a module returned by lottery.export(model, ticket, to=...); this one was not")
    init_args = dict(init_args if init_args is not None else getattr(module, "hparams", {}) or {})
    # a 2:4 weight is packed for the GPU it was made on: it is written dense (zeros where pruned), packed again by load
    tensors = {k: (v.to_dense() if _packed(v) else v).detach().cpu().contiguous() for k, v in module.state_dict().items()}
    layers: dict[str, dict[str, Any]] = {}
    for name, layer in module.named_modules():
        if isinstance(layer, nn.Linear) and _packed(layer.weight):
            layers[name] = {"kind": "semi-structured-linear", "shape": list(layer.weight.shape),
                            "bias": layer.bias is not None, "dtype": str(layer.weight.dtype).removeprefix("torch.")}
        elif isinstance(layer, (CSRLinear, CSRConv2d)):
            csr = layer.weight
            parts = (csr.crow_indices(), csr.col_indices(), csr.values())
            for part, value in zip(CSR_PARTS, parts):
                tensors[f"{name}.weight.{part}"] = value.detach().cpu().contiguous()
            kind = "csr-linear" if isinstance(layer, CSRLinear) else "csr-conv2d"
            layers[name] = {"kind": kind, "shape": list(csr.shape), "nnz": int(csr._nnz()), "bias": layer.bias is not None}
        elif isinstance(layer, (nn.Linear, nn.Conv2d)):
            layers[name] = {"kind": type(layer).__name__.lower(), "shape": list(layer.weight.shape),
                            "bias": layer.bias is not None}
        elif isinstance(layer, nn.BatchNorm2d):
            layers[name] = {"kind": "batchnorm2d", "shape": [layer.num_features]}
    description = {
        "format": FORMAT, "version": VERSION, "to": fmt, "torch": torch.__version__,
        "model": {"class_path": class_path(module), "init_args": _plain(init_args)},
        "layers": layers, "choices": getattr(module, "export_choices", {}), **(extra or {}),
    }
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / TENSORS, save_tensors(tensors, metadata={"format": FORMAT}))
    return atomic_write_text(folder / DESCRIPTION, json.dumps(description, indent=2) + "\n")


def _packed(value: Tensor) -> bool:
    """Whether `value` is one of torch's 2:4 semi-structured tensors."""
    return type(value).__name__.startswith("SparseSemiStructuredTensor")


def _plain(value: Any) -> Any:
    """`value` as JSON: tuples as lists, mappings (hparams, jsonargparse namespaces) as dicts."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"init argument {value!r} ({type(value).__name__}) cannot be written to export.json; pass "
                    "save(..., init_args=...) with plain values")


def load(folder: str | os.PathLike) -> nn.Module:
    """The module that `save` wrote to `folder`, rebuilt from export.json and loaded with safetensors (no pickle)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    description = read_description(folder)
    try:
        tensors = load_file(str(folder / TENSORS))
    except Exception as err:  # noqa: BLE001 (safetensors raises its own error types for bad headers and sizes)
        raise ExportFormatError(f"{folder / TENSORS} is not a readable safetensors file ({type(err).__name__}: {err}); "
                                "export the ticket again") from None
    model = build(description["model"]).eval()
    try:
        for name, layer in description["layers"].items():
            _rebuild(model, name, layer, tensors)
        model.load_state_dict(tensors, strict=True)
        chain_relus(model)  # as `export` left it
    except (AttributeError, KeyError, RuntimeError, TypeError, ValueError) as err:
        raise ExportFormatError(f"{folder} does not fit the model export.json names, or its tensors are inconsistent "
                                f"({type(err).__name__}: {err}); export the ticket again with this version of the "
                                "model's code") from None
    packed = {n: layer for n, layer in description["layers"].items() if layer["kind"] == "semi-structured-linear"}
    if packed:
        if not torch.cuda.is_available():
            raise RuntimeError(f"{folder} is a semi-structured (2:4) export: its kernels run on NVIDIA GPUs only, and "
                               "this machine has none. Export the ticket to='csr' or 'compact' for this machine.")
        model = model.to("cuda", getattr(torch, next(iter(packed.values()))["dtype"]))
        for name in packed:
            set_module(model, name, semi_structured(name, model.get_submodule(name)))
    model.export_format, model.export_choices = description["to"], description.get("choices", {})
    return model


def _rebuild(model: nn.Module, name: str, layer: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    """Put back layer `name` as export.json describes it: CSR from its index arrays (taken out of `tensors`), or a
    Linear, Conv2d or BatchNorm2d of the recorded sizes where they differ from the model's."""
    original = model.get_submodule(name)
    kind, shape = layer["kind"], layer["shape"]
    if kind.startswith("csr-"):
        parts = [tensors.pop(f"{name}.weight.{p}") for p in CSR_PARTS]
        # checked: index arrays from a file must not send the kernels out of bounds
        weight = torch.sparse_csr_tensor(*parts, size=tuple(shape), check_invariants=True)
        bias = tensors.get(f"{name}.bias") if layer["bias"] else None
        set_module(model, name, CSRLinear(weight, bias) if kind == "csr-linear" else CSRConv2d(original, weight, bias))
        return
    size = [original.num_features] if kind == "batchnorm2d" else list(original.weight.shape)
    if size != shape or (kind != "batchnorm2d" and (original.bias is not None) != layer["bias"]):
        set_module(model, name, resized(original, shape[0], shape[1] if len(shape) > 1 else 0, layer.get("bias", True)))


def read_description(folder: Path) -> dict[str, Any]:
    """export.json of `folder`, checked."""
    path = folder / DESCRIPTION
    if not path.is_file() or not (folder / TENSORS).is_file():
        raise FileNotFoundError(f"no exported ticket in {folder}: it needs {DESCRIPTION} and {TENSORS}, written by "
                                "`lottery export` or lottery.export.save")
    try:
        description = json.loads(path.read_text())
    except ValueError as err:
        raise ExportFormatError(f"{path} is not JSON ({err}); export the ticket again") from None
    if not isinstance(description, dict) or description.get("format") != FORMAT or description.get("version") != VERSION:
        found = description.get("format") if isinstance(description, dict) else None
        raise ExportFormatError(f"{path} has format {found!r}; this lottery reads {FORMAT!r} v{VERSION}")
    return description


def build(spec: dict[str, Any]) -> nn.Module:
    """The module a {class_path, init_args} spec names (nested class specs in init_args are built too)."""
    path = spec.get("class_path", "")
    module_name, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ImportError(f"export.json names the model class {path!r}, which does not import here ({err}); install "
                          "or put on PYTHONPATH the package that defines it") from None
    args = spec.get("init_args") or {}
    if not any(isinstance(v, dict) and "class_path" in v for v in args.values()):
        return cls(**args)
    # nested class specs: let jsonargparse build them as LightningCLI did
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(nn.Module, "model", fail_untyped=False)
    return parser.instantiate_classes(parser.parse_object({"model": {"class_path": path, "init_args": args}})).model


def read_weights(path: str | os.PathLike) -> dict[str, Tensor]:
    """A state dict from a safetensors file, or from a checkpoint (a Lightning .ckpt, a torch.save'd state dict)
    read with torch.load(weights_only=True), which loads tensors and plain containers and runs no pickled code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights at {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (a truncated zip, a pickle of objects weights_only refuses, ...)
        raise ValueError(f"{path} is not a checkpoint readable with weights_only=True ({type(err).__name__}: "
                         f"{str(err).splitlines()[0]}); pass a Lightning .ckpt or a safetensors state dict") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state dict (a 'state_dict' entry of tensors, or tensors by name)")
    return state


def check_weights(weights: dict[str, Tensor], masks: dict[str, Tensor], model: nn.Module, source: str) -> None:
    """Refuse weights that do not fit `model`, or that were trained under another mask than the ticket's."""
    state = model.state_dict()
    missing, extra = sorted(set(state) - set(weights)), sorted(set(weights) - set(state))
    if missing or extra:
        raise KeyError(f"the weights in {source} do not fit {type(model).__name__}: missing {missing[:8]}, unexpected "
                       f"{extra[:8]}; pass the weights of a run of this config")
    wrong = [f"{n} {list(v.shape)} (model {list(state[n].shape)})" for n, v in weights.items() if v.shape != state[n].shape]
    if wrong:
        raise ValueError(f"the weights in {source} have other shapes than the model: {', '.join(wrong[:8])}")
    kept = sum(int(m.sum()) for m in masks.values())
    pruned_nonzero = sum(int((weights[n][~m.to(torch.bool)] != 0).sum()) for n, m in masks.items())
    kept_zero = sum(int((weights[n][m.to(torch.bool)] == 0).sum()) for n, m in masks.items())
    # a round's training keeps pruned weights at exactly zero and moves every survivor off zero; weights of a later
    # round are zero at the survivors it pruned since, those of an earlier one non-zero where this ticket prunes
    if pruned_nonzero or kept_zero > 0.01 * kept:
        raise ValueError(f"the weights in {source} were not trained under this ticket's masks: {pruned_nonzero} weights "
                         f"it prunes are non-zero and {kept_zero} of its {kept} survivors are exactly zero. A run keeps "
                         "only its newest checkpoint, which holds the last round's trained weights: export that "
                         "round's ticket, or pass --weights with the checkpoint of this ticket's round")
