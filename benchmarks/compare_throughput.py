"""Comparison throughput: cells per hour of a small `lottery compare` grid with 1 and with N workers.

The grid is LeNet-300-100 on Fashion-MNIST with a shortened schedule (2 IMP rounds of 1 epoch of 600 batches)
and IMP, shuffled IMP, SynFlow, random and magnitude at init over 2 seeds: 2 IMP cells + 16 others. Each run
starts from an empty folder, so nothing is skipped. The ratio should approach the number of cores.

    python benchmarks/compare_throughput.py [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import yaml

from lottery import compare


def grid(folder: Path, name: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "base": "configs/lenet300_fashion_imp.yaml", "seeds": [0, 1], "out": str(folder / name),
        "args": ["--ticket.rounds", "2", "--ticket.epochs_per_round", "1", "--trainer.limit_train_batches", "600",
                 "--trainer.limit_val_batches", "3"],
        "experiments": [{"name": "imp", "kind": "imp"}, {"name": "imp_shuffled", "kind": "shuffle"},
                        {"name": "synflow", "kind": "pai", "pruner": "synflow", "steps": 20},
                        {"name": "random", "kind": "pai", "pruner": "random"},
                        {"name": "magnitude_init", "kind": "pai", "pruner": "magnitude"}]}))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="lottery-throughput-"))
    device = "GPU" if torch.cuda.is_available() else "CPU"
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads available")
    rates = {}
    for workers in (1, args.workers):
        start = time.perf_counter()
        results = compare.run(grid(folder, f"w{workers}"), workers=workers)
        wall = time.perf_counter() - start
        cells = len(list((folder / f"w{workers}" / compare.cells.CELLS).iterdir()))
        rates[workers] = cells / wall * 3600
        print(f"{workers} worker(s): {cells} cells in {wall:.1f} s = {rates[workers]:.0f} cells/hour  ({results})")
    print(f"speed-up with {args.workers} workers: {rates[args.workers] / rates[1]:.2f}x (cores: {torch.get_num_threads()})")
    print(f"(cell folders kept in {folder})")


if __name__ == "__main__":
    main()
