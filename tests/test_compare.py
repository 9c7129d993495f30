import csv
from pathlib import Path

import pytest
import yaml

from lottery import compare

ROOT = Path(__file__).parents[1]


@pytest.fixture
def spec(tmp_path, fashion_mnist):
    def make(name, extra=()):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({
            "base": str(ROOT / "configs" / "lenet300_fashion_imp.yaml"), "seeds": [0], "out": str(tmp_path / name),
            "args": ["--ticket.rounds", "2", "--ticket.epochs_per_round", "1", "--trainer.limit_train_batches", "8",
                     "--trainer.limit_val_batches", "2", *extra],
            "experiments": [{"name": "imp", "kind": "imp"}, {"name": "imp_shuffled", "kind": "shuffle"},
                            {"name": "random", "kind": "pai", "pruner": "random"}]}))
        return path

    return make


def rows(path):
    with open(path) as f:
        return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in csv.DictReader(f)]


def test_grid_with_two_workers_matches_sequential_and_resumes(spec, tmp_path):
    sequential = compare.run(spec("seq"), workers=1)
    parallel = compare.run(spec("par"), workers=2)
    expected = rows(sequential)
    assert [(r["experiment"], r["density"]) for r in expected] == [
        ("imp", "1.0"), ("imp", "0.800376"), ("imp", "0.640639"), ("imp_shuffled", "0.800376"),
        ("imp_shuffled", "0.640639"), ("random", "0.800376"), ("random", "0.640639")]
    assert rows(parallel) == expected
    assert (tmp_path / "par" / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    # a killed comparison: two cells had not finished; running again trains those two only
    out = tmp_path / "seq"
    executed = (out / "executed.log").read_text().split()
    assert len(executed) == 5
    unfinished = [executed[1], executed[3]]
    for key in unfinished:
        (out / "cells" / key / "done.json").unlink()
    compare.run(spec("seq"), workers=1)
    assert (out / "executed.log").read_text().split() == executed + unfinished
    assert rows(out / "results.csv") == expected


def test_comparison_files_are_checked(tmp_path):
    for path in sorted((ROOT / "configs").glob("compare_*.yaml")):  # every shipped comparison loads
        assert compare.Spec.load(path).experiments[0]["kind"] == "imp"
    spec = compare.Spec.load(ROOT / "configs" / "compare_lenet300_fashion.yaml")
    assert [e["name"] for e in spec.experiments][:3] == ["imp", "imp_reinit", "imp_shuffled"] and spec.seeds == [0, 1, 2]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"base": "configs/lenet300_fashion_imp.yaml", "experiments": [{"name": "x", "kind": "pai"}]}))
    with pytest.raises(ValueError, match="needs a pruner"):
        compare.Spec.load(bad)
    bad.write_text(yaml.safe_dump({"base": "configs/lenet300_fashion_imp.yaml", "experiments": [], "worker": 2}))
    with pytest.raises(ValueError, match="unknown keys \\['worker'\\]"):
        compare.Spec.load(bad)


def test_ray_launcher_gives_the_same_rows(spec, tmp_path):
    ray = pytest.importorskip("ray")
    sequential = compare.run(spec("seq"), workers=1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = compare.run(spec("ray"), launcher="ray")
    finally:
        ray.shutdown()
    assert rows(on_ray) == rows(sequential)


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


def test_experiments_can_pick_imp_rounds(tmp_path):
    folder = tmp_path / "imp"
    folder.mkdir()
    (folder / "rounds.csv").write_text("round,density\n0,1.0\n1,0.8\n2,0.64\n3,0.512\n")
    spec = compare.Spec(base=str(ROOT / "configs" / "lenet300_fashion_imp.yaml"), seeds=[0], experiments=[
        {"name": "imp", "kind": "imp"}, {"name": "synflow", "kind": "pai", "pruner": "synflow", "rounds": [1, 3]}])
    cells = compare.phase_two(spec, {("imp", 0): folder})
    densities = [c.args[c.args.index("--ticket.density") + 1] for c in cells]
    assert densities == ["0.8", "0.512"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"base": str(ROOT / "configs" / "lenet300_fashion_imp.yaml"), "experiments": [
        {"name": "imp", "kind": "imp"}, {"name": "s", "kind": "pai", "pruner": "snip", "rounds": [0]}]}))
    with pytest.raises(ValueError, match="rounds must be a list of IMP rounds >= 1"):
        compare.Spec.load(bad)


def test_cells_keep_their_identity_across_comments_and_from_lottery_0_1(spec, tmp_path):
    import json
    import os
    import shutil

    path = spec("keys")
    s = compare.Spec.load(path)
    cell = compare.phase_one(s)[0]
    commented = tmp_path / "commented.yaml"
    commented.write_text("# a new comment\n" + Path(s.base).read_text().replace("\n", "  # note\n", 1))
    assert cell.key(str(commented), s.out) == cell.key(s.base, s.out)  # comments and layout do not count
    assert cell.legacy_key(str(commented), s.out) != cell.legacy_key(s.base, s.out)  # 0.1 hashed the text

    expected = rows(compare.run(path, workers=1))
    out = Path(s.out)
    executed = (out / "executed.log").read_text().split()
    # turn the finished comparison into what lottery 0.1 left: folders named by the text hash
    imp_key = cell.key(s.base, s.out)
    imp_legacy = cell.legacy_key(s.base, s.out)
    renames = {imp_key: imp_legacy}
    for c in compare.phase_two(s, {("imp", 0): out / "cells" / imp_key / "tickets"}):
        as_01 = compare.Cell(c.experiment, c.kind, c.seed, [a.replace(imp_key, imp_legacy) for a in c.args],
                             c.source and c.source.replace(imp_key, imp_legacy))
        renames[c.key(s.base, s.out)] = as_01.legacy_key(s.base, s.out)
    assert len(renames) == len(executed) and set(renames) == set(executed)
    for new, old in renames.items():
        shutil.move(out / "cells" / new, out / "cells" / old)
        done = out / "cells" / old / "done.json"
        record = json.loads(done.read_text())
        done.write_text(json.dumps({**record, "rows": [{**r, "cell": old} for r in record["rows"]]}))
        os.utime(done, (1e9, 1e9))  # when the cell finished: the report's timings read it

    assert rows(compare.run(path, workers=1)) == expected  # same rows, cells under their new names again
    assert (out / "executed.log").read_text().split() == executed  # nothing trained again
    assert (out / "cells" / imp_key / compare.LEGACY_MARKER).read_text() == imp_legacy
    assert all((out / "cells" / new / "done.json").stat().st_mtime == 1e9 for new in renames)
