"""Sparse training during training: gradual magnitude pruning (GMP), SET and RigL, as mask updates every few steps.

Each method is a `SparseTraining` object the callback calls on its update steps; by name through `get`.
"""

from __future__ import annotations

import importlib
from typing import Any

from lottery.sparse_training.base import SparseTraining
from lottery.sparse_training.dynamic import RigL, SET, DynamicSparse
from lottery.sparse_training.gradual import Gradual

METHODS: dict[str, type[SparseTraining]] = {cls.name: cls for cls in (Gradual, SET, RigL)}


def get(method: str | SparseTraining, **kwargs: Any) -> SparseTraining:
    """A method from its name (gmp, set, rigl) or the instance itself."""
    if isinstance(method, SparseTraining):
        return method
    if isinstance(method, str) and "." in method:  # a class path, as a config file or a comparison cell names it
        module, _, name = method.rpartition(".")
        cls = getattr(importlib.import_module(module), name, None)
        if not (isinstance(cls, type) and issubclass(cls, SparseTraining)):
            raise ValueError(f"{method!r} names no lottery.sparse_training.SparseTraining subclass")
        return cls(**kwargs)
    if method not in METHODS:
        raise ValueError(f"unknown sparse training method {method!r}; choose one of {', '.join(METHODS)} "
                         "(or pass a lottery.sparse_training.SparseTraining instance)")
    return METHODS[method](**kwargs)


def with_distribution(method: str | SparseTraining, distribution: str | None) -> SparseTraining:
    """`get(method)` whose starting layer densities are `distribution` where given (SET and RigL; GMP takes none)."""
    instance = get(method)  # unknown names and class paths fail here
    if distribution is None:
        return instance
    if not isinstance(instance, DynamicSparse):
        raise ValueError(f"sparse_training={instance.name!r} prunes by scope= (global or layerwise); distribution= "
                         "does not apply")
    if isinstance(method, SparseTraining):
        if method.distribution != distribution:
            raise ValueError(f"the {method.name} instance starts from {method.distribution} layer densities, but "
                             f"distribution={distribution!r} was given too: give one of them")
        return method
    return get(method, distribution=distribution)


__all__ = ["with_distribution", "METHODS", "SparseTraining", "Gradual", "DynamicSparse", "SET", "RigL", "get"]
