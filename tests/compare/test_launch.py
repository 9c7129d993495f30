from pathlib import Path

import pytest

from grid_helpers import rows
from lottery import compare


def test_a_killed_cell_continues_from_its_checkpoint(spec, tmp_path, caplog):
    from lottery.cli import main

    # validation inside the epoch (after 6 of 8 steps): a checkpoint taken there would resume differently
    within = ["--trainer.val_check_interval", "0.75"]
    reference = rows(compare.run(spec("whole", within), workers=1))
    path = spec("killed", within)
    s = compare.Spec.load(path)
    cell = compare.phase_one(s)[0]
    folder = Path(s.out) / "cells" / cell.key(s.base, s.out)
    # killed in the middle of round 2 (epochs of 8 steps): no done.json, the last epoch never trained
    with pytest.raises(SystemExit):  # Lightning turns the interrupt into a graceful exit
        main([*compare.fit_args(s.base, folder, cell, s.args), "--trainer.callbacks+=helpers.Kill",
              "--trainer.callbacks.step", "20"])
    assert not (folder / "done.json").exists()
    caplog.clear()
    with caplog.at_level("INFO"):
        assert rows(compare.run(path, workers=1)) == reference
    # continued from the checkpoint at the end of round 1 (step 16), not trained again from scratch
    assert "Restored all states from the checkpoint" in caplog.text and "epoch=1-step=16.ckpt" in caplog.text


def fake_cell(tmp_path, monkeypatch, rounds, saved_rounds=None):
    """run_cell's arguments for an IMP cell of 2 rounds whose `lottery fit` only writes rounds.csv with `rounds`
    (and a config.yaml of `saved_rounds` rounds); the arguments each fit was given are in the returned list."""
    from lottery.compare import launch
    from lottery.layout import RunLayout

    base = str(Path(__file__).parents[2] / "configs" / "lenet300_fashion_imp.yaml")
    out, cell, calls = str(tmp_path / "out"), compare.Cell("imp", "imp", 0), []

    def fit(args):
        calls.append(args)
        folder = cell.folder(base, out)
        rows = "".join(f"{r},{0.8 ** r},magnitude\n" for r in rounds)
        RunLayout.under(folder).folder.mkdir(parents=True, exist_ok=True)
        RunLayout.under(folder).rounds.write_text("round,density,pruner\n" + rows)
        if saved_rounds is not None:
            (folder / "lightning_logs" / "version_0").mkdir(parents=True, exist_ok=True)
            (folder / "lightning_logs" / "version_0" / "config.yaml").write_text(f"ticket:\n  rounds: {saved_rounds}\n")

    monkeypatch.setattr(launch, "fit", fit)
    return (base, out, cell, ["--ticket.rounds", "2"], 1), calls


def test_a_cell_missing_rounds_is_not_marked_done(tmp_path, monkeypatch):
    args, _ = fake_cell(tmp_path, monkeypatch, [0, 1])
    folder = args[2].folder(args[0], args[1])
    with pytest.raises(RuntimeError, match=f"cell {folder} finished training but .*rounds.csv lacks round\\(s\\) 2 of "
                                           "\\[0, 1, 2\\]; the cell is not marked done"):
        compare.run_cell(*args)
    assert not (folder / "done.json").exists()
    args, _ = fake_cell(tmp_path / "saved", monkeypatch, [0, 1, 2], saved_rounds=3)  # its config.yaml says 3
    with pytest.raises(RuntimeError, match="lacks round\\(s\\) 3 of \\[0, 1, 2, 3\\]"):
        compare.run_cell(*args)
    args, _ = fake_cell(tmp_path / "whole", monkeypatch, [0, 1, 2])
    assert [r["round"] for r in compare.run_cell(*args)] == [0, 1, 2]


def test_a_truncated_checkpoint_is_skipped_when_a_cell_resumes(tmp_path, monkeypatch):
    import os

    import torch

    args, calls = fake_cell(tmp_path, monkeypatch, [0, 1, 2])
    checkpoints = args[2].folder(args[0], args[1]) / "lightning_logs" / "version_0" / "checkpoints"
    checkpoints.mkdir(parents=True)
    good, cut = checkpoints / "epoch=0-step=8.ckpt", checkpoints / "epoch=1-step=16.ckpt"
    torch.save({"epoch": 0}, good)
    torch.save({"epoch": 1, "w": torch.zeros(1000)}, cut)
    cut.write_bytes(cut.read_bytes()[:200])  # a write cut short by a full disk, under its final name
    os.utime(good, (100, 100))
    with pytest.warns(UserWarning, match=f"skipping checkpoint {cut}: not a complete zip archive"):
        compare.run_cell(*args)
    assert calls[0][-2:] == ["--ckpt_path", str(good)]
