"""Plot helpers shared by reports, comparisons and stability: a headless pyplot and the density axis."""

from __future__ import annotations

import math
from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (no display is needed, none is opened)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def density_axis(ax: Any) -> None:
    """A log x axis of weights remaining (%), densest on the left, labelled with plain numbers."""
    import matplotlib.ticker

    ax.set_xscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    # minor labels at 2, 3 and 5 times a power of ten only: the rest would run into each other
    sparse = matplotlib.ticker.FuncFormatter(
        lambda v, _: f"{v:g}" if v > 0 and round(v / 10 ** math.floor(math.log10(v))) in (2, 3, 5) else "")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(sparse)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%)")
