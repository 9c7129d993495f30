"""The cells of a comparison grid: one `lottery fit` run each, its identity, and its arguments.

A cell's callback arguments are built from a dict of LotteryTicket keyword arguments, checked against the
callback's signature when the cells are built: renaming a callback argument fails here, before any training.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from lottery.callback import LotteryTicket
from lottery.compare.spec import Spec
from lottery.experiment import GROUP, RUN
from lottery.integrations import wandb as wandb_integration
from lottery.layout import RunLayout
from lottery.sanity import VARIANTS
from lottery.sparse_training import METHODS

CELLS = "cells"  # the comparison's folder holds one folder per cell, named by the cell's key
DONE = "done.json"  # left in a cell's folder when it finished: its result rows
CHECKPOINTS = "checkpoints"  # a cell's checkpoints, in its own folder whatever the logger (launch.run_cell finds them)


def callback_parameters() -> dict[str, inspect.Parameter]:
    """The keyword arguments LotteryTicket takes (its `__init__` signature, without `self`)."""
    params = inspect.signature(LotteryTicket.__init__).parameters
    return {n: p for n, p in params.items()
            if n != "self" and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}


def ticket_flag(name: str) -> str:
    """The command-line flag of the callback argument `name` (`--ticket.NAME`); an unknown name is an error."""
    allowed = callback_parameters()
    if name not in allowed:
        raise TypeError(f"LotteryTicket has no argument {name!r}; its arguments are {', '.join(allowed)}")
    return f"--{GROUP}.{name}"


def ticket_args(**kwargs: Any) -> list[str]:
    """`--ticket.NAME VALUE` for each callback keyword argument, in order (None is written `null`)."""
    out = []
    for name, value in kwargs.items():
        out += [ticket_flag(name), "null" if value is None else str(value)]
    return out


@dataclass
class Cell:
    """One training run of the grid."""

    experiment: str
    kind: str
    seed: int
    args: list[str] = field(default_factory=list)
    source: str | None = None  # the IMP ticket a sanity cell starts from
    # names only, not part of the key: the W&B artifact of `source` (NAME:round-N), declared as the cell's input,
    # and the comparison (its W&B group; from the spec's `out`, since a cell may train in another folder on a node)
    source_artifact: str | None = field(default=None, metadata={"key": False})
    comparison: str | None = field(default=None, metadata={"key": False})

    def key(self, base: str, out: str) -> str:
        """A stable identity: hash of the base config's settings (parsed, so comments and layout do not count)
        and of everything this cell changes (paths inside the comparison's folder count relative to it, so a
        moved comparison keeps its cells)."""
        settings = json.dumps(yaml.safe_load(Path(base).read_text()), sort_keys=True)
        trains = {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("key", True)}
        text = json.dumps({"base": settings, **trains}, sort_keys=True)
        return hashlib.sha1(text.replace(str(Path(out)), "<out>").encode()).hexdigest()[:12]

    def folder(self, base: str, out: str) -> Path:
        """The folder this cell trains in, under the comparison's `out`."""
        return cell_folder(out, self.key(base, out))


def cell_folder(out: str | Path, key: str) -> Path:
    """The folder of the cell `key` in the comparison folder `out`."""
    return Path(out) / CELLS / key


def comparison_name(out: str | Path) -> str:
    """The name of the comparison in folder `out`: the folder's name (its cells' and summary's W&B group)."""
    return Path(out).resolve().name


def base_wandb(base: str | Path) -> dict[str, Any] | None:
    """The init_args of the base config's WandbLogger (None when it logs to no W&B)."""
    config = yaml.safe_load(Path(base).read_text()) or {}
    return wandb_integration.wandb_init_args((config.get("trainer") or {}).get("logger"))


def phase_one(spec: Spec) -> list[Cell]:
    """The IMP cells."""
    return [Cell(e["name"], "imp", s, list(e.get("args", [])), comparison=comparison_name(spec.out))
            for e in spec.experiments if e["kind"] == "imp" for s in spec.seeds]


def _epochs_per_round(spec: Spec) -> int:
    """The IMP rounds' epochs: the grid's args, else the base config, else the callback's default."""
    flag = ticket_flag("epochs_per_round")
    if flag in spec.args:  # the grid's own shortening wins over the base config
        return int(spec.args[spec.args.index(flag) + 1])
    return int(spec.base_ticket().get("epochs_per_round", callback_parameters()["epochs_per_round"].default))


def phase_two(spec: Spec, imp_results: dict[tuple[str, int], Path], seeds: list[int] | None = None) -> list[Cell]:
    """Pruning-at-init cells at the IMP densities and sanity cells of the IMP tickets (rounds >= 1), for `seeds`
    (default: all of the spec's); `imp_results` holds each IMP cell's results folder."""
    epochs = _epochs_per_round(spec)
    imp_name = next(e["name"] for e in spec.experiments if e["kind"] == "imp")  # the one Spec.load requires
    cells = []
    for e in spec.experiments:
        if e["kind"] == "imp":
            continue
        for s in spec.seeds if seeds is None else seeds:
            layout = RunLayout(Path(imp_results[(imp_name, s)]))
            picked = e.get("rounds")  # IMP rounds whose densities / tickets to use; all by default
            rows = [r for r in layout.read_rounds()[1:] if picked is None or int(r["round"]) in picked]
            cells += [_phase_two_cell(e, s, epochs, r, layout, imp_name) for r in rows]
    return [replace(c, comparison=comparison_name(spec.out)) for c in cells]


def _phase_two_cell(e: dict[str, Any], seed: int, epochs: int, row: dict[str, str], imp: RunLayout,
                    imp_name: str) -> Cell:
    """The cell of experiment `e` at the IMP round `row` (of rounds.csv) of the IMP results `imp` (of the
    experiment `imp_name`)."""
    from lottery.pruning import get

    # one IMP round's epochs (sparse training: `budget` rounds'); the experiment's own args last, so they win
    budget = float(e.get("budget", 1)) if e["kind"] in METHODS else 1.0
    common = [*ticket_args(epochs_per_round=0, seed=seed), "--trainer.max_epochs", str(max(1, round(epochs * budget))),
              *e.get("args", [])]
    if e["kind"] == "pai":
        steps = int(e.get("steps", get(e["pruner"]).default_rounds))
        return Cell(e["name"], "pai", seed, [
            *ticket_args(pruner=e["pruner"], density=row["density"], prune_fraction=None, rounds=steps,
                         scope="global", fractions=None, rewind="init"), *common])
    if e["kind"] in METHODS:  # trained for `budget` IMP rounds' epochs, updating its masks as it goes
        method = METHODS[e["kind"]]  # by class path, so an experiment's args may set --ticket.sparse_training.every
        return Cell(e["name"], e["kind"], seed, [
            *ticket_args(sparse_training=f"{method.__module__}.{method.__qualname__}", density=row["density"],
                         prune_fraction=None, rounds=None, fractions=None, rewind="init"), *common])
    if e["kind"] not in VARIANTS:
        raise ValueError(f"experiment {e['name']!r}: kind {e['kind']!r} has no phase-two cells")
    path = str(imp.ticket(int(row["round"])))  # named as the callback saves them
    artifact = f"{wandb_integration.lineage(imp_name, seed)}:round-{int(row['round'])}"  # as the IMP cell logs it
    return Cell(e["name"], e["kind"], seed, [*ticket_args(from_ticket=path, sanity=e["kind"], rewind="init"), *common],
                source=path, source_artifact=artifact)


def check_arguments(spec: Spec) -> None:
    """Build every experiment's arguments once from a placeholder IMP round, so that an argument the callback
    does not take fails now, before any cell trains (phase-two cells are built only after IMP training)."""
    epochs = _epochs_per_round(spec)
    placeholder = {"round": "1", "density": "1.0"}
    imp_name = next(e["name"] for e in spec.experiments if e["kind"] == "imp")
    for e in spec.experiments:
        if e["kind"] != "imp":
            _phase_two_cell(e, 0, epochs, placeholder, RunLayout.under(spec.out), imp_name)
    for cell in phase_one(spec):
        fit_args(spec.base, cell_folder(spec.out, "check"), cell, spec.args)


def fit_args(base: str, folder: Path, cell: Cell, common: list[str]) -> list[str]:
    """The `lottery fit` arguments that train `cell` in `folder` (``<comparison>/cells/<key>``): its results,
    checkpoints and, with a W&B base config, its W&B run's files there, the run named for the cell (`--run.*`)."""
    folder = Path(folder)
    # checkpoints at epoch ends only: Lightning restarts a dataloader from its first batch when it resumes
    # mid-epoch, so a cell resumed from a validation inside an epoch would not train what it would have. In the
    # cell's own folder, not a logger's (W&B's is <save_dir>/<project>/<run id>, new for every run), so that
    # a killed cell resumes from its own (launch.run_cell looks for <folder>/**/checkpoints/*.ckpt)
    args = ["fit", "--config", base, "--seed_everything", str(cell.seed), "--trainer.default_root_dir", str(folder),
            "--trainer.enable_progress_bar", "false", *ticket_args(dirpath=RunLayout.under(folder).folder),
            "--trainer.callbacks+=lottery.resume.Checkpoint", "--trainer.callbacks.dirpath", str(folder / CHECKPOINTS),
            "--trainer.callbacks.save_on_train_epoch_end", "true"]
    logger = (yaml.safe_load(Path(base).read_text()) or {}).get("trainer", {}) or {}
    if wandb_integration.is_wandb_spec(logger.get("logger")):  # one WandbLogger: its files in the cell too
        args += ["--trainer.logger.init_args.save_dir", str(folder)]
    # what the cell is, for W&B (names, group, job type, lineage); not part of the cell's key
    group = cell.comparison or comparison_name(folder.parent.parent)  # a cell's folder is <out>/cells/<key>
    identity = {"experiment": cell.experiment, "job_type": cell.kind, "group": group, "source": cell.source_artifact}
    args += [a for k, v in identity.items() if v is not None for a in (f"--{RUN}.{k}", str(v))]
    return [*args, *common, *cell.args]
