"""Pruners by name: each one only scores weights (`scores(model, batches)`).

Every named Pruner subclass in a module of this package is registered when the package is imported, so a
new pruner is one new file here.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from lottery.pruning.base import Pruner
from lottery.pruning.magnitude import Magnitude
from lottery.pruning.grasp import GraSP, GraSPAbs
from lottery.pruning.random_scores import Random
from lottery.pruning.snip import FORCE, SNIP, IterativeSNIP
from lottery.pruning.synflow import SynFlow

PRUNERS: dict[str, type[Pruner]] = {}


def register(cls: type[Pruner]) -> type[Pruner]:
    """Make a Pruner subclass available by its `name` (usable as a decorator)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a class attribute `name` to be registered")
    PRUNERS[cls.name] = cls
    return cls


def get(pruner: str | Pruner, **kwargs: Any) -> Pruner:
    """A pruner instance from a registered name (or the instance itself)."""
    if isinstance(pruner, Pruner):
        return pruner
    if not isinstance(pruner, str) or pruner not in PRUNERS:
        raise ValueError(f"unknown pruner {pruner!r}; registered pruners: {', '.join(sorted(PRUNERS))} "
                         "(or pass a lottery.pruning.Pruner instance)")
    return PRUNERS[pruner](**kwargs)


def _register_package() -> None:
    """Register every Pruner subclass with a `name` defined in a module of this package, modules in name order."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Pruner) and obj.__module__ == module.__name__ and obj.name:
                register(obj)


_register_package()

__all__ = ["PRUNERS", "Pruner", "Magnitude", "Random", "SynFlow", "SNIP", "IterativeSNIP", "FORCE", "GraSP",
           "GraSPAbs", "get", "register"]
