"""The `lottery` command: LightningCLI with the LotteryTicket callback as the `ticket` group."""

from __future__ import annotations

import os
from typing import Any

from pytorch_lightning.cli import LightningCLI

from lottery.callback import LotteryTicket
from lottery.data import VisionDataModule
from lottery.module import ClassificationModule


class LotteryCLI(LightningCLI):
    """`lottery fit --config configs/NAME.yaml [--ticket.rounds 2] [--print_config]`."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_lightning_class_args(LotteryTicket, "ticket")
        # the data decide the model's input and output sizes
        parser.link_arguments("data", "model.num_classes", compute_fn=lambda d: d.num_classes, apply_on="instantiate")
        parser.link_arguments("data", "model.input_shape", compute_fn=lambda d: d.image_shape, apply_on="instantiate")


def main(args: list[str] | None = None) -> None:
    """Entry point of the `lottery` console script."""
    # a progress bar redrawn every step costs more than a LeNet step; every 20 steps looks the same
    os.environ.setdefault("TQDM_MINITERS", "20")
    LotteryCLI(
        ClassificationModule,
        VisionDataModule,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
    )


if __name__ == "__main__":
    main()
