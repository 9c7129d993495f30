"""Ticket: the masks, the rewind values of the survivors and metadata of one round, in a safe file format."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lottery.files import atomic_write_bytes

FORMAT = "lottery-ticket"
VERSION = 1
_SHOWN = 8  # mismatching layers named in an error message
_BITS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


class TicketFormatError(ValueError):
    """A file that is not a readable lottery ticket."""


def _listed(names: list[str]) -> str:
    return str(names[:_SHOWN]) + (f" (and {len(names) - _SHOWN} more)" if len(names) > _SHOWN else "")


def pack_bits(mask: Tensor) -> Tensor:
    """Pack a bool tensor into uint8, eight entries per byte (1 bit per weight on disk)."""
    flat = mask.detach().reshape(-1).to("cpu", torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return (flat.view(-1, 8) * _BITS).sum(1, dtype=torch.uint8)


def unpack_bits(packed: Tensor, shape: tuple[int, ...] | torch.Size) -> Tensor:
    """Inverse of `pack_bits` for a tensor of `shape`."""
    n = 1
    for s in shape:
        n *= int(s)
    bits = packed.reshape(-1, 1).bitwise_and(_BITS).ne(0).reshape(-1)
    return bits[:n].reshape(tuple(shape))


@dataclass
class Ticket:
    """Masks keyed like `model.named_parameters()`, rewind values (dense, zero where pruned) and metadata."""

    masks: dict[str, Tensor]
    weights: dict[str, Tensor] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def density(self) -> float:
        """Fraction of the prunable weights kept."""
        total = sum(m.numel() for m in self.masks.values())
        return sum(int(torch.count_nonzero(m)) for m in self.masks.values()) / total if total else 1.0

    @property
    def round(self) -> int:
        """The round this ticket was trained in (0 = dense)."""
        return int(self.metadata.get("round", 0))

    @property
    def metrics(self) -> dict[str, float]:
        """The round's metrics (final and best monitored values, early-stopping step)."""
        return dict(self.metadata.get("metrics", {}))

    def layer_densities(self) -> dict[str, float]:
        """Fraction of weights kept in each masked parameter."""
        return {n: int(torch.count_nonzero(m)) / m.numel() for n, m in self.masks.items()}

    def counts(self) -> dict[str, tuple[int, int]]:
        """(kept, total) for each masked parameter."""
        return {n: (int(torch.count_nonzero(m)), m.numel()) for n, m in self.masks.items()}

    def check(self, model: nn.Module, weights: bool = True) -> None:
        """Raise unless the ticket fits `model`: known names and the model's shapes, some weight kept, finite values.

        The masks are checked against ``model.named_parameters()``; with `weights`, the rewind values also
        against ``model.state_dict()`` and for NaN/inf. Nothing is changed, so a refused ticket leaves `model` as it was.
        """
        params = dict(model.named_parameters())
        state = model.state_dict() if weights else {}
        values = self.weights if weights else {}
        kind = type(model).__name__
        no_param = [n for n in self.masks if n not in params]
        no_state = [n for n in values if n not in state]
        if no_param or no_state:
            found = ([f"masks {_listed(no_param)} name no parameter of {kind}"] if no_param else []) + (
                [f"weights {_listed(no_state)} are not in {kind}'s state_dict"] if no_state else [])
            raise KeyError(f"ticket {'; its '.join(found)}; was it made for another one? Nothing was changed.")
        wrong = {n: (m.shape, params[n].shape) for n, m in self.masks.items() if m.shape != params[n].shape}
        for n, v in values.items():
            if v.shape != state[n].shape:
                wrong.setdefault(n, (v.shape, state[n].shape))
        if wrong:
            shown = [f"{n} has shape {list(a)} in the ticket but {list(b)} in the model" for n, (a, b) in wrong.items()]
            more = f"; and {len(shown) - _SHOWN} more" if len(shown) > _SHOWN else ""
            raise ValueError(f"the ticket does not fit {kind}: {'; '.join(shown[:_SHOWN])}{more}. Was it made for another "
                             "model (other layer sizes or number of classes)? Nothing was changed.")
        total = sum(m.numel() for m in self.masks.values())
        if total and not any(bool(m.any()) for m in self.masks.values()):
            raise ValueError(f"the ticket prunes every weight of its {len(self.masks)} masked parameters (density 0): "
                             "the model could only output constants. Use the ticket of an earlier round or a higher density.")
        bad = {n: (int((~torch.isfinite(v)).sum()), v.numel()) for n, v in values.items() if v.is_floating_point()}
        bad = {n: c for n, c in bad.items() if c[0]}
        if bad:
            shown = [f"{n} ({k} of {size} values)" for n, (k, size) in bad.items()]
            more = f", and {len(shown) - _SHOWN} more" if len(shown) > _SHOWN else ""
            raise ValueError(f"the ticket's rewind values are not finite: {', '.join(shown[:_SHOWN])}{more}. "
                             "They are NaN or inf: the run that made it diverged (or the file was edited); make the ticket from a run that "
                             "converged. Nothing was changed.")

    def uncovered(self, prunable: Iterable[str]) -> list[str]:
        """The names in `prunable` this ticket has no mask for: the layers it leaves dense."""
        return [n for n in prunable if n not in self.masks]

    @torch.no_grad()
    def apply(self, model: nn.Module) -> nn.Module:
        """Zero the pruned weights of `model` in place (after `check` of the masks)."""
        self.check(model, weights=False)
        return self._zero_pruned(model)

    @torch.no_grad()
    def rewind(self, model: nn.Module) -> nn.Module:
        """Load the rewind values into `model` (parameters and buffers) and zero the pruned weights, after `check`."""
        self.check(model)
        state = model.state_dict()
        for name, value in self.weights.items():
            state[name].copy_(value)
        return self._zero_pruned(model)

    def _zero_pruned(self, model: nn.Module) -> nn.Module:
        params = dict(model.named_parameters())
        for name, mask in self.masks.items():
            p = params[name]
            p.mul_(mask.to(p.device))
        return model

    # -- serialization ---------------------------------------------------------------------------------
    def pack(self, with_weights: bool = True) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Tensors (bit-packed masks, survivors' values only) and a JSON-able header describing them."""
        tensors: dict[str, Tensor] = {}
        shapes = {}
        for name, mask in self.masks.items():
            tensors[f"mask/{name}"] = pack_bits(mask)
            shapes[name] = list(mask.shape)
        dense = {}
        if with_weights:
            for name, value in self.weights.items():
                value = value.detach().to("cpu")
                if name in self.masks:
                    value = value[self.masks[name].to("cpu")]
                else:
                    dense[name] = list(value.shape)
                tensors[f"value/{name}"] = value.contiguous().clone()
        header = {"format": FORMAT, "version": VERSION, "shapes": shapes, "dense": dense, "metadata": self.metadata}
        return tensors, header

    @classmethod
    def unpack(cls, tensors: dict[str, Tensor], header: dict[str, Any]) -> Ticket:
        """Inverse of `pack`."""
        masks = {n: unpack_bits(tensors[f"mask/{n}"], tuple(s)) for n, s in header["shapes"].items()}
        weights = {}
        for key, value in tensors.items():
            if not key.startswith("value/"):
                continue
            name = key[len("value/") :]
            if name in masks:
                dense = value.new_zeros(masks[name].shape)
                dense[masks[name]] = value
                weights[name] = dense
            else:
                weights[name] = value.reshape(header["dense"][name])
        return cls(masks, weights, dict(header.get("metadata", {})))

    def to_bytes(self) -> bytes:
        """The ticket as safetensors bytes, metadata as JSON in the header."""
        from safetensors.torch import save

        tensors, header = self.pack()
        return save(tensors, metadata={"lottery": json.dumps(header)})

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<bytes>") -> Ticket:
        """Read a ticket from safetensors bytes; never unpickles."""
        from safetensors.torch import load

        try:
            tensors = load(data)
            header_text = _safetensors_metadata(data).get("lottery")
        except Exception as err:  # safetensors raises its own error types for bad headers and sizes
            hint = " It looks like a pickle; tickets are never unpickled." if data[:1] == b"\x80" or data[:2] == b"PK" else ""
            raise TicketFormatError(
                f"{source} is not a readable lottery ticket ({type(err).__name__}: {err}).{hint} "
                "Tickets are safetensors files written by Ticket.save(); if the file was cut short, copy or write it again."
            ) from None
        if header_text is None:
            raise TicketFormatError(f"{source} is a safetensors file but not a lottery ticket (no 'lottery' metadata).")
        try:
            header = json.loads(header_text)
            if not isinstance(header, dict):
                raise ValueError(f"the header is a {type(header).__name__}, not an object")
        except ValueError as err:
            raise TicketFormatError(f"{source} has an unreadable 'lottery' header ({err}); write the ticket again.") from None
        version = header.get("version", 0)
        if header.get("format") != FORMAT or not _is_count(version) or version > VERSION:
            raise TicketFormatError(f"{source} has format {header.get('format')!r} v{version!r}; "
                                    f"this lottery reads {FORMAT!r} up to v{VERSION}.")
        wrong = _header_problems(header)
        if wrong:
            raise TicketFormatError(f"{source} has a malformed 'lottery' header: {'; '.join(wrong)}. "
                                    "Write the ticket again with Ticket.save().")
        try:
            return cls.unpack(tensors, header)
        except (KeyError, ValueError, RuntimeError, TypeError) as err:  # tensors missing or not matching the header
            raise TicketFormatError(f"{source} is inconsistent: its header and tensors do not match "
                                    f"({type(err).__name__}: {err}); write the ticket again.") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write the ticket to `path` (safetensors) atomically."""
        return atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Ticket:
        """Read a ticket written by `save`; a pickle or a truncated file is refused with TicketFormatError."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no ticket at {path}; tickets are written under <log_dir>/tickets/ by LotteryTicket")
        return cls.from_bytes(path.read_bytes(), str(path))

    def __repr__(self) -> str:
        return (f"Ticket(round={self.round}, density={self.density:.4f}, pruner={self.metadata.get('pruner')!r}, "
                f"layers={len(self.masks)})")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _header_problems(header: dict[str, Any]) -> list[str]:
    """What in a ticket header differs from the types `pack` writes (empty when it is well formed)."""
    problems = []
    for key, required in (("shapes", True), ("dense", False)):
        table = header.get(key, None if required else {})
        if not isinstance(table, dict):
            problems.append(f"{key!r} is {table!r}, not an object of parameter names and shapes")
            continue
        bad = {n: s for n, s in table.items() if not (isinstance(s, list) and all(_is_count(d) for d in s))}
        if bad:
            shown = ", ".join(f"{n!r}: {s!r}" for n, s in list(bad.items())[:_SHOWN])
            problems.append(f"{key!r} has {shown}, not lists of non-negative integers")
    meta = header.get("metadata", {})
    if not isinstance(meta, dict):
        problems.append(f"'metadata' is {meta!r}, not an object")
        return problems
    if "round" in meta and not _is_count(meta["round"]):
        problems.append(f"metadata 'round' is {meta['round']!r}, not a non-negative integer")
    metrics = meta.get("metrics", {})
    if not isinstance(metrics, dict):
        problems.append(f"metadata 'metrics' is {metrics!r}, not an object")
    else:
        bad = [k for k, v in metrics.items() if not isinstance(v, (int, float)) or isinstance(v, bool)]
        if bad:
            problems.append(f"metrics {bad[:_SHOWN]} are not numbers")
    return problems


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors header, read without loading tensors."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]).get("__metadata__", {}) or {}
