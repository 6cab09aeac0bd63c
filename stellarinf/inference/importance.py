"""Pareto-smoothed importance sampling (PSIS) from Student-t (mixture) proposals: an exact-in-the-limit posterior
that costs log-density *values* only, no gradients and no Markov chain.

Why: with an emulator whose gradient is expensive (TransformerPayne ``small`` on a CPU: 0.19 s per value and
gradient, 0.04 s per value) NUTS needs tens of thousands of gradients, hours. When the posterior is close
to its Laplace approximation — the usual case for a well-measured spectrum — a few thousand independent
values, reweighted, give the posterior to within Monte Carlo error; where it is not, the Pareto shape
``k`` of the weights' tail says so (Vehtari et al. 2024, JMLR 25:72; the same check Stan's Pathfinder uses).

The proposals adapt in rounds (:func:`adaptive_importance`): a moment-matched Student-t, Student-t kernels on the
heaviest draws so far, and draws across the whole box of the labels the data hardly constrain; on the demo star
this took TransformerPayne's Pareto k from 0.99 to 0.85 at 8,000 proposals (still unreliable: too few for its
two-moded [Li/Fe]) and the Payne's to 0.64 with an importance ESS of 751 at 20,000 (benchmarks/README.md).

Pure functions of arrays, independent of the observation model: the Laplace wrapper is
:func:`stellarinf.inference.samplers.run_laplace_is`.
"""

from __future__ import annotations

import itertools
import math
import time
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
    kernels: bool = True,
    broad: Sequence[int] = (),
    mirrored: Sequence[int] = (),
    min_ess: float = 0.0,
    deadline: float | None = None,
) -> tuple[np.ndarray, np.ndarray, ImportanceWeights]:
    """Adaptive importance sampling (population Monte Carlo): the ``n`` draws come in rounds (``rounds``:
    fractions of ``n``); the first from the Student-t at (``mean``, ``cov``), each later one from a mixture of
    a Student-t at the weighted mean and covariance of all draws so far and (``kernels``) Student-t kernels on
    the heaviest draws so far (:func:`kernel_mixture`). ``broad``: coordinates (logit-scaled box labels the data
    hardly constrain): a share ``BROAD_SHARE`` of every round draws one of them from its uniform prior (a standard
    logistic in z) and the others from the round's Student-t. Every draw is weighted against the mixture of all the
    rounds' proposals (the balance heuristic: no evaluation is wasted, and the estimate stays consistent whatever
    the adaptation did).

    Why adapt: the Laplace covariance comes from the Gauss–Newton curvature at the mode, which misses the
    posterior's skew and its curvature away from the mode; moment matching recovers much of the lost
    efficiency (measured on the shipped Payne: see benchmarks/README.md). Why kernels and broad draws: one
    Student-t, however matched, cannot follow a posterior with a second mode (a label the spectrum hardly
    constrains, whose likelihood has bumps across its box: on the demo star with TransformerPayne, [Li/Fe] has a
    second mode near the other edge of its box, 4 Laplace sd away, with v_mic and log g shifted 3 sd there;
    Pareto k 0.99 from one Student-t). Broad draws reach such a mode whatever the Laplace width says; the
    draws that land there carry the largest weights, kernels on them send the next rounds' draws there, and under
    the balance heuristic those first draws' weights fall back to their share.

    ``mirrored``: coordinates in which the target is even (``z_i → −z_i``: a folded v sin i or v macro, whose posterior has a
    mirror image of its mode at −z when the star rotates below the instrument's resolution); every proposal is made
    even in them (each draw's sign flipped at random, the density averaged over the flips) and adapted on |z_i|, so
    both images are covered: a Student-t at the Laplace mode alone met the mirror image in its tail (the demo star,
    v sin i 2.8 ± 1.4 km/s: Pareto k 0.89, importance ESS 390 of 20,000). Where the images touch (a folded mean
    within ``CENTRE_SD`` sd of 0), a share ``CENTRE_SHARE`` of each round is drawn from a Student-t centred on 0
    there (:func:`_centred`), for a posterior that bends round 0: with v macro folded too, the demo star's
    v sin i–v macro ring took the Pareto k back to 0.80–0.90 without it.

    While the Pareto k is above its threshold or the importance ESS below ``min_ess``, up to ``extra_rounds`` more
    rounds of ``n`` draws each follow (so the result may hold ``n × (1 + extra_rounds)`` draws), each only if, at the
    pace of the rounds so far, it ends before ``deadline`` (a ``time.perf_counter()`` value; None: no limit).
    ``log_density`` maps an (m, d) array to (m,) values. Returns the draws, their log density and the PSIS weights. A mode no draw comes near stays invisible, to the
    weights and to the Pareto k alike (as to MCMC chains that never visit it)."""
    sizes = _round_sizes(n, rounds)
    broad = tuple(int(i) for i in broad)
    mirrored = tuple(int(i) for i in mirrored)
    main = (_folded(np.asarray(mean, float)[None, :], mirrored)[0], np.asarray(cov, float))
    proposals = [_round_proposal(main, df, broad, None, mirrored)]
    zs, lps = [], []
    log_qs: list[np.ndarray] = []  # each round's proposal density at every draw so far (kept: no recomputation)
    r = 0
    t0 = time.perf_counter()
    while r < len(sizes):
        zs.append(proposals[r].sample(sizes[r], rng))
        lps.append(np.asarray(log_density(zs[-1]), float))
        per_draw = (time.perf_counter() - t0) / sum(sizes[: r + 1])
        z, lp = np.concatenate(zs), np.concatenate(lps)
        log_qs = [np.concatenate([lq, q.logpdf(zs[-1])]) for lq, q in zip(log_qs, proposals)]
        log_qs.append(proposals[r].logpdf(z))
        used = np.asarray(sizes[: r + 1], float)
        log_q = np.logaddexp.reduce([math.log(k / used.sum()) + lq for k, lq in zip(used, log_qs)], axis=0)
        weights = importance_weights(lp, log_q)
        short = weights.pareto_k > pareto_k_threshold(len(z)) or weights.ess < min_ess
        in_time = deadline is None or time.perf_counter() + 1.1 * per_draw * n <= deadline
        if r + 1 == len(sizes) and short and in_time and len(sizes) < len(_round_sizes(n, rounds)) + extra_rounds:
            sizes.append(n)
        if r + 1 < len(sizes):
            zf = _folded(z, mirrored)  # both images of a mirrored mode are one mode here
            main = _adapted(zf, weights, main)
            proposals.append(_round_proposal(main, df, broad, (zf, weights) if kernels else None, mirrored))
        r += 1
    return z, lp, weights


# shares of a round's draws: the broad draws (when there are coordinates to draw broadly) and, after the first
# round, the kernels on heavy draws; the rest from the moment-matched Student-t (the part that keeps the Gaussian
# case's efficiency)
BROAD_SHARE = 0.2
KERNEL_SHARE = 0.4
CENTRE_SHARE = 0.3  # all three together leave the moment-matched Student-t 0.1
# a mirrored coordinate whose folded mean is within this many sd of 0: its two images touch, so the round also
# draws a Student-t centred on 0 there (:func:`_centred`)
CENTRE_SD = 3.0
MAX_KERNELS = 100
KERNEL_H = 0.5  # kernel scale relative to the moment-matched one (centres not shrunk: a far mode keeps its kernel)


class _Mixture:
    """A mixture proposal: ``parts`` = [(log share, part)], each part with ``sample(n, rng)`` and ``logpdf(z)``."""

    def __init__(self, parts):
        self.parts = parts

    @classmethod
    def of(cls, main, df: float, *, broad: Sequence[int] = (), heavy=None, mirrored: Sequence[int] = ()) -> _Mixture:
        """The round's proposal around ``main`` = (mean, scale): the Student-t, plus broad draws of the ``broad``
        coordinates, kernels on the heavy draws of ``heavy`` = (z, weights) when given, and a Student-t centred on 0
        in the ``mirrored`` coordinates whose images touch (:func:`_centred`)."""
        m, c = main
        shares = {"main": 1.0}
        parts = {"main": _TKernels(m[None, :], c, np.zeros(1), df)}
        centre = _centred(main, mirrored)
        if centre is not None:
            shares["centre"] = CENTRE_SHARE
            parts["centre"] = _TKernels(centre[0][None, :], centre[1], np.zeros(1), df)
        for i in broad:  # one part per coordinate: a broad draw of a tightly bounded one is not wasted on the other
            shares[f"broad{i}"] = BROAD_SHARE / len(broad)
            parts[f"broad{i}"] = _Broad(m, c, df, [i])
        if heavy is not None:
            z, weights = heavy
            w = np.exp(weights.log_weights - np.max(weights.log_weights))
            top = np.argsort(w)[::-1][:MAX_KERNELS]
            top = top[w[top] > 0]
            if top.size >= 2:
                shares["kernels"] = KERNEL_SHARE
                parts["kernels"] = _TKernels(z[top], KERNEL_H**2 * c, np.log(w[top]), df)
        shares["main"] = 1.0 - sum(v for k, v in shares.items() if k != "main")
        return cls([(math.log(shares[k]), parts[k]) for k in parts])

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        counts = rng.multinomial(n, np.exp([s for s, _ in self.parts]))
        return rng.permutation(np.concatenate([p.sample(int(k), rng) for (_, p), k in zip(self.parts, counts)]))

    def logpdf(self, z: np.ndarray) -> np.ndarray:
        return np.logaddexp.reduce([s + p.logpdf(z) for s, p in self.parts], axis=0)


def _round_proposal(main, df: float, broad: Sequence[int], heavy, mirrored: Sequence[int]):
    """One round's proposal: the mixture (:meth:`_Mixture.of`), made even in the ``mirrored`` coordinates."""
    return _Mirrored.of(_Mixture.of(main, df, broad=broad, heavy=heavy, mirrored=mirrored), mirrored)


def _centred(main, mirrored: Sequence[int]):
    """(mean, scale) of a Student-t centred on 0 in all the ``mirrored`` coordinates (their second moment about 0
    as the scale, uncorrelated with the rest), the rest as ``main``, when the folded mean of any of them is within
    ``CENTRE_SD`` sd of 0 (its images touch); else None.

    Why: the folded part (``main`` and its mirror image) covers a mode away from 0 but not a posterior that bends
    round it. v sin i and v macro broaden a line almost alike, so the data fix about √(v sin i² + v macro²): in the
    two mirrored coordinates the posterior is a ring about 0 (the demo star: 4.8 ± 0.3 km/s, v sin i and v macro
    correlated −0.91 on it), and the folded Student-t's tails miss the ring where it crosses the axes (Pareto k
    0.80–0.90 on three seeds). A Student-t over the whole ring bounds the weights there."""
    m, c = main
    idx = np.asarray(mirrored, int)
    if not any(abs(m[i]) < CENTRE_SD * math.sqrt(c[i, i]) for i in idx):
        return None  # every image apart (a fast rotator's v sin i alone): nothing to bend round
    m0, c0 = np.array(m, float, copy=True), np.array(c, float, copy=True)
    second = np.diag(c)[idx] + m[idx] ** 2
    m0[idx] = 0.0
    c0[idx, :] = 0.0
    c0[:, idx] = 0.0
    c0[idx, idx] = second
    return m0, c0


def _folded(z: np.ndarray, mirrored: Sequence[int]) -> np.ndarray:
    """``z`` with |z_i| in the ``mirrored`` coordinates."""
    if not mirrored:
        return z
    out = np.array(z, float, copy=True)
    out[:, list(mirrored)] = np.abs(out[:, list(mirrored)])
    return out


class _Mirrored:
    """A proposal made even in the ``idx`` coordinates: draw from ``base``, flip each of them with probability ½;
    the density is ``base``'s averaged over the 2^m sign patterns (m = len(idx): v sin i and v macro)."""

    def __init__(self, base, idx: Sequence[int]):
        self.base, self.idx = base, np.asarray(idx, int)
        self.signs = np.array(list(itertools.product((1.0, -1.0), repeat=self.idx.size)))

    @classmethod
    def of(cls, base, idx: Sequence[int]):
        """``base`` itself when nothing is mirrored."""
        return cls(base, idx) if len(idx) else base

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        z = self.base.sample(n, rng)
        z[:, self.idx] *= rng.choice([-1.0, 1.0], size=(n, self.idx.size))
        return z

    def logpdf(self, z: np.ndarray) -> np.ndarray:
        out = []
        for sign in self.signs:
            flipped = np.array(z, float, copy=True)
            flipped[:, self.idx] *= sign
            out.append(self.base.logpdf(flipped))
        return np.logaddexp.reduce(out, axis=0) - math.log(len(self.signs))


class _TKernels:
    """Σ_j π_j t_df(z; centre_j, scale): Student-t's sharing one scale matrix."""

    def __init__(self, centres, scale, log_pi, df: float):
        self.centres, self.scale, self.df = np.asarray(centres, float), np.asarray(scale, float), float(df)
        self.log_pi = np.asarray(log_pi, float) - np.logaddexp.reduce(np.asarray(log_pi, float))
        self.chol = np.linalg.cholesky(self.scale)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        d = self.centres.shape[1]
        if n == 0:
            return np.empty((0, d))
        which = rng.choice(len(self.centres), size=n, p=np.exp(self.log_pi))
        eps, _ = student_t_proposal(np.zeros(d), self.scale, self.df, n, rng)
        return self.centres[which] + eps

    def logpdf(self, z: np.ndarray) -> np.ndarray:
        d, df = z.shape[1], self.df
        a = np.linalg.solve(self.chol, z.T).T
        b = np.linalg.solve(self.chol, self.centres.T).T
        maha = np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)
        const = (
            math.lgamma(0.5 * (df + d))
            - math.lgamma(0.5 * df)
            - 0.5 * d * math.log(df * math.pi)
            - np.sum(np.log(np.diag(self.chol)))
        )
        return np.logaddexp.reduce(const - 0.5 * (df + d) * np.log1p(maha / df) + self.log_pi[None, :], axis=1)


class _Broad:
    """The ``idx`` coordinates from a standard logistic each (a uniform prior on a logit-scaled box), the others
    from the marginal of the Student-t (``mean``, ``scale``) on them."""

    def __init__(self, mean, scale, df: float, idx: Sequence[int]):
        d = len(mean)
        self.idx = np.asarray(idx, int)
        self.rest = np.setdiff1d(np.arange(d), self.idx)
        self.t = (
            _TKernels(mean[self.rest][None, :], scale[np.ix_(self.rest, self.rest)], np.zeros(1), df)
            if self.rest.size
            else None
        )
        self.d = d

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        out = np.empty((n, self.d))
        out[:, self.idx] = rng.logistic(size=(n, self.idx.size))
        if self.t is not None:
            out[:, self.rest] = self.t.sample(n, rng)
        return out

    def logpdf(self, z: np.ndarray) -> np.ndarray:
        u = z[:, self.idx]
        out = np.sum(-np.abs(u) - 2.0 * np.log1p(np.exp(-np.abs(u))), axis=1)
        return out + (self.t.logpdf(z[:, self.rest]) if self.t is not None else 0.0)


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
