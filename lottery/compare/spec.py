"""A comparison file: the base config, the experiments (each of a kind in KINDS), seeds, where to write, how to launch."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lottery.sanity import VARIANTS
from lottery.sparse_training import METHODS

# IMP, pruning at initialization, sparse training during training (lottery.sparse_training.METHODS: gmp, set, rigl)
# at the IMP densities, and every registered sanity variant of the IMP tickets (lottery.sanity.VARIANTS)
SPARSE_TRAINING = tuple(METHODS)
KINDS = ("imp", "pai", *SPARSE_TRAINING, *VARIANTS)


@dataclass
class Spec:
    """A comparison file: `base` config, `experiments`, `seeds`, where to write, how to launch."""

    base: str
    experiments: list[dict[str, Any]]
    seeds: list[int] = field(default_factory=lambda: [0])
    out: str = "runs/compare"
    args: list[str] = field(default_factory=list)  # applied to every cell, e.g. shorter schedules
    workers: int | None = None
    launcher: str = "local"
    threads: int = 1  # CPU threads per cell: fixed so results do not depend on the number of workers
    gpus_per_cell: float | None = None  # launcher ray: GPUs a cell reserves (None: 1 when the cluster has GPUs)
    storage: str | None = None  # launcher ray: fsspec URL where cells leave their results and find IMP tickets

    @classmethod
    def load(cls, path: str | Path) -> Spec:
        """Read and check a comparison YAML file; errors say what is allowed."""
        raw = yaml.safe_load(Path(path).read_text())
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(cls.__dataclass_fields__)}")
        spec = cls(**raw)
        base = Path(spec.base)
        if not base.is_file():
            raise FileNotFoundError(f"{path}: base config {spec.base} does not exist")
        for e in spec.experiments:
            if e.get("kind") not in KINDS or "name" not in e:
                raise ValueError(f"{path}: each experiment needs a name and a kind in {KINDS}; got {e}")
            if e["kind"] == "pai" and "pruner" not in e:
                raise ValueError(f"{path}: experiment {e['name']!r} (kind pai) needs a pruner")
            budget = e.get("budget", 1)
            if e["kind"] in SPARSE_TRAINING and not (isinstance(budget, (int, float)) and not isinstance(budget, bool)
                                                      and budget > 0 and float(budget * 1000).is_integer()):
                raise ValueError(f"{path}: experiment {e['name']!r}: budget is the training of a {e['kind']} cell in "
                                 f"IMP rounds (1: one round's epochs, 2: two rounds'), a positive number; got {budget!r}")
            if "budget" in e and e["kind"] not in SPARSE_TRAINING:
                raise ValueError(f"{path}: experiment {e['name']!r}: budget applies to kinds {SPARSE_TRAINING} only")
            rounds = e.get("rounds")
            if rounds is not None and (not isinstance(rounds, list) or not all(isinstance(r, int) and r >= 1 for r in rounds)):
                raise ValueError(f"{path}: experiment {e['name']!r}: rounds must be a list of IMP rounds >= 1 (the "
                                 f"densities to match), got {rounds!r}")
        if not any(e["kind"] == "imp" for e in spec.experiments):
            raise ValueError(f"{path}: needs one experiment of kind imp (the others use its densities and tickets)")
        if spec.launcher not in ("local", "ray"):
            raise ValueError(f"{path}: launcher must be 'local' or 'ray', got {spec.launcher!r}")
        check_gpus_per_cell(path, spec.gpus_per_cell)
        check_storage(path, spec.storage)
        return spec

    def base_ticket(self) -> dict[str, Any]:
        """The base config's `ticket` section (the callback's arguments; empty when it has none)."""
        return (yaml.safe_load(Path(self.base).read_text()) or {}).get("ticket", {}) or {}


def check_gpus_per_cell(path: str | Path, gpus: Any) -> None:
    """Refuse a `gpus_per_cell` Ray cannot reserve: not a number, negative, or a fraction above 1."""
    number = isinstance(gpus, (int, float)) and not isinstance(gpus, bool)  # YAML `true` is no GPU count
    if gpus is None or (number and math.isfinite(gpus) and gpus >= 0 and (gpus <= 1 or gpus == int(gpus))):
        return
    raise ValueError(f"{path}: gpus_per_cell must be the number of GPUs each cell reserves on its Ray node: "
                     f"0 (CPU cells), a fraction up to 1 (cells share a GPU) or a whole number; got {gpus!r}. "
                     "Write e.g. gpus_per_cell: 1, or leave it out (1 when the cluster has GPUs, else 0).")


def check_storage(path: str | Path, storage: Any) -> None:
    """Refuse a `storage` URL that fsspec cannot open (an unknown scheme, or one whose package is missing)."""
    if storage is None:
        return
    if not isinstance(storage, str):
        why = "not a URL"
    else:
        import fsspec  # installed with Lightning; only a comparison with storage needs it

        try:
            fsspec.core.url_to_fs(storage)  # parses the URL and loads its filesystem; touches no file
            return
        except (ImportError, ValueError) as err:
            why = str(err)
    raise ValueError(f"{path}: storage {storage!r}: fsspec cannot open it ({why}). Give a URL of a filesystem "
                     "fsspec knows, with its package installed on the driver and on every node (s3:// needs s3fs, "
                     "gs:// gcsfs; file:///PATH or a plain path only for a disk every node mounts at that path), "
                     "or leave storage out to send tickets through Ray.")
