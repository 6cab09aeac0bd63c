"""Pareto-smoothed importance sampling (PSIS) from a Student-t proposal: an exact-in-the-limit posterior
that costs log-density *values* only, no gradients and no Markov chain.

Why: with an emulator whose gradient is expensive (TransformerPayne ``small`` on a CPU: 0.19 s per value and
gradient, 0.04 s per value) NUTS needs tens of thousands of gradients, hours. When the posterior is close
to its Laplace approximation — the usual case for a well-measured spectrum — a few thousand independent
values, reweighted, give the posterior to within Monte Carlo error; where it is not, the Pareto shape
``k`` of the weights' tail says so (Vehtari et al. 2024, JMLR 25:72; the same check Stan's Pathfinder uses).

Pure functions of arrays, independent of the observation model: the Laplace wrapper is
:func:`stellarinf.inference.samplers.run_laplace_is`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import arviz as az
import numpy as np
from jaxtyping import Float
from scipy import stats

__all__ = [
    "ImportanceWeights",
    "student_t_proposal",
    "importance_weights",
    "pareto_k_threshold",
    "resample",
    "weighted_moments",
    "adaptive_importance",
]

# Student-t degrees of freedom of the proposal: heavier tails than the Gaussian it widens, so the weights
# stay bounded where the posterior's tails are a little wider than the curvature at the mode says.
DEFAULT_DF = 8.0
# fractions of the draws per round of adaptive_importance
DEFAULT_ROUNDS = (0.1, 0.15, 0.25, 0.5)


class ImportanceWeights(NamedTuple):
    log_weights: np.ndarray  # (n,) Pareto-smoothed, normalised (logsumexp = 0); -inf where log p is not finite
    pareto_k: float  # shape of the fitted tail of the raw weights: reliable below pareto_k_threshold(n)
    ess: float  # Kish effective sample size 1 / Σ w² of the smoothed weights


def student_t_proposal(
    mean: Float[np.ndarray, "d"], cov: Float[np.ndarray, "d d"], df: float, n: int, rng: np.random.Generator
) -> tuple[Float[np.ndarray, "n d"], Float[np.ndarray, "n"]]:
    """``n`` draws of a multivariate Student-t with location ``mean`` and scale ``cov``, and their log density."""
    if not (df > 0 and math.isfinite(df)):
        raise ValueError(f"proposal degrees of freedom must be positive and finite (got {df})")
    z = np.asarray(stats.multivariate_t(loc=mean, shape=cov, df=df).rvs(size=n, random_state=rng), float).reshape(n, -1)
    return z, _t_logpdf(z, mean, cov, df)


def pareto_k_threshold(n: int) -> float:
    """Largest reliable Pareto k for ``n`` draws: min(1 − 1/log10 n, 0.7) (Vehtari et al. 2024)."""
    return float(min(1.0 - 1.0 / math.log10(max(n, 11)), 0.7))


def importance_weights(log_p: Float[np.ndarray, "n"], log_q: Float[np.ndarray, "n"]) -> ImportanceWeights:
    """PSIS weights of draws from ``q`` for the target ``p`` (both up to a constant)."""
    log_p, log_q = np.asarray(log_p, float), np.asarray(log_q, float)
    raw = log_p - log_q
    finite = np.isfinite(raw)
    if finite.sum() < 10:
        raise ValueError(
            f"only {int(finite.sum())} of {raw.size} proposal draws have a finite log density; "
            "the proposal misses the posterior (fit a MAP/Laplace first, or use an MCMC sampler)"
        )
    smoothed, k = az.psislw(raw[finite] - raw[finite].max(), reff=1.0)
    log_w = np.full(raw.shape, -np.inf)
    log_w[finite] = smoothed
    w = np.exp(log_w)
    return ImportanceWeights(log_weights=log_w, pareto_k=float(k), ess=float(1.0 / np.sum(w**2)))


def resample(log_weights: Float[np.ndarray, "n"], n_out: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n_out`` draws chosen by systematic resampling (lower variance than multinomial)."""
    lw = np.asarray(log_weights, float)
    w = np.exp(lw - np.max(lw))
    cdf = np.cumsum(w / w.sum())
    cdf[-1] = 1.0
    positions = (rng.random() + np.arange(n_out)) / n_out
    return rng.permutation(np.searchsorted(cdf, positions, side="left"))


def weighted_moments(z: Float[np.ndarray, "n d"], log_weights: Float[np.ndarray, "n"]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of draws under normalised log weights."""
    w = np.exp(log_weights - np.max(log_weights))
    w /= w.sum()
    mean = w @ z
    d = z - mean
    cov = (d * w[:, None]).T @ d
    return mean, 0.5 * (cov + cov.T)


def adaptive_importance(
    log_density: Callable[[np.ndarray], np.ndarray],
    mean: Float[np.ndarray, "d"],
    cov: Float[np.ndarray, "d d"],
    n: int,
    rng: np.random.Generator,
    *,
    df: float = DEFAULT_DF,
    rounds: Sequence[float] = DEFAULT_ROUNDS,
    extra_rounds: int = 0,
) -> tuple[np.ndarray, np.ndarray, ImportanceWeights]:
    """Adaptive importance sampling (population Monte Carlo): the ``n`` draws come in rounds (``rounds``:
    fractions of ``n``); the first from the Student-t at (``mean``, ``cov``), each later one from a
    Student-t at the weighted mean and covariance of all draws so far. Every draw is weighted against the
    mixture of all the rounds' proposals (the balance heuristic: no evaluation is wasted, and the estimate
    stays consistent whatever the adaptation did).

    Why adapt: the Laplace covariance comes from the Gauss–Newton curvature at the mode, which misses the
    posterior's skew and its curvature away from the mode; moment matching recovers much of the lost
    efficiency (measured on the shipped Payne: see benchmarks/README.md). While the Pareto k is above its
    threshold, up to ``extra_rounds`` more rounds of ``n`` draws each follow (so the result may hold
    ``n × (1 + extra_rounds)`` draws). ``log_density`` maps an (m, d) array to (m,) values. Returns the draws,
    their log density and the PSIS weights."""
    sizes = _round_sizes(n, rounds)
    proposals = [(np.asarray(mean, float), np.asarray(cov, float))]
    zs, lps = [], []
    r = 0
    while r < len(sizes):
        size = sizes[r]
        z_r, _ = student_t_proposal(*proposals[r], df, size, rng)
        zs.append(z_r)
        lps.append(np.asarray(log_density(z_r), float))
        z, lp = np.concatenate(zs), np.concatenate(lps)
        used = np.asarray(sizes[: r + 1], float)
        log_q = np.logaddexp.reduce(
            [math.log(k / used.sum()) + _t_logpdf(z, m, c, df) for k, (m, c) in zip(used, proposals)], axis=0
        )
        weights = importance_weights(lp, log_q)
        unreliable = weights.pareto_k > pareto_k_threshold(len(z))
        if r + 1 == len(sizes) and unreliable and len(sizes) < len(_round_sizes(n, rounds)) + extra_rounds:
            sizes.append(n)
        if r + 1 < len(sizes):
            proposals.append(_adapted(z, weights, proposals[-1]))
        r += 1
    return z, lp, weights


def _round_sizes(n: int, rounds: Sequence[float]) -> list[int]:
    fractions = np.asarray(rounds, float)
    if fractions.ndim != 1 or fractions.size == 0 or np.any(fractions <= 0):
        raise ValueError(f"rounds must be positive fractions of the draws (got {rounds})")
    edges = np.round(np.cumsum(fractions) / fractions.sum() * n).astype(int)
    sizes = [int(k) for k in np.diff(np.concatenate([[0], edges])) if k > 0]
    return sizes or [n]


def _adapted(z, weights: ImportanceWeights, previous):
    """The next proposal's location and scale: the weighted moments, shrunk towards the previous proposal
    with the weight of ``d`` pseudo-draws (a covariance from a few effective draws alone is too noisy in
    13 dimensions; the first rounds of a poorly matched proposal carry only tens)."""
    d = z.shape[1]
    m, c = weighted_moments(z, weights.log_weights)
    a = weights.ess / (weights.ess + d)
    m_prev, c_prev = previous
    dm = m - m_prev
    c = a * c + (1 - a) * c_prev + a * (1 - a) * np.outer(dm, dm)  # moments of the two-part mixture
    return m_prev + a * dm, 0.5 * (c + c.T) + 1e-9 * np.trace(c) / d * np.eye(d)


def _t_logpdf(z, mean, cov, df) -> np.ndarray:
    return np.asarray(stats.multivariate_t(loc=mean, shape=cov, df=df).logpdf(z), float).reshape(len(z))
