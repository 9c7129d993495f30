import json

import pytest
import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger

from helpers import Module, trainer
from lottery import LotteryTicket
from wandb_records import read_records


class WithTest(Module):
    def validation_step(self, batch, batch_idx):
        super().validation_step(batch, batch_idx)
        x, y = batch
        self.log("test_acc", (self(x).argmax(1) == y).float().mean())


def test_offline_wandb_run_has_metrics_tables_and_ticket_artifacts(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "data"))
    pl.seed_everything(0)
    logger = WandbLogger(project="lottery-test", save_dir=str(tmp_path), offline=True, group="lenet-imp", job_type="imp")
    cb = LotteryTicket(rounds=2, epochs_per_round=1, dirpath=str(tmp_path / "tickets"))
    trainer(tmp_path, [cb], logger=logger).fit(WithTest(scheduler=None))
    logger.experiment.finish()

    run_dir = next((tmp_path / "wandb").glob("offline-run-*"))
    records = read_records(next(run_dir.glob("run-*.wandb")))
    kinds = {}
    for r in records:
        kinds.setdefault(r.WhichOneof("record_type"), []).append(r)
    run = kinds["run"][0].run
    assert (run.run_group, run.job_type) == ("lenet-imp", "imp")
    defined = {(m.metric.name or m.metric.glob_name, m.metric.step_metric) for m in kinds["metric"]}
    assert ("lottery/round", "") in defined and ("lottery/density", "") in defined
    assert ("round/*", "lottery/density") in defined
    # a table is logged as nested items under its name, a scalar as one item
    history = [{i.key or i.nested_key[0]: i.value_json for i in h.history.item} for h in kinds["history"]]
    rounds = [json.loads(h["lottery/round"]) for h in history if "round/layer_densities" in h]
    assert rounds == [0, 1, 2]
    assert all("round/best_val_loss" in h and "round/best_step" in h for h in history if "round/layer_densities" in h)
    # wandb.plot.line is stored as a table with a chart spec, under NAME_table
    assert any("lottery/summary" in h and "lottery/test_acc_vs_density_table" in h and "lottery/accuracy_vs_density" in h
               for h in history)
    tickets = [a.artifact for a in kinds["artifact"] if a.artifact.type == "ticket"]
    assert len(tickets) == 3
    meta = [json.loads(a.metadata) for a in tickets]
    assert [m["round"] for m in meta] == [0, 1, 2] and meta[2]["pruner"] == "magnitude"
    assert meta[2]["density"] == pytest.approx(cb.tickets[2].density)
    tables = list((run_dir / "files" / "media" / "table").glob("**/*.table.json"))
    layer_tables = [json.loads(p.read_text()) for p in tables if "layer_densities" in p.name]
    assert len(layer_tables) == 3 and layer_tables[0]["columns"] == ["round", "layer", "weights", "kept", "density"]
    assert any(p.suffix == ".png" for p in (run_dir / "files" / "media" / "images").glob("**/*"))


def test_every_per_round_key_has_its_axis_by_name_and_rounds_are_logged_once(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    pl.seed_everything(0)
    logger = WandbLogger(project="lottery-test", save_dir=str(tmp_path), offline=True)
    cb = LotteryTicket(rounds=2, epochs_per_round=1, dirpath=str(tmp_path / "tickets"))
    trainer(tmp_path, [cb], logger=logger).fit(WithTest(scheduler=None))
    logger.experiment.finish()
    records = read_records(next(next((tmp_path / "wandb").glob("offline-run-*")).glob("run-*.wandb")))
    axis = {r.metric.name: r.metric.step_metric for r in records if r.WhichOneof("record_type") == "metric" and r.metric.name}
    history = [{i.key or i.nested_key[0] for i in r.history.item} for r in records if r.WhichOneof("record_type") == "history"]
    scalars = {k for h in history for k in h if k.startswith("round/") and k not in ("round/layer_densities", "round/metrics")}
    assert scalars and all(axis.get(k) == "lottery/density" for k in scalars), {k: axis.get(k) for k in scalars}
    assert sum("lottery/round" in h for h in history) == 3  # once per round, not again through the logger
    assert not any("lottery/best_val_loss" in h for h in history)  # round/best_val_loss holds it
