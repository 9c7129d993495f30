import json

import pytest
import pytorch_lightning as pl
import yaml
from pytorch_lightning.loggers import WandbLogger

from helpers import MLP, Module, trainer
from lottery import LotteryTicket
from lottery.experiment import fit
from wandb_records import offline_runs, offline_wandb

pytest.importorskip("wandb")

TICKET_METADATA = {"round", "density", "layer_densities", "pruner", "rewind", "scope", "prune_fraction", "steps",
                   "seed", "metrics"}


class WithTest(Module):
    """Logs test_acc beside the validation values, and training values once per epoch."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = super().training_step(batch, batch_idx)
        self.log("train_acc", (self(x).argmax(1) == y).float().mean(), on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        super().validation_step(batch, batch_idx)
        x, y = batch
        self.log("test_acc", (self(x).argmax(1) == y).float().mean())


def run_of(tmp_path):
    (run,) = offline_runs(tmp_path)
    return run


def round_rows(run):
    """The per-round rows (one per round, against density)."""
    return [h for h in run.history if "lottery/density" in h]


def tables(run):
    """(key, row index, table) of every table a run logged, a chart's table included."""
    return [(k, i, v) for i, h in enumerate(run.history) for k, v in h.items()
            if isinstance(v, dict) and v.get("_type") in ("table-file", "table")]


def test_offline_wandb_run_has_metrics_tables_and_ticket_artifacts(tmp_path, monkeypatch):
    offline_wandb(monkeypatch, tmp_path)
    pl.seed_everything(0)
    logger = WandbLogger(project="lottery-test", save_dir=str(tmp_path), offline=True, group="lenet-imp",
                         job_type="imp")
    cb = LotteryTicket(rounds=2, epochs_per_round=1, dirpath=str(tmp_path / "tickets"))
    trainer(tmp_path, [cb], logger=logger).fit(WithTest(scheduler=None))
    logger.experiment.finish()

    run = run_of(tmp_path)
    assert (run.group, run.job_type) == ("lenet-imp", "imp")
    assert run.axis["lottery/round"] == "" and run.axis["lottery/density"] == ""
    assert run.globs["round/*"] == "lottery/density"
    rows = round_rows(run)
    assert [r["lottery/round"] for r in rows] == [0, 1, 2]
    assert all("round/best_val_loss" in r and "round/best_step" in r for r in rows)
    # no table per round: one per-layer table of all rounds and one summary table, each logged once
    logged = tables(run)
    assert not any(k.startswith("round/") for k, _, _ in logged)
    assert sorted(k for k, _, _ in logged) == ["lottery/layer_densities", "lottery/summary_table"]
    (summary,) = [h for h in run.history if "lottery/summary_table" in h]
    assert summary["lottery/summary_table"]["nrows"] == 3 and "lottery/test_acc_vs_density_table" not in summary
    layer_file = run.folder / "files" / summary["lottery/layer_densities"]["path"]
    layers = json.loads(layer_file.read_text())
    assert layers["columns"] == ["round", "layer", "weights", "kept", "density"]
    expected = [(r, f"net.fc{i}.weight") for r in range(3) for i in (1, 2, 3)]
    assert sorted({(r[0], r[1]) for r in layers["data"]}) == expected
    # the tickets: versions of one artifact (the run's group names the experiment, the seed its lineage)
    tickets = run.logged("ticket")
    assert {a.name for a in tickets} == {"ticket-lenet-imp-seed0"} and not run.used("ticket")
    assert [sorted(a.aliases) for a in tickets] == [["latest", f"round-{r}"] for r in range(3)]
    meta = [json.loads(a.metadata) for a in tickets]
    assert all(set(m) == TICKET_METADATA for m in meta)
    assert [m["round"] for m in meta] == [0, 1, 2] and meta[2]["pruner"] == "magnitude" and meta[2]["seed"] == 0
    assert meta[2]["density"] == pytest.approx(cb.tickets[2].density)
    assert meta[2]["layer_densities"] == pytest.approx(cb.tickets[2].layer_densities())
    assert (meta[2]["rewind"], meta[2]["scope"], meta[2]["prune_fraction"]) == ("init", "global", 0.2)
    assert meta[2]["steps"] == 6 and meta[2]["metrics"]["best_step"] == cb.tickets[2].metrics["best_step"]
    assert any(p.suffix == ".png" for p in (run.folder / "files" / "media" / "images").glob("**/*"))


def test_every_per_round_key_has_its_axis_by_name_and_rounds_are_logged_once(tmp_path, monkeypatch):
    offline_wandb(monkeypatch, tmp_path)
    pl.seed_everything(0)
    logger = WandbLogger(project="lottery-test", save_dir=str(tmp_path), offline=True)
    cb = LotteryTicket(rounds=2, epochs_per_round=1, dirpath=str(tmp_path / "tickets"))
    trainer(tmp_path, [cb], logger=logger, log_every_n_steps=1).fit(WithTest(scheduler=None))
    logger.experiment.finish()
    run = run_of(tmp_path)
    scalars = {k for h in run.history for k, v in h.items() if k.startswith("round/") and not isinstance(v, dict)}
    assert scalars and all(run.axis.get(k) == "lottery/density" for k in scalars), {k: run.axis.get(k) for k in scalars}
    assert len(round_rows(run)) == 3  # once per round, not again through the logger
    assert not any("lottery/best_val_loss" in h for h in run.history)  # round/best_val_loss holds it
    # nothing that changes once per round rides on the per-step rows (train_loss is logged every step)
    steps = [h for h in run.history if "train_loss" in h]
    assert len(steps) == 18 and not any(k.startswith(("lottery/", "round/")) for h in steps for k in h)


def test_round_keys_are_charted_against_density_in_every_one_of_ten_runs(tmp_path, monkeypatch):
    offline_wandb(monkeypatch, tmp_path)
    for seed in range(10):
        pl.seed_everything(seed)
        logger = WandbLogger(project="lottery-test", save_dir=str(tmp_path), offline=True)
        cb = LotteryTicket(rounds=1, epochs_per_round=1, dirpath=str(tmp_path / f"tickets{seed}"))
        model = WithTest(scheduler=None, n=32, net=MLP((20, 8, 4, 4)))
        trainer(tmp_path, [cb], logger=logger, enable_checkpointing=False).fit(model)
        logger.experiment.finish()
    runs = offline_runs(tmp_path)
    assert len(runs) == 10
    for run in runs:
        keys = {k for h in round_rows(run) for k in h if k.startswith("round/")}
        assert {"round/val_acc", "round/test_acc_at_best", "round/best_step"} <= keys
        assert {k: run.axis.get(k) for k in keys} == {k: "lottery/density" for k in keys}, run.name


def test_train_values_at_best_are_those_the_best_epoch_logged(tmp_path, monkeypatch):
    offline_wandb(monkeypatch, tmp_path)
    pl.seed_everything(1)
    logger = WandbLogger(project="lottery-test", save_dir=str(tmp_path), offline=True)
    cb = LotteryTicket(rounds=2, epochs_per_round=3, dirpath=str(tmp_path / "tickets"))
    trainer(tmp_path, [cb], logger=logger, enable_checkpointing=False).fit(WithTest(scheduler=None, lr=0.5))
    logger.experiment.finish()
    run = run_of(tmp_path)
    epochs, best_and_last = [], []
    for row in run.history:  # a round's epoch rows come before its per-round row
        if "lottery/density" in row:
            best = next(e for e in epochs if e.get("val_loss") == pytest.approx(row["round/best_val_loss"], abs=0))
            trained = next(e for e in epochs if "train_acc" in e and e["epoch"] == best["epoch"])
            assert row["round/train_acc_at_best"] == pytest.approx(trained["train_acc"], rel=1e-6)
            assert row["round/test_acc_at_best"] == pytest.approx(best["test_acc"], rel=1e-6)
            last = next(e for e in epochs[::-1] if "train_acc" in e)
            assert row["round/train_acc"] == pytest.approx(last["train_acc"], rel=1e-6)
            best_and_last.append((best["epoch"], last["epoch"]))
            epochs = []
        elif "epoch" in row:
            epochs.append(row)
    assert len(best_and_last) == 3
    assert any(best != last for best, last in best_and_last)  # the best epoch is not always the last one


def fit_args(tmp_path, seed, *extra):
    return ["fit", "--model", "user_code.TinyModule", "--data", "user_code.TinyData", "--ticket.rounds", "1",
            "--ticket.epochs_per_round", "1", "--trainer.enable_progress_bar", "false", "--seed_everything", str(seed),
            f"--trainer.default_root_dir={tmp_path / 'root'}", "--trainer.logger", "WandbLogger",
            "--trainer.logger.init_args.project", "proj", f"--trainer.logger.init_args.save_dir={tmp_path / 'wb'}",
            *extra]


def test_each_fit_is_its_own_named_wandb_run_holding_the_resolved_config(tmp_path, monkeypatch):
    offline_wandb(monkeypatch, tmp_path)
    fit(fit_args(tmp_path, 1))
    fit(fit_args(tmp_path, 2, "--trainer.logger.init_args.group", "my group", "--trainer.logger.init_args.job_type",
                 "train", "--ticket.rounds", "2"))
    with pytest.raises(ValueError, match="monitor='val_acc'"):  # a fit that fails after its run started
        fit(fit_args(tmp_path, 3, "--trainer.logger.init_args.name", "mine", "--ticket.monitor", "val_acc"))
    runs = offline_runs(tmp_path)
    # one W&B run per fit (the next fit of a process used to log into the previous one), each finished
    assert [(r.name, r.group, r.job_type, r.exit_code) for r in runs] == [
        ("imp-magnitude-seed1", "imp", "imp", 0), ("my group-magnitude-seed2", "my group", "train", 0),
        ("mine", "mine", "imp", 1)]
    first, second = runs[0], runs[1]
    assert [r["lottery/round"] for r in round_rows(first)] == [0, 1]
    assert [r["lottery/round"] for r in round_rows(second)] == [0, 1, 2]
    # the resolved config as config.yaml holds it, and the run's identity under `lottery`
    assert {"model", "data", "trainer", "ticket", "seed_everything", "lottery"} <= set(second.config)
    assert second.config["model"]["class_path"] == "user_code.TinyModule" and second.config["ticket"]["rounds"] == 2
    assert second.config["seed_everything"] == 2
    assert second.config["lottery"] == {
        "experiment": "my group", "kind": "train", "pruner": "magnitude", "seed": 2, "target_density": None,
        "source_ticket": None, "ticket_artifact": "ticket-my-group-seed2", "group": "my group", "job_type": "train",
        "name": "my group-magnitude-seed2"}
    assert {a.name for a in second.logged("ticket")} == {"ticket-my-group-seed2"}
    # config.yaml in each run's own folder (<save_dir>/<project>/<run id>), not in the save_dir all runs share
    for run in runs:
        saved = yaml.safe_load((tmp_path / "wb" / "proj" / run.id / "config.yaml").read_text())
        assert saved["trainer"]["logger"]["init_args"]["name"] == run.name
    assert not (tmp_path / "wb" / "config.yaml").exists()


def test_the_identity_of_a_run_comes_from_run_arguments_then_the_logger_then_the_config():
    from lottery.integrations.wandb import identity

    ticket = {"pruner": "snip", "epochs_per_round": 0, "density": 0.0512, "from_ticket": None}
    config = {"seed_everything": 4, "ticket": ticket, "run": {"experiment": "snip", "group": "cmp", "job_type": "pai"},
              "trainer": {"logger": {"class_path": "pytorch_lightning.loggers.WandbLogger",
                                     "init_args": {"group": "theirs", "name": None}}}}
    ident = identity(config)
    assert (ident["name"], ident["group"], ident["job_type"]) == ("snip-d0.0512-seed4", "cmp", "pai")
    assert ident["ticket_artifact"] == "ticket-snip-d0.0512-seed4" and ident["target_density"] == 0.0512
    source = {"experiment": "imp_shuffled", "source": "ticket-imp-seed1:round-3"}
    shuffled = identity({"seed_everything": 1, "run": source,
                         "ticket": {"pruner": "magnitude", "epochs_per_round": 0, "from_ticket": "t.safetensors",
                                    "sanity": "shuffle"}})
    assert (shuffled["name"], shuffled["kind"], shuffled["pruner"]) == ("imp_shuffled-round3-seed1", "shuffle", None)
    assert shuffled["ticket_artifact"] == "ticket-imp_shuffled-round3-seed1" and shuffled["group"] == "imp_shuffled"
    plain = identity({"seed_everything": True, "ticket": {"pruner": {"class_path": "lottery.pruning.SNIP"}, "seed": 7}})
    assert (plain["name"], plain["kind"], plain["seed"]) == ("imp-snip-seed7", "imp", 7)
    rigl = identity({"seed_everything": 0, "ticket": {"pruner": "magnitude", "epochs_per_round": 0, "density": 0.1,
                                                      "sparse_training": "rigl"}})
    assert (rigl["kind"], rigl["name"]) == ("rigl", "rigl-magnitude-d0.1-seed0")
    for named in ("lottery.sparse_training.gradual.Gradual", {"class_path": "lottery.sparse_training.Gradual",
                                                             "init_args": {"every": 50}}):  # as cells and configs name it
        gmp = identity({"seed_everything": 0, "ticket": {"epochs_per_round": 0, "density": 0.1, "sparse_training": named}})
        assert gmp["kind"] == "gmp"


def test_the_shipped_wandb_config_runs_offline_as_its_comments_say(tmp_path, monkeypatch, fashion_mnist):
    from pathlib import Path

    offline_wandb(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)  # its save_dir is relative: runs/lenet300_fashion_imp_wandb
    config = Path(__file__).parents[2] / "configs" / "lenet300_fashion_imp_wandb.yaml"
    fit(["fit", "--config", str(config), "--ticket.rounds", "1", "--ticket.epochs_per_round", "1",
         "--trainer.limit_train_batches", "8", "--trainer.limit_val_batches", "2", "--trainer.enable_progress_bar",
         "false", f"--trainer.default_root_dir={tmp_path / 'root'}"])
    run = run_of(tmp_path / "runs" / "lenet300_fashion_imp_wandb")
    assert (run.name, run.group, run.job_type, run.exit_code) == ("lenet300-fashion-imp-magnitude-seed0",
                                                                 "lenet300-fashion-imp", "imp", 0)
    assert [(a.name, sorted(a.aliases)) for a in run.logged()] == [
        ("ticket-lenet300-fashion-imp-seed0", ["latest", f"round-{r}"]) for r in (0, 1)]
    folder = tmp_path / "runs" / "lenet300_fashion_imp_wandb" / "lottery" / run.id
    assert (folder / "config.yaml").is_file() and (folder / "tickets" / "round_01.safetensors").is_file()
    assert next((folder / "checkpoints").glob("*.ckpt"))


def test_the_earlier_run_of_a_folder_is_its_newest_wandb_run(tmp_path):
    from lottery.integrations.wandb import earlier_run_id

    assert earlier_run_id(tmp_path) is None  # no wandb folder: a new run
    runs = tmp_path / "wandb"
    for name in ("run-20261205_091234-online1", "offline-run-20261205_081234-first", "offline-run-20261205_101500-last",
                 "debug-internal-20261205"):
        (runs / name).mkdir(parents=True)
    (runs / "offline-run-20261205_235959-afile").write_text("")  # a file, not a run's folder
    (runs / "latest-run").symlink_to(runs / "offline-run-20261205_081234-first")
    assert earlier_run_id(tmp_path) == "last"  # by time, whatever the mode's prefix
