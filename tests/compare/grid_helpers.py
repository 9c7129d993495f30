"""Shared by the comparison tests: the repository root and the rows of a results.csv without timings."""

import csv
from pathlib import Path

ROOT = Path(__file__).parents[2]


def rows(path):
    with open(path) as f:
        return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in csv.DictReader(f)]
