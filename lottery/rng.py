"""Random generators: a seeded scope that leaves the global generators as they were, derived seeds, and
the global random state as checkpointable values."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def _cuda_devices() -> list[int]:
    """The CUDA devices whose generators `torch.manual_seed` reseeds (none before CUDA is initialized)."""
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() and torch.cuda.is_initialized() else []


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run with torch's generators seeded by `seed`, leaving every global generator (CPU and CUDA) as it was."""
    if seed is None:  # the caller's own generator state decides
        yield
        return
    devices = _cuda_devices()
    with torch.random.fork_rng(devices=devices):
        if devices:  # CUDA generators too (dropout on a GPU while scoring); fork_rng restores them
            torch.manual_seed(seed % (2**63))
        else:  # torch.manual_seed would queue a CUDA seeding that lands at CUDA's first use, after the fork
            torch.default_generator.manual_seed(seed % (2**63))
        yield


def derived_seed(seed: int, purpose: str) -> int:
    """A seed for `purpose` that no run seeded with `seed` itself draws from."""
    return int.from_bytes(hashlib.sha256(f"{purpose}:{seed}".encode()).digest()[:8], "little") % (2**63)


def get_state() -> dict[str, Any]:
    """Global random states as tensors and tuples (loadable with weights_only)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np

        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        state["numpy"] = (kind, torch.from_numpy(keys.astype("int64")), int(pos), int(has_gauss), float(gauss))
    except ImportError:
        pass
    return state


def set_state(state: dict[str, Any]) -> None:
    """Restore what `get_state` returned."""
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy as np

        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, gauss))


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x
