"""The sparse-training section of docs/results.md: GMP, SET, RigL and static sparse training against IMP.

Runs (or reads back) `lottery compare --config configs/compare_lenet300_fashion_sparse.yaml`: IMP on LeNet-300-100 /
Fashion-MNIST for 15 rounds of 5 epochs, and at the densities of its rounds 3, 7, 9, 12 and 15 gradual magnitude
pruning, SET, RigL and static sparse training (random ERK masks), each for one IMP round's 5 epochs, 3 seeds. The
section it writes sits between two markers in docs/results.md, which benchmarks/results.py keeps when it rewrites
the rest.

    python benchmarks/sparse_results.py [--workers 2]     # about 1 h on the 2-core development CPU
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from lottery.compare import summarize  # noqa: E402
from lottery.files import atomic_write_text  # noqa: E402
from results import TOLERANCE, grid, pct, pm  # noqa: E402

GRID = "configs/compare_lenet300_fashion_sparse.yaml"
BEGIN = "<!-- sparse training: written by benchmarks/sparse_results.py -->"
END = "<!-- end of sparse training -->"
METHODS = ("gmp", "set", "rigl", "static_erk")
NAMES = {"imp": "IMP (rewind to init)", "gmp": "GMP", "set": "SET (ER)", "rigl": "RigL (ERK)",
         "static_erk": "static sparse (random ERK)"}


def imp_costs(rows: list[dict[str, Any]]) -> dict[float, tuple[float, float]]:
    """IMP's total training to reach each density, mean over seeds: steps of rounds 0..r, and the cell's wall time
    in proportion to those steps (a cell's wall time is measured whole, not per round)."""
    by_seed: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        if r["experiment"] == "imp":
            by_seed.setdefault(int(r["seed"]), []).append(r)
    costs: dict[float, list[tuple[float, float]]] = {}
    for seed_rows in by_seed.values():
        seed_rows.sort(key=lambda r: int(r["round"]))
        total = sum(float(r["steps"]) for r in seed_rows)
        done = 0.0
        for r in seed_rows:
            done += float(r["steps"])
            costs.setdefault(round(float(r["density"]), 4), []).append((done, float(r["wall_time_s"]) * done / total))
    return {d: (sum(s for s, _ in v) / len(v), sum(w for _, w in v) / len(v)) for d, v in costs.items()}


def method_costs(rows: list[dict[str, Any]], name: str) -> dict[float, tuple[float, float]]:
    """A one-run method's training at each density, mean over seeds: its steps and its cell's wall time."""
    costs: dict[float, list[tuple[float, float]]] = {}
    for r in rows:
        if r["experiment"] == name:
            costs.setdefault(round(float(r["density"]), 4), []).append((float(r["steps"]), float(r["wall_time_s"])))
    return {d: (sum(s for s, _ in v) / len(v), sum(w for _, w in v) / len(v)) for d, v in costs.items()}


def verdict(held: int, of: int) -> str:
    """'Holds.' at every density, 'Holds in part.' at some, 'Does not hold.' at none."""
    return "Holds. " if held == of else "Holds in part. " if held else "Does not hold. "


def claims(acc: dict[str, dict], densities: list[float], costs: dict[str, dict]) -> list[str]:
    """One paragraph per claim of the papers, its verdict decided by the numbers at `densities`."""
    dense = acc["imp"][max(acc["imp"])][0]
    out = []

    matched = [d for d in densities if acc["gmp"][d][0] >= acc["imp"][d][0] - TOLERANCE]
    cheaper = [d for d in densities if costs["gmp"][d][0] < costs["imp"][d][0]]
    out.append(
        "**Gradual magnitude pruning matches IMP at the same density with less total training (Zhu & Gupta 2017 "
        "against Frankle & Carbin 2019; Gale et al. 2019 found gradual pruning as good as rewinding).** "
        + verdict(len(set(matched) & set(cheaper)), len(densities))
        + f"GMP is within {TOLERANCE} pp of IMP (or above) at {len(matched)} of {len(densities)} densities ("
        + ", ".join(f"{pct(d)}: {acc['gmp'][d][0] - acc['imp'][d][0]:+.2f} pp" for d in densities)
        + f") while training {costs['gmp'][densities[-1]][0]:,.0f} steps against IMP's "
        f"{costs['imp'][densities[-1]][0]:,.0f} to reach {pct(densities[-1])}.")

    diff = {d: acc["rigl"][d][0] - acc["static_erk"][d][0] for d in densities}
    beats = [d for d in densities if diff[d] > 0]
    clear = [d for d in beats if diff[d] > acc["rigl"][d][1] + acc["static_erk"][d][1]]  # beyond the seeds' spread
    out.append(
        "**RigL beats static sparse training at the same density (Evci et al. 2020).** "
        + ("Holds. " if len(beats) == len(densities) and 2 * len(clear) > len(densities)
           else "Holds in part. " if 2 * len(beats) > len(densities) else "Does not hold. ")
        + "RigL minus the same random ERK masks kept fixed: "
        + ", ".join(f"{pct(d)}: {diff[d]:+.2f} pp" for d in densities)
        + f". Higher at {len(beats)} of {len(densities)} densities, by more than the two standard deviations added "
        f"together at {len(clear)}.")

    near = [d for d in densities if acc["set"][d][0] >= dense - TOLERANCE]
    out.append(
        "**SET reaches the dense network's accuracy with a fraction of the weights (Mocanu et al. 2018, MLPs).** "
        + verdict(len(near), len(densities))
        + f"Dense: {dense:.2f}%; SET is within {TOLERANCE} pp of it at {len(near)} of {len(densities)} densities, "
        f"down to {pct(min(near)) if near else 'none'}; at {pct(densities[-1])} it reaches "
        f"{pm(acc['set'], densities[-1])}%.")

    close = [d for d in densities if acc["rigl"][d][0] >= acc["gmp"][d][0] - TOLERANCE]
    out.append(
        "**At the same training budget RigL comes close to pruning from dense (Evci et al. 2020, 1x budget).** "
        + verdict(len(close), len(densities))
        + "RigL minus GMP: "
        + ", ".join(f"{pct(d)}: {acc['rigl'][d][0] - acc['gmp'][d][0]:+.2f} pp" for d in densities)
        + f"; within {TOLERANCE} pp at {len(close)} of {len(densities)}.")
    return out


def section(rows: list[dict[str, Any]], elapsed_s: float | None = None) -> str:
    """The markdown section, from the rows of the sparse grid's results.csv."""
    acc = summarize(rows, "test_acc_at_best", 100)
    end = summarize(rows, "test_acc", 100)
    densities = sorted(acc["rigl"], reverse=True)
    costs = {"imp": imp_costs(rows), **{m: method_costs(rows, m) for m in METHODS}}
    lines = [BEGIN, "", "## Sparse training during training: GMP, SET, RigL against IMP", "",
             f"`lottery compare --config {GRID}`: IMP for 15 rounds of 5 epochs, and at the densities of its rounds "
             "3, 7, 9, 12 and 15 gradual magnitude pruning (layerwise, cubic schedule, an update every 100 steps "
             "until 75% of training), SET (ER densities, 30% of each layer's weights replaced every 100 steps), RigL "
             "(ERK, cosine-decayed 30%, every 100 steps, until 75%) and static sparse training (random ERK masks "
             "kept fixed), each trained for one IMP round's 5 epochs (the same per-round budget); 3 seeds, mean ± "
             "std. Accuracy is test accuracy at the run's early-stopping iteration (minimum validation loss; for GMP "
             "after it has reached its density), then at the end; the cost is the total training that produced the "
             "network: one run for the sparse methods, rounds 0..r for IMP (its wall time apportioned by steps).",
             "", "| method | density | test acc. at best | at end | steps | wall time (s) |", "|---|---|---|---|---|---|"]
    for name in ("imp", *METHODS):
        for d in densities:
            if d in acc.get(name, {}):
                steps, wall = costs[name][d]
                lines.append(f"| {NAMES[name]} | {pct(d)} | {pm(acc[name], d)} | {pm(end[name], d)} | {steps:,.0f} "
                             f"| {wall:,.0f} |")
    lines += ["", *[p + "\n" for p in claims(acc, densities, costs)]]
    if elapsed_s is not None:
        lines.append(f"The grid took {elapsed_s / 60:.0f} min on this machine from the first cell's start to the last "
                     "cell's end (2 worker processes of 1 thread, other jobs running meanwhile).\n")
    lines.append(END)
    return "\n".join(lines)


def replace_section(text: str, new: str) -> str:
    """`text` with its sparse-training section replaced by `new` (appended when it has none)."""
    if BEGIN in text and END in text:
        return text[:text.index(BEGIN)] + new + text[text.index(END) + len(END):]
    return text.rstrip("\n") + "\n\n" + new + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="grid worker processes")
    args = parser.parse_args()
    g = grid(args.workers, GRID)  # trains what is missing, reads back the rest
    doc = ROOT / "docs" / "results.md"
    atomic_write_text(doc, replace_section(doc.read_text(), section(g["rows"], g["elapsed_s"])))
    print(f"wrote the sparse-training section of {doc}")


if __name__ == "__main__":
    main()
