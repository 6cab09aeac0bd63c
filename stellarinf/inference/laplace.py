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
from .map import MAPResult, _laplace_mode, find_map
from .transforms import LOGISTIC_VARIANCE


@dataclasses.dataclass
class LaplaceResult:
    names: tuple[str, ...]
    mean_z: np.ndarray  # (n_free,) unconstrained mode
    cov_z: np.ndarray  # (n_free, n_free) covariance in unconstrained space
    hessian_ok: bool  # False if -H was not positive definite and had to be regularised
    map: MAPResult  # the physical-space MAP it started from
    wall_time: float
    metric_z: np.ndarray | None = None  # cov_z with flat directions capped: the samplers' metric and starts

    @property
    def capped(self) -> bool:
        """Whether the samplers' metric differs from the Laplace covariance (see cap_to_prior_width)."""
        return self.metric_z is not None and not np.array_equal(self.metric_z, self.cov_z)

    @property
    def metric(self) -> np.ndarray:
        """Covariance for MCMC: the samplers' inverse mass matrix / whitening and their starting spread."""
        return self.cov_z if self.metric_z is None else self.metric_z

    def sample_z(self, key, n: int, *, metric: bool = False) -> np.ndarray:
        """(n, n_free) unconstrained draws from the Laplace approximation (or, with ``metric``, from the
        capped covariance the samplers start from)."""
        chol = np.linalg.cholesky(self.metric if metric else self.cov_z)
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


# a Laplace variance above a uniform prior's in z (transforms.LOGISTIC_VARIANCE) is a flat direction


def cap_to_prior_width(cov: np.ndarray, problem: Problem) -> np.ndarray:
    """Shrink the rows/columns of box-bounded parameters whose variance exceeds the logistic variance
    of a uniform prior (correlations kept); returns the capped covariance (``LaplaceResult.capped`` says
    whether anything changed).

    Where the data barely constrain a label and its mode sits near a box edge (an abundance at S/N 50),
    the curvature in z is tiny and the Laplace variance huge (sd 30 in z, seen for [Ni/Fe]); as a NUTS
    metric that forces tiny steps in every correlated direction and warm-up stalls at maximum depth.
    Used for the samplers' metric only: the Laplace posterior itself keeps the wide variance (no
    Gaussian in z describes a label piled at its edge; the summary flags it)."""
    lo, hi = np.asarray(problem.prior.lower), np.asarray(problem.prior.upper)
    cap = np.where(np.isfinite(hi - lo), LOGISTIC_VARIANCE, np.inf)
    var = np.diag(cov)
    scale = np.where(var > cap, np.sqrt(cap / np.maximum(var, 1e-300)), 1.0)
    return cov * scale[:, None] * scale[None, :]


def laplace(
    problem: Problem, map_result: MAPResult | None = None, *, n_starts: int = 8, seed: int = 0
) -> LaplaceResult:
    """Laplace approximation; reuses ``map_result`` as the start of the unconstrained mode search."""
    t0 = time.perf_counter()
    earlier = 0.0 if map_result is None else map_result.wall_time
    if map_result is None:
        map_result = find_map(problem, n_starts=n_starts, seed=seed)
    z, _, hess = _laplace_mode(problem, jnp.asarray(map_result.z))
    cov, ok = covariance_from_hessian(np.asarray(hess))
    metric = cap_to_prior_width(cov, problem)
    return LaplaceResult(
        names=problem.names,
        mean_z=np.asarray(z),
        cov_z=cov,
        hessian_ok=ok,
        map=map_result,
        wall_time=time.perf_counter() - t0 + earlier,
        metric_z=metric,
    )
