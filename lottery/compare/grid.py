"""A comparison run from end to end: IMP cells first, each seed's other cells as soon as its IMP cells finish; with a
W&B base config, a summary run of the results at the end."""

from __future__ import annotations

from concurrent.futures import as_completed
from pathlib import Path

from lottery.compare import results
from lottery.compare.cells import base_wandb, check_arguments, comparison_name, phase_one, phase_two
from lottery.compare.launch import Launcher
from lottery.compare.spec import Spec
from lottery.integrations import wandb as wandb_integration
from lottery.layout import RunLayout
from lottery.lock import RunLock


def run(spec_path: str | Path, workers: int | None = None, launcher: str | None = None) -> Path:
    """Run (or continue) a comparison; write results.csv and the accuracy-vs-density plot; return results.csv."""
    spec = Spec.load(spec_path)
    if workers is not None:
        spec.workers = workers
    if launcher is not None:
        spec.launcher = launcher
    check_arguments(spec)
    out = Path(spec.out)
    with RunLock(out, "lottery compare"):  # one comparison per folder; its cells lock their own folders
        return _run(spec, out)


def _run(spec: Spec, out: Path) -> Path:
    """The two phases of `spec` in `out` (locked by the caller)."""
    launch = Launcher(spec)
    try:
        # A seed's phase-two cells start as soon as its IMP cells finish, so no worker waits for other seeds.
        first = {launch.submit(c): c for c in phase_one(spec)}
        imp_folders = {(c.experiment, c.seed): RunLayout.under(c.folder(spec.base, spec.out)).folder
                       for c in first.values()}
        waiting = {s: {f for f, c in first.items() if c.seed == s} for s in spec.seeds}
        second = []
        for future in as_completed(first):
            seed = first[future].seed
            waiting[seed].discard(future)
            if not waiting[seed]:
                second += [launch.submit(c) for c in phase_two(spec, imp_folders, [seed])]
        rows = [r for f in [*first, *second] for r in f.result()]
    finally:
        launch.close()
    written = results.write(rows, out)
    init = base_wandb(spec.base)
    if init is not None:  # the cells logged to W&B: the comparison's own run, in their group
        wandb_integration.log_comparison(rows, results.RESULT_COLUMNS, results.means(rows), out / results.PLOT,
                                         comparison_name(out), init, out)
    return written
