"""The sparse-training section's verdicts and costs follow the numbers: synthetic grids with known answers."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import sparse_results  # noqa: E402

DENSITIES = [0.8**r for r in range(16)]
PICKED = (3, 7, 9, 12, 15)


def rows(acc):
    """results.csv rows: IMP rounds 0..15 of 1000 steps each (cell wall 1600 s), sparse cells of 1000 steps."""
    out = []
    for seed in range(3):
        for r, d in enumerate(DENSITIES):
            out.append({"experiment": "imp", "seed": seed, "round": r, "density": str(d), "steps": "1000",
                        "wall_time_s": "1600", "test_acc_at_best": str(acc["imp"](d)), "test_acc": str(acc["imp"](d))})
            if r in PICKED:
                for m in sparse_results.METHODS:
                    out.append({"experiment": m, "seed": seed, "round": 1, "density": str(d), "steps": "1000",
                                "wall_time_s": "100", "test_acc_at_best": str(acc[m](d)), "test_acc": str(acc[m](d))})
    return out


def verdicts(text):
    return [p.split("** ")[1].split(".")[0] for p in text.split("\n") if p.startswith("**")]


def test_papers_like_numbers_hold_every_claim():
    acc = {"imp": lambda d: 0.88, "gmp": lambda d: 0.879, "set": lambda d: 0.878, "rigl": lambda d: 0.877,
           "static_erk": lambda d: 0.86}
    text = sparse_results.section(rows(acc))
    assert verdicts(text) == ["Holds", "Holds", "Holds", "Holds"]
    # IMP's cost to reach round 15 is all 16 rounds: 16,000 steps, and its whole wall time
    assert "| IMP (rewind to init) | 3.5% | 88.00 ± 0.00 | 88.00 ± 0.00 | 16,000 | 1,600 |" in text
    assert "| RigL (ERK) | 3.5% | 87.70 ± 0.00 | 87.70 ± 0.00 | 1,000 | 100 |" in text
    assert text.startswith(sparse_results.BEGIN) and text.endswith(sparse_results.END)


def test_numbers_against_the_papers_are_reported_as_such():
    low = lambda d: 0.80 if d < 0.2 else 0.88  # noqa: E731
    acc = {"imp": lambda d: 0.88, "gmp": low, "set": lambda d: 0.70, "rigl": lambda d: 0.85, "static_erk": lambda d: 0.86}
    assert verdicts(sparse_results.section(rows(acc))) == ["Holds in part", "Does not hold", "Does not hold",
                                                           "Holds in part"]


def test_the_section_replaces_its_old_self_and_nothing_else():
    old = f"# Results\n\ntext\n\n{sparse_results.BEGIN}\nold\n{sparse_results.END}\n\nafter\n"
    new = f"{sparse_results.BEGIN}\nnew\n{sparse_results.END}"
    assert sparse_results.replace_section(old, new) == f"# Results\n\ntext\n\n{new}\n\nafter\n"
    assert sparse_results.replace_section("# Results\n", new) == f"# Results\n\n{new}\n"


def test_results_py_keeps_the_sparse_section_when_it_rewrites_the_rest(tmp_path):
    import results

    section = f"{sparse_results.BEGIN}\nsparse rows\n{sparse_results.END}"
    (tmp_path / "results.md").write_text(f"# old report\n\n{section}\n")
    text = results.keep_sections("# new report\n", tmp_path)
    assert text.startswith("# new report") and section in text and "old report" not in text
    assert results.keep_sections("# new report\n", tmp_path / "nowhere") == "# new report\n"
