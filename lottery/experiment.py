"""The `lottery fit` experiment: LightningCLI with the LotteryTicket callback as the `ticket` group, built one way.

The `lottery` command, the cells of a comparison and the stability runs all build their runs here, so the
model, data and callback groups, their links and the defaults are written once.
"""

from __future__ import annotations

import os
from typing import Any

from pytorch_lightning.cli import LightningCLI

from lottery.callback import LotteryTicket
from lottery.data import VisionDataModule
from lottery.module import ClassificationModule

GROUP = "ticket"  # the LotteryTicket callback's arguments on the command line: --ticket.rounds, --ticket.pruner, ...


class LotteryCLI(LightningCLI):
    """`lottery fit --config configs/NAME.yaml [--ticket.rounds 2] [--print_config]`."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_lightning_class_args(LotteryTicket, GROUP)
        # the data decide the model's input and output sizes
        parser.link_arguments("data", "model.num_classes", compute_fn=lambda d: d.num_classes, apply_on="instantiate")
        parser.link_arguments("data", "model.input_shape", compute_fn=lambda d: d.image_shape, apply_on="instantiate")


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
