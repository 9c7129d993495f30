"""Where a run's files live: the one place that knows the tickets folder, the ticket file names and rounds.csv."""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

from lottery.files import atomic_write_text, csv_text
from lottery.ticket import Ticket

TICKETS = "tickets"  # the folder of a run (a Lightning log_dir, a comparison cell) that holds its results
ROUNDS = "rounds.csv"
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
        """The results folder at or below `run_dir` holding a rounds.csv (the last in natural order: version_10 after version_9)."""
        found = sorted(Path(run_dir).glob(f"**/{ROUNDS}"), key=_natural)
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
