"""The results of a comparison: one row per cell and round, results.csv, the accuracy-vs-density plot."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from lottery.files import atomic_write_text, csv_text
from lottery.plots import density_axis, pyplot

PLOT = "comparison.png"  # beside results.csv
RESULT_COLUMNS = ["experiment", "pruner", "seed", "round", "density", "val_acc", "val_acc_at_best", "test_acc",
                  "test_acc_at_best", "best_step", "steps", "wall_time_s", "cell"]  # steps and wall time: the cost


def cell_rows(experiment: str, kind: str, seed: int, rounds: list[dict[str, str]], wall: float,
              key: str) -> list[dict[str, Any]]:
    """Result rows of one cell from its rounds.csv rows (round 0 of a non-IMP cell is the dense start: left out)."""
    rows = []
    for r in rounds:
        if kind != "imp" and r["round"] == "0":
            continue
        rows.append({"experiment": experiment, "pruner": r["pruner"], "seed": seed, "round": int(r["round"]),
                     "density": float(r["density"]), **{c: r.get(c, "") for c in RESULT_COLUMNS[5:11]},
                     "wall_time_s": round(wall, 2), "cell": key})
    return rows


def write(rows: list[dict[str, Any]], out: Path) -> Path:
    """Sort `rows`, write them as results.csv and plot them as comparison.png in `out`; return results.csv."""
    rows.sort(key=lambda r: (r["experiment"], r["seed"], -r["density"]))
    results = atomic_write_text(out / "results.csv", csv_text(rows, RESULT_COLUMNS))
    plot(rows, out / PLOT)
    return results


def plot(rows: list[dict[str, Any]], path: Path, column: str = "test_acc", ylabel: str = "test accuracy (%)",
         scale: float = 100.0, title: str | None = None) -> Path:
    """`column` (times `scale`) against density (log scale), mean ± std over seeds, one line per experiment."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in summarize(rows, column, scale).items():
        xs = sorted(points, reverse=True)
        ax.errorbar([100 * x for x in xs], [points[x][0] for x in xs], yerr=[points[x][1] for x in xs], marker="o",
                    capsize=3, label=name)
    density_axis(ax)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def summarize(rows: list[dict[str, Any]], column: str, scale: float = 1.0) -> dict[str, dict[float, tuple[float, float, int]]]:
    """Per experiment and density (rounded to 4 places): mean, population std and count of `column` × `scale`
    over seeds; empty values are skipped."""
    out: dict[str, dict[float, list[float]]] = {}
    for r in rows:
        if r[column] not in ("", None):
            out.setdefault(r["experiment"], {}).setdefault(round(float(r["density"]), 4), []).append(scale * float(r[column]))
    return {name: {d: (statistics.mean(v), statistics.pstdev(v), len(v)) for d, v in by.items()}
            for name, by in sorted(out.items())}


def means(rows: list[dict[str, Any]], column: str = "test_acc") -> list[dict[str, Any]]:
    """One row per experiment and density (densest first): the mean, std and count over seeds of `column`."""
    return [{"experiment": name, "density": d, f"{column}_mean": m, f"{column}_std": s, "seeds": n}
            for name, points in summarize(rows, column).items()
            for d, (m, s, n) in sorted(points.items(), reverse=True)]
