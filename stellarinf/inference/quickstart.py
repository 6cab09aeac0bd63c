"""A data-driven starting point for MAP: radial velocity by a template scan, labels from a library of
emulator spectra.

Both steps score a trial by the spectrum's likelihood with the continuum fitted and the emulator's
correlated error modes left out, which is cheap: the templates are evaluated once, on one rest-frame grid
wide enough for every RV in the bounds, so a trial RV costs only an interpolation to the observed pixels
and a small linear solve (≈ 0.1 ms), not a pass through the emulator.

1. RV: scan the RV bounds with the template at the starting labels (a cross-correlation in effect; the
   likelihood in RV is flat beyond a line width, so a local optimiser cannot find the lines).
2. Labels: score ``n_library`` prior draws of the labels (plus the starting labels) at that RV; the best
   few re-scan the RV with their own template, and the best pair is the start.

:func:`stellarinf.inference.map.find_map` starts from here and needs only Gauss–Newton steps when the
start is in the right basin (the common case); multi-start remains for robustness.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..observe.build import cubic_weights
from ..observe.continuum import gaussian_terms, linear_marginal_terms
from ..wavelength import SPEED_OF_LIGHT_KMS
from . import transforms
from .density import Problem

_C = SPEED_OF_LIGHT_KMS
_WIDE_PRIOR_SD = 1e6  # a continuum coefficient left free (profiled) while scoring


def supports_quick_start(problem: Problem) -> bool:
    """Whether ``problem`` is built on an :class:`~stellarinf.observe.model.ObservationModel` (templates), or on a
    composite of them (several arms: the quick start then runs on one arm, :func:`arm_subproblem`)."""
    om = problem.obs_model
    if hasattr(om, "arms"):
        return all(_single(a) for a in om.arms)
    return _single(om)


def _single(om) -> bool:
    return all(hasattr(om, a) for a in ("dv_fine", "upsample", "interp_weight", "basis", "label_names"))


def arm_subproblem(problem: Problem) -> Problem:
    """For a multi-arm problem: the same posterior restricted to one arm (the free parameters that arm sees, the
    same priors; the others held at their fixed values). Its quick start gives the shared parameters (labels,
    RV, broadening) a data-driven start for the whole fit.

    The arm is the one with the most pixels, unless more than half of them are masked (then the one with the
    most used pixels): chosen by the layout, not by a few masked pixels, so every star observed with the same
    arms runs the same compiled quick start. By used pixels alone, GALAH's green and red arms (2,629 and 2,612
    pixels on the observed Sun) trade places once 18 outliers are masked in green, and each switch compiles
    another quick start."""
    om = problem.obs_model
    sizes = [int(np.asarray(a.weight).shape[0]) for a in om.arms]
    used = [int(np.sum(np.asarray(a.weight) > 0)) for a in om.arms]
    by_size = sorted(range(len(sizes)), key=lambda k: -sizes[k])
    i = next((k for k in by_size if 2 * used[k] >= sizes[k]), int(np.argmax(used)))
    arm = om.arms[i]
    names = tuple(n for n in problem.names if n in arm.param_names)
    specs = problem.prior.select([j for j, n in enumerate(problem.names) if n in arm.param_names])
    fixed = {k: v for k, v in problem.fixed.items() if k in arm.param_names}
    if "rv" in fixed and f"rv_offset_{om.arm_ids[i]}" in om.rv_offset_names:
        fixed["rv"] = om.arm_params({**problem.fixed}, i)["rv"]
    return Problem(arm, names, specs, fixed)


def _wide_grid(problem: Problem) -> tuple[float, int]:
    """(ln λ of the first point, number of points) of a rest-frame grid at the fine step that covers the
    observed pixels for every RV in the bounds, plus the broadening kernel's reach."""
    om = problem.obs_model
    bounds = dict(problem.bounds())
    rv_lo, rv_hi = bounds.get("rv", (dict(om.fixed).get("rv", 0.0),) * 2)
    margin = om.max_velocity + 4.0 * om.dv_fine
    wl = np.asarray(om.wavelength)
    ln_lo = math.log(wl.min()) - math.log1p(rv_hi / _C) - margin / _C
    ln_hi = math.log(wl.max()) - math.log1p(rv_lo / _C) + margin / _C
    return ln_lo, int(math.ceil((ln_hi - ln_lo) * _C / om.dv_fine)) + 1


def _cheap_templates(om) -> bool:
    """Whether a template costs a matrix product (a Payne on its native pixels), not a full network pass."""
    kind = getattr(om.emulator, "network_kind", None)  # an emulator's entry in emulators/kinds.py
    return bool(om.upsample) and (kind is None or kind.cheap_native_flux)


def _templates(
    problem: Problem, labels: Float[Array, "k n_labels"], params, ln_lo: float, n: int
) -> Float[Array, "k n"]:
    """Rest-frame model spectra on the wide grid for each row of ``labels``, broadened as ``params`` say."""
    om = problem.obs_model
    if om.upsample:
        ln_start, ln_step = om.emulator.native_log_grid
        start = (ln_lo - ln_start) / ln_step

        def upsampled(lab):
            return om.emulator.flux_upsampled(lab, start, om.upsample, n)

        # a TransformerPayne template is a full forward pass: bound the memory as below
        flux = jax.vmap(upsampled)(labels) if _cheap_templates(om) else jax.lax.map(upsampled, labels, batch_size=16)
    else:
        wave = jnp.clip(jnp.exp(ln_lo + om.dv_fine / _C * jnp.arange(n)), *om.model_range)
        # an emulator evaluated at arbitrary wavelengths (TransformerPayne) is costly: bound the memory
        flux = jax.lax.map(lambda lab: om.emulator.flux(lab, wave), labels, batch_size=16)
    return om.broaden(jnp.asarray(flux, dtype=jnp.float64), params)


def _at_pixels(problem: Problem, template: Float[Array, "n"], ln_lo: float, rv) -> Float[Array, "n_pix"]:
    """A rest-frame template seen at the observed pixels for a star at ``rv`` (4-point Lagrange)."""
    om = problem.obs_model
    u = (jnp.log(om.wavelength) - jnp.log1p(rv / _C) - ln_lo) * (_C / om.dv_fine)
    idx, w = cubic_weights(u, template.shape[0])
    return jnp.sum(template[idx] * w, axis=1)


def _score(problem: Problem, model: Float[Array, "n_pix"], variance: Float[Array, "n_pix"]) -> Float[Array, ""]:
    """Log-likelihood of the data for a normalised ``model`` with the continuum fitted (no error modes)."""
    om = problem.obs_model
    if om.basis.shape[1] == 0:
        rho, norm = gaussian_terms(om.flux, model, variance, om.weight)
    else:
        sd = om.prior_sd if om.continuum_mode == "marginalise" else jnp.full_like(om.prior_sd, _WIDE_PRIOR_SD)
        rho, norm = linear_marginal_terms(om.flux, model[:, None] * om.basis, variance, om.weight, om.prior_mean, sd)
    value = -0.5 * jnp.sum(rho**2) + norm
    return jnp.where(jnp.isfinite(value), value, -jnp.inf)


def _scan_rv(problem, template, ln_lo, rv_grid, variance):
    """Scores of one template over the RV grid, and the best RV (parabola through the peak's neighbours)."""
    scores = jax.vmap(lambda v: _score(problem, _at_pixels(problem, template, ln_lo, v), variance))(rv_grid)
    k = jnp.clip(jnp.argmax(scores), 1, rv_grid.shape[0] - 2)
    a, b, c = scores[k - 1], scores[k], scores[k + 1]
    curvature = a - 2 * b + c
    offset = jnp.where(curvature < 0, 0.5 * (a - c) / jnp.where(curvature < 0, curvature, -1.0), 0.0)
    step = rv_grid[1] - rv_grid[0]
    rv = jnp.clip(rv_grid[k] + jnp.clip(offset, -1.0, 1.0) * step, rv_grid[0], rv_grid[-1])
    return jnp.max(scores), rv


@eqx.filter_jit
def _quick_start(problem: Problem, z0, library_x, rv_grid, ln_lo, n: int, n_refine: int):
    """Pure core of :func:`quick_starts`: (x (n_refine, n_free) constrained, score (n_refine,)), best first.
    ``library_x``: (k, n_free) constrained trial points (labels varied, the rest as in ``z0``)."""
    om = problem.obs_model
    params0 = problem.constrain(z0)
    variance = om.variance(params0)

    def labels_of(x):
        params = problem.constrain(problem.prior.to_unconstrained(x))
        return om.labels(params)

    x0 = problem.prior.to_constrained(z0)
    candidates = jnp.concatenate([x0[None], library_x], axis=0)
    templates = _templates(problem, jax.vmap(labels_of)(candidates), params0, ln_lo, n)
    has_rv = "rv" in problem.names
    if has_rv:
        i_rv = problem.names.index("rv")
        _, rv0 = _scan_rv(problem, templates[0], ln_lo, rv_grid, variance)
    else:
        rv0 = om.value(params0, "rv")
    # the library at the first RV, then the best few re-scan the RV with their own template
    scores = jax.vmap(lambda tpl: _score(problem, _at_pixels(problem, tpl, ln_lo, rv0), variance))(templates)
    prior = jax.vmap(lambda x: problem.prior.log_prob(x))(candidates)
    best = jnp.argsort(-(scores + prior))[:n_refine]
    if has_rv:
        refined, rvs = jax.vmap(lambda tpl: _scan_rv(problem, tpl, ln_lo, rv_grid, variance))(templates[best])
    else:
        refined, rvs = scores[best], jnp.full(n_refine, rv0)
    total = refined + prior[best]
    order = jnp.argsort(-total)
    x = candidates[best[order]]
    if has_rv:
        x = x.at[:, i_rv].set(rvs[order])
    return x, total[order]


def rv_grid_for(problem: Problem, step_kms: float | None = None) -> np.ndarray:
    """RV trial values across the bounds (default step: the fine grid's, at most 2 km/s)."""
    if "rv" not in problem.names:
        return np.zeros(3)
    lo, hi = problem.bounds()["rv"]
    step = min(problem.obs_model.dv_fine, 2.0) if step_kms is None else float(step_kms)
    n = int(np.ceil((hi - lo) / step)) + 1
    return np.linspace(lo, hi, max(n, 3))


def library_points(problem: Problem, z0: np.ndarray, n_library: int, seed: int = 0) -> np.ndarray:
    """(n_library, n_free) constrained trial points: the labels drawn from their priors, everything else
    (RV, broadening, continuum, jitter) as in ``z0``."""
    prior = problem.prior
    x0 = np.asarray(prior.to_constrained(jnp.asarray(z0)))
    out = np.repeat(x0[None], n_library, axis=0)
    if n_library == 0:
        return out
    draws = transforms.clip_to_interior(
        prior.sample(np.random.default_rng(seed), n_library), prior.lower, prior.upper, margin=1e-3
    )
    labels = [i for i, n in enumerate(problem.names) if n in problem.obs_model.label_names]
    out[:, labels] = draws[:, labels]
    return out


def quick_starts(
    problem: Problem,
    n_starts: int = 1,
    z0: np.ndarray | None = None,
    *,
    n_library: int | None = None,
    seed: int = 0,
    rv_step_kms: float | None = None,
) -> np.ndarray:
    """Unconstrained starts (n_starts, n_free), best first, from the data: RV by a template scan, labels
    from ``n_library`` prior draws (and ``z0``'s) scored at that RV; the best ``n_starts`` re-scan the RV
    with their own template. ``z0``: the point whose other parameters are kept (default:
    :meth:`Problem.initial_z`). ``n_library=0`` only scans the RV of ``z0``; default 256 for a Payne on its
    native grid (a template costs ~0.1 ms), 32 for an emulator evaluated at arbitrary wavelengths
    (TransformerPayne: a template is a full forward pass)."""
    if not supports_quick_start(problem):
        raise TypeError("quick_starts needs a Problem built on an ObservationModel")
    if n_starts < 1:
        raise ValueError(f"n_starts must be ≥ 1, got {n_starts}")
    z0 = problem.initial_z() if z0 is None else np.asarray(z0, dtype=np.float64)
    if hasattr(problem.obs_model, "arms"):  # several arms: the quick start of one arm sets the shared parameters
        sub = arm_subproblem(problem)
        cols = [problem.names.index(n) for n in sub.names]
        zs = quick_starts(sub, n_starts, z0[cols], n_library=n_library, seed=seed, rv_step_kms=rv_step_kms)
        out = np.repeat(z0[None], zs.shape[0], axis=0)
        out[:, cols] = zs
        return out
    if n_library is None:
        n_library = 256 if _cheap_templates(problem.obs_model) else 32
    ln_lo, n = _wide_grid(problem)
    library = library_points(problem, z0, max(n_library, n_starts - 1), seed)
    rv_grid = jnp.asarray(rv_grid_for(problem, rv_step_kms))
    x, _ = _quick_start(problem, jnp.asarray(z0), jnp.asarray(library), rv_grid, jnp.asarray(ln_lo), n, n_starts)
    prior = problem.prior
    x = transforms.clip_to_interior(np.asarray(x), prior.lower, prior.upper, margin=1e-3)
    return np.asarray(prior.to_unconstrained(x))
