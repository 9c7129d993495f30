"""A comparison with a W&B base config, offline: one run per cell named for it, the summary run, ticket lineage, and
every file of a cell in the cell's own folder."""

import json
from pathlib import Path

import pytest
import yaml

from grid_helpers import ROOT, rows
from lottery import compare
from lottery.resume import newest_checkpoint
from wandb_records import offline_runs, offline_wandb

pytest.importorskip("wandb")

BASE = ROOT / "configs" / "lenet300_fashion_imp_wandb.yaml"
SHORT = ["--ticket.epochs_per_round", "1", "--trainer.limit_train_batches", "8", "--trainer.limit_val_batches", "2"]
IDENTITY = {"experiment", "kind", "pruner", "seed", "target_density", "source_ticket", "ticket_artifact", "name",
            "group", "job_type"}


@pytest.fixture
def wandb_spec(tmp_path, monkeypatch, fashion_mnist):
    """A comparison file of the shipped W&B comparison, shortened; run from `tmp_path`, so anything written to the
    base config's own W&B folder (relative: runs/lenet300_fashion_imp_wandb) would land in tmp_path/runs."""
    offline_wandb(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    shipped = yaml.safe_load((ROOT / "configs" / "compare_lenet300_fashion_wandb.yaml").read_text())

    def make(name, seeds, experiments, rounds):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**shipped, "base": str(BASE), "seeds": seeds, "out": str(tmp_path / name),
                                        "args": ["--ticket.rounds", str(rounds), *SHORT], "experiments": experiments,
                                        "workers": 1}))
        return path

    return make


def test_every_cell_is_its_own_wandb_run_named_for_it_with_the_summary_run_and_ticket_lineage(wandb_spec, tmp_path):
    experiments = [{"name": "imp", "kind": "imp"}, {"name": "imp_shuffled", "kind": "shuffle"},
                   {"name": "random", "kind": "pai", "pruner": "random"}]
    out = tmp_path / "cmp"
    results = rows(compare.run(wandb_spec("cmp", [0, 1], experiments, rounds=1)))
    density = f"{float(results[1]['density']):.4g}"  # IMP round 1's, the other cells' density
    runs = offline_runs(tmp_path)
    # one run per cell (they used to share one), each finished, in the comparison's group, typed by the cell's kind
    assert sorted((r.name, r.job_type) for r in runs) == sorted([
        *((f"imp-magnitude-seed{s}", "imp") for s in (0, 1)),
        *((f"imp_shuffled-round1-seed{s}", "shuffle") for s in (0, 1)),
        *((f"random-d{density}-seed{s}", "pai") for s in (0, 1)), ("cmp-summary", "summary")])
    assert {r.group for r in runs} == {"cmp"} and {r.exit_code for r in runs} == {0}
    cells = [r for r in runs if r.job_type != "summary"]
    by_name = {r.name: r for r in cells}
    # the complete resolved config and the cell's identity, for filtering and grouping
    for run in cells:
        assert {"model", "data", "trainer", "ticket", "seed_everything", "lottery"} <= set(run.config)
        assert set(run.config["lottery"]) == IDENTITY and run.config["lottery"]["name"] == run.name
        assert run.config["seed_everything"] == run.config["lottery"]["seed"]
        assert run.config["model"]["init_args"]["arch"] == "lenet300"
    random0 = by_name[f"random-d{density}-seed0"].config
    assert (random0["lottery"]["experiment"], random0["lottery"]["pruner"]) == ("random", "random")
    assert random0["lottery"]["target_density"] == pytest.approx(float(results[1]["density"]))
    assert random0["ticket"]["density"] == pytest.approx(float(results[1]["density"]))
    assert by_name["imp_shuffled-round1-seed1"].config["lottery"]["source_ticket"] == "ticket-imp-seed1:round-1"
    # every per-round value of every cell charted against density, by name
    for run in cells:
        keys = {k for h in run.history if "lottery/density" in h for k in h if k.startswith("round/")}
        assert "round/test_acc" in keys and {run.axis.get(k) for k in keys} == {"lottery/density"}, run.name
    # tickets: one artifact per lineage, a version per round; a sanity cell declares the IMP ticket it trains
    logged = {r.name: [(a.name, sorted(a.aliases)) for a in r.logged()] for r in cells}
    for s in (0, 1):
        assert logged[f"imp-magnitude-seed{s}"] == [(f"ticket-imp-seed{s}", ["latest", f"round-{r}"]) for r in (0, 1)]
        assert [a[0] for a in logged[f"imp_shuffled-round1-seed{s}"]] == [f"ticket-imp_shuffled-round1-seed{s}"]
        assert [a[0] for a in logged[f"random-d{density}-seed{s}"]] == [f"ticket-random-d{density}-seed{s}"]
        (used,) = by_name[f"imp_shuffled-round1-seed{s}"].used()
        imp_round1 = by_name[f"imp-magnitude-seed{s}"].logged()[1]
        assert used.name == f"ticket-imp-seed{s}" and not used.aliases
        assert used.digest == imp_round1.digest  # the same file, so W&B resolves it to that version
        assert json.loads(used.metadata) == json.loads(imp_round1.metadata)
        assert not by_name[f"random-d{density}-seed{s}"].used()  # pruned at init: starts from no ticket
    # the summary run: results.csv as a table, and the chart of test accuracy (mean over seeds) against density
    (summary,) = [r for r in runs if r.job_type == "summary"]
    (row,) = summary.history
    assert row["comparison/results"]["nrows"] == len(results)
    points = {(r["experiment"], r["density"]) for r in results}
    assert row["comparison/test_acc_vs_density_table"]["nrows"] == len(points)
    assert row["comparison/plot"]["_type"] == "image-file"
    # all of a cell in its own folder: W&B files, checkpoints, tickets; nothing in the base config's W&B folder
    for key in {r["cell"] for r in results}:
        folder = out / "cells" / key
        assert len(list((folder / "wandb").glob("offline-run-*"))) == 1
        assert newest_checkpoint((folder / "checkpoints").glob("*.ckpt")) is not None
        assert (folder / "tickets" / "rounds.csv").is_file()
    assert not (tmp_path / "runs").exists()


def test_a_killed_wandb_cell_resumes_from_its_own_checkpoint(wandb_spec, tmp_path, caplog):
    from lottery.cli import main

    path = wandb_spec("killed", [0], [{"name": "imp", "kind": "imp"}], rounds=2)
    spec = compare.Spec.load(path)
    cell = compare.phase_one(spec)[0]
    folder = Path(spec.out) / "cells" / cell.key(spec.base, spec.out)
    with pytest.raises(SystemExit):  # killed in round 2 (epochs of 8 steps), after the checkpoint of step 16
        main([*compare.fit_args(spec.base, folder, cell, spec.args), "--trainer.callbacks+=helpers.Kill",
              "--trainer.callbacks.step", "20"])
    assert newest_checkpoint(folder.glob("**/checkpoints/*.ckpt")) == folder / "checkpoints" / "epoch=1-step=16.ckpt"
    caplog.clear()
    with caplog.at_level("INFO"):
        compare.run(path)
    assert "Restored all states from the checkpoint" in caplog.text and "epoch=1-step=16.ckpt" in caplog.text
    killed, resumed, _summary = offline_runs(tmp_path)
    assert (killed.name, killed.exit_code, resumed.name, resumed.exit_code) == ("imp-magnitude-seed0", 1,
                                                                                "imp-magnitude-seed0", 0)
    assert resumed.id == killed.id  # the cell's one W&B run continued (W&B joins them on sync), not a second one
    rounds = [[h["lottery/round"] for h in r.history if "lottery/density" in h] for r in (killed, resumed)]
    assert rounds[0] == [0, 1] and rounds[1][-1] == 2 and 0 not in rounds[1]  # round 0 was not trained again
    assert not (tmp_path / "runs").exists()


def test_the_shipped_wandb_comparison_is_the_plain_one_with_a_wandb_base():
    plain, wandb = (yaml.safe_load((ROOT / "configs" / f"compare_lenet300_fashion{s}.yaml").read_text())
                    for s in ("", "_wandb"))
    assert {k: v for k, v in wandb.items() if k not in ("base", "out")} == {
        k: v for k, v in plain.items() if k not in ("base", "out")}
    bases = [yaml.safe_load((ROOT / spec["base"]).read_text()) for spec in (plain, wandb)]
    logger = bases[1]["trainer"].pop("logger")
    for base in bases:
        base["trainer"].pop("default_root_dir")
    assert bases[0] == bases[1] and logger["class_path"] == "pytorch_lightning.loggers.WandbLogger"
    assert compare.cells.base_wandb(ROOT / wandb["base"])["project"] == "lottery"
    assert compare.cells.base_wandb(ROOT / plain["base"]) is None
