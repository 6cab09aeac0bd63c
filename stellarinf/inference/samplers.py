"""Posterior samplers on one :class:`~stellarinf.inference.density.Problem`, all returning :class:`Posterior`.

- :func:`run_numpyro_nuts`: NumPyro's NUTS kernel on ``Problem.log_density`` (the density of :mod:`.numpyro_model`'s
  model), compiled once per setting and reused by every fit of the same structure;
- :func:`run_blackjax_nuts`: BlackJAX NUTS with Stan-style window adaptation per chain on
  ``Problem.log_density``;
- :func:`run_blackjax_mclmc`: BlackJAX microcanonical Langevin MC with its automatic L/step-size
  tuner (diagonal preconditioning): cheaper per effective sample than NUTS on smooth, well-scaled
  posteriors like these;
- :func:`laplace_posterior`: draws from the Laplace approximation, shaped like chains;
- :func:`run_laplace_is`: the Laplace approximation corrected by Pareto-smoothed importance sampling
  (log-density values only: the posterior for emulators whose gradients are too slow for NUTS).

Every MCMC sampler starts its chains from draws of the Laplace approximation (MAP + Hessian), so
warm-up starts in the typical set and chains are dispersed enough for R-hat to mean something.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable

import blackjax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.base import get_filter_adapt_info_fn

from ..errors import StellarinfError
from .density import Problem
from .importance import DEFAULT_DF, adaptive_importance, pareto_k_threshold, resample
from .lanes import lane_batch_size, map_lanes
from .laplace import LaplaceResult, laplace
from .ring import ring_draws


@dataclasses.dataclass
class Posterior:
    """Draws of the free parameters, shaped (chains, draws), plus per-draw sampler statistics."""

    method: str
    names: tuple[str, ...]
    samples: dict[str, np.ndarray]  # physical units, (chains, draws)
    stats: dict[str, np.ndarray]  # e.g. diverging, tree_depth, energy, acceptance_rate, lp: (chains, draws)
    timings: dict[str, float]  # warmup_s, sampling_s, init_s, total_s
    n_gradient_evals: int
    init: LaplaceResult | None = None
    tuning: dict = dataclasses.field(default_factory=dict)

    @property
    def n_chains(self) -> int:
        return next(iter(self.samples.values())).shape[0]

    @property
    def n_draws(self) -> int:
        return next(iter(self.samples.values())).shape[1]

    @property
    def n_divergent(self) -> int:
        d = self.stats.get("diverging")
        return 0 if d is None else int(np.sum(d))


def initial_positions(
    problem: Problem, n_chains: int, seed: int = 0, init: LaplaceResult | None = None
) -> tuple[np.ndarray, LaplaceResult]:
    """(n_chains, n_free) unconstrained starting points drawn from the Laplace approximation."""
    lap = init if init is not None else laplace(problem, seed=seed)
    z = lap.sample_z(jax.random.key(seed + 7919), n_chains, metric=True)
    good = np.isfinite(np.asarray(_batch_log_density(problem, jnp.asarray(z))))
    z[~good] = lap.mean_z  # a draw in a non-finite region restarts at the mode
    return z, lap


# rows per compiled log-density batch: larger batches run as several blocks of this many rows
LOG_DENSITY_BLOCK = 256


@eqx.filter_jit
def _block_log_density(problem: Problem, zs):
    return jax.lax.map(problem.log_density, zs, batch_size=lane_batch_size(64))


def _batch_log_density(problem: Problem, zs, max_seconds: float | None = None) -> np.ndarray | None:
    """``problem.log_density`` of every row of ``zs`` (n, n_free), in blocks of :data:`LOG_DENSITY_BLOCK` rows (a
    batch of fewer rows: the next power of two), the last block padded with copies of the last row. Each row is
    evaluated on its own as before; the blocks only fix the shapes the program is compiled for: laplace-is draws
    its proposals in rounds of different sizes, and one program per size meant a compilation (seconds) per round.

    ``max_seconds``: give up (return None) as soon as the blocks done so far project the whole batch past it; the
    projection uses the last block's own time, so the first block's compilation does not count against a cheap
    model (at most two blocks are spent finding out)."""
    zs = np.asarray(zs)
    n = zs.shape[0]
    if n == 0:
        return np.zeros((0,), dtype=zs.dtype)
    block = LOG_DENSITY_BLOCK if n >= LOG_DENSITY_BLOCK else 1 << (n - 1).bit_length()
    n_pad = -n % block
    if n_pad:
        zs = np.concatenate([zs, np.broadcast_to(zs[-1:], (n_pad,) + zs.shape[1:])])
    starts = range(0, n + n_pad, block)
    out, t_start = [], time.perf_counter()
    for k, i in enumerate(starts):
        t0 = time.perf_counter()
        out.append(np.asarray(_block_log_density(problem, zs[i : i + block])))
        left = len(starts) - k - 1
        if max_seconds is not None and k >= 1 and left:
            now = time.perf_counter()
            if now - t_start + left * (now - t0) > max_seconds:
                return None
    return np.concatenate(out)[:n]


# draw_log_density=None: the Laplace draws' log densities (sample_stats.lp) when they take at most this long
LOG_DENSITY_BUDGET_S = 30.0


def _check_chains(chains: int, draws: int, warmup: int) -> None:
    if chains < 1 or draws < 1 or warmup < 0:
        raise StellarinfError(f"need chains >= 1, draws >= 1 and warmup >= 0 (got {chains}, {draws}, {warmup})")


def _constrained(problem: Problem, z: np.ndarray) -> dict[str, np.ndarray]:
    return problem.to_numpy_params(z)


# ---------------------------------------------------------------------------------------------
# NumPyro NUTS
# ---------------------------------------------------------------------------------------------
DEFAULT_MAX_TREE_DEPTH = 8  # 255 gradients per draw at most; a healthy fit here takes 7-15
NUTS_CHUNK = 25  # iterations per compiled chunk: the budget is checked and the progress bar moves between chunks


class SamplerBudgetExceeded(StellarinfError):
    """NUTS would not finish inside its wall-clock budget; the message says what it measured and what to do."""

    def __init__(self, message: str, measured: dict):
        super().__init__(message)
        self.measured = measured


def budget_verdict(
    elapsed_s: float, done: int, total: int, seconds_per_iteration: float | None, max_seconds: float | None
) -> float | None:
    """The projected total seconds of a run that will overrun ``max_seconds`` (None if it will not, or no budget).

    ``seconds_per_iteration`` is measured after the first chunk (which holds the compilation; None before it).
    A run already past its budget stops; otherwise it stops only when the projection exceeds the budget by 20 %
    (early warm-up iterations are the slowest, so the projection errs high)."""
    if max_seconds is None or done <= 0:
        return None
    remaining = (total - done) * (seconds_per_iteration or 0.0)
    if elapsed_s > max_seconds:
        return elapsed_s + remaining
    if seconds_per_iteration is None:
        return None
    projected = elapsed_s + remaining
    return projected if projected > 1.2 * max_seconds else None


class NutsClock:
    """A NUTS run's wall-clock budget, checked after every compiled step (one star's NUTS and the joint one).

    ``tick(n, num_steps)`` after each step of ``n`` iterations per chain (``num_steps``: that step's gradients per
    draw) raises :class:`SamplerBudgetExceeded` when :func:`budget_verdict` says the run will overrun; the first
    step holds the compilation, so the pace is measured from the second on."""

    def __init__(
        self,
        max_seconds: float | None,
        total: int,
        *,
        name: str,
        advice: str,
        extra: dict | None = None,
        start: float | None = None,
    ):
        self.max_seconds, self.total, self.name, self.advice = max_seconds, total, name, advice
        self.extra = dict(extra or {})
        self.t0 = time.perf_counter() if start is None else start  # start: perf_counter() when the run began
        self.done, self.first = 0, None  # first: (seconds, iterations) at the end of the first (compiling) step

    def tick(self, n: int, num_steps) -> None:
        self.done += n
        if self.max_seconds is None:
            return
        elapsed = time.perf_counter() - self.t0
        rate = None if self.first is None else (elapsed - self.first[0]) / max(self.done - self.first[1], 1)
        self.first = self.first or (elapsed, self.done)
        projected = budget_verdict(elapsed, self.done, self.total, rate, self.max_seconds)
        if projected is None or self.done >= self.total:
            return
        steps = float(np.mean(np.asarray(num_steps)))
        raise SamplerBudgetExceeded(
            f"{self.name} stopped after {elapsed:.0f} s ({self.done} of {self.total} iterations per chain): at "
            f"{steps:.0f} gradients per draw it would need about {projected / 60:.0f} min, past its budget of "
            f"{self.max_seconds / 60:.1f} min. {self.advice}",
            {
                "elapsed_s": elapsed,
                "iterations_done": self.done,
                "iterations_total": self.total,
                "projected_s": projected,
                "mean_gradients_per_draw": steps,
                **self.extra,
            },
        )


def run_numpyro_nuts(
    problem: Problem,
    *,
    chains: int = 4,
    warmup: int = 500,
    draws: int = 1000,
    seed: int = 0,
    init: LaplaceResult | None = None,
    target_accept: float = 0.8,
    dense_mass: bool = True,
    adapt_mass: bool | None = None,
    progress: bool = False,
    max_tree_depth: int = DEFAULT_MAX_TREE_DEPTH,
    max_seconds: float | None = None,
) -> Posterior:
    """NumPyro NUTS, chains vectorised on one device, initialised from the Laplace approximation
    (positions drawn from it, and its covariance as the inverse mass matrix).

    ``adapt_mass``: re-estimate the mass matrix from warm-up draws (Stan's windows). Default: only when
    the Laplace Hessian was not positive definite. A healthy Laplace covariance is a better dense metric
    than one estimated from a few hundred correlated warm-up draws of 15+ parameters, so by default
    warm-up only tunes the step size.

    Budget: each draw costs at most 2^``max_tree_depth`` − 1 gradients, and the run is made in chunks of
    :data:`NUTS_CHUNK` iterations; when the time so far projects past ``max_seconds`` (wall clock, warm-up
    included) it stops with :class:`SamplerBudgetExceeded` (what it measured, and what to do) instead of
    running for most of an hour; :func:`stellarinf.fit_spectrum` then falls back to Laplace + importance
    sampling and says so. ``Posterior.stats["tree_depth"]`` and ``tuning["max_tree_depth"]`` show saturation."""
    _check_chains(chains, draws, warmup)
    if max_tree_depth < 1:
        raise StellarinfError(f"max_tree_depth must be >= 1, got {max_tree_depth}")
    t0 = time.perf_counter()
    z0, lap = initial_positions(problem, chains, seed, init)
    t_init = time.perf_counter() - t0
    # Start warm-up from the Laplace covariance as a dense inverse mass matrix: label scales differ by
    # orders of magnitude in the unconstrained space, and an identity start makes early trees hit the
    # maximum depth.
    inverse_mass = jnp.asarray(lap.metric)
    if not dense_mass:
        inverse_mass = jnp.diag(inverse_mass)
    if adapt_mass is None:
        adapt_mass = not lap.hessian_ok
    programs = _numpyro_nuts_programs(
        warmup, float(target_accept), bool(dense_mass), bool(adapt_mass), int(max_tree_depth)
    )
    # one state per chain, stacked; the loop is ours (not numpyro.infer.MCMC) so that it can stop on a budget and
    # show progress; chains run as lanes (vmapped on accelerators, one after another on CPU: lanes.py says why)
    keys = jax.random.split(jax.random.PRNGKey(seed), chains)
    t1 = time.perf_counter()
    state = programs.init(problem, jnp.asarray(z0), inverse_mass, keys)

    def run_chunk(states, n):
        return programs.chunk(problem, states, jnp.zeros(n))

    total = warmup + draws
    done, kept = 0, []
    clock = NutsClock(
        max_seconds,
        total,
        name="NUTS",
        advice="Use the Laplace/importance-sampling result (--sampler laplace-is), a faster emulator (the Payne, "
        "--emulator default-payne, where this is TransformerPayne), a GPU, or a larger budget (--max-minutes)",
        extra={"max_tree_depth": int(max_tree_depth)},
        start=t1,
    )
    bar = _progress_bar(progress, total, "NUTS")
    try:
        while done < total:
            n = min(NUTS_CHUNK, total - done)
            state, fields = run_chunk(state, n)
            jax.block_until_ready(fields)
            first_kept = max(warmup - done, 0)
            if first_kept < n:
                kept.append(jax.tree.map(lambda a, k=first_kept: np.asarray(a)[:, k:], fields))
            done += n
            if bar is not None:
                bar.update(n)
            clock.tick(n, fields["num_steps"])
    finally:
        if bar is not None:
            bar.close()
    t_run = time.perf_counter() - t1
    kept = jax.tree.map(lambda *parts: np.concatenate(parts, axis=1), *kept)  # (chains, draws, ...)
    x = np.asarray(problem.prior.to_constrained(jnp.asarray(kept["z"])))  # (chains, draws, n_free)
    samples = {n: x[..., i] for i, n in enumerate(problem.names)}
    n_steps = np.asarray(kept["num_steps"]).astype(np.int64)
    stats = {
        "diverging": np.asarray(kept["diverging"]).astype(bool),
        "tree_depth": np.ceil(np.log2(n_steps + 1)).astype(np.int64),
        "n_steps": n_steps,
        "energy": np.asarray(kept["energy"]),
        "acceptance_rate": np.asarray(kept["accept_prob"]),
        "lp": -np.asarray(kept["potential_energy"]),
    }
    return Posterior(
        method="numpyro-nuts",
        names=problem.names,
        samples={n: np.asarray(samples[n]).reshape(chains, draws) for n in problem.names},
        stats=stats,
        timings={"init_s": t_init, "warmup_s": float("nan"), "sampling_s": t_run, "total_s": time.perf_counter() - t0},
        n_gradient_evals=int(n_steps.sum()),  # sampling phase only
        init=lap,
        tuning={"max_tree_depth": int(max_tree_depth), "step_size": np.asarray(state.adapt_state.step_size)},
    )


@dataclasses.dataclass(frozen=True)
class _NumpyroNutsPrograms:
    """NumPyro's NUTS kernels (``numpyro.infer.hmc.hmc``) on ``Problem.log_density``, compiled once per setting.

    ``init(problem, z0s, inverse_mass, keys) -> states`` (one per chain, stacked) and
    ``chunk(problem, states, zeros(n)) -> (states, fields)`` take the problem as an *argument*: every fit with the
    same settings and a problem of the same structure (spectrum shape, prior kinds) reuses the compiled programs,
    whatever its data and prior numbers, as MAP and Laplace do. (A NUTS kernel built on a model that closes over
    the problem compiled everything again for every fit: a minute per star of a catalogue.)"""

    init: Callable
    chunk: Callable


@functools.lru_cache(maxsize=16)
def _numpyro_nuts_programs(
    num_warmup: int, target_accept: float, dense_mass: bool, adapt_mass: bool, max_tree_depth: int
) -> _NumpyroNutsPrograms:
    from numpyro.infer.hmc import hmc

    # init_kernel stores the settings (warm-up length, tree depth, the adaptation) for its sample_kernel, so each
    # setting gets its own pair; the potential is regenerated from the problem passed on every call
    init_kernel, sample_kernel = hmc(potential_fn_gen=_negative_log_density, algo="NUTS")

    def init_one(problem, z0, inverse_mass, key):
        return init_kernel(
            z0,
            num_warmup,
            inverse_mass_matrix=inverse_mass,
            adapt_mass_matrix=adapt_mass,
            dense_mass=dense_mass,
            target_accept_prob=target_accept,
            max_tree_depth=max_tree_depth,
            trajectory_length=None,
            model_args=(problem,),
            rng_key=key,
        )

    @eqx.filter_jit
    def init(problem, z0s, inverse_mass, keys):
        return map_lanes(lambda z0, key: init_one(problem, z0, inverse_mass, key), z0s, keys)

    def one_chain(problem, state, n_dummy):
        def body(s, _):
            s = sample_kernel(s, (problem,), {})
            return s, _nuts_fields(s)

        return jax.lax.scan(body, state, n_dummy)

    @eqx.filter_jit
    def chunk(problem, states, n_dummy):
        return map_lanes(lambda st: one_chain(problem, st, n_dummy), states)

    return _NumpyroNutsPrograms(init, chunk)


def _nuts_fields(state) -> dict:
    """What each NUTS iteration keeps of NumPyro's ``HMCState``: the position and the per-draw diagnostics."""
    return {
        "z": state.z,
        "num_steps": state.num_steps,
        "diverging": state.diverging,
        "energy": state.energy,
        "accept_prob": state.accept_prob,
        "potential_energy": state.potential_energy,
    }


def _negative_log_density(problem: Problem) -> Callable:
    """NumPyro's potential energy of the problem: ``z ↦ −log_density(z)`` (the density of :mod:`.numpyro_model`'s
    model, Jacobian included)."""
    return lambda z: -problem.log_density(z)


def _nuts_chunk_runner(kernel):
    """``run(states, n) -> (states, fields)``: n NUTS iterations of every chain (states stacked over chains; one
    compiled program per n), the per-iteration fields stacked (chains, n, ...)."""

    @jax.jit
    def chunk(states, n_dummy):
        return map_lanes(lambda st: one_chain(st, n_dummy), states)

    def one_chain(state, n_dummy):
        def body(s, _):
            s = kernel.sample(s, (), {})
            return s, _nuts_fields(s)

        return jax.lax.scan(body, state, n_dummy)

    def run(states, n):
        return chunk(states, jnp.zeros(n))

    return run


def _progress_bar(progress: bool, total: int, desc: str):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="it", leave=False)


# ---------------------------------------------------------------------------------------------
# Laplace whitening, shared by the BlackJAX samplers
# ---------------------------------------------------------------------------------------------
def _whitening(lap: LaplaceResult, z0: np.ndarray):
    """(shift, chol, u0): the Laplace mean and Cholesky factor, and the chains' starts in whitened units."""
    chol = np.linalg.cholesky(lap.metric)
    shift = np.asarray(lap.mean_z)
    u0 = np.linalg.solve(chol, (z0 - shift).T).T
    return jnp.asarray(shift), jnp.asarray(chol), jnp.asarray(u0)


def _whitened(problem: Problem, shift, chol):
    """log density of u with z = shift + chol @ u (constant Jacobian dropped): with the Laplace mean and
    Cholesky factor, u is ≈ N(0, I), so an identity-started window adaptation is close to optimal at once."""
    return lambda u: problem.log_density(shift + chol @ u)


# ---------------------------------------------------------------------------------------------
# BlackJAX NUTS with window adaptation
# ---------------------------------------------------------------------------------------------
@eqx.filter_jit
def _bj_nuts_warmup(problem: Problem, shift, chol, keys, u0s, num_steps: int, target_accept: float):
    def one(key, u0):
        warm = blackjax.window_adaptation(
            blackjax.nuts,
            _whitened(problem, shift, chol),
            target_acceptance_rate=target_accept,
            adaptation_info_fn=get_filter_adapt_info_fn(info_keys={"num_integration_steps"}),
        )
        (state, params), info = warm.run(key, u0, num_steps=num_steps)
        return state, params, jnp.sum(info.info.num_integration_steps)

    return map_lanes(one, keys, u0s)


@eqx.filter_jit
def _bj_nuts_sample(problem: Problem, shift, chol, keys, states, params, num_draws: int):
    def one(key, state, p):
        nuts = blackjax.nuts(
            _whitened(problem, shift, chol), step_size=p["step_size"], inverse_mass_matrix=p["inverse_mass_matrix"]
        )

        def step(st, k):
            st, info = nuts.step(k, st)
            return st, (
                shift + chol @ st.position,
                st.logdensity,
                info.is_divergent,
                info.num_trajectory_expansions,
                info.num_integration_steps,
                info.energy,
                info.acceptance_rate,
            )

        _, out = jax.lax.scan(step, state, jax.random.split(key, num_draws))
        return out

    return map_lanes(one, keys, states, params)


def run_blackjax_nuts(
    problem: Problem,
    *,
    chains: int = 4,
    warmup: int = 500,
    draws: int = 1000,
    seed: int = 0,
    init: LaplaceResult | None = None,
    target_accept: float = 0.8,
) -> Posterior:
    """BlackJAX NUTS, one window adaptation per chain (:func:`.lanes.map_lanes`), initialised from Laplace draws and run
    in coordinates whitened by the Laplace covariance (one compiled program serves every spectrum of the
    same shape: the Laplace mean and factor are arguments)."""
    _check_chains(chains, draws, warmup)
    t0 = time.perf_counter()
    z0, lap = initial_positions(problem, chains, seed, init)
    shift, chol, u0 = _whitening(lap, z0)
    t_init = time.perf_counter() - t0
    kw, ks = jax.random.split(jax.random.key(seed))
    t1 = time.perf_counter()
    states, params, n_warm = _bj_nuts_warmup(
        problem, shift, chol, jax.random.split(kw, chains), u0, max(warmup, 1), target_accept
    )
    jax.block_until_ready(states)
    t2 = time.perf_counter()
    pos, lp, div, depth, nsteps, energy, acc = _bj_nuts_sample(
        problem, shift, chol, jax.random.split(ks, chains), states, params, draws
    )
    jax.block_until_ready(pos)
    t3 = time.perf_counter()
    stats = {
        "diverging": np.asarray(div, dtype=bool),
        "tree_depth": np.asarray(depth, dtype=np.int64),
        "n_steps": np.asarray(nsteps, dtype=np.int64),
        "energy": np.asarray(energy),
        "acceptance_rate": np.asarray(acc),
        "lp": np.asarray(lp),
    }
    return Posterior(
        method="blackjax-nuts",
        names=problem.names,
        samples=_constrained(problem, np.asarray(pos)),
        stats=stats,
        timings={"init_s": t_init, "warmup_s": t2 - t1, "sampling_s": t3 - t2, "total_s": t3 - t0},
        n_gradient_evals=int(np.sum(n_warm) + stats["n_steps"].sum()),
        init=lap,
        # the adapted metric in z coordinates: L diag(m) Lᵀ
        tuning={
            "step_size": np.asarray(params["step_size"]),
            "inverse_mass_matrix": np.einsum(
                "ij,cj,kj->cik", np.asarray(chol), np.asarray(params["inverse_mass_matrix"]), np.asarray(chol)
            ),
        },
    )


# ---------------------------------------------------------------------------------------------
# BlackJAX MCLMC (microcanonical Langevin) with its tuner
# ---------------------------------------------------------------------------------------------
@eqx.filter_jit
def _bj_mclmc_tune(problem: Problem, shift, chol, keys, u0s, num_steps: int):
    logdensity = _whitened(problem, shift, chol)

    def one(key, u0):
        ik, tk = jax.random.split(key)
        state = blackjax.mcmc.mclmc.init(position=u0, logdensity_fn=logdensity, rng_key=ik)
        kernel = blackjax.mcmc.mclmc.build_kernel()
        state, params, n_tune = blackjax.mclmc_find_L_and_step_size(
            mclmc_kernel=kernel,
            num_steps=num_steps,
            state=state,
            rng_key=tk,
            logdensity_fn=logdensity,
            diagonal_preconditioning=True,
        )
        return state, params

    return map_lanes(one, keys, u0s)


@eqx.filter_jit
def _bj_mclmc_sample(problem: Problem, shift, chol, keys, states, params, num_draws: int):
    def one(key, state, p):
        alg = blackjax.mclmc(
            _whitened(problem, shift, chol), L=p.L, step_size=p.step_size, inverse_mass_matrix=p.inverse_mass_matrix
        )

        def step(st, k):
            st, info = alg.step(k, st)
            return st, (shift + chol @ st.position, st.logdensity, info.energy_change, ~info.nonans)

        _, out = jax.lax.scan(step, state, jax.random.split(key, num_draws))
        return out

    return map_lanes(one, keys, states, params)


def run_blackjax_mclmc(
    problem: Problem,
    *,
    chains: int = 4,
    warmup: int = 500,
    draws: int = 1000,
    seed: int = 0,
    init: LaplaceResult | None = None,
) -> Posterior:
    """BlackJAX MCLMC in Laplace-whitened coordinates (as NUTS): ``warmup`` steps of L/step-size tuning
    (3 phases), then ``draws`` steps per chain."""
    _check_chains(chains, draws, warmup)
    if problem.n_free < 2:
        raise StellarinfError("MCLMC needs at least 2 free parameters; use --sampler nuts for a 1-parameter fit")
    t0 = time.perf_counter()
    z0, lap = initial_positions(problem, chains, seed, init)
    shift, chol, u0 = _whitening(lap, z0)
    t_init = time.perf_counter() - t0
    kt, ks = jax.random.split(jax.random.key(seed))
    # the tuner spends 10% + 10%(+1/3 for the preconditioner) + 10% of num_steps: scale so it spends ~warmup
    tune_steps = max(int(round(warmup / 0.333)), 30)
    t1 = time.perf_counter()
    states, params = _bj_mclmc_tune(problem, shift, chol, jax.random.split(kt, chains), u0, tune_steps)
    jax.block_until_ready(states)
    t2 = time.perf_counter()
    pos, lp, de, bad = _bj_mclmc_sample(problem, shift, chol, jax.random.split(ks, chains), states, params, draws)
    jax.block_until_ready(pos)
    t3 = time.perf_counter()
    stats = {"lp": np.asarray(lp), "energy_change": np.asarray(de), "diverging": np.asarray(bad, dtype=bool)}
    return Posterior(
        method="blackjax-mclmc",
        names=problem.names,
        samples=_constrained(problem, np.asarray(pos)),
        stats=stats,
        timings={"init_s": t_init, "warmup_s": t2 - t1, "sampling_s": t3 - t2, "total_s": t3 - t0},
        # McLachlan integrator: 2 gradients per step
        n_gradient_evals=int(2 * chains * (draws + 0.433 * tune_steps)),
        init=lap,
        tuning={"L": np.asarray(params.L), "step_size": np.asarray(params.step_size)},
    )


# ---------------------------------------------------------------------------------------------
# Laplace draws as a "posterior"
# ---------------------------------------------------------------------------------------------
def laplace_posterior(
    problem: Problem,
    *,
    chains: int = 4,
    draws: int = 1000,
    seed: int = 0,
    init: LaplaceResult | None = None,
    draw_log_density: bool | None = None,
) -> Posterior:
    """Independent draws from the Laplace approximation, arranged as (chains, draws).

    ``draw_log_density``: evaluate the model's log density at every draw (``sample_stats.lp``); None (default):
    only when that takes at most :data:`LOG_DENSITY_BUDGET_S` (``tuning["lp_skipped"]`` says so when it would not).
    Nothing else uses it, and it costs a full likelihood per draw: with the Payne on a CPU about half of a
    Laplace fit's time (4,000 likelihoods), with TransformerPayne on the four GALAH arms 116 s, so a catalogue
    that keeps no draws turns it off; the draws themselves do not change.

    With v sin i and v macro both free, their draws follow the ring the two make where the spectrum measures only
    their combination (:mod:`.ring`: 256 log densities over it; ``tuning`` holds what the scan found)."""
    _check_chains(chains, draws, 0)
    t0 = time.perf_counter()
    lap = init if init is not None else laplace(problem, seed=seed)
    z = lap.sample_z(jax.random.key(seed + 1), chains * draws)
    stats, tuning = {}, {"hessian_ok": lap.hessian_ok}
    z, ring = ring_draws(problem, z, lap.mean_z, seed=seed + 2)  # v sin i and v macro free: do they make a ring?
    tuning.update(ring)
    z = z.reshape(chains, draws, -1)
    if draw_log_density or draw_log_density is None:
        budget = LOG_DENSITY_BUDGET_S if draw_log_density is None else None
        lp = _batch_log_density(problem, jnp.asarray(z.reshape(chains * draws, -1)), max_seconds=budget)
        if lp is None:
            tuning["lp_skipped"] = (
                f"the log density at the {chains * draws} draws (sample_stats.lp) would take more than "
                f"{LOG_DENSITY_BUDGET_S:.0f} s and is not used by the results; draw_log_density=True "
                "(stellarinf fit --draw-log-density) computes it"
            )
        else:
            stats["lp"] = np.asarray(lp).reshape(chains, draws)
    return Posterior(
        method="laplace",
        names=problem.names,
        samples=_constrained(problem, z),
        stats=stats,
        timings={
            "init_s": lap.wall_time,
            "warmup_s": 0.0,
            "sampling_s": time.perf_counter() - t0,
            "total_s": time.perf_counter() - t0 + (lap.wall_time if init is None else 0.0),
        },
        n_gradient_evals=0,
        init=lap,
        tuning=tuning,
    )


# laplace-is's extra rounds (see run_laplace_is): until the importance ESS reaches this per chain, within this many
# seconds of sampling (a default fit should finish in minutes: issue 23)
IS_MIN_ESS_PER_CHAIN = 150.0
IS_EXTRA_SECONDS = 150.0


def run_laplace_is(
    problem: Problem,
    *,
    chains: int = 4,
    draws: int = 1000,
    seed: int = 0,
    init: LaplaceResult | None = None,
    df: float = DEFAULT_DF,
    extra_rounds: int = 4,
    min_ess_per_chain: float = IS_MIN_ESS_PER_CHAIN,
    max_seconds: float | None = IS_EXTRA_SECONDS,
    progress: bool = False,
) -> Posterior:
    """Laplace approximation corrected by importance sampling (:func:`.importance.adaptive_importance`):
    ``chains × draws`` independent Student-t proposals drawn in rounds (10/15/25/50 %), the first centred on
    the Laplace mode with the samplers' capped covariance, each later one on the weighted moments of the draws
    so far (and kernels on the heaviest draws; the labels the Laplace leaves about as wide as their box,
    :func:`broad_coordinates`, are also drawn across the box); Pareto-smoothed weights from the exact log density;
    while their Pareto k is unreliable or the importance ESS is below ``min_ess_per_chain × chains`` (R-hat across
    the chains needs ~50 per chain to stay below 1.01), up to ``extra_rounds`` more rounds of ``chains × draws``,
    each only where it ends inside ``max_seconds`` of sampling (None: no limit). Draw i belongs to chain i mod
    ``chains``, and each chain resamples ``draws`` from its own proposals, so chains are independent estimates and R-hat compares them.

    ``tuning`` holds ``pareto_k`` (pooled; reliable below ``pareto_k_threshold``) and ``importance_ess``
    (Kish ESS of the pooled weights), which the summary table uses in place of the ESS of the
    resampled draws (repeats would inflate that)."""
    _check_chains(chains, draws, 0)
    t0 = time.perf_counter()
    lap = init if init is not None else laplace(problem, seed=seed)
    t_init = time.perf_counter() - t0
    rng = np.random.default_rng(seed + 104729)
    n = chains * draws

    from tqdm.auto import tqdm

    bar = tqdm(total=n, desc="laplace-is", unit="proposal", disable=not progress)

    def log_density(z):
        out = np.asarray(_batch_log_density(problem, jnp.asarray(z)))
        if bar.n + len(z) > bar.total:  # an extra round (Pareto k still high)
            bar.total = bar.n + len(z)
        bar.update(len(z))
        return out

    try:
        broad = broad_coordinates(lap.cov_z, problem)
        z, log_p, w = adaptive_importance(
            log_density,
            lap.mean_z,
            lap.metric,
            n,
            rng,
            df=df,
            extra_rounds=extra_rounds,
            broad=broad,
            mirrored=[i for i, folded in enumerate(problem.prior.folded) if folded],  # v sin i, v macro: even in z
            min_ess=min_ess_per_chain * chains,
            deadline=None if max_seconds is None else time.perf_counter() + float(max_seconds),
        )
    finally:
        bar.close()
    idx = np.concatenate([c + chains * resample(w.log_weights[c::chains], draws, rng) for c in range(chains)])
    t1 = time.perf_counter()
    return Posterior(
        method="laplace-is",
        names=problem.names,
        samples=_constrained(problem, z[idx].reshape(chains, draws, -1)),
        stats={"lp": log_p[idx].reshape(chains, draws)},
        timings={
            "init_s": t_init if init is None else lap.wall_time,
            "warmup_s": 0.0,
            "sampling_s": t1 - t0 - t_init,
            "total_s": t1 - t0,
        },
        n_gradient_evals=0,
        init=lap,
        tuning={
            "pareto_k": w.pareto_k,
            "pareto_k_threshold": pareto_k_threshold(len(z)),
            "importance_ess": w.ess,
            "n_proposals": len(z),
            "proposal_df": float(df),
            "hessian_ok": lap.hessian_ok,
            "broad": [problem.names[i] for i in broad],
        },
    )


# a box label whose Laplace variance in z exceeds this fraction of a uniform prior's (the logistic variance) is one
# the spectrum hardly constrains: laplace-is also draws it across its whole box
BROAD_FRACTION = 0.5


def broad_coordinates(cov_z: np.ndarray, problem: Problem) -> list[int]:
    """Indices of the logit-scaled box parameters with a uniform prior whose Laplace variance (uncapped) is above
    ``BROAD_FRACTION`` of the logistic variance: the labels :func:`.importance.adaptive_importance` draws broadly."""
    from .laplace import LOGISTIC_VARIANCE

    lo, hi = np.asarray(problem.prior.lower, float), np.asarray(problem.prior.upper, float)
    uniform = [getattr(p, "kind", "uniform") == "uniform" for p in problem.prior_specs]
    var = np.diag(np.asarray(cov_z, float))
    return [
        i
        for i in range(len(var))
        if np.isfinite(lo[i]) and np.isfinite(hi[i]) and uniform[i] and var[i] > BROAD_FRACTION * LOGISTIC_VARIANCE
    ]


def _map_draws(problem: Problem, **kwargs) -> Posterior:
    """``map``: the Laplace draws around the MAP, labelled as a MAP fit (the summary's centre is the MAP)."""
    post = laplace_posterior(problem, **kwargs)
    post.method = "map"
    return post


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
    """One way to get a posterior: what :func:`sample`, the results' flags, the pipeline and the CLI need to know.

    ``runner(problem, *, chains, draws, seed, init, [warmup], [progress]) -> Posterior``;
    ``needs_gradients``: costs a gradient per step (slow with TransformerPayne on a CPU);
    ``is_mcmc``: draws are correlated Markov chains (divergences and R-hat are the alarms);
    ``uses_warmup``: takes ``warmup``; ``independent_chains``: its chains are independent estimates, so
    R-hat across them means something and one chain is flagged; ``progress``: takes ``progress=``;
    ``canonical``: the name this one is an alias of (or its own name); ``budget``: takes ``max_seconds``, a
    wall-clock budget past which it stops with :class:`SamplerBudgetExceeded`; ``optional_lp``: takes
    ``draw_log_density`` (whether to evaluate the log density at each of its draws, which are not made from it).

    Adding a sampler is one entry in :data:`SAMPLER_SPECS` (and its runner): the CLI choices, ``sample()``
    and the flags all read this table.
    """

    name: str
    runner: Callable[..., Posterior]
    needs_gradients: bool
    is_mcmc: bool
    uses_warmup: bool
    independent_chains: bool
    help: str
    progress: bool = False
    canonical: str | None = None
    budget: bool = False  # takes ``max_seconds`` (a wall-clock budget)
    optional_lp: bool = False  # takes ``draw_log_density``


SAMPLER_SPECS: dict[str, SamplerSpec] = {
    s.name: s
    for s in (
        SamplerSpec(
            "nuts",
            run_numpyro_nuts,
            True,
            True,
            True,
            True,
            "NumPyro NUTS (dense Laplace metric)",
            progress=True,
            budget=True,
        ),
        SamplerSpec(
            "numpyro-nuts",
            run_numpyro_nuts,
            True,
            True,
            True,
            True,
            "alias of nuts",
            progress=True,
            canonical="nuts",
            budget=True,
        ),
        SamplerSpec("blackjax-nuts", run_blackjax_nuts, True, True, True, True, "BlackJAX NUTS, Laplace-whitened"),
        SamplerSpec("mclmc", run_blackjax_mclmc, True, True, True, True, "BlackJAX microcanonical Langevin MC"),
        SamplerSpec("blackjax-mclmc", run_blackjax_mclmc, True, True, True, True, "alias of mclmc", canonical="mclmc"),
        SamplerSpec(
            "laplace-is",
            run_laplace_is,
            False,
            False,
            False,
            True,
            "Laplace corrected by importance sampling (values only; check the pareto_k flag)",
            progress=True,
        ),
        SamplerSpec(
            "laplace",
            laplace_posterior,
            False,
            False,
            False,
            False,
            "draws from the Laplace approximation",
            optional_lp=True,
        ),
        SamplerSpec(
            "map",
            _map_draws,
            False,
            False,
            False,
            False,
            "the MAP, with Laplace draws for its spread",
            optional_lp=True,
        ),
    )
}
SAMPLERS: dict[str, Callable[..., Posterior]] = {n: s.runner for n, s in SAMPLER_SPECS.items()}


def sampler_spec(name: str) -> SamplerSpec:
    """The :class:`SamplerSpec` of ``name``; a :class:`StellarinfError` listing the choices if unknown."""
    try:
        return SAMPLER_SPECS[str(name)]
    except KeyError:
        raise StellarinfError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLER_SPECS)}") from None


def sampler_names(*, include_aliases: bool = True) -> list[str]:
    """Sampler names for choices (CLI ``--sampler``), in registry order."""
    return [n for n, s in SAMPLER_SPECS.items() if include_aliases or s.canonical is None]


def sample(problem: Problem, method: str = "nuts", **kwargs) -> Posterior:
    """Run the sampler ``method`` (a name in :data:`SAMPLER_SPECS`); arguments a sampler does not take
    (``warmup`` for a sampler without warm-up, ``progress`` for one without a progress bar,
    ``draw_log_density`` for one whose draws need their log density) are dropped."""
    spec = sampler_spec(method)
    if not spec.optional_lp:
        kwargs.pop("draw_log_density", None)
    if not spec.uses_warmup:
        kwargs.pop("warmup", None)
    if not spec.progress:
        kwargs.pop("progress", None)
    if not spec.budget:
        kwargs.pop("max_seconds", None)
    return spec.runner(problem, **kwargs)
