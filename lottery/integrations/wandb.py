"""W&B dashboards for tickets, through Lightning's WandbLogger: step metrics, tables, ticket artifacts, charts.

Nothing here imports wandb unless the Trainer has a WandbLogger, so the core works without wandb.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from lottery.ticket import Ticket

SUMMARY_COLUMNS = ("round", "density", "val_acc", "val_acc_at_best", "test_acc", "test_acc_at_best", "best_step")


def runs(trainer: pl.Trainer) -> list[Any]:
    """The wandb runs of the Trainer's WandbLoggers (none off rank zero, or without a WandbLogger)."""
    if not trainer.is_global_zero:
        return []
    return [lg.experiment for lg in trainer.loggers if is_wandb(lg)]


def is_wandb(logger: Any) -> bool:
    """True for Lightning's WandbLogger (without importing wandb)."""
    from pytorch_lightning.loggers import WandbLogger

    return isinstance(logger, WandbLogger)


def define_metrics(trainer: pl.Trainer) -> None:
    """Make lottery/round and lottery/density step metrics; per-round results are charted against density."""
    for run in runs(trainer):
        run.define_metric("lottery/round")
        run.define_metric("lottery/density")
        run.define_metric("round/*", step_metric="lottery/density")


_DEFINED: dict[str, set[str]] = {}  # per run id: the per-round keys given their axis so far


def _define_round_axis(run: Any, keys: list[str]) -> None:
    """Chart each per-round key against density by its exact name, before its first log.

    Lightning's WandbLogger defines ``*`` against trainer/global_step; which of two matching globs W&B applies is
    unspecified, so the glob ``round/*`` alone put some keys on the wrong axis. An exact name wins over any glob.
    """
    done = _DEFINED.setdefault(run.id, set())
    for key in keys:
        if key not in done:
            run.define_metric(key, step_metric="lottery/density")
            done.add(key)


def log_round(trainer: pl.Trainer, ticket: Ticket, path: Path | None) -> None:
    """Per round: its metrics against density, a per-layer density table, the ticket as an artifact."""
    active = runs(trainer)
    if not active:
        return
    import wandb

    layers = wandb.Table(columns=["round", "layer", "weights", "kept", "density"],
                         data=[[ticket.round, n, total, kept, kept / total] for n, (kept, total) in ticket.counts().items()])
    metrics = wandb.Table(columns=["metric", "value"], data=[[k, float(v)] for k, v in sorted(ticket.metrics.items())])
    payload = {"lottery/round": ticket.round, "lottery/density": ticket.density,
               **{f"round/{k}": float(v) for k, v in ticket.metrics.items()},
               "round/layer_densities": layers, "round/metrics": metrics}
    meta = {k: ticket.metadata.get(k) for k in ("round", "density", "pruner", "rewind", "scope")}
    meta["metrics"] = ticket.metrics
    for run in active:
        _define_round_axis(run, [k for k, v in payload.items() if k.startswith("round/") and isinstance(v, float)])
        run.log(payload)
        if path is not None:
            artifact = wandb.Artifact(f"ticket-{run.id}-round{ticket.round:02d}", type="ticket", metadata=meta)
            artifact.add_file(str(path))
            run.log_artifact(artifact, aliases=[f"round-{ticket.round}", "latest"])


def log_summary(trainer: pl.Trainer, tickets: list[Ticket], folder: Path) -> None:
    """At the end of fit: a table of all rounds, a line chart and a log-scale plot of test accuracy vs density.

    `folder` is the run's results folder (lottery.layout.RunLayout's `folder`); the report's plots go there.
    """
    active = runs(trainer)
    if not active or not tickets:
        return
    import wandb

    from lottery.report import report

    rows = [[t.round, t.density, *[t.metrics.get(c, float("nan")) for c in SUMMARY_COLUMNS[2:]]] for t in tickets]
    table = wandb.Table(columns=list(SUMMARY_COLUMNS), data=rows)
    payload: dict[str, Any] = {"lottery/summary": table}
    if "test_acc" in tickets[0].metrics:
        payload["lottery/test_acc_vs_density"] = wandb.plot.line(table, "density", "test_acc",
                                                                 title="test accuracy against density")
    plots = {p.stem: p for p in report(folder) if p.suffix == ".png"}
    payload.update({f"lottery/{k}": wandb.Image(str(p)) for k, p in plots.items()})
    for run in active:
        run.log(payload)
