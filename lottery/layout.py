"""Where a run's files live: the one place that knows the tickets folder, the ticket file names and rounds.csv."""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lottery.files import atomic_write_text, csv_text
from lottery.ticket import Ticket

TICKETS = "tickets"  # the folder of a run (a Lightning log_dir, a comparison cell) that holds its results
ROUNDS = "rounds.csv"
OWNER = "run.json"  # in a results folder: the id of the run that writes there (one writer per folder)
ROUND_COLUMNS = ("round", "density", "pruner", "rewind", "steps")  # from a ticket's metadata; metrics follow
READ_COLUMNS = ("round", "density")  # what readers of rounds.csv (report, compare) need in every file


def rounds_csv(tickets: list[Ticket], monitor: str = "val_loss") -> str:
    """One row per ticket: round, density, pruner, rewind, steps, best monitored value and step, final metrics."""
    first = [*ROUND_COLUMNS, f"best_{monitor}", "best_step"]
    extra = sorted({k for t in tickets for k in t.metrics} - set(first))
    rows = []
    for t in tickets:
        row = {**t.metrics, **{k: t.metadata.get(k, "") for k in ROUND_COLUMNS}}
        row["density"] = f"{t.density:.6f}"
        rows.append(row)
    return csv_text(rows, first + extra)


class FolderTakenError(FileExistsError):
    """A run was about to write into a results folder that holds another run's tickets."""


def run_folder(trainer: Any) -> Path:
    """The folder of this run alone: the first logger's versioned log_dir (CSV, TensorBoard), else
    ``<save_dir>/<name>/<version>`` as Lightning's ModelCheckpoint places checkpoints (W&B: ``<save_dir>/<project>/<run
    id>``), else the Trainer's default_root_dir. A collective call under DDP (rank zero's answer on every rank)."""
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    logger = trainer.loggers[0] if trainer.loggers else None
    if logger is None:
        folder = str(trainer.default_root_dir)
    elif isinstance(logger, (CSVLogger, TensorBoardLogger)):
        folder = str(logger.log_dir)
    else:  # W&B and others: an un-versioned save_dir would mix runs (issue: tickets of two W&B runs in one folder)
        version = logger.version
        version = version if isinstance(version, str) or version is None else f"version_{version}"
        parts = [str(p) for p in (logger.name, version) if p not in (None, "")]
        folder = os.path.join(logger.save_dir or trainer.default_root_dir, *parts)
    return Path(trainer.strategy.broadcast(folder))


@dataclass(frozen=True)
class RunLayout:
    """The results folder of one run: ``round_NN.safetensors`` per round and ``rounds.csv`` beside them."""

    folder: Path

    @classmethod
    def under(cls, run_dir: str | os.PathLike) -> RunLayout:
        """The results folder of a run whose own folder (log dir, comparison cell) is `run_dir`."""
        return cls(Path(run_dir) / TICKETS)

    @classmethod
    def find(cls, run_dir: str | os.PathLike) -> RunLayout:
        """The results folder at or below `run_dir` holding a rounds.csv: of several, the newest run (version_10 after
        version_9; runs named by id, as W&B's are, by the time their rounds.csv was written)."""
        found = list(Path(run_dir).glob(f"**/{ROUNDS}"))
        versioned = all(re.fullmatch(r"version_\d+", f.parent.parent.name) for f in found)
        found.sort(key=_natural if versioned else lambda f: (f.stat().st_mtime, _natural(f)))
        if not found:
            raise FileNotFoundError(f"no {ROUNDS} under {run_dir}; point at a run's folder (it holds {TICKETS}/{ROUNDS})")
        return cls(found[-1].parent)

    @property
    def rounds(self) -> Path:
        """The rounds.csv summary."""
        return self.folder / ROUNDS

    def ticket(self, round: int) -> Path:
        """The ticket file of `round`."""
        return self.folder / f"round_{round:02d}.safetensors"

    def tickets(self) -> list[Path]:
        """The ticket files present, in round order."""
        return sorted(self.folder.glob("round_*.safetensors"))

    def owner(self) -> str | None:
        """The id of the run that claimed this folder (None: unclaimed, or written before runs claimed folders)."""
        try:
            return json.loads((self.folder / OWNER).read_text()).get("run")
        except (FileNotFoundError, ValueError, AttributeError):
            return None

    def holds_results(self) -> bool:
        """True when a run wrote tickets or rounds.csv here."""
        return self.rounds.exists() or bool(self.tickets())

    def claim(self, run_id: str, resuming: bool) -> None:
        """Make this folder run `run_id`'s; refused (FolderTakenError) when it holds another run's tickets, unless
        `resuming` a run whose folder was written before folders were claimed (then it is taken to be that run)."""
        owner = self.owner()
        if self.holds_results() and owner != run_id and not (owner is None and resuming):
            rounds = ", ".join(p.stem.removeprefix("round_") for p in self.tickets()) or "none"
            whose = f"run {owner}" if owner else "a run that did not record its id"
            raise FolderTakenError(
                f"{self.folder} holds the tickets of another run ({whose}; rounds {rounds}), and this run would "
                "overwrite them. A run writes only into its own folder: give this one another (LotteryTicket(dirpath="
                "...) / --ticket.dirpath, another default_root_dir, or a new logger version), move those tickets "
                "away, or continue that run by resuming it from its checkpoint (lottery fit --resume, or "
                "trainer.fit(..., ckpt_path=PATH)).")
        if owner != run_id:
            atomic_write_text(self.folder / OWNER, json.dumps({"run": run_id}))

    def read_rounds(self) -> list[dict[str, str]]:
        """The rows of rounds.csv; a file cut short (a missing column or field) is refused naming the file and line."""
        fix = ("it was cut short while being written or was edited; resume or rerun the run to write it again, "
               "or delete the incomplete line")
        with open(self.rounds, newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames
            if not header:
                raise ValueError(f"{self.rounds} is empty (no header line); {fix}.")
            missing = [c for c in READ_COLUMNS if c not in header]
            if missing:
                raise ValueError(f"{self.rounds} has no {' or '.join(missing)} column (its header: {', '.join(header)}); {fix}.")
            rows = []
            for row in reader:
                if None in row:
                    raise ValueError(f"{self.rounds} is malformed (line {reader.line_num} has "
                                     f"{len(header) + len(row[None])} fields, the header {len(header)}); {fix}.")
                have = sum(v is not None for v in row.values())
                if have < len(header):
                    raise ValueError(f"{self.rounds} is incomplete (line {reader.line_num} has {have} of {len(header)} "
                                     f"fields); {fix}.")
                rows.append(row)
        return rows

    def save(self, ticket: Ticket, tickets: list[Ticket], monitor: str, overwrite: bool = True) -> Path:
        """Write `ticket`'s file (unless it exists and not `overwrite`) and rounds.csv of `tickets`; the ticket's path."""
        path = self.ticket(ticket.round)
        if overwrite or not path.exists():
            ticket.save(path)
        atomic_write_text(self.rounds, rounds_csv(tickets, monitor))
        return path


def _natural(path: Path) -> list[list[str | int]]:
    """Sort key of a path whose digit runs compare as numbers (run/version_10 after run/version_9)."""
    return [[int(t) if i % 2 else t for i, t in enumerate(re.split(r"(\d+)", part))] for part in path.parts]
