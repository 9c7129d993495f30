"""Sparse rounds end to end: the 15-round IMP run of configs/lenet300_fashion_results.yaml, masked dense against
`--ticket.sparse_below auto` (Linear layers below their shape's measured crossover run on CSR kernels).

For each seed the two runs go side by side, one process each with one thread, so they share the machine's load
alike; each records the wall time of every epoch (`EpochClock`). Printed per round: the density, both runs' seconds
(mean over seeds) and their ratio, and test accuracy at the early-stopping iteration (mean ± std over seeds); then
the whole run's wall time, masked / sparse, per seed.

    python benchmarks/sparse_rounds.py [--seeds 0 1 2] [--out runs/sparse_rounds]   # 6-10 min a seed on 2 cores
    python benchmarks/sparse_rounds.py --quick                                      # 2 rounds of 40 batches
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytorch_lightning as pl

ROOT = Path(__file__).resolve().parent.parent
CONFIG = "configs/lenet300_fashion_results.yaml"
CLOCK = "epoch_times.json"


class EpochClock(pl.Callback):
    """Writes the wall-clock time at the start of training and at the end of each training epoch (its validation
    and the callback's round-end work included) to `<default_root_dir>/epoch_times.json`."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.times = [time.time()]

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.times.append(time.time())
        Path(trainer.default_root_dir, CLOCK).write_text(json.dumps(self.times))


def launch(folder: Path, seed: int, sparse: bool, extra: list[str]) -> subprocess.Popen:
    """One `lottery fit` of the results config in its own process (one thread), its output to folder/out.log."""
    folder.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "lottery.cli", "fit", "--config", CONFIG, "--seed_everything", str(seed),
            "--trainer.default_root_dir", str(folder), "--trainer.enable_progress_bar", "false",
            "--trainer.callbacks+=sparse_rounds.EpochClock", *(["--ticket.sparse_below", "auto"] if sparse else []),
            *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT / 'benchmarks'}{os.pathsep}{ROOT}"}
    with open(folder / "out.log", "w") as log:  # the child keeps its own handle
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def read(folder: Path, epochs_per_round: int) -> tuple[list[float], list[dict[str, str]], float]:
    """Per-round seconds, rounds.csv rows and the whole run's seconds of one finished run."""
    times = json.loads((folder / CLOCK).read_text())
    epochs = [b - a for a, b in zip(times, times[1:])]
    per_round = [sum(epochs[i:i + epochs_per_round]) for i in range(0, len(epochs), epochs_per_round)]
    with open(next(folder.rglob("rounds.csv"))) as f:
        rows = list(csv.DictReader(f))
    return per_round, rows, times[-1] - times[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/sparse_rounds")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1 epoch of 40 batches (a smoke test)")
    args = parser.parse_args()
    extra, epochs_per_round = [], 5
    if args.quick:
        extra = ["--ticket.rounds", "2", "--ticket.epochs_per_round", "1", "--trainer.limit_train_batches", "40",
                 "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2"]
        epochs_per_round = 1
    out = ROOT / args.out
    results, reused = {}, []
    for seed in args.seeds:
        runs = {mode: out / f"seed{seed}" / mode for mode in ("masked", "sparse")}
        if all((f / CLOCK).exists() and any(f.rglob("rounds.csv")) and (f / "done").exists() for f in runs.values()):
            reused.append(seed)  # finished earlier (an interrupted benchmark goes on where it stopped)
        else:
            procs = {mode: launch(folder, seed, mode == "sparse", extra) for mode, folder in runs.items()}
            for mode, proc in procs.items():
                if proc.wait() != 0:
                    raise SystemExit(f"seed {seed} {mode} failed: see {runs[mode] / 'out.log'}")
                (runs[mode] / "done").write_text("")
        results[seed] = {mode: read(folder, epochs_per_round) for mode, folder in runs.items()}
    rounds = len(results[args.seeds[0]]["masked"][1])
    print(f"{CONFIG}, seeds {args.seeds}; masked dense and sparse_below=auto side by side, one thread each")
    if reused:
        done = max((out / f"seed{s}" / m / "done").stat().st_mtime for s in reused for m in ("masked", "sparse"))
        print(f"seeds {reused} read back from {args.out}, finished by {time.strftime('%Y-%m-%d %H:%M', time.gmtime(done))} "
              "UTC (delete the folder to measure again)")
    print("round  density  masked s  sparse s  masked/sparse  test acc masked   test acc sparse")
    for r in range(rounds):
        m = [results[s]["masked"][0][r] for s in args.seeds]
        sp = [results[s]["sparse"][0][r] for s in args.seeds]
        acc = {mode: [100 * float(results[s][mode][1][r]["test_acc_at_best"]) for s in args.seeds]
               for mode in ("masked", "sparse")}
        spread = {mode: statistics.stdev(v) if len(v) > 1 else 0.0 for mode, v in acc.items()}
        density = float(results[args.seeds[0]]["masked"][1][r]["density"])
        print(f"{r:5d}  {100 * density:6.2f}%  {statistics.mean(m):8.1f}  {statistics.mean(sp):8.1f}  "
              f"{statistics.mean(m) / statistics.mean(sp):12.2f}x  {statistics.mean(acc['masked']):6.2f} ± "
              f"{spread['masked']:.2f}    {statistics.mean(acc['sparse']):6.2f} ± {spread['sparse']:.2f}")
    for s in args.seeds:
        whole_m, whole_s = results[s]["masked"][2], results[s]["sparse"][2]
        print(f"seed {s}: training (first to last epoch) {whole_m:.0f} s masked, {whole_s:.0f} s sparse: {whole_m / whole_s:.2f}x")
    sparse_log = (out / f"seed{args.seeds[0]}" / "sparse" / "out.log").read_text()
    said = [line for line in sparse_log.splitlines() if "sparse (density" in line or "dense (density" in line]
    print("what the sparse run chose, last round: " + (said[-1].split("LotteryTicket: ")[-1] if said else "nothing"))


if __name__ == "__main__":
    main()
