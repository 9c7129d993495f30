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
