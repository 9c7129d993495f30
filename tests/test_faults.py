"""Faults a careful user meets, on tiny Fashion-MNIST runs: `lottery fit` killed (SIGKILL) at a round boundary and
after its last checkpoint, then resumed with the README's command; a comparison killed at a cell's final
checkpoint and run again; two runs started in one folder; a resume with changed settings. A resumed run must
equal an uninterrupted one: every tensor of every ticket and the text of rounds.csv.

The killed and reference runs are subprocesses started together when the module's first test asks for them.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from lottery import Ticket, compare
from lottery.cli import main

ROOT = Path(__file__).parents[1]
CONFIG = str(ROOT / "configs" / "lenet300_fashion_imp.yaml")
TINY = ["--trainer.limit_train_batches", "8", "--trainer.limit_val_batches", "2", "--ticket.rounds", "2",
        "--ticket.epochs_per_round", "1", "--trainer.enable_progress_bar", "false"]
LOCK = ".lottery.lock"  # lottery.lock.LOCK
CELL_ARGS = ["--ticket.rounds", "1", "--ticket.epochs_per_round", "1", "--trainer.limit_train_batches", "8",
             "--trainer.limit_val_batches", "2"]


def fit_args(folder: Path, *extra: str) -> list[str]:
    return ["fit", "--config", CONFIG, f"--trainer.default_root_dir={folder}", *TINY, *extra]


def kill_after(epoch: int) -> list[str]:
    """Arguments that SIGKILL the run once the checkpoint at the end of `epoch` is written."""
    return ["--trainer.callbacks+=fault_helpers.SigKill", "--trainer.callbacks.epoch", str(epoch)]


def start(args: list[str], log: Path) -> subprocess.Popen:
    """`lottery ARGS` in a subprocess (tests/ importable for the fault callbacks), output to `log`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")]))}
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "lottery.cli", *args], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def comparison(path: Path, out: Path, extra: list[str] = ()) -> Path:
    """A two-cell comparison file: an IMP cell (rounds 0 and 1) and random pruning at its round-1 density."""
    path.write_text(yaml.safe_dump({
        "base": CONFIG, "seeds": [0], "out": str(out), "workers": 1, "args": [*CELL_ARGS, *extra],
        "experiments": [{"name": "imp", "kind": "imp"}, {"name": "random", "kind": "pai", "pruner": "random"}]}))
    return path


class Runs:
    """The subprocesses of the module, started together; `folder(name)` waits for one and copies what it left."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.jobs = {
            "reference": (fit_args(base / "reference"), 0),
            "boundary": (fit_args(base / "boundary", *kill_after(0)), -9),  # before round 0 is closed
            "last": (fit_args(base / "last", *kill_after(2)), -9),  # before the last round is closed
            "compare": (["compare", "--config", str(comparison(base / "killed.yaml", base / "compare", kill_after(1)))],
                        -9),  # the IMP cell, before its last round is closed
        }
        self.procs = {name: start(args, base / f"{name}.log") for name, (args, _) in self.jobs.items()}

    def folder(self, name: str, dest: Path | None = None) -> Path:
        """The folder the run `name` left (a copy in `dest`, so that tests do not share state)."""
        code = self.procs[name].wait(timeout=300)
        assert code == self.jobs[name][1], (self.base / f"{name}.log").read_text()[-3000:]
        source = self.base / name
        if dest is None:
            return source
        shutil.copytree(source, dest)
        return dest

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from lottery.data import DataNotFoundError, FashionMNIST

    try:
        FashionMNIST().locate()
    except DataNotFoundError as err:  # as the fashion_mnist fixture of conftest.py
        if os.environ.get("LOTTERY_REQUIRE_DATA"):
            raise
        pytest.skip(f"Fashion-MNIST not available here: {err}")
    started = Runs(tmp_path_factory.mktemp("faults"))
    yield started
    started.stop()


def run_folder(root: Path) -> Path:
    """The only log folder of the run in `root` (a resume writes into the folder it continues)."""
    found = sorted((root / "lightning_logs").glob("version_*"))
    assert [p.name for p in found] == ["version_0"], found
    return found[0]


def assert_same_results(tickets: Path, expected: Path) -> None:
    """Every tensor and header of every ticket, and the text of rounds.csv, as in `expected`."""
    assert (tickets / "rounds.csv").read_text() == (expected / "rounds.csv").read_text()
    names = sorted(p.name for p in expected.glob("round_*.safetensors"))
    assert sorted(p.name for p in tickets.glob("round_*.safetensors")) == names
    for name in names:
        (got, got_header), (want, want_header) = (Ticket.load(d / name).pack() for d in (tickets, expected))
        assert got_header == want_header, name
        assert got.keys() == want.keys(), name
        for key in want:
            assert torch.equal(got[key], want[key]), f"{name}: {key}"


def test_a_second_fit_into_a_folder_in_use_is_refused_at_once(runs, tmp_path):
    folder = tmp_path / "run"
    first = start(fit_args(folder, "--ticket.epochs_per_round", "100"), tmp_path / "first.log")
    try:
        deadline = time.monotonic() + 120
        while not (folder / LOCK).exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        began = time.perf_counter()
        with pytest.raises(SystemExit) as refused:
            main(fit_args(folder))
        took = time.perf_counter() - began
        message = str(refused.value)
        assert f"{folder} is in use by lottery fit (pid {first.pid} on host" in message, message
        assert took < 10 and first.poll() is None  # refused before any work; the first run goes on
        assert len(list((folder / "lightning_logs").glob("version_*"))) <= 1
    finally:
        first.kill()
        first.wait()
    # the first run was killed: its lock is stale, and the next run takes it over with a warning
    from lottery.lock import RunLock

    with pytest.warns(UserWarning, match=f"took over the stale lock of {folder}: lottery fit \\(pid {first.pid}"):
        RunLock(folder).acquire().release()
    assert not (folder / LOCK).exists()


def test_a_run_killed_at_a_round_boundary_resumes_to_the_same_tickets(runs, tmp_path):
    folder = runs.folder("boundary", tmp_path / "run")
    assert not list(folder.glob("**/round_00.safetensors"))  # killed before round 0 was closed
    with pytest.warns(UserWarning, match="stale lock"):  # the killed run's lock
        main(fit_args(folder, "--resume"))
    assert_same_results(run_folder(folder) / "tickets", run_folder(runs.folder("reference")) / "tickets")
    assert not (folder / LOCK).exists()


def test_a_run_killed_after_its_last_checkpoint_resumes_to_the_same_tickets(runs, tmp_path):
    folder = runs.folder("last", tmp_path / "run")
    assert not list(folder.glob("**/round_02.safetensors"))  # killed before the last round was closed
    main(fit_args(folder, "--resume"))
    assert_same_results(run_folder(folder) / "tickets", run_folder(runs.folder("reference")) / "tickets")


def test_a_resume_with_changed_settings_is_refused_listing_each_difference(runs, tmp_path):
    folder = runs.folder("boundary", tmp_path / "run")
    before = sorted((str(p), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.name != LOCK)
    with pytest.raises(SystemExit) as refused:
        main(fit_args(folder, "--resume", "--ticket.prune_fraction", "0.5", "--model.optimizer", "sgd",
                      "--trainer.max_epochs", "9"))
    message = str(refused.value)
    assert "ticket.prune_fraction: 0.2 -> 0.5" in message and "model.optimizer: 'adam' -> 'sgd'" in message
    assert "--resume_with_changes" in message and "max_epochs" not in message  # trainer settings may change
    assert sorted((str(p), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.name != LOCK) == before
    # asked for explicitly, the rest of the run uses the new fraction
    main(fit_args(folder, "--resume", "--resume_with_changes", "--ticket.prune_fraction", "0.5"))
    with open(run_folder(folder) / "tickets" / "rounds.csv") as f:
        densities = [float(r["density"]) for r in csv.DictReader(f)]
    assert densities[0] == 1.0 and densities[1] < 0.6


def test_a_comparison_killed_at_a_cells_final_checkpoint_continues_to_the_same_results(runs, tmp_path):
    reference = compare.run(comparison(tmp_path / "whole.yaml", tmp_path / "whole"))
    out = runs.folder("compare")
    assert not list(out.glob("cells/*/done.json"))
    with pytest.warns(UserWarning, match="stale lock"):
        results = compare.run(comparison(tmp_path / "again.yaml", out))
    strip = [{k: v for k, v in r.items() if k != "wall_time_s"} for r in csv.DictReader(open(results))]
    assert strip == [{k: v for k, v in r.items() if k != "wall_time_s"} for r in csv.DictReader(open(reference))]
    cells = sorted(p.name for p in (tmp_path / "whole" / "cells").iterdir())
    assert sorted(p.name for p in (out / "cells").iterdir()) == cells and len(cells) == 2
    for key in cells:
        assert_same_results(out / "cells" / key / "tickets", tmp_path / "whole" / "cells" / key / "tickets")
