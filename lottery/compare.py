"""Side-by-side ticket comparisons: a grid of `lottery fit` runs (experiments × densities × seeds).

Phase 1 trains the IMP experiments; phase 2 runs every pruning-at-initialization experiment at the densities
of the IMP rounds (or of the rounds an experiment lists) and the sanity variants (reinitialized, shuffled) of the
IMP tickets. Every cell is one training run of the same base config, named by a hash of what makes it differ, and
leaves `done.json` when it finishes, so a killed comparison continues where it stopped: finished cells are read
back and a cell killed part-way resumes from its newest checkpoint. Cells go to local worker processes (one per
visible GPU, each pinned to its device, or N CPU workers) or to Ray tasks; there is no scheduler of our own.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import statistics
import time
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml

from lottery.io import atomic_write_text
from lottery.report import read_csv

KINDS = ("imp", "pai", "reinit", "shuffle")
RESULT_COLUMNS = ["experiment", "pruner", "seed", "round", "density", "val_acc", "val_acc_at_best", "test_acc",
                  "test_acc_at_best", "best_step", "wall_time_s", "cell"]


@dataclass
class Cell:
    """One training run of the grid."""

    experiment: str
    kind: str
    seed: int
    args: list[str] = field(default_factory=list)
    source: str | None = None  # the IMP ticket a sanity cell starts from

    def key(self, base: str, out: str) -> str:
        """A stable identity: hash of the base config's settings (parsed, so comments and layout do not count)
        and of everything this cell changes (paths inside the comparison's folder count relative to it, so a
        moved comparison keeps its cells)."""
        settings = json.dumps(yaml.safe_load(Path(base).read_text()), sort_keys=True)
        return _digest(json.dumps({"base": settings, **asdict(self)}, sort_keys=True), out)

    def legacy_key(self, base: str, out: str) -> str:
        """The identity lottery 0.1 gave this cell: the base config's text, comments included (so a folder
        from 0.1 is found only while the base config's text is unchanged)."""
        text = json.dumps({"base": Path(base).read_text(), **asdict(self)}, sort_keys=True)
        for new in set(re.findall(r"cells/([0-9a-f]{12})/", text)):  # a sanity cell names its IMP cell's folder
            marker = Path(out) / "cells" / new / LEGACY_MARKER
            if marker.exists():
                text = text.replace(f"cells/{new}/", f"cells/{marker.read_text().strip()}/")
        return _digest(text, out)


LEGACY_MARKER = "legacy_key"


def _digest(text: str, out: str) -> str:
    return hashlib.sha1(text.replace(str(Path(out)), "<out>").encode()).hexdigest()[:12]


def adopt_legacy_folder(cell: Cell, base: str, out: str, folder: Path) -> None:
    """Rename a cell folder written under its 0.1 identity to `folder` (its current one), keeping finished work."""
    if folder.exists():
        return
    legacy = folder.parent / cell.legacy_key(base, out)
    if not legacy.is_dir():
        return
    key = folder.name
    os.rename(legacy, folder)  # atomic: the cell is under one name or the other, never half-moved
    atomic_write_text(folder / LEGACY_MARKER, legacy.name)
    done = folder / "done.json"
    if done.exists():
        finished = done.stat()  # its time is when the cell finished (the report's timings use it): kept
        record = json.loads(done.read_text())
        record["rows"] = [{**r, "cell": key} for r in record["rows"]]
        atomic_write_text(done, json.dumps(record))
        os.utime(done, ns=(finished.st_atime_ns, finished.st_mtime_ns))


@dataclass
class Spec:
    """A comparison file: `base` config, `experiments`, `seeds`, where to write, how to launch."""

    base: str
    experiments: list[dict[str, Any]]
    seeds: list[int] = field(default_factory=lambda: [0])
    out: str = "runs/compare"
    args: list[str] = field(default_factory=list)  # applied to every cell, e.g. shorter schedules
    workers: int | None = None
    launcher: str = "local"
    threads: int = 1  # CPU threads per cell: fixed so results do not depend on the number of workers

    @classmethod
    def load(cls, path: str | Path) -> Spec:
        """Read and check a comparison YAML file; errors say what is allowed."""
        raw = yaml.safe_load(Path(path).read_text())
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(cls.__dataclass_fields__)}")
        spec = cls(**raw)
        base = Path(spec.base)
        if not base.is_file():
            raise FileNotFoundError(f"{path}: base config {spec.base} does not exist")
        for e in spec.experiments:
            if e.get("kind") not in KINDS or "name" not in e:
                raise ValueError(f"{path}: each experiment needs a name and a kind in {KINDS}; got {e}")
            if e["kind"] == "pai" and "pruner" not in e:
                raise ValueError(f"{path}: experiment {e['name']!r} (kind pai) needs a pruner")
            rounds = e.get("rounds")
            if rounds is not None and (not isinstance(rounds, list) or not all(isinstance(r, int) and r >= 1 for r in rounds)):
                raise ValueError(f"{path}: experiment {e['name']!r}: rounds must be a list of IMP rounds >= 1 (the "
                                 f"densities to match), got {rounds!r}")
        if not any(e["kind"] == "imp" for e in spec.experiments):
            raise ValueError(f"{path}: needs one experiment of kind imp (the others use its densities and tickets)")
        if spec.launcher not in ("local", "ray"):
            raise ValueError(f"{path}: launcher must be 'local' or 'ray', got {spec.launcher!r}")
        return spec


def _base_ticket(spec: Spec) -> dict[str, Any]:
    return (yaml.safe_load(Path(spec.base).read_text()) or {}).get("ticket", {}) or {}


def phase_one(spec: Spec) -> list[Cell]:
    """The IMP cells."""
    return [Cell(e["name"], "imp", s, list(e.get("args", []))) for e in spec.experiments if e["kind"] == "imp"
            for s in spec.seeds]


def phase_two(spec: Spec, imp_results: dict[tuple[str, int], Path], seeds: list[int] | None = None) -> list[Cell]:
    """Pruning-at-init cells at the IMP densities and sanity cells of the IMP tickets (rounds >= 1), for `seeds`
    (default: all of the spec's)."""
    from lottery.pruning import get

    epochs = int(_base_ticket(spec).get("epochs_per_round", 1))
    if "--ticket.epochs_per_round" in spec.args:  # the grid's own shortening wins over the base config
        epochs = int(spec.args[spec.args.index("--ticket.epochs_per_round") + 1])
    imp_name = next(e["name"] for e in spec.experiments if e["kind"] == "imp")
    cells = []
    for e in spec.experiments:
        for s in spec.seeds if seeds is None else seeds:
            folder = imp_results[(imp_name, s)]
            picked = e.get("rounds")  # IMP rounds whose densities / tickets to use; all by default
            rows = [r for r in read_csv(folder / "rounds.csv")[1:] if picked is None or int(r["round"]) in picked]
            common = ["--ticket.epochs_per_round", "0", "--ticket.seed", str(s), "--trainer.max_epochs", str(epochs),
                      *e.get("args", [])]
            if e["kind"] == "pai":
                steps = int(e.get("steps", get(e["pruner"]).default_rounds))
                cells += [Cell(e["name"], "pai", s, [
                    "--ticket.pruner", e["pruner"], "--ticket.density", r["density"], "--ticket.prune_fraction", "null",
                    "--ticket.rounds", str(steps), "--ticket.scope", "global", "--ticket.fractions", "null",
                    "--ticket.rewind", "init", *common]) for r in rows]
            elif e["kind"] in ("reinit", "shuffle"):
                for r in rows:  # named as the callback saves them
                    path = str(folder / f"round_{int(r['round']):02d}.safetensors")
                    cells.append(Cell(e["name"], e["kind"], s, [
                        "--ticket.ticket", path, "--ticket.sanity", e["kind"], "--ticket.rewind", "init", *common],
                        source=path))
    return cells


def fit_args(base: str, folder: Path, cell: Cell, common: list[str]) -> list[str]:
    """The `lottery fit` arguments that train `cell` in `folder`."""
    # checkpoints at epoch ends only: Lightning restarts a dataloader from its first batch when it resumes
    # mid-epoch, so a cell resumed from a validation inside an epoch would not train what it would have
    return ["fit", "--config", base, "--seed_everything", str(cell.seed), "--trainer.default_root_dir", str(folder),
            "--trainer.enable_progress_bar", "false", "--ticket.dirpath", str(folder / "tickets"),
            "--trainer.callbacks+=pytorch_lightning.callbacks.ModelCheckpoint",
            "--trainer.callbacks.save_on_train_epoch_end", "true", *common, *cell.args]


def run_cell(base: str, out: str, cell: Cell, common: list[str], threads: int) -> list[dict[str, Any]]:
    """Train one cell (unless it finished before) and return its result rows."""
    import torch

    key = cell.key(base, out)
    folder = Path(out) / "cells" / key
    adopt_legacy_folder(cell, base, out, folder)
    done = folder / "done.json"
    if done.exists():
        return json.loads(done.read_text())["rows"]
    from lottery.cli import main

    # a cell killed part-way continues from its newest checkpoint: finished rounds are not trained again
    checkpoints = sorted(folder.glob("**/checkpoints/*.ckpt"), key=lambda p: p.stat().st_mtime)
    resume = ["--ckpt_path", str(checkpoints[-1])] if checkpoints else []
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        main([*fit_args(base, folder, cell, common), *resume])
    finally:
        torch.set_num_threads(before)
    wall = time.perf_counter() - start
    rows = []
    for r in read_csv(folder / "tickets" / "rounds.csv"):
        if cell.kind != "imp" and r["round"] == "0":
            continue
        rows.append({"experiment": cell.experiment, "pruner": r["pruner"], "seed": cell.seed, "round": int(r["round"]),
                     "density": float(r["density"]), **{c: r.get(c, "") for c in RESULT_COLUMNS[5:10]},
                     "wall_time_s": round(wall, 2), "cell": key})
    atomic_write_text(done, json.dumps({"cell": asdict(cell), "rows": rows}))
    with open(Path(out) / "executed.log", "a") as f:  # one line per cell actually trained
        f.write(key + "\n")
    return rows


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
        if self.pool is not None:
            self.pool.shutdown()


def run(spec_path: str | Path, workers: int | None = None, launcher: str | None = None) -> Path:
    """Run (or continue) a comparison; write results.csv and the accuracy-vs-density plot; return results.csv."""
    spec = Spec.load(spec_path)
    if workers is not None:
        spec.workers = workers
    if launcher is not None:
        spec.launcher = launcher
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    launch = Launcher(spec)
    try:
        # A seed's phase-two cells start as soon as its IMP cells finish, so no worker waits for other seeds.
        first = {launch.submit(c): c for c in phase_one(spec)}
        imp_folders = {(c.experiment, c.seed): out / "cells" / c.key(spec.base, spec.out) / "tickets"
                       for c in first.values()}
        waiting = {s: {f for f, c in first.items() if c.seed == s} for s in spec.seeds}
        second = []
        for future in as_completed(first):
            seed = first[future].seed
            waiting[seed].discard(future)
            if not waiting[seed]:
                second += [launch.submit(c) for c in phase_two(spec, imp_folders, [seed])]
        rows = [r for f in [*first, *second] for r in f.result()]
    finally:
        launch.close()
    rows.sort(key=lambda r: (r["experiment"], r["seed"], -r["density"]))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    results = atomic_write_text(out / "results.csv", text.getvalue())
    plot(rows, out / "comparison.png")
    return results


def plot(rows: list[dict[str, Any]], path: Path, column: str = "test_acc", ylabel: str = "test accuracy (%)",
         scale: float = 100.0, title: str | None = None) -> Path:
    """`column` (times `scale`) against density (log scale), mean ± std over seeds, one line per experiment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lottery.report import density_axis

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in summarize(rows, column, scale).items():
        xs = sorted(points, reverse=True)
        ax.errorbar([100 * x for x in xs], [points[x][0] for x in xs], yerr=[points[x][1] for x in xs], marker="o",
                    capsize=3, label=name)
    density_axis(ax)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def summarize(rows: list[dict[str, Any]], column: str, scale: float = 1.0) -> dict[str, dict[float, tuple[float, float, int]]]:
    """Per experiment and density (rounded to 4 places): mean, population std and count of `column` × `scale`
    over seeds; empty values are skipped."""
    out: dict[str, dict[float, list[float]]] = {}
    for r in rows:
        if r[column] not in ("", None):
            out.setdefault(r["experiment"], {}).setdefault(round(float(r["density"]), 4), []).append(scale * float(r[column]))
    return {name: {d: (statistics.mean(v), statistics.pstdev(v), len(v)) for d, v in by.items()}
            for name, by in sorted(out.items())}
