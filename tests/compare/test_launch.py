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


def test_a_fresh_cell_starts_without_a_previous_attempts_tickets(spec, tmp_path):
    s = compare.Spec.load(spec("stale", ["--ticket.rounds", "1"]))
    cell = compare.phase_one(s)[0]
    tickets = Path(s.out) / "cells" / cell.key(s.base, s.out) / "tickets"
    tickets.mkdir(parents=True)
    # a previous attempt's files (another run's tickets: the callback refuses to write beside them)
    for name in ("round_00.safetensors", "round_05.safetensors", "rounds.csv", "run.json"):
        (tickets / name).write_text("stale")
    (tickets / "notes.txt").write_text("the user's")  # not a run's file: kept
    rows = compare.run_cell(s.base, s.out, cell, s.args, s.threads)
    assert [r["round"] for r in rows] == [0, 1]
    assert sorted(p.name for p in tickets.iterdir()) == ["notes.txt", "round_00.safetensors", "round_01.safetensors",
                                                         "rounds.csv", "run.json"]
    assert (tickets / "round_00.safetensors").read_bytes() != b"stale" and "stale" not in (tickets / "rounds.csv").read_text()


def test_a_resumed_cell_keeps_its_tickets(tmp_path, monkeypatch):
    import torch

    from lottery.compare import launch

    args, _ = fake_cell(tmp_path, monkeypatch, [0, 1, 2])
    folder = args[2].folder(args[0], args[1])
    checkpoints = folder / "lightning_logs" / "version_0" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save({"epoch": 0}, checkpoints / "epoch=0-step=8.ckpt")
    tickets = folder / "tickets"
    tickets.mkdir()
    for name in ("round_00.safetensors", "rounds.csv", "run.json"):
        (tickets / name).write_text("this run's")
    fake, seen = launch.fit, []
    monkeypatch.setattr(launch, "fit", lambda a: (seen.append(sorted(p.name for p in tickets.iterdir())), fake(a)))
    compare.run_cell(*args)
    assert seen == [["round_00.safetensors", "rounds.csv", "run.json"]]  # what it resumes is its own


class FakeRay:
    """The parts of `ray` the Launcher calls, on a cluster of `gpus` GPUs; `options` are what ray.remote got."""

    def __init__(self, gpus):
        self.gpus, self.options = gpus, None

    def is_initialized(self):
        return True

    def cluster_resources(self):
        return {"CPU": 8.0, **({"GPU": float(self.gpus)} if self.gpus else {})}

    def remote(self, **options):
        self.options = options
        return lambda f: f


def test_gpus_per_cell_come_from_the_comparison_file_not_the_drivers_gpus(monkeypatch):
    import sys

    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)  # the driver's own GPUs do not count
    base = str(Path(__file__).parents[2] / "configs" / "lenet300_fashion_imp.yaml")
    spec = compare.Spec(base=base, experiments=[{"name": "imp", "kind": "imp"}], launcher="ray", threads=2)
    hidden = {"env_vars": {"CUDA_VISIBLE_DEVICES": ""}}  # Ray leaves them visible to a task without GPUs
    for gpus_per_cell, cluster, gpus in ((0, 4, 0), (0.5, 0, 0.5), (2, 4, 2), (None, 4, 1), (None, 0, 0)):
        ray = FakeRay(cluster)
        monkeypatch.setitem(sys.modules, "ray", ray)
        spec.gpus_per_cell = gpus_per_cell
        compare.Launcher(spec)
        assert ray.options["num_gpus"] == gpus and ray.options["num_cpus"] == 2, (gpus_per_cell, cluster)
        assert ray.options.get("runtime_env") == (None if gpus else hidden)


def node_fit():
    """A `lottery fit` that writes a cell's files where its arguments say (rounds 0-1 for IMP, 1 for a given ticket)
    and records its arguments and the bytes of the ticket it was given."""
    calls, given = [], []

    def fit(args):
        calls.append(args)
        tickets = Path(args[args.index("--ticket.dirpath") + 1])
        tickets.mkdir(parents=True, exist_ok=True)
        rounds = [0, 1]
        if "--ticket.from_ticket" in args:
            given.append(Path(args[args.index("--ticket.from_ticket") + 1]).read_bytes())
            rounds = [1]
        for r in rounds:
            (tickets / f"round_{r:02d}.safetensors").write_bytes(b"ticket %d" % r)
        rows = "".join(f"{r},{0.8 ** r},magnitude\n" for r in rounds)
        (tickets / "rounds.csv").write_text("round,density,pruner\n" + rows)
        logs = Path(args[args.index("--trainer.default_root_dir") + 1]) / "lightning_logs" / "version_0"
        (logs / "checkpoints").mkdir(parents=True)
        (logs / "checkpoints" / "last.ckpt").write_bytes(b"a checkpoint: stays on the node")
        (logs / "metrics.csv").write_text("epoch\n0\n")

    return fit, calls, given


@pytest.mark.parametrize("storage", [False, True], ids=["through-ray", "storage"])
def test_a_cell_on_a_ray_node_reads_nothing_on_the_drivers_disk(tmp_path, monkeypatch, storage):
    import json

    from lottery.compare import launch
    from lottery.layout import RunLayout

    driver, away, node = tmp_path / "driver", tmp_path / "away", tmp_path / "node"
    driver.mkdir()
    (driver / "base.yaml").write_text((Path(__file__).parents[2] / "configs" / "lenet300_fashion_imp.yaml").read_text())
    spec = compare.Spec(base=str(driver / "base.yaml"), out=str(driver / "out"), args=["--ticket.rounds", "1"],
                        launcher="ray", storage=f"file://{tmp_path}/store" if storage else None,
                        experiments=[{"name": "imp", "kind": "imp"}, {"name": "imp_shuffled", "kind": "shuffle"}])
    monkeypatch.setenv("LOTTERY_NODE_DIR", str(node))
    fit, calls, given = node_fit()
    monkeypatch.setattr(launch, "fit", fit)

    def on_node(cell, ticket):
        """Run `cell` as a Ray node would, with the driver's folder out of reach; its result, back on the driver."""
        job = launch.node_job(spec, cell)
        driver.rename(away)
        try:
            result = launch.run_on_node(job, ticket)
        finally:
            away.rename(driver)
        folder = cell.folder(spec.base, spec.out)
        launch.receive(result, folder, spec.out)
        return folder, result

    imp = compare.phase_one(spec)[0]
    folder, result = on_node(imp, None)
    assert [a for a in calls[0] if a.startswith("/") and not a.startswith(str(node))] == []  # only the node's paths
    group = calls[0][calls[0].index("--run.group") + 1]
    assert group == compare.cells.comparison_name(spec.out) == "out"  # named for the driver's comparison
    assert [r["cell"] for r in result["rows"]] == [folder.name] * 2 == [imp.key(spec.base, spec.out)] * 2
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == ["done.json", "lightning_logs/version_0/metrics.csv", "node.json", "tickets/round_00.safetensors",
                     "tickets/round_01.safetensors", "tickets/rounds.csv"]  # checkpoints stay on the node
    where = Path(json.loads((folder / "node.json").read_text())["folder"])
    assert where.is_relative_to(node) and where.name == folder.name and not where.exists()  # removed once sent
    assert (driver / "out" / "executed.log").read_text().split() == [folder.name]
    if storage:
        store = tmp_path / "store" / "cells" / folder.name
        assert (store / "done.json").read_bytes() == (folder / "done.json").read_bytes()
        assert (store / "tickets" / "round_01.safetensors").read_bytes() == b"ticket 1"

    # phase two: the IMP ticket the cell starts from comes through Ray (its bytes) or from the storage
    shuffled = compare.phase_two(spec, {("imp", 0): RunLayout.under(folder).folder})[0]
    ticket = launch.ship_ticket(spec, shuffled)
    assert ticket == (None if storage else b"ticket 1")
    folder, result = on_node(shuffled, ticket)
    assert given == [b"ticket 1"]
    assert calls[1][calls[1].index("--ticket.from_ticket") + 1].startswith(str(node))
    assert [(r["round"], r["cell"]) for r in result["rows"]] == [(1, shuffled.key(spec.base, spec.out))]
    assert sorted(p.name for p in (folder / "tickets").iterdir()) == ["round_01.safetensors", "rounds.csv"]


def test_an_imp_ticket_missing_from_storage_is_put_there_by_the_driver(tmp_path):
    from lottery.compare import launch

    ticket = tmp_path / "out" / "cells" / "abc" / "tickets" / "round_01.safetensors"
    ticket.parent.mkdir(parents=True)
    ticket.write_bytes(b"trained before the comparison had storage")
    spec = compare.Spec(base="base.yaml", out=str(tmp_path / "out"), experiments=[], storage=f"file://{tmp_path}/store")
    cell = compare.Cell("imp_shuffled", "shuffle", 0, ["--ticket.from_ticket", str(ticket)], source=str(ticket))
    assert launch.ship_ticket(spec, cell) is None
    stored = tmp_path / "store" / "cells" / "abc" / "tickets" / "round_01.safetensors"
    assert stored.read_bytes() == ticket.read_bytes()


def test_a_cell_that_ray_retries_on_the_same_node_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    import torch

    from lottery.compare import launch

    base = str(Path(__file__).parents[2] / "configs" / "lenet300_fashion_imp.yaml")
    spec = compare.Spec(base=base, out=str(tmp_path / "out"), args=["--ticket.rounds", "1"], launcher="ray",
                        experiments=[{"name": "imp", "kind": "imp"}])
    monkeypatch.setenv("LOTTERY_NODE_DIR", str(tmp_path / "node"))
    job = launch.node_job(spec, compare.phase_one(spec)[0])

    def killed(args):  # the worker dies after its first epoch's checkpoint
        folder = Path(args[args.index("--trainer.default_root_dir") + 1])
        (folder / "checkpoints").mkdir(parents=True)
        torch.save({"epoch": 0}, folder / "checkpoints" / "epoch=0-step=8.ckpt")
        raise RuntimeError("worker killed")

    monkeypatch.setattr(launch, "fit", killed)
    with pytest.raises(RuntimeError, match="worker killed"):
        launch.run_on_node(job, None)
    fit, calls, _ = node_fit()
    monkeypatch.setattr(launch, "fit", fit)
    launch.run_on_node(job, None)  # Ray's retry, on the same node
    checkpoint = Path(calls[0][calls[0].index("--ckpt_path") + 1])
    assert checkpoint.name == "epoch=0-step=8.ckpt" and checkpoint.is_relative_to(tmp_path / "node")
