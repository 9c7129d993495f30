"""Continuing a run: its checkpoints (written at epoch ends, complete ones found, failed writes named), the run a
`--resume` continues, and the check that a resume keeps the settings the run was started with."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pytorch_lightning import Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

from lottery.files import zip_problem

SETTINGS = ("seed_everything", "model", "data", "ticket", "optimizer", "lr_scheduler")  # a resume keeps these ("ticket": the callback's group)
FREE_TO_CHANGE = ("data.init_args.data_dir", "data.init_args.num_workers", "data.init_args.download")  # where the
# data are found and how they are loaded, not what they are
TRAINING = tuple(f"trainer.{k}" for k in (  # trainer settings that change what the rest of the run trains
    "limit_train_batches", "limit_val_batches", "accumulate_grad_batches", "gradient_clip_val",
    "gradient_clip_algorithm", "precision", "max_steps", "overfit_batches", "val_check_interval",
    "check_val_every_n_epoch"))
NOT_SETTINGS = ("config", "ckpt_path", "resume", "resume_with_changes")  # how this invocation was started
BUILT_IN_MODEL = "lottery.module.ClassificationModule"
FROM_DATA = ("num_classes", "input_shape")  # ClassificationModule's sizes, set from the data
SAVED_CONFIG = "config.yaml"  # LightningCLI's SaveConfigCallback writes the resolved config there in the log folder
LAST = "last.ckpt"


class ResumeError(RuntimeError):
    """`--resume` found no checkpoint to continue, or settings that differ from the run's."""


class Checkpoint(ModelCheckpoint):
    """ModelCheckpoint whose failed writes (a full disk) raise an OSError naming the checkpoint file, and that is not
    called at every step when it saves no checkpoint at steps."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._every_n_train_steps < 1 and self._train_time_interval is None:
            # ModelCheckpoint.on_train_batch_end saves only every n steps or after a time interval; without them it
            # returns at once, after Lightning's dispatch (6 us a step, 0.4% of a LeNet step): not called at all
            self.on_train_batch_end = None

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        try:
            super()._save_checkpoint(trainer, filepath)
        except OSError as err:
            if err.errno is None:
                raise OSError(f"could not write checkpoint {filepath}: {err}") from err
            raise OSError(err.errno, f"could not write checkpoint {filepath}: {err.strerror or err} (free space, "
                          "then continue with `lottery fit --config ... --resume`)") from err


def default_checkpoint() -> Checkpoint:
    """The checkpoint callback of a `lottery fit` whose config names none: at every training epoch end (a resume
    from there trains exactly what an uninterrupted run would), keeping the newest, and last.ckpt linking to it."""
    return Checkpoint(save_last="link", save_on_train_epoch_end=True)


def newest_checkpoint(paths: Iterable[Path]) -> Path | None:
    """The checkpoint to resume from: last.ckpt, else the newest by mtime, skipping (with a warning naming it)
    any that is not a complete zip archive (a write cut short by a kill or a full disk); None if none is complete."""
    files = sorted({p for p in paths if p.is_file()}, key=lambda p: (p.name == LAST, p.stat().st_mtime), reverse=True)
    for path in files:
        problem = zip_problem(path)
        if problem is None:
            return path
        rank_zero_warn(f"skipping checkpoint {path}: {problem}; a write was cut short (a kill or a full disk). "
                       "Trying the next newest.")
    return None


def versions(root: str | os.PathLike) -> list[Path]:
    """The `version_N` folders of a logger's `root`, newest (highest N, compared as numbers) first."""
    found = [(int(p.name[8:]), p) for p in Path(root).glob("version_*") if p.is_dir() and p.name[8:].isdigit()]
    return [p for _, p in sorted(found, reverse=True)]


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict) or not tree:
        return {prefix.rstrip("."): tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}{key}."))
    return out


def setting_changes(saved: dict[str, Any], now: dict[str, Any]) -> tuple[list[str], list[str]]:
    """`key: saved -> now` lines of two resolved configs: those a resume refuses (model, data, ticket, optimizer,
    seed, and the trainer settings of TRAINING) and the others (trainer)."""
    old, new = _flat(saved), _flat(now)
    refused, allowed = [], []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if a == b or key.split(".")[0] in NOT_SETTINGS:
            continue
        line = f"{key}: {a!r} -> {b!r}"
        settings = (key.split(".")[0] in SETTINGS and key not in FREE_TO_CHANGE) or key in TRAINING
        (refused if settings else allowed).append(line)
    return refused, allowed


def resume_point(trainer: Trainer) -> tuple[Path, Path]:
    """The folder of the run `--resume` continues and its newest complete checkpoint; a CSV/TensorBoard logger
    without a set version is pointed at that run's version_N, so the run writes into its own folder again."""
    logger = trainer.loggers[0] if trainer.loggers else None
    named = [Path(c.dirpath) for c in trainer.checkpoint_callbacks if getattr(c, "dirpath", None)]
    if isinstance(logger, (CSVLogger, TensorBoardLogger)) and logger._version is None:
        runs = versions(logger.root_dir)
        for folder in runs:
            checkpoint = newest_checkpoint(p for d in [folder / "checkpoints", *named] for p in d.glob("*.ckpt"))
            if checkpoint is not None:
                break
        else:
            raise ResumeError(
                f"--resume found no checkpoint to continue: none of the {len(runs)} run folders version_N in "
                f"{logger.root_dir} holds a complete checkpoint (checkpoints are written at each epoch end). "
                "Start the run anew without --resume, or pass --ckpt_path PATH to start from a checkpoint.")
        skipped = runs[:runs.index(folder)]
        if skipped:
            rank_zero_info(f"lottery fit --resume: {', '.join(p.name for p in skipped)} hold no checkpoint; "
                           f"continuing {folder.name}")
        logger._version = int(folder.name[8:])  # before anything reads log_dir: this run writes there again
    else:
        if logger is None:
            folder, places = Path(trainer.default_root_dir), [Path(trainer.default_root_dir) / "checkpoints"]
        elif isinstance(logger, (CSVLogger, TensorBoardLogger)):  # a version named in the config
            folder = Path(logger.log_dir)
            places = [folder / "checkpoints"]
        else:  # e.g. W&B: each run's own folder is save_dir/name/<run id> (lottery.layout.run_folder), checkpoints in it
            folder = Path(logger.save_dir or trainer.default_root_dir) / str(logger.name)
            places = list(folder.glob("*/checkpoints"))
        checkpoint = newest_checkpoint(p for d in [*places, *named] for p in d.glob("*.ckpt"))
        if checkpoint is None:
            raise ResumeError(f"--resume found no complete checkpoint of the run in {folder} (looked in "
                              f"{', '.join(map(str, [*places, *named])) or 'no checkpoint folder'}). Start the run "
                              "anew without --resume, or pass --ckpt_path PATH to start from a checkpoint.")
        if checkpoint.parent in places:
            folder = _continue_run(logger, checkpoint.parent.parent)
    return folder, checkpoint


def _continue_run(logger: Any, folder: Path) -> Path:
    """Point a logger named by run id (W&B) at the run of `folder`, before its run starts: the resumed run writes
    into its own folder again, and W&B continues that run (WandbLogger resumes a given id)."""
    from pytorch_lightning.loggers import WandbLogger

    if isinstance(logger, WandbLogger) and logger._experiment is None:
        # WandbLogger takes the id only in its constructor; these are where it keeps it until the run starts
        logger._id = logger._wandb_init["id"] = folder.name
    return folder


def _flat_model(config: dict[str, Any]) -> dict[str, Any]:
    model = config.get("model")
    if isinstance(model, dict) and model.get("class_path") == BUILT_IN_MODEL:
        return {**config, "model": dict(model.get("init_args") or {})}
    return config


def comparable(saved: dict[str, Any], now: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`saved` and `now` with the built-in model's arguments straight under `model:`, as config files give them and
    as a config.yaml saved before models were named by class path holds them (another model keeps its class_path and
    init_args); the sizes the data set, which such a config.yaml left out, are taken from `now` where missing."""
    saved, now = _flat_model(saved), _flat_model(now)
    old, new = saved.get("model"), now.get("model")
    if isinstance(old, dict) and isinstance(new, dict) and "class_path" not in old and "class_path" not in new:
        saved = {**saved, "model": {**{k: new[k] for k in FROM_DATA if k in new}, **old}}
    return saved, now


def check_settings(folder: Path, now: dict[str, Any], allow: bool) -> None:
    """Refuse (unless `allow`: --resume_with_changes) a resolved config `now` whose model, data or ticket settings
    differ from those the run in `folder` was started with (its saved config.yaml)."""
    saved_path = folder / SAVED_CONFIG
    if not saved_path.is_file():
        rank_zero_warn(f"lottery fit --resume: {saved_path} is missing, so this run's settings cannot be "
                       "compared with the ones it was started with; continuing with the given ones")
        return
    saved = yaml.safe_load(saved_path.read_text()) or {}
    refused, allowed = setting_changes(*comparable(saved, now))
    if allowed:
        rank_zero_info("lottery fit --resume: settings a resume may change differ from the run's (applied):\n  "
                       + "\n  ".join(allowed))
    if not refused:
        return
    listed = "\n  ".join(refused)
    if not allow:
        raise ResumeError(
            f"--resume would continue {folder} with settings that differ from the ones it was started with "
            f"({saved_path}; saved -> given):\n  {listed}\nResume with the run's settings (drop these "
            "arguments), start a new run without --resume, or add --resume_with_changes to apply them to the "
            "rest of this run.")
    rank_zero_warn(f"lottery fit --resume_with_changes: the rest of the run in {folder} uses settings that "
                   f"differ from its start (saved -> given):\n  {listed}")


