"""The `lottery fit` experiment: LightningCLI with the LotteryTicket callback as the `ticket` group, built one way.

The `lottery` command, the cells of a comparison and the stability runs all build their runs here, so the
model, data and callback groups, their links and the defaults are written once. A `lottery fit` locks its
`default_root_dir` (one writer per folder), checkpoints at every epoch end, and `--resume` continues the newest
run of that folder from its newest complete checkpoint, in the same log folder, refusing changed settings.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import yaml
from jsonargparse import Namespace
from pytorch_lightning import Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.utilities import rank_zero_info

from lottery.callback import LotteryTicket
from lottery.data import VisionDataModule
from lottery.lock import RunLock, is_rank_zero
from lottery.module import ClassificationModule
from lottery.resume import ResumeError, check_settings, default_checkpoint, resume_point

GROUP = "ticket"  # the LotteryTicket callback's arguments on the command line: --ticket.rounds, --ticket.pruner, ...
AMOUNTS = ("density", "prune_fraction")  # the callback takes one of them: the one on the command line wins


def one_amount(args: list[str]) -> list[str]:
    """`args` with `--ticket.prune_fraction null` put before a `--ticket.density` given without it (and the reverse):
    the amount named on the command line replaces the one of a config file."""
    flags = [a.split("=", 1)[0] for a in args]
    for given, other in (AMOUNTS, AMOUNTS[::-1]):
        flag, other_flag = f"--{GROUP}.{given}", f"--{GROUP}.{other}"
        if flag not in flags or other_flag in flags:
            continue
        i = flags.index(flag)
        value = args[i].split("=", 1)[1] if "=" in args[i] else (args[i + 1] if i + 1 < len(args) else "")
        if value.strip().lower() not in ("null", "none", "~", ""):
            return [*args[:i], other_flag, "null", *args[i:]]
    return list(args)


class LotteryCLI(LightningCLI):
    """`lottery fit --config configs/NAME.yaml [--ticket.rounds 2] [--resume] [--print_config]`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.lock: RunLock | None = None
        try:
            super().__init__(*args, **kwargs)
        finally:
            if self.lock is not None:
                self.lock.release()

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_lightning_class_args(LotteryTicket, GROUP)
        # the data decide the model's input and output sizes
        parser.link_arguments("data", "model.num_classes", compute_fn=lambda d: d.num_classes, apply_on="instantiate")
        parser.link_arguments("data", "model.input_shape", compute_fn=lambda d: d.image_shape, apply_on="instantiate")
        parser.add_argument("--resume", action="store_true",
                            help="continue the newest run of this default_root_dir from its newest checkpoint, in its "
                                 "own log folder; refused when model, data or ticket settings differ from its config.yaml")
        parser.add_argument("--resume_with_changes", action="store_true",
                            help="with --resume: apply model, data and ticket settings that differ from the run's")

    def parse_arguments(self, parser: Any, args: Any) -> None:
        if isinstance(args, (dict, Namespace)):
            return super().parse_arguments(parser, args)
        if args is None:
            self.config = parser.parse_args(one_amount(sys.argv[1:]))
        else:
            super().parse_arguments(parser, one_amount(list(args)))

    def before_instantiate_classes(self) -> None:
        if self.subcommand is None:
            return
        config = self.config[self.subcommand]
        resume, with_changes = config.get("resume"), config.get("resume_with_changes")
        if self.subcommand != "fit":
            if resume or with_changes:
                raise ResumeError(f"--resume continues a `lottery fit` run; `lottery {self.subcommand}` takes "
                                  "--ckpt_path PATH instead")
            return
        if with_changes and not resume:
            raise ResumeError("--resume_with_changes goes with --resume (continue the run with these settings)")
        if config.get("ckpt_path") == "last":
            raise ResumeError("--ckpt_path last looks for last.ckpt only in the new version_N folder this run opens, so "
                              "it would start over from epoch 0; continue the newest run of this default_root_dir "
                              "with --resume instead (or pass --ckpt_path PATH of a checkpoint)")
        if resume and config.get("ckpt_path"):
            raise ResumeError("pass --resume (the newest checkpoint of this default_root_dir's run) or --ckpt_path PATH "
                              "(a new run folder starting from that checkpoint), not both")
        if is_rank_zero():  # processes a DDP launcher starts for other ranks run inside the lock of rank zero
            self.lock = RunLock(config.trainer.default_root_dir or os.getcwd(), "lottery fit").acquire()

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = self._get(self.config_init, "trainer", default={})
        callbacks = trainer.get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, list) else [callbacks]
        if ("callbacks" not in kwargs and trainer.get("enable_checkpointing") is not False
                and not any(isinstance(c, ModelCheckpoint) for c in callbacks)):
            kwargs["callbacks"] = [*callbacks, default_checkpoint()]
        return super().instantiate_trainer(**kwargs)

    def after_instantiate_classes(self) -> None:
        if self.subcommand == "fit" and self.config.fit.get("resume"):
            folder, checkpoint = resume_point(self.trainer)
            now = yaml.safe_load(self._parser("fit").dump(self.config.fit, skip_none=False))
            check_settings(folder, now, allow=bool(self.config.fit.get("resume_with_changes")))
            rank_zero_info(f"lottery fit --resume: continuing the run in {folder} from {checkpoint}")
            self.config.fit.ckpt_path = self.config_init.fit.ckpt_path = str(checkpoint)



def build_cli(args: list[str] | None = None, run: bool = True) -> LotteryCLI:
    """The LotteryCLI of ClassificationModule and any VisionDataModule for `args` (None: the command line);
    with `run` it runs the subcommand (`fit`, ...), without it only builds the model, data and trainer."""
    # a progress bar redrawn every step costs more than a LeNet step; every 20 steps looks the same
    os.environ.setdefault("TQDM_MINITERS", "20")
    return LotteryCLI(
        ClassificationModule,
        VisionDataModule,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


def fit(args: list[str]) -> None:
    """Train in this process as the command `lottery ARGS` does; `args` start with the subcommand `fit`."""
    if args[:1] != ["fit"]:
        raise ValueError(f"fit() runs the `fit` subcommand; its arguments start with 'fit', got {args[:1]}")
    build_cli(args)
