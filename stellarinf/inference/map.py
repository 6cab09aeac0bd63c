"""Maximum a posteriori: data-driven starts, damped Gauss–Newton steps (optionally L-BFGS first).

Starts come from the data (:mod:`.quickstart`): the RV from a template scan and the labels from the best
few of a library of prior draws, each with its own RV. Every start then takes damped Gauss–Newton /
Levenberg–Marquardt steps (:func:`newton_steps`); after a few, the better half of the starts goes on to its
local optimum (successive halving); the best is kept, and how many starts reached it is reported. Each phase
runs its starts in one compiled program (:func:`.lanes.map_lanes`: vmapped on accelerators, in turn on
CPU). L-BFGS (optax) before the Gauss–Newton steps is optional
(``max_iter``); from these starts it did not change the optimum found (benchmarks/README.md).

The objective is the posterior of the *physical* parameters (no Jacobian), so the MAP is the mode a
user expects; :func:`stellarinf.inference.laplace.laplace` re-centres on the unconstrained mode.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float

from ..observe.continuum import linear_conditional_posterior
from . import transforms
from .density import Problem
from .lanes import map_lanes
from .quickstart import quick_starts, supports_quick_start

# Levenberg–Marquardt damping ladder of newton_mode's step (relative to the curvature's diagonal), scaled
# by an adaptive factor: ×_DAMPING_UP after a step none of whose trials gained, ÷_DAMPING_DOWN after a gain
_LM_DAMPING = (1e-2, 1.0)
_NEWTON_FRACTIONS = (1.0, 0.5)  # of the undamped step
_DAMPING_UP, _DAMPING_DOWN = 100.0, 10.0
_DAMPING_MAX = 1e8  # a pure gradient step this short and still no gain: a (local) optimum

# parameters whose starting points are randomised across starts (others keep the initial guess)
_FIXED_START = ("rv", "ln_jitter")


@dataclasses.dataclass
class MAPResult:
    names: tuple[str, ...]
    params: dict[str, float]  # best point, physical units (free parameters)
    z: np.ndarray  # best point, unconstrained (n_free,)
    log_posterior: float  # objective at the best point
    hessian: np.ndarray | None  # Hessian of the objective wrt z at the best point (if computed)
    start_values: np.ndarray  # final objective of every start (n_starts,)
    converged: np.ndarray  # per start: the last optimiser (Gauss–Newton if polished) stopped by its tolerance
    n_iterations: np.ndarray  # per start: L-BFGS iterations + Gauss–Newton steps
    wall_time: float
    jacobian: bool  # objective included log|dx/dz| (unconstrained mode) or not (physical mode)
    # every start's final point, unconstrained, in the order of start_values: starts for a search of the same
    # problem with a few pixels changed (the pipeline's second search after masking outliers); None if not kept
    final_z: np.ndarray | None = None

    @property
    def n_starts_agreeing(self) -> int:
        """How many starts reached the best objective (within 0.5 in log density)."""
        return int(np.sum(self.start_values >= self.log_posterior - 0.5))


def start_points(problem: Problem, n_starts: int, seed: int = 0) -> np.ndarray:
    """(n_starts, n_free) unconstrained starts, best first: from the data (:func:`.quickstart.quick_starts`:
    RV by a template scan, labels from a library of prior draws) for a problem built on an observation
    model; otherwise :func:`prior_draw_starts`."""
    if supports_quick_start(problem):
        return quick_starts(problem, max(n_starts, 1), seed=seed)
    return prior_draw_starts(problem, n_starts, seed)


def prior_draw_starts(problem: Problem, n_starts: int, seed: int = 0, z0: np.ndarray | None = None) -> np.ndarray:
    """(n_starts, n_free): ``z0`` (default: the initial guess) and prior draws of the labels and broadening;
    RV, jitter and continuum keep ``z0``'s values (a random RV lands outside the lines' basin)."""
    z0 = problem.initial_z() if z0 is None else np.asarray(z0, dtype=np.float64)
    if n_starts <= 1:
        return z0[None]
    pa = problem.prior
    draws = transforms.clip_to_interior(
        pa.sample(np.random.default_rng(seed), n_starts - 1), pa.lower, pa.upper, margin=1e-3
    )
    zd = np.array(pa.to_unconstrained(draws))
    keep = np.array([n in _FIXED_START or n.startswith("cont") for n in problem.names])
    zd[:, keep] = z0[keep]
    return np.concatenate([z0[None], zd], axis=0)


def _objective(problem: Problem, jacobian: bool):
    def f(z):
        lp = problem.log_density(z) if jacobian else problem.log_posterior(z)
        # an infinite/NaN value would poison the line search: make it a large finite penalty
        return -jnp.where(jnp.isfinite(lp), lp, -1e30)

    return f


def optimise_starts(problem: Problem, z0s, max_iter: int, tol: float, jacobian: bool):
    """Pure core: L-BFGS from every start (:func:`.lanes.map_lanes`) → (z, log density, iterations, converged).

    Stops when the largest gradient component (unconstrained units) is below ``tol`` or an iteration
    changes the objective by less than 1e-12 relative (converged either way), or after ``max_iter``.
    """
    f = _objective(problem, jacobian)
    if max_iter <= 0:
        # no iteration: the starts as they are (what the loop below returns when it never runs), without
        # compiling L-BFGS and its line search (seconds of compile time per problem, for nothing)
        return map_lanes(lambda z0: (z0, -f(z0), jnp.asarray(0), jnp.asarray(False)), z0s)
    opt = optax.lbfgs(memory_size=10, linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=12))
    value_and_grad = optax.value_and_grad_from_state(f)

    def one(z0):
        def cond(carry):
            z, state, i, done, f_prev = carry
            return (i < max_iter) & ~done

        def body(carry):
            z, state, i, _, f_prev = carry
            value, grad = value_and_grad(z, state=state)
            updates, state = opt.update(grad, state, z, value=value, grad=grad, value_fn=f)
            z = optax.apply_updates(z, updates)
            gnorm = jnp.max(jnp.abs(grad))
            small_step = jnp.abs(f_prev - value) <= 1e-12 * jnp.maximum(1.0, jnp.abs(value))
            done = (gnorm <= tol) | small_step | ~jnp.isfinite(gnorm)
            return z, state, i + 1, done, value

        state = opt.init(z0)
        init = (z0, state, jnp.asarray(0), jnp.asarray(False), jnp.asarray(jnp.inf))
        z, state, n_iter, done, _ = jax.lax.while_loop(cond, body, init)
        return z, -f(z), n_iter, done

    return map_lanes(one, z0s)


_optimise_starts = eqx.filter_jit(optimise_starts)


def hessian_fd(f, z, step: float = 1e-4):
    """Hessian of scalar ``f`` at ``z`` by central differences of its (autodiff) gradient, symmetrised.

    Used instead of ``jax.hessian``: second-order autodiff through the observation model (broadening
    kernels, linear solves) can be NaN where the gradient is fine, and this compiles only the gradient.
    Error O(step²) in unconstrained units, far below the posterior widths that matter here.
    """
    n = z.shape[-1]
    eye = jnp.eye(n, dtype=z.dtype) * step
    g = map_lanes(jax.grad(f), jnp.concatenate([z + eye, z - eye]))
    h = (g[:n] - g[n:]) / (2.0 * step)
    return 0.5 * (h + h.T)


def gauss_newton_hessian(problem: Problem, z, jacobian: bool = True):
    """Curvature of the log density at ``z`` as −JᵀJ (J = ∂ρ/∂z, forward mode) plus the exact (finite
    difference) Hessian of the smooth remainder (prior, Jacobian, log determinants), with a folded parameter's
    curvature as :func:`folded_curvature` makes it.

    Why not the full Hessian: it adds Σ ρ ∂²ρ, a residual-weighted term of either sign wherever the model
    does not fit exactly (an emulator fitting synthesizer or real spectra) and noisy in float32 (or spiky
    across the kinks of a LeakyReLU network). By finite differences it was indefinite for 2 of the first 3
    S/N 200 synthesizer mocks with the shipped Payne, which ruins a Laplace covariance and the NUTS metric
    built from it (warm-up at tree depth 9); Gauss–Newton is positive semi-definite by construction."""
    h = _minus_jtj(problem, z) + hessian_fd(lambda v: problem.log_density_remainder(v, jacobian), z)
    return folded_curvature(problem, z, h, jacobian)


# folded_curvature's width: bisections of log s² between these (12 halvings of 19.6: to 0.005, s to 0.25 %)
FOLD_BISECTIONS = 12
_MIN_LOG_S2, _MAX_LOG_S2 = float(np.log(1e-8)), float(np.log(transforms.LOGISTIC_VARIANCE))


def folded_curvature(problem: Problem, z, h, jacobian: bool = True):
    """``h`` with the diagonal entry of each folded parameter (:data:`.priors.FOLDED`) made the larger of two
    precisions: its Gauss–Newton curvature averaged over z ± s along the parameter, s the width that precision
    implies (solved for), plus the rest of ``h``'s entry; and the exact curvature of the objective (the log density
    with ``jacobian``, else the physical-space posterior) there.

    Why: broadening is even in the signed v sin i, so ρ's derivative in it vanishes at 0 and −JᵀJ there is 0: an
    unresolved rotator (mode at 0) would get the prior's width, 5-20× too wide, as its Laplace sd and NUTS metric.
    Near 0 J is linear in v (the likelihood quartic in it), and the mean of J² over ±s is its expectation under
    N(z, s²) (2-point Gauss–Hermite, exact for J linear): the self-consistent width is a quartic posterior's sd to
    3 % (√0.5 against √0.478 in units of its scale), and the plain Gauss–Newton width wherever J hardly changes over
    s (a resolved rotator). Where the data want lines narrower than v sin i = 0 gives, the mode at 0 is quadratic
    through the residual term Σ ρ ∂²ρ that Gauss–Newton leaves out: only the exact curvature sees it. Positive
    definite either way (below); the correlations are those at ``z`` (none at 0, where the posterior is symmetric in
    the sign).

    Where the new precision is below the Gauss–Newton one, the parameter's row and column are scaled with its diagonal
    (a congruence D h D, as if its Jacobian column were shorter: a negative definite ``h`` stays so); where it is
    above, the diagonal alone grows (information Gauss–Newton misses, added on that coordinate: it stays so too).
    Setting the diagonal alone in both cases made a traded v sin i / v macro pair's block indefinite where a precision
    fell (2 of 96 points of an analytic star with both free; a 4000 K giant's RVS fit flagged ``hessian``, its
    regularised direction leaking into vmic, log g and RV: benchmarks/laplace_fold.py). Scaling where it grows
    instead would keep Gauss–Newton's near −1 correlation of a traded pair, which the larger diagonal now tempers:
    the Laplace width along the pair's ridge then reached the box's (v sin i 60 km/s for a 4250 K dwarf)."""
    idx = _folded_indices(problem)
    if idx is None:
        return h

    def precision(i):
        return jnp.maximum(_expected_precision(problem, z, i, -h[i, i]), _exact_precision(problem, z, i, jacobian))

    new = map_lanes(precision, idx)
    old = -h[idx, idx]
    # a folded parameter whose curvature at z is not positive has no correlations to keep: its row is decoupled
    shrink = jnp.where(old > 0.0, jnp.sqrt(jnp.minimum(new, old) / jnp.where(old > 0.0, old, 1.0)), 0.0)
    scale = jnp.ones(h.shape[0], dtype=h.dtype).at[idx].set(shrink)
    return (h * scale[:, None] * scale[None, :]).at[idx, idx].set(-new)


def folded_step_curvature(problem: Problem, z, grad, h, jacobian: bool = True):
    """For optimiser steps: ``h`` with a folded parameter's precision raised to its exact curvature where a Newton
    step along it alone would carry it through 0 (its ``h`` entry misses the curvature at 0, see
    :func:`folded_curvature`, and the steps would overshoot 0 back and forth without end). Elsewhere ``h`` is kept:
    a larger precision there only slows the steps (measured: the screened MAP then missed the optimum more often)."""
    idx = _folded_indices(problem)
    if idx is None:
        return h
    p = -h[idx, idx]
    crosses = z[idx] * (z[idx] + grad[idx] / jnp.maximum(p, 1e-300)) < 0.0

    def exact(i, cross, p_i):
        return jax.lax.cond(cross, lambda: _exact_precision(problem, z, i, jacobian), lambda: p_i)

    return h.at[idx, idx].set(-jnp.maximum(p, map_lanes(exact, idx, crosses, p)))


def _folded_indices(problem: Problem):
    """The folded parameters' positions, as an array to map over (None if there are none).

    Why mapped, not a Python loop over them: each pass of a loop inlines its own copies of the model's gradient and
    Jacobian into the program; with v sin i and v macro (both folded) the shipped Payne's Laplace program took 30.5 s
    to compile, 23.5 s mapped with :func:`_expected_precision` holding one copy of its Jacobian (a user's first fit;
    and most of the test suite's time is compiling)."""
    folded = np.flatnonzero(problem.prior.fold)
    return jnp.asarray(folded) if folded.size else None


def _exact_precision(problem: Problem, z, i: int, jacobian: bool):
    """Minus the second derivative of the objective along coordinate ``i``, by central differences of its gradient
    (as :func:`hessian_fd`); 0 where not finite."""
    f = problem.log_density if jacobian else problem.log_posterior
    step = jnp.zeros(z.shape[-1], dtype=z.dtype).at[i].set(1e-4)
    g = map_lanes(jax.grad(f), jnp.stack([z + step, z - step]))  # one copy of the gradient to compile, not two
    value = -(g[0, i] - g[1, i]) / 2e-4
    return jnp.where(jnp.isfinite(value), value, 0.0)


def _expected_precision(problem: Problem, z, i: int, p_z):
    """Precision along coordinate ``i`` (folded) with its Gauss–Newton part averaged over z ± s, s² = 1/precision
    (:func:`folded_curvature`); ``p_z``: the precision at ``z`` (Gauss–Newton plus the rest)."""
    e = jnp.zeros(z.shape[-1], dtype=z.dtype).at[i].set(1.0)

    def gn(zz):
        return -_minus_jtj(problem, zz, e[None])[0, 0]

    # s² p(s) grows with s (J grows away from 0, in any case faster than 1/s), so bisect log(s² p) = 0 on log s²,
    # for s from 1e-4 to a uniform prior's width in z (a flat objective has no width of its own); a fixed-point
    # update oscillates for a quartic likelihood, and jumps where the model ignores v sin i below a fine pixel.
    # The program holds one copy of gn: pass 0 evaluates it at z itself (s = 0) for the curvature of the rest (prior,
    # Jacobian, log determinants), and the last pass's p is the precision at the final midpoint.
    def bisect(k, carry):
        lo, hi, other, _ = carry
        first = k == 0
        mid = 0.5 * (lo + hi)
        s = jnp.where(first, 0.0, jnp.exp(0.5 * mid))
        ends = map_lanes(gn, jnp.stack([z + s * e, z - s * e]))
        mean = 0.5 * (ends[0] + ends[1])
        other = jnp.where(first, p_z - mean, other)
        p = jnp.maximum(other + mean, 1e-300)
        above = mid + jnp.log(p) > 0.0
        return jnp.where(first | above, lo, mid), jnp.where(first | ~above, hi, mid), other, p

    zero = jnp.asarray(0.0, dtype=z.dtype)
    init = (jnp.asarray(_MIN_LOG_S2), jnp.asarray(_MAX_LOG_S2), zero, zero)
    return jax.lax.fori_loop(0, FOLD_BISECTIONS + 2, bisect, init)[3]


def _minus_jtj(problem: Problem, z, tangents=None):
    """Gauss–Newton curvature of the likelihood's −½|ρ|² (negative semi-definite), along the rows of ``tangents``
    ((k, n_free); default: every coordinate).

    With the data model ``offset(z) + design(z) β`` and β integrated out (``ObservationModel.linear_model``)
    it is the marginal Fisher matrix −(JᵀWJ − AᵀP⁻¹A), J = ∂(offset + design β̂)/∂z at the conditional mean
    β̂, W the inverse pixel variances, P = S⁻¹ + designᵀW design and A = designᵀWJ (variable projection,
    Kaufman's form): it needs J for the n_pix predicted fluxes only, where −JᵀJ of ρ needs the forward-mode
    derivative of the whole marginalisation (its solves against every marginalised column): with 28 error
    modes 9 ms instead of 32 ms on one CPU core, the same matrix to 0.4 % at the MAP of synthesizer mocks.
    The fitted jitter changes the variance, which this form does not see: then ρ's Jacobian is used."""
    tangents = jnp.eye(z.shape[-1], dtype=z.dtype) if tangents is None else tangents

    def jac(f):  # (n_out, k): f's derivative along each tangent (jax.jacfwd's for the identity)
        return jax.vmap(lambda t: jax.jvp(f, (z,), (t,))[1], out_axes=1)(tangents)

    om = problem.obs_model
    if not hasattr(om, "linear_model") or "ln_jitter" in problem.names:
        j = jac(problem.whitened_residuals)
        return -j.T @ j
    params = problem.constrain(z)
    offset, design, mean, sd = om.linear_model(params)
    variance = om.variance(params)
    w = om.weight / variance
    beta, chol = linear_conditional_posterior(om.flux - offset, design, variance, om.weight, mean, sd)

    def predicted(v):
        o, d, _, _ = om.linear_model(problem.constrain(v))
        return o + d @ beta

    j = jac(predicted)
    wj = w[:, None] * j
    a = design.T @ wj
    return -(j.T @ wj - a.T @ jax.scipy.linalg.cho_solve((chol, True), a))


def step_curvature(problem: Problem, z, jacobian: bool = True, grad=None):
    """A cheaper curvature for optimiser steps: −JᵀJ plus the exact Hessian of the prior and the Jacobian
    term only (elementwise, no model evaluation); the slowly varying log determinants are left out. With the
    objective's gradient ``grad``, folded parameters as :func:`folded_step_curvature` makes them.
    The final Laplace curvature uses :func:`hessian_core`."""
    if not problem.has_residuals:
        return hessian_core(problem, z, jacobian)

    def smooth(v):
        return problem.log_prior(v) + (problem.log_jacobian(v) if jacobian else 0.0)

    h = _minus_jtj(problem, z) + jax.hessian(smooth)(z)
    return h if grad is None else folded_step_curvature(problem, z, grad, h, jacobian)


def hessian_core(problem: Problem, z, jacobian: bool = True):
    """Curvature of the log density (unconstrained; physical-space posterior if not ``jacobian``) at ``z``:
    Gauss–Newton when the likelihood is a least-squares problem, finite differences otherwise."""
    if problem.has_residuals:
        return gauss_newton_hessian(problem, z, jacobian)
    f = (lambda v: problem.log_density(v)) if jacobian else (lambda v: problem.log_posterior(v))
    return hessian_fd(f, z)


hessian_at = eqx.filter_jit(hessian_core)


def newton_mode(
    problem: Problem, z, n_steps: int = 8, jacobian: bool = True, tol: float = 1e-3, max_step: float = math.inf
):
    """Refine ``z`` to the mode of the unconstrained density (Jacobian included; the physical-space
    posterior if not ``jacobian``) by damped (Gauss–)Newton steps, at most ``n_steps``, stopping once the
    Newton decrement is below ``tol`` (:func:`newton_steps`); returns (z, log density, curvature at z). One
    compiled program."""
    z, val, _, _ = newton_steps(problem, z, n_steps, jacobian, tol, max_step)
    return z, val, hessian_core(problem, z, jacobian)


# Where the search for the unconstrained mode starts a box-bounded parameter at most (logit 4: 1.8 % of the
# box from its edge), and the longest step it takes in any coordinate (about the logistic prior's sd, 1.8).
Z_START_MAX = 4.0
LAPLACE_MAX_STEP = 2.0


def laplace_mode(problem: Problem, z_map, n_steps: int = 16):
    """The unconstrained mode (Jacobian included) from the physical-space MAP ``z_map``: (z, log density,
    curvature), as :func:`newton_mode` from ``z_map`` with box-bounded parameters pulled in to
    |z| ≤ ``Z_START_MAX`` and steps no longer than ``LAPLACE_MAX_STEP``.

    Why: a label the spectrum hardly constrains can have its physical MAP on the box edge (z ≈ ±27 in
    float64); there the unconstrained density is flat to e^-27 and its curvature is no guide, so Newton
    steps from there stall or overshoot (seen: [Li/Fe] left at z = 27 with the posterior at 0.7 ± 1.8,
    which made the Laplace approximation useless as an importance-sampling proposal and a poor start for
    the chains)."""
    boxed = problem.prior.boxed  # static: the bounds' values may be traced
    z0 = jnp.where(boxed, jnp.clip(z_map, -Z_START_MAX, Z_START_MAX), z_map)
    return newton_mode(problem, z0, n_steps, True, max_step=LAPLACE_MAX_STEP)


_laplace_mode = eqx.filter_jit(laplace_mode)


def newton_steps(problem: Problem, z, n_steps: int, jacobian: bool, tol: float = 1e-3, max_step: float = math.inf):
    """The loop of :func:`newton_mode`: (z, log density, steps taken, converged: stopped by ``tol``, or no
    step gains even with the heaviest damping); no trial step moves any coordinate by more than ``max_step``.

    Each step tries the Gauss–Newton step, its half, and Levenberg–Marquardt steps (A + λ diag A) dz = g for
    a ladder of λ, all at once: a nearly flat direction (a label the spectrum hardly constrains, or the edge
    of the box in the physical-space objective) makes the full step far too long, and shortening it along
    its own direction does not help; damping does. When no trial gains, the ladder's λ grow ×100 and the
    step is retried (a trust region shrinking towards a short gradient step), rather than stopping there:
    with a fixed ladder one start in two of The Payne's labels-only problem stopped short of the optimum,
    some after one step (benchmarks/map_vs_curve_fit.py). (Taking the first trial that gains a quarter of
    its predicted gain saved 10 % of the time but missed the optimum on 3 of 20 mocks: benchmarks/README.md.)
    """
    f = problem.log_density if jacobian else problem.log_posterior

    def step(carry):
        z, val, i, _, damping = carry
        g = jax.grad(f)(z)
        a = -0.5 * (h := step_curvature(problem, z, jacobian, g)) - 0.5 * h.T
        w, v = jnp.linalg.eigh(a)
        w = jnp.maximum(w, 1e-8 * jnp.maximum(1.0, jnp.max(jnp.abs(w))))
        dz = v @ ((v.T @ g) / w)
        scale = jnp.maximum(jnp.diag(a), 1e-8 * jnp.maximum(1.0, jnp.max(jnp.diag(a))))
        undamped = jnp.stack([frac * dz for frac in _NEWTON_FRACTIONS])
        # the trials are mapped, not listed: a list compiles the solve and the log density once per trial
        damped = jax.vmap(lambda lam: jnp.linalg.solve(a + damping * lam * jnp.diag(scale), g))(
            jnp.asarray(_LM_DAMPING, dtype=z.dtype)
        )
        steps = jnp.concatenate([undamped, damped])
        cand = z + steps * jnp.minimum(1.0, max_step / jnp.maximum(jnp.max(jnp.abs(steps), axis=1), 1e-300))[:, None]
        vals = map_lanes(f, cand)
        vals = jnp.where(jnp.isfinite(vals), vals, -jnp.inf)
        k = jnp.argmax(vals)
        better = vals[k] > val
        z_new = jnp.where(better, cand[k], z)
        new_damping = jnp.where(better, jnp.maximum(damping / _DAMPING_DOWN, 1.0), damping * _DAMPING_UP)
        # converged when the quadratic model promises less than tol (the Newton decrement ½ gᵀA⁻¹g), not when a
        # step gains little: a heavily damped step gains little anywhere
        done = (0.5 * jnp.dot(g, dz) < tol) | (new_damping > _DAMPING_MAX)
        return z_new, jnp.where(better, vals[k], val), i + 1, done, new_damping

    def running(carry):
        return (carry[2] < n_steps) & ~carry[3]

    init = (z, f(z), jnp.asarray(0), jnp.asarray(False), jnp.asarray(1.0, dtype=z.dtype))
    z, val, i, done, _ = jax.lax.while_loop(running, step, init)
    return z, val, i, done


# Gauss–Newton steps at most from a start carried to convergence
POLISH_STEPS = 16


def polish_starts(problem: Problem, zs, values, jacobian: bool, n_steps=POLISH_STEPS):
    """Damped Gauss–Newton steps (at most ``n_steps``: one number, or an array of one per start) from each of the
    starts ``zs`` (:func:`.lanes.map_lanes`); a start keeps its point and value where the polish does not improve
    it. Polishing every start makes the final values compare local optima (``MAPResult.n_starts_agreeing``).
    Returns (z, values, steps, converged) per start."""
    budgets = jnp.broadcast_to(jnp.asarray(n_steps), zs.shape[:1])
    zp, vp, steps, done = map_lanes(lambda z, n: newton_steps(problem, z, n, jacobian), zs, budgets)
    better = jnp.isfinite(vp) & (vp >= values)
    return jnp.where(better[:, None], zp, zs), jnp.where(better, vp, values), steps, done


_polish_starts = eqx.filter_jit(polish_starts)

# Successive halving of the starts: every start takes SCREEN_STEPS Gauss–Newton steps, then only the better half
# is carried to convergence (a fixed number, so one compiled program serves every spectrum).
SCREEN_STEPS = 3


def carried_to_convergence(n_starts: int) -> int:
    """How many of ``n_starts`` starts :func:`find_map` polishes to convergence (by default, screening on)."""
    return n_starts if n_starts <= 2 else (n_starts + 1) // 2


def _screened_polish(problem: Problem, zs, values, jacobian: bool, screen: bool, say=lambda text: None):
    """:func:`polish_starts` with successive halving when ``screen`` and there are more than two starts; the
    starts dropped keep their screening point, value and step count (not converged unless they were).
    ``say``: a progress callback, called as each phase begins."""
    # every phase runs one compiled program: all n starts, each with its own step budget (an array, so not part of
    # the program); a start dropped by the screening gets 0 steps and its result is not used
    n = zs.shape[0]
    if not screen or carried_to_convergence(n) == n:
        say(f"MAP: Gauss–Newton steps from {n} starts to convergence")
        return _polish_starts(problem, zs, values, jacobian, jnp.full(n, POLISH_STEPS, dtype=jnp.int32))
    say(f"MAP: screening {n} starts ({SCREEN_STEPS} Gauss–Newton steps each)")
    zs, values, steps, conv = _polish_starts(problem, zs, values, jacobian, jnp.full(n, SCREEN_STEPS, dtype=jnp.int32))
    say(f"MAP: carrying the best {carried_to_convergence(n)} of {n} starts to convergence")
    keep = jnp.asarray(np.argsort(-np.asarray(values))[: carried_to_convergence(n)])
    budgets = jnp.zeros(n, dtype=jnp.int32).at[keep].set(POLISH_STEPS)
    zk, vk, sk, ck = (a[keep] for a in _polish_starts(problem, zs, values, jacobian, budgets))
    return zs.at[keep].set(zk), values.at[keep].set(vk), steps.at[keep].add(sk), conv.at[keep].set(ck)


def screened_polish(problem: Problem, zs, values, jacobian: bool, screen: bool = True):
    """The pure (traceable, vmappable) form of the screened polish :func:`find_map` runs: every start takes
    ``SCREEN_STEPS`` steps, the better half (:func:`carried_to_convergence`) goes on to convergence. Used by
    :mod:`.batch` under ``vmap`` across spectra, so the batched path finds the same optimum as one spectrum."""
    n = zs.shape[0]
    k = carried_to_convergence(n)
    if not screen or k == n:
        return polish_starts(problem, zs, values, jacobian)
    zs, values, steps, conv = polish_starts(problem, zs, values, jacobian, SCREEN_STEPS)
    keep = jnp.argsort(-jnp.where(jnp.isfinite(values), values, -jnp.inf))[:k]
    zk, vk, sk, ck = polish_starts(problem, zs[keep], values[keep], jacobian)
    return zs.at[keep].set(zk), values.at[keep].set(vk), steps.at[keep].add(sk), conv.at[keep].set(ck)


def find_map(
    problem: Problem,
    *,
    n_starts: int = 4,
    seed: int = 0,
    max_iter: int = 0,
    tol: float = 1e-3,
    jacobian: bool = False,
    starts: Float[Array, "s n"] | None = None,
    compute_hessian: bool = False,
    polish: bool = True,
    screen: bool = True,
    progress: Callable[[str], Any] | None = None,
) -> MAPResult:
    """Multi-start MAP. ``starts`` (unconstrained, (s, n_free)) overrides the automatic starts
    (:func:`start_points`).

    From every start, ``max_iter`` L-BFGS iterations (default none), then (``polish``) damped Gauss–Newton
    steps to the local optimum; with ``screen`` and more than two starts, every start takes ``SCREEN_STEPS``
    steps and only the better half goes on to convergence. On 20 synthesizer mocks with the shipped Payne
    (S/N 100, ``benchmarks/map_starts.py``), 4 screened data-driven starts reached the optimum of a 16-start ×
    100-iteration reference on 20 of 20 in 0.32 s per spectrum (all 4 to convergence: 20 of 20, 0.42 s); 30
    L-BFGS iterations per start first changed nothing and took 0.57 s; one start alone found it for 13 of 20.

    Folded parameters (v sin i, v macro: :data:`.priors.FOLDED`) are optimised in the logit coordinates of their box
    (:meth:`.density.Problem.unfolded`; ``starts`` and the result are in ``problem``'s): the physical MAP does not
    depend on coordinates, only the path to it does, and from the start at 5 km/s the logit one (steps in ~ln v sin i)
    reaches fast rotators in fewer steps: folded, the screened 4 starts missed the optimum of 3 of 90 Payne mocks
    (all 11-14 km/s), logit none. The fold is for the unconstrained density that Laplace and the samplers see.

    ``progress``: called with a few words as each phase begins (choosing the starts, L-BFGS, screening,
    convergence), e.g. :meth:`stellarinf.pipeline.Heartbeat.say`; each phase is one compiled program, compiled
    on its first call (tens of seconds on a CPU), so this is all the progress there is to report."""
    say = progress or (lambda text: None)
    t0 = time.perf_counter()
    if starts is None:
        say(f"MAP: choosing {n_starts} starts from the data")
    z0s = jnp.asarray(start_points(problem, n_starts, seed) if starts is None else starts, dtype=jnp.float64)
    target, problem = problem, problem.unfolded()  # optimise in logit coordinates (docstring), report in target's
    z0s = problem.z_from(target, z0s)
    if max_iter > 0:
        say(f"MAP: L-BFGS from {z0s.shape[0]} starts (compiling, then at most {max_iter} iterations)")
    zs, values, n_iter, conv = _optimise_starts(problem, z0s, max_iter, tol, jacobian)
    values = jnp.where(jnp.isfinite(values), values, -jnp.inf)
    if polish:
        zs, values, steps, conv = _screened_polish(problem, zs, values, jacobian, screen, say)
        n_iter = n_iter + steps
    return _map_result(target, problem, zs, values, conv, n_iter, t0, jacobian, compute_hessian)


def refine_map(problem: Problem, previous: MAPResult) -> MAPResult:
    """The MAP of ``problem`` from a search of the same parameters (``previous``, e.g. :func:`find_map` before a few
    outlier pixels were masked): the previous best point is carried to convergence again, the other starts' final
    points (:attr:`MAPResult.final_z`) are only evaluated, so ``n_starts_agreeing`` compares the same local optima.

    Why not :func:`find_map` again: a few pixels fewer hardly move the optimum, and a new search repeats all of its
    work (95 s of a four-arm TransformerPayne fit here; from the previous final points, still ~65 s, mostly spent
    re-screening starts that had lost). The polish runs the program :func:`find_map` compiled for ``problem``'s
    shapes, with a step budget of zero for every start but the best."""
    if previous.final_z is None:
        raise ValueError("refine_map needs a MAPResult that kept every start's final point (final_z)")
    t0 = time.perf_counter()
    target, problem = problem, problem.unfolded()
    zs = problem.z_from(target, jnp.asarray(previous.final_z, dtype=jnp.float64))
    zs, values, _, _ = _optimise_starts(problem, zs, 0, 1e-3, previous.jacobian)  # the points' values, no steps
    values = jnp.where(jnp.isfinite(values), values, -jnp.inf)
    best = int(np.argmax(np.asarray(values)))
    budgets = jnp.zeros(zs.shape[0], dtype=jnp.int32).at[best].set(POLISH_STEPS)
    zs, values, steps, conv = _polish_starts(problem, zs, values, previous.jacobian, budgets)
    conv = np.where(np.asarray(budgets) > 0, np.asarray(conv), previous.converged)
    n_iter = np.asarray(previous.n_iterations) + np.asarray(steps)
    return _map_result(target, problem, zs, values, conv, n_iter, t0, previous.jacobian, False)


def _map_result(target, problem, zs, values, conv, n_iter, t0, jacobian, compute_hessian) -> MAPResult:
    """The MAPResult of the final points ``zs`` (in ``problem``'s coordinates) reported in ``target``'s."""
    zs, values = np.array(zs), np.array(values)
    best = int(np.argmax(values))
    final = np.asarray(target.z_from(problem, jnp.asarray(zs)))
    z = final[best]
    hess = np.asarray(hessian_at(target, jnp.asarray(z), jacobian)) if compute_hessian else None
    wall = time.perf_counter() - t0
    x = target.to_numpy_params(z)
    return MAPResult(
        names=target.names,
        params={n: float(v) for n, v in x.items()},
        z=z,
        log_posterior=float(values[best]),
        hessian=hess,
        start_values=values,
        converged=np.asarray(conv),
        n_iterations=np.asarray(n_iter),
        wall_time=wall,
        jacobian=jacobian,
        final_z=final,
    )
