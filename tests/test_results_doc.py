"""The reproduction report's verdicts follow the numbers: built from synthetic grids with known answers."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import results  # noqa: E402

DENSITIES = [0.8**r for r in range(16)]


def grid(imp, reinit, imp_step, reinit_step, pai=lambda d: 0.85):
    """Rows like results.csv: accuracy functions of density, seeds 0-2 spread by +-0.001."""
    rows = []
    for seed, jitter in enumerate((-0.001, 0.0, 0.001)):
        for r, d in enumerate(DENSITIES):
            for name, acc, step in (("imp", imp, imp_step), ("imp_reinit", reinit, reinit_step),
                                    ("imp_shuffled", reinit, reinit_step), *((n, pai, reinit_step) for n in results.PAI)):
                if name != "imp" and r == 0:
                    continue
                rows.append({"experiment": name, "seed": seed, "round": r, "density": str(d),
                             "test_acc_at_best": str(acc(d) + jitter), "test_acc": str(acc(d) + jitter - 0.002),
                             "best_step": str(step(d))})
    return rows


def paragraphs(rows):
    acc = results.summarize(rows, "test_acc_at_best", 100)
    end = results.summarize(rows, "test_acc", 100)
    steps = results.summarize(rows, "best_step", 1.0)
    return results.claims(acc, end, steps, sorted(acc["imp"], reverse=True))


def test_paper_like_grid_holds_every_claim():
    text = paragraphs(grid(imp=lambda d: 0.88 + (0.003 if 0.1 < d < 0.9 else 0.0),
                           reinit=lambda d: 0.88 if d > 0.2 else 0.86,
                           imp_step=lambda d: 2000 if d == 1 else 1300, reinit_step=lambda d: 2500))
    assert [p.split("** ")[1].split(".")[0] for p in text] == ["Holds", "Holds", "Holds", "Holds"]
    assert "down to 3.5% of the weights" in text[0]  # 0.8^15 = 3.5%
    assert "(winning tickets: 3.5%)" in text[1] and "down to 21.0%" in text[1]
    assert "iteration 2000" in text[2] and "35% sooner" in text[2]


def test_failures_are_stated():
    text = paragraphs(grid(imp=lambda d: 0.88 if d > 0.3 else 0.85, reinit=lambda d: 0.88 if d > 0.3 else 0.85,
                           imp_step=lambda d: 2000, reinit_step=lambda d: 2000, pai=lambda d: 0.87))
    assert text[0].split("** ")[1].startswith("Holds only in part.")
    assert "not to the last round's 3.5%" in text[0]
    assert text[1].split("** ")[1].startswith("Does not hold.")
    assert text[2].split("** ")[1].startswith("Does not hold.")
    assert text[3].split("** ")[1].startswith("Does not hold at every method.")


def test_document_has_every_density_plot_and_collapse_row(tmp_path):
    rows = grid(imp=lambda d: 0.88, reinit=lambda d: 0.87, imp_step=lambda d: 4584 if d == 1 else 1500,
                reinit_step=lambda d: 2000)
    curve = [{"step": s, "val_loss": 0.3 + abs(s - 7000) / 1e5, "val_acc": 0.88, "test_acc": 0.87}
             for s in range(229, 50_000, 229)]
    g = {"rows": rows, "elapsed_s": 600.0, "cell_seconds": {"imp": 300.0}, "cells": 318, "workers": 2, "out": "x"}
    coll = {"rows": [{"pruner": "synflow", "init": "default", "x": 6.0, "seconds": 1.0}], "wall_s": 60.0}
    path = results.write({"wall_s": 120.0, "curve": curve}, g, coll, tmp_path)
    text = path.read_text()
    for d in DENSITIES:
        assert f"| {100 * d:.1f}% |" in text
    assert "| synflow | default | 10^6.00 | 10^5.75 – 10^6 |" in text
    assert "iteration 7,099" in text  # the curve's minimum (229 × 31)
    assert "3 of 3 dense runs, 0 of 45 winning-ticket runs and 0 of 45 reinitialized runs" in text
    for name in ("results_accuracy.png", "results_early_stopping.png", "results_accuracy_end.png"):
        assert (tmp_path / "img" / name).stat().st_size > 10_000


@pytest.mark.parametrize("low", [None, 0.5])
def test_matches_down_to(low):
    stats = {1.0: (88.0, 0.1, 3), 0.8: (88.2, 0.1, 3), 0.5: (87.6, 0.1, 3), 0.3: (86.0, 0.1, 3), 0.1: (88.0, 0.1, 3)}
    reference = 88.0 if low == 0.5 else 89.0
    # the first drop ends the run even if a sparser density recovers
    assert results.matches_down_to(stats, reference) == (0.5 if low == 0.5 else None)
