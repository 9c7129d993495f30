"""W&B dashboards for tickets, through Lightning's WandbLogger: what a run is, per-round charts against density,
the tables of a run, ticket artifacts and their lineage, and the summary run of a comparison.

A run's identity (`identity`) comes from its resolved `lottery fit` config: the experiment, its kind (the W&B
job type: imp, pai, a sanity variant), pruner, seed, target density and the ticket artifact it starts from. Its
tickets are versions of one artifact per lineage (`lineage`): ``ticket-<experiment>-seed<k>`` for IMP, with
``-d<density>`` (pruning at init) or ``-round<N>`` (a ticket of IMP round N) for the one-shot cells of a comparison.

Nothing here imports wandb unless a run uses W&B, so the core works without wandb.
"""

from __future__ import annotations

import importlib
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_warn

from lottery.ticket import Ticket

SUMMARY_COLUMNS = ("round", "density", "val_acc", "val_acc_at_best", "test_acc", "test_acc_at_best", "best_step")
LAYER_COLUMNS = ("round", "layer", "weights", "kept", "density")
IDENTITY = "lottery"  # the run config's key holding the identity: lottery.experiment, lottery.seed, ... (filter, group)
ARTIFACT_TYPE = "ticket"


def runs(trainer: pl.Trainer) -> list[Any]:
    """The wandb runs of the Trainer's WandbLoggers (none off rank zero, or without a WandbLogger)."""
    if not trainer.is_global_zero:
        return []
    return [lg.experiment for lg in trainer.loggers if is_wandb(lg)]


def is_wandb(logger: Any) -> bool:
    """True for Lightning's WandbLogger (without importing wandb)."""
    from pytorch_lightning.loggers import WandbLogger

    return isinstance(logger, WandbLogger)


# -- identity: what a run is -----------------------------------------------------------------------------------------

def is_wandb_spec(spec: Any) -> bool:
    """True when `spec` (a logger as a config gives it: {class_path, init_args}) names a WandbLogger class."""
    from pytorch_lightning.loggers import WandbLogger

    path = str(spec.get("class_path") or "") if isinstance(spec, Mapping) else ""
    module, _, name = path.rpartition(".")
    try:  # jsonargparse also accepts a bare class name of Lightning's loggers
        cls = getattr(importlib.import_module(module or "pytorch_lightning.loggers"), name)
    except (ImportError, AttributeError, ValueError):
        return False
    return isinstance(cls, type) and issubclass(cls, WandbLogger)


def wandb_init_args(logger: Any) -> dict[str, Any] | None:
    """The init_args of the first WandbLogger of a config's `trainer.logger` (one spec or a list); None without one."""
    for spec in logger if isinstance(logger, list) else [logger]:
        if is_wandb_spec(spec):
            return dict(spec.get("init_args") or {})
    return None


def sanitize(text: str) -> str:
    """`text` as W&B artifact names allow it: letters, digits, '-', '_' and '.' (any other run becomes '-')."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "run"


def _round_of(source: str | None) -> int | None:
    """N of a ticket artifact reference ``NAME:round-N`` (None for no reference or another alias)."""
    match = re.search(r":round-(\d+)$", source or "")
    return int(match.group(1)) if match else None


def _pruner(value: Any) -> str | None:
    """A pruner's (or sparse-training method's) name: a registry name as given, or the class of a {class_path,
    init_args} spec, lower case."""
    if isinstance(value, Mapping):
        return str(value.get("class_path", "")).rpartition(".")[2].lower() or None
    return None if value is None else str(value)


def _kind(ticket: Mapping[str, Any]) -> str:
    """The kind of run the callback's arguments make: imp (trained rounds), a sparse-training method (gmp, set,
    rigl), a sanity variant or `ticket` (a given ticket trained), or pai (pruned at initialization, then trained)."""
    method = ticket.get("sparse_training")
    if method:  # by its registered name, however the config names it (gmp, a class path, class_path + init_args)
        from lottery import sparse_training

        return sparse_training.get(str(method.get("class_path") if isinstance(method, Mapping) else method)).name
    if int(ticket.get("epochs_per_round", 1) or 0) > 0:
        return "imp"
    if ticket.get("from_ticket"):
        return str(ticket.get("sanity") or "ticket")
    return "pai"


def lineage(experiment: str, seed: int | None, round: int | None = None, density: float | None = None) -> str:
    """The artifact holding a run lineage's tickets: ``ticket-<experiment>[-round<N>|-d<density>][-seed<k>]``."""
    name = f"ticket-{experiment}"
    if round is not None:
        name += f"-round{round}"
    elif density is not None:
        name += f"-d{float(density):.4g}"
    if seed is not None:
        name += f"-seed{seed}"
    return sanitize(name)


def identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """What a `lottery fit` run is, from its resolved config (as config.yaml holds it).

    `experiment`, `kind`, `pruner`, `seed`, `target_density` (pruning at init) and `source_ticket` (the ticket
    artifact it starts from, ``NAME:round-N``) identify the run; `name`, `group` and `job_type` are the W&B run's,
    `ticket_artifact` is the artifact its tickets go to. The `run` group's values (a comparison sets them per cell)
    win, then the WandbLogger's own init_args (a user's config), then values derived from the config.
    """
    given = {k: v for k, v in dict(config.get("run") or {}).items() if v not in (None, "")}
    logger = {k: v for k, v in (wandb_init_args((config.get("trainer") or {}).get("logger")) or {}).items()
              if v not in (None, "")}
    ticket = dict(config.get("ticket") or {})
    seed = config.get("seed_everything")
    if isinstance(seed, bool) or not isinstance(seed, int):  # True/False: no fixed seed; then the callback's own
        seed = ticket.get("seed")
    kind = given.get("job_type") or logger.get("job_type") or _kind(ticket)
    experiment = given.get("experiment") or logger.get("group") or logger.get("name") or kind
    source = given.get("source")
    one_shot = int(ticket.get("epochs_per_round", 1) or 0) == 0
    density = ticket.get("density") if one_shot and not ticket.get("from_ticket") else None
    pruner = None if source else _pruner(ticket.get("pruner"))  # a given ticket's pruner is its source's
    out = {"experiment": str(experiment), "kind": str(kind), "pruner": pruner, "seed": seed, "target_density": density,
           "source_ticket": source}
    out["ticket_artifact"] = lineage(out["experiment"], seed, _round_of(source), density)
    out["group"] = given.get("group") or logger.get("group") or out["experiment"]
    out["job_type"] = out["kind"]
    out["name"] = given.get("name") or logger.get("name") or run_name(out)
    return out


_RUN_FOLDER = re.compile(r"(?:offline-)?run-(?P<time>\d{8}_\d{6})-(?P<id>[^/]+)$")  # wandb's name for a run's files


def earlier_run_id(save_dir: str | os.PathLike) -> str | None:
    """The id of the newest W&B run whose files are under `save_dir` (its ``wandb/`` folder), or None: a killed run
    resumed with that id continues the same W&B run instead of starting a second one."""
    found = sorted((m.group("time"), m.group("id")) for p in (Path(save_dir) / "wandb").glob("*run-*")
                   if p.is_dir() and (m := _RUN_FOLDER.match(p.name)))
    return found[-1][1] if found else None


def run_name(ident: Mapping[str, Any]) -> str:
    """A run's W&B name from its identity: experiment, pruner (when the experiment's name does not say it), the
    source round or target density, and seed: imp-magnitude-seed0, random-d0.64-seed1, imp_shuffled-round2-seed0."""
    parts = [str(ident["experiment"])]
    pruner = ident.get("pruner")
    if pruner and pruner not in parts[0]:
        parts.append(pruner)
    source_round = _round_of(ident.get("source_ticket"))
    if source_round is not None:
        parts.append(f"round{source_round}")
    elif ident.get("target_density") is not None:
        parts.append(f"d{float(ident['target_density']):.4g}")
    if ident.get("seed") is not None:
        parts.append(f"seed{ident['seed']}")
    return "-".join(parts)


def _run_identity(run: Any) -> dict[str, Any]:
    """The identity a run's config holds (`log_config`); a run started without `lottery fit` gets one from its W&B
    group or name and the seed Lightning's seed_everything set."""
    saved = run.config.get(IDENTITY) if hasattr(run.config, "get") else None
    if isinstance(saved, Mapping) and saved.get("ticket_artifact"):
        return dict(saved)
    seed = os.environ.get("PL_GLOBAL_SEED")
    seed = int(seed) if seed is not None and seed.lstrip("-").isdigit() else None
    experiment = run.group or run.name or "run"
    return {"experiment": experiment, "seed": seed, "ticket_artifact": lineage(experiment, seed)}


# -- a run: config, per-round values, tickets, summary ---------------------------------------------------------------

def log_config(trainer: pl.Trainer, config: Mapping[str, Any], ident: Mapping[str, Any]) -> None:
    """At fit start: the resolved config (model, data, trainer, ticket, seed) and the identity (under ``lottery``) in
    the run config; a run that starts from a ticket artifact declares it as its input (lineage)."""
    for run in runs(trainer):
        run.config.update({**config, IDENTITY: dict(ident)}, allow_val_change=True)
        source, path = ident.get("source_ticket"), (config.get("ticket") or {}).get("from_ticket")
        if source and isinstance(path, str) and Path(path).is_file():
            use_ticket(run, source, Path(path), ident.get("seed"))


def ticket_metadata(ticket: Ticket, seed: int | None) -> dict[str, Any]:
    """A ticket artifact's metadata: round, density, per-layer densities, pruner, rewind point, scope, prune
    fraction, steps, seed and the round's metrics."""
    meta = {k: ticket.metadata.get(k) for k in ("round", "density", "pruner", "rewind", "scope", "prune_fraction",
                                                 "steps")}
    meta.update(layer_densities=ticket.layer_densities(), seed=seed, metrics=ticket.metrics)
    return meta


def _ticket_artifact(name: str, ticket: Ticket, path: Path, seed: int | None) -> Any:
    """A version of the artifact `name` holding the ticket file `path` (the same file: the same digest)."""
    import wandb

    artifact = wandb.Artifact(name, type=ARTIFACT_TYPE, metadata=ticket_metadata(ticket, seed))
    artifact.add_file(str(path), name=path.name)
    return artifact


def use_ticket(run: Any, reference: str, path: Path, seed: int | None) -> None:
    """Declare the ticket artifact `reference` (``NAME:round-N``), whose file is `path`, as the run's input.

    wandb refuses `use_artifact` offline, and given a local artifact it adds the alias `latest` (which would move
    the IMP lineage's `latest` to an earlier round). So the run records the artifact built from the same file
    (hence the same digest: W&B resolves it to the logged version) as used, with no alias, as `use_artifact`
    records a local artifact; online and offline alike (`wandb sync` replays it).
    """
    name = reference.partition(":")[0]
    try:
        artifact = _ticket_artifact(name, Ticket.load(path), path, seed)
        artifact.finalize()
        run._interface.publish_artifact(run, artifact, aliases=[], is_user_created=True, use_after_commit=True)
    except Exception as err:  # noqa: BLE001 (a wandb whose internals moved: the run trains on, without lineage)
        rank_zero_warn(f"W&B: could not record that this run uses the ticket {reference} ({path}): {err!r}")


def define_metrics(trainer: pl.Trainer) -> None:
    """Make lottery/round and lottery/density step metrics; per-round results are charted against density."""
    for run in runs(trainer):
        run.define_metric("lottery/round")
        run.define_metric("lottery/density")
        run.define_metric("round/*", step_metric="lottery/density")


_DEFINED: dict[str, set[str]] = {}  # per run id: the per-round keys given their axis so far


def _define_round_axis(run: Any, keys: Iterable[str]) -> None:
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
    """Per round: one row of its values against density (round/*), and the ticket as a version of its lineage's
    artifact (alias round-N). Tables covering all rounds come once, at the end (`log_summary`)."""
    active = runs(trainer)
    if not active:
        return
    payload = {"lottery/round": ticket.round, "lottery/density": ticket.density,
               **{f"round/{k}": float(v) for k, v in ticket.metrics.items()}}
    for run in active:
        _define_round_axis(run, [k for k in payload if k.startswith("round/")])
        run.log(payload)
        if path is not None:
            ident = _run_identity(run)
            artifact = _ticket_artifact(ident["ticket_artifact"], ticket, Path(path), ident.get("seed"))
            run.log_artifact(artifact, aliases=[f"round-{ticket.round}"])  # wandb adds `latest`


def _columns(tickets: list[Ticket]) -> list[str]:
    """Summary columns: round, density, the usual metrics present, then every other metric (sorted)."""
    present = {k for t in tickets for k in t.metrics}
    first = [c for c in SUMMARY_COLUMNS[2:] if c in present]
    return ["round", "density", *first, *sorted(present - set(first))]


def log_summary(trainer: pl.Trainer, tickets: list[Ticket], folder: Path) -> None:
    """At the end of fit: the table of all rounds (once, as the data of its accuracy-vs-density chart), the
    per-layer density table of all rounds (round x layer), and the report's log-density plots.

    `folder` is the run's results folder (lottery.layout.RunLayout's `folder`); the report's plots go there.
    """
    active = runs(trainer)
    if not active or not tickets:
        return
    import wandb

    from lottery.report import report

    columns = _columns(tickets)
    rows = [[t.round, t.density, *[t.metrics.get(c, math.nan) for c in columns[2:]]] for t in tickets]
    table = wandb.Table(columns=columns, data=rows)
    y = next((c for c in ("test_acc", "val_acc") if c in columns), None)
    # wandb.plot.line stores its table under "<key>_table": the chart and its data are the one stored table
    summary = wandb.plot.line(table, "density", y, title=f"{y} against density") if y else table
    layers = wandb.Table(columns=list(LAYER_COLUMNS), data=[
        [t.round, name, total, kept, kept / total] for t in tickets for name, (kept, total) in t.counts().items()])
    payload: dict[str, Any] = {"lottery/summary": summary, "lottery/layer_densities": layers}
    plots = {p.stem: p for p in report(folder) if p.suffix == ".png"}
    payload.update({f"lottery/{k}": wandb.Image(str(p)) for k, p in plots.items()})
    for run in active:
        run.log(payload)


def finish(trainer: pl.Trainer | None, failed: bool = False) -> None:
    """Finish the W&B runs the Trainer's WandbLoggers started (exit code 1 when `failed`), so that the next
    Trainer of this process starts its own run instead of reusing this one."""
    if trainer is None or not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        run = getattr(logger, "_experiment", None) if is_wandb(logger) else None  # started runs only
        if run is not None and hasattr(run, "finish"):
            _DEFINED.pop(getattr(run, "id", None), None)
            run.finish(exit_code=1 if failed else 0)


# -- a comparison: its summary run -----------------------------------------------------------------------------------

def log_comparison(results: list[dict[str, Any]], columns: list[str], means: list[dict[str, Any]], plot: Path | None,
                   group: str, init: Mapping[str, Any], folder: Path) -> None:
    """The summary run of a comparison (job type `summary`, in the comparison's group): the `results` rows (of
    results.csv) as a table, and `means` (experiment, density, mean and std over seeds) as the table of a chart of
    test accuracy against density, one line per experiment, with `plot` (comparison.png: log density axis, mean
    +- std). `init` are the base config's WandbLogger init_args (project, entity, offline, ...); the run's files
    go to `folder`."""
    import wandb

    settings = {k: init[k] for k in ("project", "entity", "tags", "notes") if init.get(k)}
    ident = {"experiment": group, "kind": "summary", "seeds": sorted({r["seed"] for r in results})}
    with wandb.init(**settings, group=group, job_type="summary", name=f"{group}-summary",
                    dir=str(Path(folder).resolve()), mode="offline" if init.get("offline") else None,
                    config={IDENTITY: ident}) as run:
        mean_columns = list(means[0]) if means else ["experiment", "density", "test_acc_mean", "test_acc_std", "seeds"]
        table = wandb.Table(columns=mean_columns, data=[[m[c] for c in mean_columns] for m in means])
        results_table = wandb.Table(columns=list(columns), data=[[r.get(c) for c in columns] for r in results])
        payload: dict[str, Any] = {
            "comparison/results": results_table,
            # the chart's data are its table, stored once under "comparison/test_acc_vs_density_table"
            "comparison/test_acc_vs_density": wandb.plot.line(table, "density", "test_acc_mean", stroke="experiment",
                                                              title="test accuracy (mean over seeds) against density")}
        if plot is not None and plot.is_file():
            payload["comparison/plot"] = wandb.Image(str(plot))
        run.log(payload)
