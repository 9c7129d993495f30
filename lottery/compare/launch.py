"""Running cells: one cell in this process (skipped when it finished before, resumed when killed part-way), and
the launcher that hands cells to local worker processes (one per visible GPU, each pinned to it) or Ray tasks.

A Ray task never reads the driver's disk: it gets the base config's text and the IMP ticket a sanity cell starts
from (through Ray, or from the comparison's storage), trains in its node's own folder, and sends the cell's files
back (all but checkpoints); the driver writes them into `out`, so results.csv, resumption and plots work as with
local workers (lottery.compare.remote).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml

from lottery.compare import remote
from lottery.callback.lottery_ticket import DEFAULT_ROUNDS
from lottery.compare.cells import CELLS, DONE, Cell, fit_args, ticket_flag
from lottery.compare.results import cell_rows
from lottery.compare.spec import Spec
from lottery.experiment import GROUP, fit
from lottery.integrations import wandb as wandb_integration
from lottery.resume import SAVED_CONFIG, newest_checkpoint, versions
from lottery.files import atomic_write_bytes, atomic_write_text
from lottery.layout import OWNER, RunLayout

EXECUTED = "executed.log"  # in `out`: one line per cell actually trained
_EXECUTED_LOCK = threading.Lock()  # Ray results arrive on Ray's threads


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
    if checkpoint is None:
        # a fresh start: tickets an earlier attempt left without a checkpoint are another run's to the callback,
        # which refuses to write beside them
        clear_results(RunLayout.under(folder))
    resume = ["--ckpt_path", str(checkpoint)] if checkpoint else []
    earlier = wandb_integration.earlier_run_id(folder) if checkpoint else None  # a W&B base config's cell
    if earlier is not None:
        resume += ["--trainer.logger.init_args.id", earlier]
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
    executed(out, key)
    return rows


def executed(out: str | Path, key: str) -> None:
    """Note in `out` that the cell `key` was trained (not read back from an earlier run)."""
    with _EXECUTED_LOCK, open(Path(out) / EXECUTED, "a") as f:
        f.write(key + "\n")


def clear_results(layout: RunLayout) -> None:
    """Remove an earlier attempt's results from `layout`'s folder: its tickets, rounds.csv and run marker."""
    for path in [*layout.tickets(), layout.rounds, layout.folder / OWNER]:
        path.unlink(missing_ok=True)


def expected_pruning_rounds(folder: Path, base: str, args: list[str]) -> int:
    """The cell's `ticket.rounds` (IMP rounds; unset: the callback's default): from the config.yaml its newest run
    saved (a logger's version_N, or a W&B run's folder), else from its arguments and base config."""
    saved_configs = [*(run / SAVED_CONFIG for run in versions(folder / "lightning_logs")),
                     *sorted(folder.glob(f"*/*/{SAVED_CONFIG}"), key=lambda p: p.stat().st_mtime, reverse=True)]
    for saved in saved_configs:
        if saved.is_file():
            ticket = (yaml.safe_load(saved.read_text()) or {}).get(GROUP) or {}
            if "rounds" in ticket:
                return _imp_rounds(ticket["rounds"])
    flag = ticket_flag("rounds")
    if flag in args:
        return _imp_rounds(args[len(args) - 1 - args[::-1].index(flag) + 1])  # the last one given wins
    ticket = (yaml.safe_load(Path(base).read_text()) or {}).get(GROUP) or {}
    return _imp_rounds(ticket.get("rounds"))


def _imp_rounds(value: Any) -> int:
    """IMP rounds from a config value or argument (null: the callback's default)."""
    return DEFAULT_ROUNDS if value is None or str(value).lower() in ("null", "none", "~") else int(value)


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


def node_job(spec: Spec, cell: Cell) -> remote.Job:
    """What a Ray node needs to train `cell` (read here, on the driver)."""
    if cell.source is not None:
        remote.relative(cell.source, spec.out)  # a ticket outside `out` has no place on the node: refused here
    base = Path(spec.base)
    return remote.Job(cell, cell.key(spec.base, spec.out), spec.out, remote.comparison_tag(spec.out), base.name,
                      base.read_text(), list(spec.args), spec.threads, spec.storage)


def ship_ticket(spec: Spec, cell: Cell) -> bytes | None:
    """The IMP ticket `cell` starts from, for a Ray node: its bytes, or None when the node finds it in the storage
    (put there now if missing: an IMP cell that finished before the comparison had storage)."""
    if cell.source is None:
        return None
    if spec.storage is None:
        return Path(cell.source).read_bytes()
    key = remote.relative(cell.source, spec.out)
    if not remote.stored(spec.storage, key):
        remote.put(spec.storage, key, Path(cell.source).read_bytes())
    return None


def run_on_node(job: remote.Job, ticket: bytes | None) -> dict[str, Any]:
    """The Ray task: train `job`'s cell in this node's own folder from what the driver shipped; its result rows,
    its files for the driver (all but checkpoints), and whether it trained (not finished before)."""
    out = remote.node_out(job.tag)
    base, cell, common = remote.localize(job, out, ticket)
    folder = cell.folder(base, str(out))
    if folder.name != job.key:
        raise RuntimeError(f"cell {job.key} would be {folder.name} on this node: the comparison's out {job.out!r} "
                           "also occurs in the cell's arguments outside its paths, and a cell's key counts every "
                           "occurrence. Give the comparison an out that occurs nowhere else in them.")
    trained = not (folder / DONE).exists()
    rows = run_cell(base, str(out), cell, common, job.threads)
    files = {**remote.pack(folder), remote.NODE: remote.where(folder)}
    if job.storage is not None:
        remote.publish(job.storage, f"{CELLS}/{job.key}", files)
    shutil.rmtree(folder)  # all the driver needs is in `files`; checkpoints of a finished cell are not needed
    return {"rows": rows, "files": files, "trained": trained}


def receive(result: dict[str, Any], folder: Path, out: str | Path) -> list[dict[str, Any]]:
    """Write the files of a cell that came back from a Ray node into its `folder` (over an earlier attempt's
    results; done.json last, so a cell counts as finished only with all its files); its result rows."""
    clear_results(RunLayout.under(folder))
    files = result["files"]
    for name in sorted(files, key=lambda n: n == DONE):
        atomic_write_bytes(folder / name, files[name])
    if result["trained"]:
        executed(out, folder.name)
    return result["rows"]


def task_options(spec: Spec, cluster_gpus: float) -> dict[str, Any]:
    """Ray's options for a cell's task: `threads` CPUs and `gpus_per_cell` GPUs (default: 1 when the cluster has
    GPUs, else 0); never the driver's own GPU count."""
    gpus = spec.gpus_per_cell if spec.gpus_per_cell is not None else (1 if cluster_gpus else 0)
    options: dict[str, Any] = {"num_cpus": spec.threads, "num_gpus": gpus}
    if not gpus:
        # Ray leaves CUDA_VISIBLE_DEVICES alone for a task without GPUs (ray-project/ray#54868): hidden here, or
        # Lightning's accelerator 'auto' would train on a GPU that Ray gave to another cell
        options["runtime_env"] = {"env_vars": {"CUDA_VISIBLE_DEVICES": ""}}
    return options


def _settle(result: Future, task: Future, folder: Path, out: str) -> None:
    """When a cell's Ray task ends: its files written here and its rows (or its error) in `result`."""
    try:
        result.set_result(receive(task.result(), folder, out))
    except BaseException as err:  # on Ray's thread: nothing would see it unless it is handed on
        result.set_exception(err)


def _pin(devices: Any) -> None:
    """Worker initializer: take one device id and make it the only visible GPU of this process."""
    device = devices.get()
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(device)


class Launcher:
    """Hands cells to Ray tasks, to a pool of local worker processes (one per visible GPU, each pinned to it,
    or N CPU workers), or runs them here; the pool is started once and serves both phases."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.pool: ProcessPoolExecutor | None = None
        if spec.launcher == "ray":
            import ray

            if not ray.is_initialized():
                ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False)
            self.remote = ray.remote(**task_options(spec, ray.cluster_resources().get("GPU", 0)))(run_on_node)
            self.tickets: dict[str, Any] = {}  # IMP tickets in Ray's object store by path: one copy for all cells
            return
        import torch

        gpus = torch.cuda.device_count()
        workers = spec.workers or max(1, gpus)
        if workers > 1:
            ctx = get_context("spawn")
            devices = ctx.Manager().Queue()
            for i in range(workers):
                devices.put(i % gpus if gpus else None)
            self.pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_pin, initargs=(devices,))

    def submit(self, cell: Cell) -> Future:
        """Start one cell; a future of its result rows."""
        s = self.spec
        if s.launcher == "ray":
            return self._submit_remote(cell)
        if self.pool is not None:
            return self.pool.submit(run_cell, s.base, s.out, cell, s.args, s.threads)
        done: Future = Future()
        done.set_result(run_cell(s.base, s.out, cell, s.args, s.threads))
        return done

    def _submit_remote(self, cell: Cell) -> Future:
        """A Ray task for `cell`, unless it finished before (then read back here); done once its files are in `out`."""
        folder = cell.folder(self.spec.base, self.spec.out)
        result: Future = Future()
        if (folder / DONE).exists():
            result.set_result(json.loads((folder / DONE).read_text())["rows"])
            return result
        task = self.remote.remote(node_job(self.spec, cell), self._ticket(cell)).future()
        task.add_done_callback(lambda t: _settle(result, t, folder, self.spec.out))
        return result

    def _ticket(self, cell: Cell) -> Any:
        """The object reference of the IMP ticket `cell` starts from (None: none, or the node reads the storage)."""
        if cell.source is not None and cell.source not in self.tickets:
            import ray

            data = ship_ticket(self.spec, cell)
            self.tickets[cell.source] = None if data is None else ray.put(data)
        return self.tickets.get(cell.source) if cell.source is not None else None

    def __call__(self, cells: list[Cell]) -> list[list[dict[str, Any]]]:
        """Run cells; results in the order of `cells`."""
        return [f.result() for f in [self.submit(c) for c in cells]]

    def close(self) -> None:
        """Shut the worker pool down (after its cells finish)."""
        if self.pool is not None:
            self.pool.shutdown()
