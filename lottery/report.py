"""Looking at tickets: per-layer tables and overlaps for the terminal, plots and a markdown report of a run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from lottery.files import atomic_write_text
from lottery.layout import RunLayout
from lottery.plots import density_axis, pyplot
from lottery.ticket import Ticket


def jaccard(a: Ticket, b: Ticket) -> dict[str, float]:
    """Per-layer overlap |A ∩ B| / |A ∪ B| of two tickets' surviving weights (1.0 for two empty layers)."""
    out = {}
    for name in a.masks:
        if name not in b.masks:
            continue
        inter = int(torch.count_nonzero(a.masks[name] & b.masks[name]))
        union = int(torch.count_nonzero(a.masks[name] | b.masks[name]))
        out[name] = inter / union if union else 1.0
    return out


def total_jaccard(a: Ticket, b: Ticket) -> float:
    """Overlap of all surviving weights of two tickets together."""
    names = [n for n in a.masks if n in b.masks]
    inter = sum(int(torch.count_nonzero(a.masks[n] & b.masks[n])) for n in names)
    union = sum(int(torch.count_nonzero(a.masks[n] | b.masks[n])) for n in names)
    return inter / union if union else 1.0


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *[line(r) for r in rows]])


def inspect(paths: Sequence[str | Path]) -> str:
    """A readable description of one or more tickets: metadata, per-layer and total density, overlaps."""
    tickets = [Ticket.load(p) for p in paths]
    parts = []
    for path, t in zip(paths, tickets):
        meta = {k: v for k, v in t.metadata.items() if k != "metrics"}
        parts.append(f"{path}\n  " + ", ".join(f"{k}={v}" for k, v in meta.items()))
        if t.metrics:
            parts.append("  metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(t.metrics.items())))
    names = list(tickets[0].masks)
    header = ["layer", "weights"] + [f"density[{i}]" for i in range(len(tickets))]
    if len(tickets) > 1:
        header += [f"jaccard[0,{i}]" for i in range(1, len(tickets))]
    overlaps = [jaccard(tickets[0], t) for t in tickets[1:]]
    rows = []
    for n in names:
        row = [n, str(tickets[0].masks[n].numel())]
        row += [f"{t.layer_densities().get(n, float('nan')):.4f}" for t in tickets]
        row += [f"{o.get(n, float('nan')):.4f}" for o in overlaps]
        rows.append(row)
    total = ["total", str(sum(m.numel() for m in tickets[0].masks.values()))]
    total += [f"{t.density:.4f}" for t in tickets] + [f"{total_jaccard(tickets[0], t):.4f}" for t in tickets[1:]]
    rows.append(total)
    parts.append(_table(header, rows))
    return "\n".join(parts)


def read_rounds(run_dir: str | Path) -> list[dict[str, str]]:
    """Rows of the rounds.csv of a run folder (the tickets folder or any folder above it)."""
    return RunLayout.find(run_dir).read_rounds()


def report(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write accuracy_vs_density.png, layer_density.png and report.md for a run; return their paths."""
    plt = pyplot()
    run_dir = Path(run_dir)
    layout = RunLayout.find(run_dir)
    rows = layout.read_rounds()
    out = Path(out_dir) if out_dir is not None else layout.folder
    out.mkdir(parents=True, exist_ok=True)
    tickets = [Ticket.load(p) for p in layout.tickets()]
    density = _floats(rows, "density", layout.rounds)
    written = []

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("test_acc", "test accuracy (end of round)"), ("test_acc_at_best", "test accuracy at early stopping"),
                       ("val_acc", "validation accuracy")):
        if rows and key in rows[0] and rows[0][key] != "":
            ax.plot([100 * d for d in density], [100 * v for v in _floats(rows, key, layout.rounds)], "o-", label=label)
    density_axis(ax)
    ax.set_ylabel("accuracy (%)")
    ax.set_title("accuracy against density")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    written.append(out / "accuracy_vs_density.png")
    fig.savefig(written[-1], dpi=120)
    plt.close(fig)

    if tickets:
        names = list(tickets[0].masks)
        grid = [[t.layer_densities()[n] for n in names] for t in tickets]
        fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(names), 1.5 + 0.35 * len(tickets)))
        image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=1)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(tickets)), [f"round {t.round}" for t in tickets], fontsize=8)
        fig.colorbar(image, ax=ax, label="density")
        ax.set_title("per-layer density per round")
        fig.tight_layout()
        written.append(out / "layer_density.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)

    cols = [c for c in ("round", "density", "best_step", "val_acc", "test_acc", "test_acc_at_best") if rows and c in rows[0]]
    lines = ["# Run report", "", f"Run: `{run_dir}`", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r[c], c in ("round", "best_step")) for c in cols) + " |")
    lines += ["", "![accuracy against density](accuracy_vs_density.png)", "", "![per-layer density](layer_density.png)", ""]
    written.append(atomic_write_text(out / "report.md", "\n".join(lines)))
    return written


def _floats(rows: Sequence[dict[str, str]], key: str, path: Path) -> list[float]:
    """The column `key` of rounds.csv rows as numbers (an empty field is NaN); a field that is no number names its line."""
    out = []
    for line, row in enumerate(rows, start=2):
        try:
            out.append(float(row[key]) if row[key] != "" else float("nan"))
        except ValueError:
            raise ValueError(f"{path} line {line}: {key} is {row[key]!r}, not a number; resume or rerun the run to "
                             "write rounds.csv again, or correct that line.") from None
    return out


def _fmt(value: str, integer: bool) -> str:
    try:
        f = float(value)
    except ValueError:
        return value
    if not math.isfinite(f):
        return value
    return str(int(f)) if integer else f"{f:.4f}"
