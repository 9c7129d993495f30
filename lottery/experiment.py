"""The `lottery fit` experiment: LightningCLI with the LotteryTicket callback as the `ticket` group, built one way.

The `lottery` command, the cells of a comparison and the stability runs all build their runs here, so the
model, data and callback groups, the data-decided sizes and the defaults are written once. The model is any
LightningModule and the data any LightningDataModule, named by class path (LightningCLI's subclass mode); a model
named by no class path is ClassificationModule. A `lottery fit` locks its `default_root_dir` (one writer per
folder), checkpoints at every epoch end, and `--resume` continues the newest run of that folder from its newest
complete checkpoint, in the same log folder, refusing changed settings.

With a WandbLogger, each `lottery fit` is one W&B run, finished when the fit returns or raises (so the next fit of
this process, a comparison's next cell, starts its own): named for what it is by `--run.*` (a comparison sets them
per cell) or the logger's own name, group and job_type, holding the resolved config in its run config, with
config.yaml in the run's own folder.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from typing import Any

import yaml
from jsonargparse import ArgumentParser, Namespace
from pytorch_lightning import LightningDataModule, LightningModule, Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.utilities import rank_zero_info

from lottery.callback import LotteryTicket, hooks
from lottery.data import VisionDataModule
from lottery.integrations import wandb as wandb_integration
from lottery.layout import run_folder
from lottery.lock import RunLock, is_rank_zero
from lottery.module import ClassificationModule
from lottery.resume import ResumeError, check_settings, default_checkpoint, resume_point

GROUP = "ticket"  # the LotteryTicket callback's arguments on the command line: --ticket.rounds, --ticket.pruner, ...
AMOUNTS = ("density", "prune_fraction")  # the callback takes one of them: the one on the command line wins
RECIPE = "lottery fit --model mypkg.MyModule --data mypkg.MyData --ticket.rounds 5 --ticket.epochs_per_round 10"
MODEL_TAKES = ("--model takes the class path of a LightningModule that imports here (its package installed or on "
               "PYTHONPATH), e.g. --model mypkg.MyModule; named by none, the model is the built-in "
               "lottery.module.ClassificationModule")
DATA_TAKES = ("--data takes the class path of a LightningDataModule that imports here: lottery.data.MNIST, "
              "FashionMNIST, CIFAR10, CIFAR100 or your own, e.g. --data mypkg.MyData")
MODEL_HELP = (f"{MODEL_TAKES}. Arguments: --model.NAME VALUE, or class_path and init_args in a config file, where the "
              "built-in model's may come without class_path (model: {arch: lenet300, lr: 0.1}). --model.help "
              "CLASS_PATH lists a class's arguments.")
DATA_HELP = (f"{DATA_TAKES}. Arguments: --data.NAME VALUE. ClassificationModule needs data and takes num_classes and "
             "input_shape from a lottery.data module; a model of yours with its own *_dataloader methods needs none.")
RUN = "run"  # --run.*: what a W&B run is (lottery compare sets them per cell); see integrations.wandb.identity
RUN_ARGS = {
    "experiment": "the experiment this run belongs to (default: the WandbLogger's group, else its name, else the kind)",
    "name": "the W&B run's name (default: the WandbLogger's name, else experiment-pruner-[dDENSITY|roundN]-seedK)",
    "group": "the W&B group, e.g. the comparison (default: the WandbLogger's group, else the experiment)",
    "job_type": "the W&B job type, the kind of run: imp, pai, reinit, shuffle (default: the WandbLogger's job_type, "
                "else the kind the ticket arguments make)",
    "source": "the W&B artifact of the ticket --ticket.from_ticket is, NAME:round-N; the run declares it as its input",
}
FIT_HELP = (f"Train with the LotteryTicket callback (--ticket.*). Your own model and data: {RECIPE}; or --config "
            "mine.yaml giving class_path and init_args under model: and data:. See --model and --data below.")


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


def _imported(spec: Any) -> type | None:
    """The class a parsed `class_path` spec names (None when none is named or it does not import)."""
    path = spec.get("class_path") if isinstance(spec, (dict, Namespace)) else None
    module, _, name = str(path or "").rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


@functools.cache
def _defaults_of(class_path: str) -> Namespace:
    """The parsed spec of `class_path` with all its defaults, as `--model CLASS_PATH` alone gives it."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningModule, "model", fail_untyped=False)
    return parser.parse_args([f"--model={class_path}"]).model


class LotteryParser(LightningArgumentParser):
    """The parser of `lottery fit`: an error about `--model` or `--data` says what they take, and `resolve` (applied
    after parsing and to every dump: --print_config, the run's config.yaml) puts in the values the run will use."""

    def __init__(self, *args: Any, default_model: str = "lottery.module.ClassificationModule", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.default_model = default_model

    def error(self, message: str, ex: Exception | None = None) -> Any:
        kinds = (("model", "LightningModule", MODEL_TAKES), ("data", "LightningDataModule", DATA_TAKES))
        for key, base, accepted in kinds:
            # jsonargparse's words for a class path that does not import or names another kind of class
            wrong_class = (f"subclass of {base}", "No module named", "has no attribute")
            if f'key "{key}"' in message and any(words in message for words in wrong_class):
                message = f"{accepted}.\n{message}"
                break
        return super().error(message, ex)

    def dump(self, cfg: Namespace, *args: Any, **kwargs: Any) -> Any:
        return super().dump(self.resolve(cfg.clone()) if isinstance(cfg, Namespace) else cfg, *args, **kwargs)

    def resolve(self, cfg: Namespace) -> Namespace:
        """`cfg` (of the whole command or of one subcommand) with the default model where no model is named, and
        ClassificationModule's num_classes and input_shape from a lottery.data module (VisionDataModule).

        The sizes are set here, not by jsonargparse links: a link applies to every class that takes an argument of
        that name and leaves it out of config.yaml, so a model of yours taking `num_classes` would lose a given value
        from the saved config. Other models and data are left as given."""
        part = cfg.get(cfg["subcommand"]) if cfg.get("subcommand") else cfg
        if not isinstance(part, Namespace) or "model" not in part:
            return cfg
        if part.model is None:
            part.model = _defaults_of(self.default_model).clone()
        model, data = _imported(part.model), _imported(part.get("data"))
        if (isinstance(model, type) and issubclass(model, ClassificationModule) and isinstance(data, type)
                and issubclass(data, VisionDataModule)):
            part.model.init_args.num_classes = data.num_classes
            part.model.init_args.input_shape = list(data.image_shape)
        return cfg


class LotteryCLI(LightningCLI):
    """`lottery fit --config configs/NAME.yaml [--ticket.rounds 2] [--resume] [--print_config]`, or with your own
    classes `lottery fit --model mypkg.MyModule --data mypkg.MyData ...`.

    The model is any LightningModule, `model_class` (default ClassificationModule) when none is named; a config's
    `model:` without class_path gives `model_class`'s arguments. The data are any subclass of `datamodule_class`
    (default LightningDataModule)."""

    def __init__(self, model_class: type[LightningModule] | None = None,
                 datamodule_class: type[LightningDataModule] | None = None, *args: Any, **kwargs: Any) -> None:
        self.lock: RunLock | None = None
        self.default_model = model_class or ClassificationModule
        self.data_class = datamodule_class or LightningDataModule
        kwargs.setdefault("parser_class", LotteryParser)
        kwargs.setdefault("save_config_callback", RunConfig)
        try:
            super().__init__(None, None, *args, **kwargs)
        finally:
            if self.lock is not None:
                self.lock.release()

    def init_parser(self, **kwargs: Any) -> LotteryParser:
        kwargs.setdefault("default_model", f"{self.default_model.__module__}.{self.default_model.__qualname__}")
        return super().init_parser(**kwargs)  # parser_class: LotteryParser or a subclass

    def add_core_arguments_to_parser(self, parser: Any) -> None:
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({f"trainer.{k}": v for k, v in self.trainer_defaults.items() if k != "callbacks"})
        # Any LightningModule; a `model:` of arguments without class_path is the default model's, by jsonargparse's
        # implicit class path (the first type of the union). No parser default: jsonargparse would carry the
        # default model's arguments (lr, ...) into a class named later, so LotteryParser.resolve fills it in
        models = tuple(dict.fromkeys((self.default_model, LightningModule)))
        parser.add_subclass_arguments(models, "model", required=False, fail_untyped=False, help=MODEL_HELP)
        parser.add_subclass_arguments(self.data_class, "data", required=False, fail_untyped=False, help=DATA_HELP)
        parser.groups["model"].title = f"Model: any LightningModule, {self.default_model.__name__} by default"
        parser.groups["data"].title = f"Data: any {self.data_class.__name__}"

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_lightning_class_args(LotteryTicket, GROUP)
        parser.add_argument("--resume", action="store_true",
                            help="continue the newest run of this default_root_dir from its newest checkpoint, in its "
                                 "own log folder; refused when model, data or ticket settings differ from its config.yaml")
        parser.add_argument("--resume_with_changes", action="store_true",
                            help="with --resume: apply model, data and ticket settings that differ from the run's")
        group = parser.add_argument_group("W&B run: what this run is (lottery compare sets these per cell)")
        for name, text in RUN_ARGS.items():
            group.add_argument(f"--{RUN}.{name}", type=str | None, default=None, help=text)

    def parse_arguments(self, parser: Any, args: Any) -> None:
        if isinstance(args, (dict, Namespace)):
            super().parse_arguments(parser, args)
        elif args is None:
            self.config = parser.parse_args(one_amount(sys.argv[1:]))
        else:
            super().parse_arguments(parser, one_amount(list(args)))
        part = parser.resolve(self.config)
        part = part.get(part["subcommand"]) if part.get("subcommand") else part
        model = _imported(part.get("model"))
        if part.get("data") is None and isinstance(model, type) and issubclass(model, ClassificationModule):
            parser.error(f"{model.__name__} needs --data: lottery.data.MNIST, FashionMNIST, CIFAR10, CIFAR100 or "
                         "the class path of another LightningDataModule")

    def before_instantiate_classes(self) -> None:
        name_wandb_runs(self.config[self.subcommand] if self.subcommand else self.config)
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
        trainer = super().instantiate_trainer(**kwargs)
        for callback in trainer.callbacks:  # the progress bar, model summary, config and checkpoint callbacks
            # leave most batch hooks empty; Lightning would call each at every step (4% of a LeNet step)
            hooks.switch_off_empty(callback)
        return trainer

    def after_instantiate_classes(self) -> None:
        if self.subcommand == "fit" and self.config.fit.get("resume"):
            folder, checkpoint = resume_point(self.trainer)
            now = yaml.safe_load(self._parser("fit").dump(self.config.fit, skip_none=False))
            check_settings(folder, now, allow=bool(self.config.fit.get("resume_with_changes")))
            rank_zero_info(f"lottery fit --resume: continuing the run in {folder} from {checkpoint}")
            self.config.fit.ckpt_path = self.config_init.fit.ckpt_path = str(checkpoint)

    def _run_subcommand(self, subcommand: str) -> None:
        failed = True
        try:
            super()._run_subcommand(subcommand)
            failed = False
        finally:
            # the W&B run ends with its fit: another Trainer of this process (a comparison's next cell) would
            # otherwise log into it (Lightning's WandbLogger reuses a run in progress)
            wandb_integration.finish(getattr(self, "trainer", None), failed)


def name_wandb_runs(config: Namespace) -> None:
    """Set the name, group and job_type of the config's WandbLoggers to the run's identity
    (`integrations.wandb.identity`: `--run.*` first, then the logger's own, then derived), and make their folders
    absolute, before they are built."""
    logger = (config.get("trainer") or Namespace()).get("logger")
    specs = [s for s in (logger if isinstance(logger, list) else [logger])
             if isinstance(s, Namespace) and wandb_integration.is_wandb_spec(s.as_dict())]
    if not specs:
        return
    ident = wandb_integration.identity(config.as_dict())
    for spec in specs:
        if not isinstance(spec.get("init_args"), Namespace):
            spec.init_args = Namespace()
        for key in ("name", "group", "job_type"):
            setattr(spec.init_args, key, ident[key])
        for key in ("save_dir", "dir"):
            # wandb's service process, started by this process's first run, resolves a relative folder against its
            # own working directory: a later run of this process in another one would write its files elsewhere
            if isinstance(spec.init_args.get(key), str):
                setattr(spec.init_args, key, os.path.abspath(spec.init_args.get(key)))


class RunConfig(SaveConfigCallback):
    """LightningCLI's config.yaml, written in the run's own folder (`lottery.layout.run_folder`: a W&B run's
    ``<save_dir>/<project>/<run id>`` rather than the save_dir all its runs share), and in W&B the resolved config,
    the run's identity and the ticket artifact it starts from."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.already_saved or not self.save_to_log_dir:
            return super().setup(trainer, pl_module, stage)
        folder = run_folder(trainer)  # a collective call, on every rank
        if trainer.is_global_zero:
            folder.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, str(folder / self.config_filename), skip_none=False,
                             overwrite=self.overwrite, multifile=self.multifile)
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not wandb_integration.runs(trainer):
            return
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))  # as config.yaml holds it
        wandb_integration.log_config(trainer, config, wandb_integration.identity(config))



def build_cli(args: list[str] | None = None, run: bool = True) -> LotteryCLI:
    """The LotteryCLI for `args` (None: the command line): any LightningModule (ClassificationModule when none is
    named) and any LightningDataModule; with `run` it runs the subcommand (`fit`, ...), without it only builds the
    model, data and trainer."""
    # a progress bar redrawn every step costs more than a LeNet step; every 20 steps looks the same
    os.environ.setdefault("TQDM_MINITERS", "20")
    return LotteryCLI(
        ClassificationModule,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"fit": {"description": FIT_HELP}},
        args=args,
        run=run,
    )


def fit(args: list[str]) -> None:
    """Train in this process as the command `lottery ARGS` does; `args` start with the subcommand `fit`. The W&B
    runs of its WandbLoggers are finished when it returns or raises."""
    if args[:1] != ["fit"]:
        raise ValueError(f"fit() runs the `fit` subcommand; its arguments start with 'fit', got {args[:1]}")
    build_cli(args)
