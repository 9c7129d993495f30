"""Sparse training (gmp, set, rigl) as experiment kinds of a comparison: at the IMP densities, a stated budget."""

import pytest
import yaml

from grid_helpers import ROOT
from lottery import compare
from lottery.compare import Spec
from lottery.files import read_csv
from lottery.ticket import Ticket


def test_sparse_training_cells_run_at_the_imp_densities_for_their_budget(spec, tmp_path):
    path = spec("sparse", ["--trainer.limit_val_batches", "2"])
    raw = yaml.safe_load(path.read_text())
    raw["experiments"] = [{"name": "imp", "kind": "imp"},
                          {"name": "rigl", "kind": "rigl", "args": ["--ticket.sparse_training.every", "2"]},
                          {"name": "gmp", "kind": "gmp", "budget": 2, "rounds": [2],
                           "args": ["--ticket.sparse_training.every", "2"]}]
    path.write_text(yaml.safe_dump(raw))
    rows = read_csv(compare.run(path))
    imp = {int(r["round"]): float(r["density"]) for r in rows if r["experiment"] == "imp"}
    rigl = [r for r in rows if r["experiment"] == "rigl"]
    gmp = [r for r in rows if r["experiment"] == "gmp"]
    assert sorted(float(r["density"]) for r in rigl) == pytest.approx(sorted([imp[1], imp[2]]), abs=1e-4)
    assert [float(r["density"]) for r in gmp] == pytest.approx([imp[2]], abs=1e-4)
    assert {r["pruner"] for r in rigl} == {"rigl"} and {r["pruner"] for r in gmp} == {"gmp"}
    # the cost beside the accuracy: one IMP round is 1 epoch of 8 steps here; the GMP cells train two rounds' worth
    assert {int(r["steps"]) for r in rigl} == {8} and {int(r["steps"]) for r in gmp} == {16}
    assert all(float(r["wall_time_s"]) > 0 and r["test_acc"] for r in rigl + gmp)
    ticket = Ticket.load(next((tmp_path / "sparse" / "cells" / gmp[0]["cell"]).glob("**/round_01.safetensors")))
    assert ticket.metadata["sparse_training"]["method"] == "gmp" and ticket.metadata["sparse_training"]["every"] == 2


def test_a_bad_budget_is_refused(tmp_path):
    base = ROOT / "configs" / "lenet300_fashion_imp.yaml"
    for budget, kind in ((0, "rigl"), ("two", "set"), (2, "pai")):
        path = tmp_path / "c.yaml"
        extra = {"pruner": "random"} if kind == "pai" else {}
        path.write_text(yaml.safe_dump({"base": str(base), "experiments": [
            {"name": "imp", "kind": "imp"}, {"name": "x", "kind": kind, "budget": budget, **extra}]}))
        with pytest.raises(ValueError, match="budget"):
            Spec.load(path)
