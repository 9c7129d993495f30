"""Linear mode connectivity and instability (Frankle et al., ICML 2020).

Train two copies from the same point (a rewind point) with different SGD noise, evaluate the error along the
straight line between the two results; instability = the highest error on the path minus the mean of the two
end errors. Below about 2% the point counts as stable, and rewinding to it is expected to find a ticket.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lottery.files import atomic_write_text, csv_text
from lottery.plots import pyplot


def interpolate(a: Mapping[str, Tensor], b: Mapping[str, Tensor], alpha: float) -> dict[str, Tensor]:
    """(1 - alpha)·a + alpha·b for floating entries of two state dicts; other entries (counters) from a."""
    return {k: torch.lerp(v, b[k].to(v.dtype), alpha) if v.is_floating_point() else v.clone() for k, v in a.items()}


@torch.no_grad()
def classification_error(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]]) -> float:
    """Fraction of examples misclassified (eval mode)."""
    was_training = model.training
    model.eval()
    wrong = total = 0
    device = next(model.parameters()).device
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        wrong += int(torch.count_nonzero(model(x).argmax(1) != y))
        total += len(y)
    model.train(was_training)
    return wrong / total


def linear_path(a: nn.Module, b: nn.Module, evaluate: Callable[[nn.Module], float], points: int = 11) -> list[float]:
    """`evaluate` (an error) at `points` evenly spaced networks on the line from `a` to `b`."""
    if points < 2:
        raise ValueError(f"points must be at least 2 (the two ends), got {points}")
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys():
        raise ValueError("the two networks have different state-dict keys; train two copies of one model")
    probe = copy.deepcopy(a)
    errors = []
    for i in range(points):
        probe.load_state_dict(interpolate(sa, sb, i / (points - 1)))
        errors.append(float(evaluate(probe)))
    return errors


def instability(errors: list[float]) -> float:
    """Error barrier of a path: max error minus the mean of the two end errors."""
    return max(errors) - (errors[0] + errors[-1]) / 2


def run(config: str, rewinds: list[int], points: int = 11, seeds: tuple[int, int] = (1, 2),
        out: str | None = None, args: list[str] | None = None) -> Path:
    """Instability of each rewind iteration of a `lottery fit` config's model, data and schedule.

    For every k in `rewinds`: train to step k (seed 0), then train two copies from the weights at k with data
    orders `seeds` for one round (`ticket.epochs_per_round` epochs, a fresh optimizer as after open_lth's
    rewinding), and measure test error along the line between them. Writes stability.csv and stability.png
    (instability against rewind iteration) under `out`.
    """
    import pytorch_lightning as pl

    from lottery.experiment import build_cli
    from lottery.module import ClassificationModule

    cli = build_cli(["--config", config, "--seed_everything", "0", *(args or [])], run=False)
    epochs = cli.config.ticket.epochs_per_round
    dm = cli.datamodule  # one data module: the data are read once
    hparams = {k: v for k, v in cli.model.hparams.items() if not k.startswith("_")}

    def fit(model: ClassificationModule, data_seed: int, **limits: Any) -> ClassificationModule:
        dm.seed = data_seed  # TensorLoader's order comes from seed + epoch
        pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=root,
                   limit_train_batches=cli.trainer.limit_train_batches, **limits).fit(model, dm)
        return model

    root = Path(out or Path("runs") / f"stability_{Path(config).stem}")
    rows = []
    for k in rewinds:
        pl.seed_everything(0)
        start = ClassificationModule(**hparams)
        if k > 0:
            fit(start, 0, max_steps=k)
        at_k = {name: value.detach().clone() for name, value in start.state_dict().items()}
        ends = []
        for seed in seeds:
            pl.seed_everything(seed)
            copy = ClassificationModule(**hparams)
            copy.load_state_dict(at_k)
            ends.append(fit(copy, seed))
        test = dm.test_dataloader()
        errors = linear_path(ends[0], ends[1], lambda m: classification_error(m, test), points)
        rows.append({"rewind_iteration": k, "instability": instability(errors), "error_a": errors[0],
                     "error_b": errors[-1], "max_error": max(errors)})
    path = atomic_write_text(root / "stability.csv", csv_text(rows, list(rows[0])))
    _plot(rows, root / "stability.png")
    return path


def _plot(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([r["rewind_iteration"] for r in rows], [100 * r["instability"] for r in rows], "o-")
    ax.axhline(2.0, color="grey", ls="--", lw=1, label="2% (stable below)")
    ax.set_xlabel("rewind iteration k")
    ax.set_ylabel("instability (error barrier, %)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
