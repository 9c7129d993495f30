"""Ticket: the masks, the rewind values of the survivors and metadata of one round, in a safe file format."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lottery.files import atomic_write_bytes

FORMAT = "lottery-ticket"
VERSION = 1
_BITS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


class TicketFormatError(ValueError):
    """A file that is not a readable lottery ticket."""


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

    @torch.no_grad()
    def apply(self, model: nn.Module) -> nn.Module:
        """Zero the pruned weights of `model` in place."""
        params = dict(model.named_parameters())
        self._check_names(params)
        for name, mask in self.masks.items():
            p = params[name]
            p.mul_(mask.to(p.device))
        return model

    @torch.no_grad()
    def rewind(self, model: nn.Module) -> nn.Module:
        """Load the rewind values into `model` (parameters and buffers present) and zero the pruned weights."""
        state = model.state_dict()
        unknown = [n for n in self.weights if n not in state]
        if unknown:
            raise KeyError(f"ticket weights {unknown[:5]} are not in {type(model).__name__}'s state_dict")
        for name, value in self.weights.items():
            state[name].copy_(value)
        return self.apply(model)

    def _check_names(self, params: dict[str, Tensor]) -> None:
        missing = [n for n in self.masks if n not in params]
        if missing:
            raise KeyError(f"ticket masks {missing[:5]} name no parameter of this model; was it made for another one?")
        wrong = [n for n, m in self.masks.items() if m.shape != params[n].shape]
        if wrong:
            raise ValueError(f"ticket masks {wrong[:5]} do not have the shape of the model's parameters")

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
        if header.get("format") != FORMAT or int(header.get("version", 0)) > VERSION:
            raise TicketFormatError(f"{source} has format {header.get('format')!r} v{header.get('version')}; "
                                    f"this lottery reads {FORMAT!r} up to v{VERSION}.")
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


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors header, read without loading tensors."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]).get("__metadata__", {}) or {}
