"""Laplace approximation: a Gaussian in unconstrained space at the mode, pushed through the transform.

Cheap (one optimisation + one Hessian) and bounded (draws map inside the box). It is centred on the
mode of the *unconstrained* density (Jacobian included), which is where a Gaussian fits best.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from .density import Problem
from .map import MAPResult, _newton_mode, find_map


@dataclasses.dataclass
class LaplaceResult:
    names: tuple[str, ...]
    mean_z: np.ndarray  # (n_free,) unconstrained mode
    cov_z: np.ndarray  # (n_free, n_free) covariance in unconstrained space
    hessian_ok: bool  # False if -H was not positive definite and had to be regularised
    map: MAPResult  # the physical-space MAP it started from
    wall_time: float

    def sample_z(self, key, n: int) -> np.ndarray:
        """(n, n_free) unconstrained draws."""
        chol = np.linalg.cholesky(self.cov_z)
        eps = np.asarray(jax.random.normal(key, (n, len(self.names)), dtype=jnp.float64))
        return self.mean_z + eps @ chol.T

    @property
    def sd_z(self) -> np.ndarray:
        return np.sqrt(np.diag(self.cov_z))


def covariance_from_hessian(hessian: np.ndarray, floor: float = 1e-10) -> tuple[np.ndarray, bool]:
    """Covariance ``(-H)^-1``; non-positive curvature directions are regularised (flagged False)."""
    precision = -0.5 * (hessian + hessian.T)
    if not np.all(np.isfinite(precision)):
        return np.eye(len(precision)) * 1e6, False
    w, v = np.linalg.eigh(precision)
    ok = bool(np.all(w > floor * max(1.0, float(np.abs(w).max()))))
    w = np.maximum(w, floor * max(1.0, float(np.abs(w).max())))
    cov = (v / w) @ v.T
    return 0.5 * (cov + cov.T), ok


def laplace(problem: Problem, map_result: MAPResult | None = None, *, n_starts: int = 8, seed: int = 0) -> LaplaceResult:
    """Laplace approximation; reuses ``map_result`` as the start of the unconstrained mode search."""
    t0 = time.perf_counter()
    earlier = 0.0 if map_result is None else map_result.wall_time
    if map_result is None:
        map_result = find_map(problem, n_starts=n_starts, seed=seed)
    z, _, hess = _newton_mode(problem, jnp.asarray(map_result.z))
    cov, ok = covariance_from_hessian(np.asarray(hess))
    return LaplaceResult(
        names=problem.names,
        mean_z=np.asarray(z),
        cov_z=cov,
        hessian_ok=ok,
        map=map_result,
        wall_time=time.perf_counter() - t0 + earlier,
    )
