"""Sampling designs for the label points of a grid: uniform random, Latin hypercube, scrambled Sobol."""

from __future__ import annotations

import numpy as np
from scipy.stats import qmc

from .labels import LabelSpace

DESIGNS = ("uniform", "latin", "sobol")


def unit_design(kind: str, n: int, dim: int, seed: int) -> np.ndarray:
    """``n`` points in the unit cube [0, 1)^dim, reproducible for a given seed."""
    if n <= 0:
        raise ValueError(f"number of points must be positive, got {n}")
    if kind == "uniform":
        return np.random.default_rng(seed).random((n, dim))
    if kind == "latin":
        return qmc.LatinHypercube(d=dim, seed=np.random.default_rng(seed)).random(n)
    if kind == "sobol":
        # Sobol balance properties hold for powers of two; draw the next power and keep the first n.
        m = int(np.ceil(np.log2(n)))
        return qmc.Sobol(d=dim, scramble=True, seed=np.random.default_rng(seed)).random_base2(m)[:n]
    raise ValueError(f"unknown design {kind!r}; choose one of {', '.join(DESIGNS)}")


def sample_labels(space: LabelSpace, n: int, kind: str = "sobol", seed: int = 0) -> np.ndarray:
    """``n`` label points (n, n_labels) in physical units spread over the label box."""
    u = unit_design(kind, n, len(space), seed)
    return space.lower + u * (space.upper - space.lower)
