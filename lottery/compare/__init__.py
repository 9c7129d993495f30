"""Side-by-side ticket comparisons: a grid of `lottery fit` runs (experiments × densities × seeds).

Phase 1 trains the IMP experiments; phase 2 runs every pruning-at-initialization and sparse-training (GMP, SET,
RigL) experiment at the densities of the IMP rounds (or of the rounds an experiment lists) and the sanity variants
(reinitialized, shuffled) of the IMP tickets. Every cell is one training run of the same base config, named by a hash of what makes it differ, and
leaves `done.json` when it finishes, so a killed comparison continues where it stopped: finished cells are read
back and a cell killed part-way resumes from its newest checkpoint. Cells go to local worker processes (one per
visible GPU, each pinned to its device, or N CPU workers) or to Ray tasks, on a cluster whose nodes need not share a
disk with the driver; there is no scheduler of our own.

The modules, each importing only those above it: `spec` (the comparison file), `cells` (a cell, its identity
and its arguments), `results` (results.csv and the plot), `remote` (what a cell on a Ray node gets and sends back), `launch`
(running cells), `grid` (the whole run).
"""

from lottery.compare.cells import Cell, fit_args, phase_one, phase_two, ticket_args
from lottery.compare.grid import run
from lottery.compare.launch import Launcher, run_cell
from lottery.compare.results import RESULT_COLUMNS, plot, summarize
from lottery.compare.spec import KINDS, Spec

__all__ = ["KINDS", "RESULT_COLUMNS", "Cell", "Launcher", "Spec", "fit_args", "phase_one", "phase_two", "plot",
           "run", "run_cell", "summarize", "ticket_args"]
