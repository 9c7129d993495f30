"""Running cells: one cell in this process (skipped when it finished before, resumed when killed part-way), and
the launcher that hands cells to local worker processes (one per visible GPU, each pinned to it) or Ray tasks."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml

from lottery.compare.cells import DONE, Cell, callback_parameters, fit_args, ticket_flag
from lottery.compare.results import cell_rows
from lottery.compare.spec import Spec
from lottery.experiment import GROUP, fit
from lottery.resume import SAVED_CONFIG, newest_checkpoint, versions
from lottery.files import atomic_write_text
from lottery.layout import RunLayout


def run_cell(base: str, out: str, cell: Cell, common: list[str], threads: int) -> list[dict[str, Any]]:
    """Train one cell (unless it finished before) and return its result rows."""
    import torch

    folder = cell.folder(base, out)
    key = folder.name
    done = folder / DONE
    if done.exists():
        return json.loads(done.read_text())["rows"]
    # a cell killed part-way continues from its newest complete checkpoint: finished rounds are not trained again
    checkpoint = newest_checkpoint(folder.glob("**/checkpoints/*.ckpt"))
    resume = ["--ckpt_path", str(checkpoint)] if checkpoint else []
    args = [*fit_args(base, folder, cell, common), *resume]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        fit(args)
    finally:
        torch.set_num_threads(before)
    wall = time.perf_counter() - start
    layout = RunLayout.under(folder)
    check_rounds(folder, layout, cell.kind, expected_pruning_rounds(folder, base, args))
    rows = cell_rows(cell.experiment, cell.kind, cell.seed, layout.read_rounds(), wall, key)
    atomic_write_text(done, json.dumps({"cell": asdict(cell), "rows": rows}))
    with open(Path(out) / "executed.log", "a") as f:  # one line per cell actually trained
        f.write(key + "\n")
    return rows


def expected_pruning_rounds(folder: Path, base: str, args: list[str]) -> int:
    """The cell's `ticket.rounds`: from the config.yaml its newest run saved, else from its arguments and base config."""
    for run in versions(folder / "lightning_logs"):
        saved = run / SAVED_CONFIG
        if saved.is_file():
            rounds = ((yaml.safe_load(saved.read_text()) or {}).get(GROUP) or {}).get("rounds")
            if rounds is not None:
                return int(rounds)
    flag = ticket_flag("rounds")
    if flag in args:
        return int(args[len(args) - 1 - args[::-1].index(flag) + 1])  # the last one given wins
    ticket = (yaml.safe_load(Path(base).read_text()) or {}).get(GROUP) or {}
    return int(ticket.get("rounds", callback_parameters()["rounds"].default))


def check_rounds(folder: Path, layout: RunLayout, kind: str, rounds: int) -> None:
    """Raise when the cell's rounds.csv lacks a round it should have: 0..`rounds` for IMP, 1 for the others."""
    expected = set(range(rounds + 1)) if kind == "imp" else {1}
    present = {int(r["round"]) for r in layout.read_rounds()} if layout.rounds.is_file() else set()
    missing = sorted(expected - present)
    if missing:
        raise RuntimeError(f"cell {folder} finished training but {layout.rounds} lacks round(s) "
                           f"{', '.join(map(str, missing))} of {sorted(expected)}; the cell is not marked done "
                           f"({DONE} not written). Run `lottery compare` again to resume it; if the rounds stay "
                           "missing, the run's log in that folder says why.")


def _pin(devices: Any) -> None:
    """Worker initializer: take one device id and make it the only visible GPU of this process."""
    device = devices.get()
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(device)


class Launcher:
    """Hands cells to Ray tasks, to a pool of local worker processes (one per visible GPU, each pinned to it,
    or N CPU workers), or runs them here; the pool is started once and serves both phases."""

    def __init__(self, spec: Spec) -> None:
        import torch

        self.spec = spec
        self.pool: ProcessPoolExecutor | None = None
        gpus = torch.cuda.device_count()
        workers = spec.workers or max(1, gpus)
        if spec.launcher == "ray":
            import ray

            if not ray.is_initialized():
                ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False)
            self.remote = ray.remote(num_gpus=1 if gpus else 0, num_cpus=spec.threads)(run_cell)
        elif workers > 1:
            ctx = get_context("spawn")
            devices = ctx.Manager().Queue()
            for i in range(workers):
                devices.put(i % gpus if gpus else None)
            self.pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_pin, initargs=(devices,))

    def submit(self, cell: Cell) -> Future:
        """Start one cell; a future of its result rows."""
        s = self.spec
        if s.launcher == "ray":
            return self.remote.remote(s.base, s.out, cell, s.args, s.threads).future()
        if self.pool is not None:
            return self.pool.submit(run_cell, s.base, s.out, cell, s.args, s.threads)
        done: Future = Future()
        done.set_result(run_cell(s.base, s.out, cell, s.args, s.threads))
        return done

    def __call__(self, cells: list[Cell]) -> list[list[dict[str, Any]]]:
        """Run cells; results in the order of `cells`."""
        return [f.result() for f in [self.submit(c) for c in cells]]

    def close(self) -> None:
        """Shut the worker pool down (after its cells finish)."""
        if self.pool is not None:
            self.pool.shutdown()
