"""Regenerate docs/results.md, the reproduction report, from runs of the project's own CLI.

Three parts, each resumable (a finished part or grid cell is read back, not rerun):
1. dense reference: LeNet-300-100 / Fashion-MNIST trained dense for the paper's full 50K iterations, to show
   where the shortened rounds (5 epochs = 4,585 iterations) sit on its validation curve;
2. the grid `lottery compare --config configs/compare_lenet300_fashion_results.yaml`: IMP for 15 rounds, the
   same masks reinitialized and shuffled, SynFlow / SNIP / GraSP / random / magnitude at init at the same
   densities, 3 seeds;
3. the layer-collapse search on CIFAR VGG-16 (benchmarks/pruner_speed.py's `critical_compression`).

    python benchmarks/results.py [--workers 2]     # about 2 h 30 min on the 2-core development CPU
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from lottery.compare import Spec, plot, summarize  # noqa: E402
from lottery.compare.cells import DONE, cell_folder  # noqa: E402
from lottery.files import atomic_write_text, read_csv  # noqa: E402
from lottery.layout import RunLayout  # noqa: E402
from run_all import machine  # noqa: E402

GRID = "configs/compare_lenet300_fashion_results.yaml"
BASE = "configs/lenet300_fashion_results.yaml"
PAPER_ITERATIONS = 50_000
TOLERANCE = 0.5  # percentage points: "matches dense accuracy" means a mean at most this far below dense
CONTROLS = ("imp", "imp_reinit", "imp_shuffled")
PAI = ("synflow", "snip", "grasp", "random", "magnitude_init")
# Frankle & Carbin's LeNet landmarks (ICLR 2019): density after rounds 3, 7, 9, 12, 15.
PAPER_X = {"synflow": 5.75, "magnitude": 2.75, "snip": 3.5, "grasp": 3.5}  # lower ends of the ranges above
LANDMARKS = (0.513, 0.211, 0.135, 0.070, 0.036)
PAPER_COLLAPSE = {"synflow": "10^5.75 – 10^6", "magnitude": "10^2.75", "snip": "10^3.5 – 10^3.75",
                  "grasp": "10^3.5 – 10^3.75", "random": "(not given; collapses first)"}


def lottery(*args: str) -> float:
    """Run the `lottery` CLI in a subprocess (fails loudly); return its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from lottery.cli import main; main()", *args], cwd=ROOT, check=True,
                   env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return time.perf_counter() - start


def dense_reference(out: Path) -> dict[str, Any]:
    """Part 1: one dense run of the paper's 50K iterations, validated every quarter epoch."""
    done = out / "dense_reference.json"
    if done.exists():
        return json.loads(done.read_text())
    folder = out / "dense_reference"
    wall = lottery("fit", "--config", BASE, "--ticket.rounds", "1", "--ticket.epochs_per_round", "60",
                   "--trainer.max_steps", str(PAPER_ITERATIONS), "--trainer.enable_progress_bar", "false",
                   "--trainer.default_root_dir", str(folder), "--ticket.dirpath", str(RunLayout.under(folder).folder),
                   "--trainer.logger", "pytorch_lightning.loggers.CSVLogger", "--trainer.logger.save_dir", str(folder))
    metrics = sorted(folder.glob("**/metrics.csv"))[-1]
    curve = [{"step": int(r["step"]) + 1, "val_loss": float(r["val_loss"]), "val_acc": float(r["val_acc"]),
              "test_acc": float(r["test_acc"])} for r in read_csv(metrics) if r.get("val_loss")]
    result = {"wall_s": wall, "curve": curve}
    atomic_write_text(done, json.dumps(result))
    return result


def grid(workers: int, path: str = GRID) -> dict[str, Any]:
    """Part 2: the comparison grid `path` (cells already trained are read back); its rows and timings."""
    spec = Spec.load(ROOT / path)
    out = ROOT / spec.out
    lottery("compare", "--config", path, "--workers", str(workers))
    rows = read_csv(out / "results.csv")
    cells: dict[str, tuple[str, float, float]] = {}  # key: experiment, wall seconds, finish time
    for r in rows:
        r["seed"] = int(r["seed"])
        finished = (cell_folder(out, r["cell"]) / DONE).stat().st_mtime
        cells[r["cell"]] = (r["experiment"], float(r["wall_time_s"]), finished)
    # From the first cell's start to the last cell's end, across resumed invocations (as trained, not as re-read).
    elapsed = max(m for _, _, m in cells.values()) - min(m - w for _, w, m in cells.values())
    per_experiment: dict[str, float] = {}
    for name, wall, _ in cells.values():
        per_experiment[name] = per_experiment.get(name, 0.0) + wall
    return {"rows": rows, "elapsed_s": elapsed, "cell_seconds": per_experiment, "cells": len(cells),
            "workers": workers, "out": spec.out}


def collapse(out: Path) -> dict[str, Any]:
    """Part 3: maximal critical compression of each pruner on CIFAR VGG-16."""
    done = out / "collapse.json"
    if done.exists():
        return json.loads(done.read_text())
    from pruner_speed import critical_compression

    start = time.perf_counter()
    rows = critical_compression()
    result = {"rows": rows, "wall_s": time.perf_counter() - start}
    atomic_write_text(done, json.dumps(result))
    return result


# ---------------------------------------------------------------------------------------------- the document


def pm(stats: dict[float, tuple[float, float, int]], density: float, digits: int = 2) -> str:
    if density not in stats:
        return "–"
    mean, std, _ = stats[density]
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def nearest(densities: list[float], target: float) -> float:
    return min(densities, key=lambda d: abs(d - target))


def matches_down_to(stats: dict[float, tuple[float, float, int]], reference: float) -> float | None:
    """Lowest density reached from the densest one without the mean dropping more than TOLERANCE below
    `reference` (None if even the densest falls below)."""
    low = None
    for d in sorted(stats, reverse=True):
        if stats[d][0] < reference - TOLERANCE:
            break
        low = d
    return low


def pct(d: float | None) -> str:
    return "none" if d is None else f"{100 * d:.1f}%"


def claims(acc: dict[str, dict], end: dict[str, dict], steps: dict[str, dict], densities: list[float]) -> list[str]:
    """One paragraph per claim, with its verdict decided by the numbers."""
    dense_d = max(acc["imp"])
    dense, dense_std, _ = acc["imp"][dense_d]
    pruned = [d for d in densities if d < dense_d]
    last = min(pruned)
    imp_low, reinit_low = matches_down_to(acc["imp"], dense), matches_down_to(acc["imp_reinit"], dense)
    best_d = max(pruned, key=lambda d: acc["imp"][d][0])
    out = []

    holds = imp_low is not None and imp_low <= last + 1e-9
    out.append(
        "**Winning tickets match the dense network's accuracy down to about 3.6% of the weights "
        "(Frankle & Carbin: round 15; best +0.3 pp at 13.5%).** "
        + ("Holds. " if holds else ("Holds only in part. " if imp_low is not None and imp_low < dense_d else "Does not hold. "))
        + f"Dense test accuracy at the early-stopping iteration is {dense:.2f} ± {dense_std:.2f}%. IMP tickets stay "
        f"within {TOLERANCE} pp of it (or above) down to {pct(imp_low)} of the weights"
        + ("" if holds else f", not to the last round's {pct(last)}")
        + f"; at {pct(last)} they reach {pm(acc['imp'], last)}%. The best ticket is at {pct(best_d)} with "
        f"{acc['imp'][best_d][0]:.2f}% ({acc['imp'][best_d][0] - dense:+.2f} pp over dense). "
        f"At the end of training (rather than at early stopping) dense reaches {pm(end['imp'], dense_d)}% and the "
        f"{pct(last)} ticket {pm(end['imp'], last)}%.")

    gaps = ", ".join(f"{pct(d)}: {acc['imp'][d][0] - acc['imp_reinit'][d][0]:+.2f} pp"
                     for d in (nearest(pruned, t) for t in LANDMARKS))
    earlier = reinit_low is None or (imp_low is not None and reinit_low > imp_low + 1e-9)
    wider = sum(acc["imp"][d][0] - acc["imp_reinit"][d][0] > acc["imp"][d][1] + acc["imp_reinit"][d][1] for d in pruned)
    out.append(
        "**Randomly reinitialized tickets fall below dense accuracy earlier (paper: at about 21.1%).** "
        + ("Holds. " if earlier and wider else "Holds only in part. " if earlier or wider else "Does not hold. ")
        + f"The same masks with fresh Glorot weights stay within {TOLERANCE} pp of dense down to {pct(reinit_low)} "
        f"(winning tickets: {pct(imp_low)}). IMP minus reinitialized, at the paper's landmarks: {gaps}. The gap "
        f"exceeds the two standard deviations added together at {wider} of {len(pruned)} densities. Shuffling the "
        f"masks within layers (same layer densities, Frankle et al. 2021's check) gives "
        f"{pm(acc['imp_shuffled'], last)}% at {pct(last)} against IMP's {pm(acc['imp'], last)}%.")

    dense_step = steps["imp"][dense_d][0]
    fastest = min(pruned, key=lambda d: steps["imp"][d][0])
    drop = 1 - steps["imp"][fastest][0] / dense_step
    slower = sum(steps["imp_reinit"][d][0] > steps["imp"][d][0] for d in pruned)
    learns = drop > 0 and slower > len(pruned) / 2
    out.append(
        "**Winning tickets learn faster: their early-stopping iteration (minimum validation loss) comes sooner "
        "(paper: fastest at 21.1%, about 38% sooner than dense).** "
        + ("Holds. " if learns else "Holds only in part. " if drop > 0 or slower > len(pruned) / 2 else "Does not hold. ")
        + f"Dense stops at iteration {dense_step:.0f} (mean of 3 seeds); the fastest tickets are at {pct(fastest)}, "
        f"iteration {steps['imp'][fastest][0]:.0f} ({100 * drop:.0f}% sooner). Reinitialized tickets stop later than "
        f"the winning tickets at {slower} of {len(pruned)} densities. Validation runs every 229 iterations and a round "
        f"lasts 4,585, so iterations are resolved to 229 and cannot exceed 4,585.")

    shared = [d for d in pruned if all(d in acc[n] for n in PAI)]
    means = {name: statistics.mean(acc[name][d][0] for d in shared) for name in PAI}
    order = sorted(PAI, key=lambda n: -means[n])
    beats = [n for n in PAI if n != "random" and acc[n][last][0] > acc["random"][last][0]]
    out.append(
        "**Pruning at initialization falls short of IMP with rewinding to init at the same densities "
        "(Frankle et al. 2021).** "
        + ("Holds. " if all(acc["imp"][last][0] > acc[n][last][0] for n in PAI) else "Does not hold at every method. ")
        + f"At {pct(last)}: IMP {pm(acc['imp'], last)}%, "
        + ", ".join(f"{n} {pm(acc[n], last)}%" for n in PAI)
        + f". Averaged over the {len(shared)} densities they were run at the order is {' > '.join(order)}. At {pct(last)}, "
        + (f"{', '.join(beats)} beat random pruning." if beats else "no method beats random pruning."))
    return out


def censored(rows: list[dict[str, Any]], per_round: int) -> str:
    """How many runs had their minimum validation loss at the round's last validation (a lower bound then)."""
    def count(name: str, dense: bool) -> str:
        runs = [r for r in rows if r["experiment"] == name and (int(r["round"]) == 0) == dense and r["best_step"] != ""]
        late = sum(float(r["best_step"]) >= per_round - 2 for r in runs)
        return f"{late} of {len(runs)}"

    return (f"{count('imp', True)} dense runs, {count('imp', False)} winning-ticket runs and "
            f"{count('imp_reinit', False)} reinitialized runs reach their minimum validation loss at the round's last "
            "validation, so their true early-stopping iteration may lie later.")


def write(dense: dict[str, Any], g: dict[str, Any], coll: dict[str, Any], docs: Path) -> Path:
    """docs/results.md and its plots."""
    img = docs / "img"
    img.mkdir(parents=True, exist_ok=True)
    rows = g["rows"]
    plot(rows, img / "results_accuracy.png", "test_acc_at_best", "test accuracy at early stopping (%)",
         title="LeNet-300-100 / Fashion-MNIST, mean ± std of 3 seeds")
    plot(rows, img / "results_accuracy_end.png", "test_acc", "test accuracy at the end of the round (%)",
         title="LeNet-300-100 / Fashion-MNIST, mean ± std of 3 seeds")
    plot([r for r in rows if r["experiment"] in CONTROLS], img / "results_early_stopping.png", "best_step",
         "early-stopping iteration", scale=1.0, title="iteration of minimum validation loss, mean ± std of 3 seeds")
    acc, end = summarize(rows, "test_acc_at_best", 100), summarize(rows, "test_acc", 100)
    steps = summarize(rows, "best_step", 1.0)
    densities = sorted(acc["imp"], reverse=True)
    pai_densities = sorted({d for n in PAI for d in acc.get(n, {})}, reverse=True)

    curve = dense["curve"]
    best = min(curve, key=lambda c: c["val_loss"])
    per_round = int(yaml.safe_load((ROOT / BASE).read_text())["ticket"]["epochs_per_round"]) * 917
    at_round = min(curve, key=lambda c: abs(c["step"] - per_round))
    best_in_round = min((c for c in curve if c["step"] <= per_round), key=lambda c: c["val_loss"])
    gap_loss = best_in_round["val_loss"] / best["val_loss"] - 1
    gap_acc = 100 * (best["test_acc"] - best_in_round["test_acc"])

    paragraphs = claims(acc, end, steps, densities)
    paragraphs[2] += " " + censored(rows, per_round)
    last = min(densities)
    final = acc["imp"][last][0] - 100 * best["test_acc"]
    paragraphs[0] += (
        f" Against dense training run to its own minimum of validation loss instead (the reference run above: "
        f"{100 * best['test_acc']:.2f}% at iteration {best['step']:,}), the {pct(last)} tickets are "
        f"{abs(final):.2f} pp {'above' if final >= 0 else 'below'} it: part of the tickets' lead over dense in "
        f"{per_round:,}-iteration rounds is that they train faster, so the comparison with the fully trained "
        f"network is the stricter one.")
    lines = [
        "# Reproduction report: lottery tickets on LeNet-300-100 / Fashion-MNIST",
        "",
        "Generated by `python benchmarks/results.py` (every number below comes from that command's runs of the "
        "committed code; do not edit by hand).",
        f"Machine: {machine()}.",
        "",
        "## Protocol",
        "",
        f"`{GRID}` over `{BASE}`: Frankle & Carbin's LeNet recipe (Adam 1.2e-3, batch 60, Gaussian Glorot init, "
        "55K/5K train/validation split, layerwise pruning of 20% per round with the output layer at 10%, rewinding "
        "to init), on Fashion-MNIST instead of MNIST (the data this machine has), 15 pruning rounds, seeds 0, 1, 2. "
        "Densities are of all weights of the three Linear layers (biases are not pruned).",
        "",
        f"**Shortened rounds.** The paper trains 50K iterations per round; here a round is {per_round:,} iterations "
        f"(5 epochs). A dense run of the full {PAPER_ITERATIONS:,} iterations (seed 0, validated every 229 "
        f"iterations, {dense['wall_s'] / 60:.1f} min) reaches its minimum validation loss {best['val_loss']:.4f} at "
        f"iteration {best['step']:,} (test accuracy there {100 * best['test_acc']:.2f}%). At iteration "
        f"{at_round['step']:,} its validation loss is {at_round['val_loss']:.4f} and test accuracy "
        f"{100 * at_round['test_acc']:.2f}%; the best point within the first {per_round:,} iterations is "
        f"{best_in_round['val_loss']:.4f} / {100 * best_in_round['test_acc']:.2f}%. So the shortened round stops "
        f"{100 * gap_loss:.1f}% above the dense minimum of validation loss and "
        f"{gap_acc:.2f} pp below its test accuracy"
        + (": the curve is nearly flat there." if gap_loss < 0.05 and gap_acc < 0.5 else
           f": the curve is still improving there, so absolute accuracies below understate fully trained ones by "
           f"about {gap_acc:.1f} pp (comparisons between experiments share the schedule).")
        + " All accuracies below are test accuracy at the early-stopping iteration "
        "(minimum validation loss; the test set never picks it) unless marked \"end\".",
        "",
        "Each pruning-at-initialization cell prunes the freshly initialized network to one of the IMP densities "
        "(global scope; SynFlow in 100 steps, the others in one; SNIP and GraSP score one training batch) and "
        "trains it for one round, "
        + ("at every IMP density. " if len(pai_densities) >= len(densities) - 1 else
           f"at {len(pai_densities)} of the {len(densities) - 1} IMP densities "
           f"({', '.join(pct(d) for d in pai_densities)}), not all. ")
        + "Reinitialized and shuffled cells take the IMP ticket of the same seed and round, at every round.",
        "",
        "![test accuracy against density](img/results_accuracy.png)",
        "",
        "![early-stopping iteration against density](img/results_early_stopping.png)",
        "",
        "## Claims",
        "",
        *[p + "\n" for p in paragraphs],
        "## Winning tickets and their controls",
        "",
        "Mean ± std over 3 seeds. Acc = test accuracy (%) at the early-stopping iteration; end = at the end of the "
        "round; iteration = early-stopping iteration.",
        "",
        "| density | round | IMP acc | IMP end | IMP iteration | reinit acc | reinit end | reinit iteration "
        "| shuffled acc | shuffled end | shuffled iteration |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, d in enumerate(densities):
        lines.append(f"| {100 * d:.1f}% | {i} | {pm(acc['imp'], d)} | {pm(end['imp'], d)} | {pm(steps['imp'], d, 0)} | "
                     f"{pm(acc['imp_reinit'], d)} | {pm(end['imp_reinit'], d)} | {pm(steps['imp_reinit'], d, 0)} | "
                     f"{pm(acc['imp_shuffled'], d)} | {pm(end['imp_shuffled'], d)} | {pm(steps['imp_shuffled'], d, 0)} |")
    lines += [
        "",
        "## Pruning at initialization at the same densities",
        "",
        "Test accuracy (%) at the early-stopping iteration / at the end of the round, mean ± std over 3 seeds.",
        "",
        "| density | IMP | " + " | ".join(PAI) + " |",
        "|---|---|" + "---|" * len(PAI),
    ]
    for d in pai_densities:
        lines.append(f"| {100 * d:.1f}% | {pm(acc['imp'], d)} | "
                     + " | ".join(f"{pm(acc[n], d)} / {pm(end[n], d)}" for n in PAI) + " |")
    lines += [
        "",
        "![test accuracy at the end of the round](img/results_accuracy_end.png)",
        "",
        "## Layer collapse on CIFAR VGG-16 (Tanaka et al. 2020)",
        "",
        "Maximal critical compression: the highest compression 10^x (x in steps of 0.25, found by bisection) at which "
        "no prunable layer of CIFAR VGG-16 with batch norm and PyTorch's default conv biases is emptied. SynFlow "
        "prunes in 100 steps, the others in one. No CIFAR-10 exists on this offline machine, so SNIP and GraSP score "
        "one random CIFAR-shaped batch of 128 with random labels: their values are indicative only.",
        "",
        "| pruner | init | ours | paper |",
        "|---|---|---|---|",
    ]
    for r in coll["rows"]:
        lines.append(f"| {r['pruner']} | {r['init']} | 10^{r['x']:.2f} | {PAPER_COLLAPSE.get(r['pruner'], '–')} |")
    reached = [f"{r['pruner']} ({r['init']} init)" for r in coll["rows"] if r["pruner"] in PAPER_X
               and r["x"] >= PAPER_X[r["pruner"]]]
    short = [f"{r['pruner']} ({r['init']} init, 10^{r['x']:.2f} against 10^{PAPER_X[r['pruner']]})"
             for r in coll["rows"] if r["pruner"] in PAPER_X and r["x"] < PAPER_X[r["pruner"]]]
    lines += ["", f"At or beyond the paper's lower value: {', '.join(reached) or 'none'}. Below it: "
              f"{', '.join(short) or 'none'}. Magnitude pruning depends on the initializer: PyTorch's default draws "
              "uniformly within a bound that shrinks with fan-in, so a global threshold above the bound of the "
              "widest layers empties them at once, while Kaiming normal's tails (the paper's setting) leave a few "
              "weights in every layer for longer."]
    lines += [
        "",
        "## Wall time on this machine",
        "",
        "As measured, including anything else the machine ran meanwhile (the parts may run at the same time as "
        "each other or other jobs, so these are upper bounds of each part's own cost).",
        "",
        f"- dense reference ({PAPER_ITERATIONS:,} iterations, 1 process): {dense['wall_s'] / 60:.1f} min",
        f"- grid ({g['cells']} cells, {g['workers']} worker processes of 1 thread): {g['elapsed_s'] / 60:.1f} min "
        "from the first cell's start to the last cell's end (across every invocation of the grid, idle gaps "
        "between invocations included); per experiment, summed over its cells (a resumed cell counts its last "
        "invocation only): "
        + ", ".join(f"{n} {s / 60:.1f} min" for n, s in sorted(g["cell_seconds"].items())),
        f"- layer-collapse search on VGG-16: {coll['wall_s'] / 60:.1f} min",
        "",
        f"Raw per-cell results: `{g['out']}/results.csv` (regenerated with the grid).",
        "",
    ]
    text = keep_sections("\n".join(lines), docs)
    return atomic_write_text(docs / "results.md", text)


def keep_sections(text: str, docs: Path) -> str:
    """`text` with the sparse-training section of the current docs/results.md (benchmarks/sparse_results.py) kept."""
    from sparse_results import BEGIN, END, replace_section

    old = docs / "results.md"
    before = old.read_text() if old.is_file() else ""
    if BEGIN in before and END in before:
        return replace_section(text, before[before.index(BEGIN):before.index(END) + len(END)])
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="grid worker processes")
    parser.add_argument("--out", default="runs/results", help="folder for the dense reference and collapse runs")
    args = parser.parse_args()
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    dense = dense_reference(out)
    g = grid(args.workers)
    coll = collapse(out)
    print(f"wrote {write(dense, g, coll, ROOT / 'docs')}")


if __name__ == "__main__":
    main()
