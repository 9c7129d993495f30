import json
from pathlib import Path

import pytest
import pytorch_lightning as pl

from helpers import Module, trainer
from lottery import LotteryTicket

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "inspect_tickets.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)


def test_notebook_runs_on_a_fresh_run(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pl.seed_everything(0)
    cb = LotteryTicket(rounds=3, epochs_per_round=1, dirpath=str(tmp_path / "run" / "tickets"))
    trainer(tmp_path, [cb]).fit(Module(scheduler=None))
    monkeypatch.setenv("LOTTERY_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "4 tickets in" in printed
    assert "per layer, first vs last ticket" in printed
