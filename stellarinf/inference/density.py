"""The log posterior density on unconstrained space: what BlackJAX, MAP and Laplace work with.

:class:`Problem` binds an observation model (any :class:`~stellarinf.observe.protocol.ObservationLike`: an
:class:`~stellarinf.observe.model.ObservationModel`, or a
:class:`~stellarinf.observe.multi_arm.MultiArmObservationModel` for several arms) to priors and a choice of
free parameters. It is an Equinox module (a pytree), so jitted functions take it as an argument and
compile once per spectrum *shape* and prior *structure*: the priors' numbers (bounds, a Gaussian's mean and width) are
array leaves like the data, so a per-star prior compiles nothing new (:class:`~stellarinf.inference.priors.PriorArrays`).
Many problems of the same shape can be stacked and vmapped (see :mod:`stellarinf.inference.batch`).

``log_density(z) = log prior(x(z)) + log |dx/dz| + log likelihood(x(z))`` with ``x(z)`` the bounded
transform of :mod:`stellarinf.inference.transforms`; ``z`` is a flat array ordered as ``names``. A folded parameter
(v sin i, v macro: :data:`~stellarinf.inference.priors.FOLDED`) is a signed value in ``z`` and its magnitude everywhere else:
:meth:`Problem.constrain` and :meth:`Problem.to_numpy_params` give v sin i itself, so the observation model, draws,
MAP and summaries never see the sign.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..errors import StellarinfError
from ..observe.protocol import ObservationLike
from . import transforms
from .priors import Prior, PriorArrays, PriorError, resolve_priors


class Problem(eqx.Module):
    """Observation model + priors + which parameters are free (the rest are held fixed).

    ``Problem(obs_model, names, priors, fixed)``: ``priors`` is a :class:`~.priors.PriorArrays` or the
    :class:`~.priors.Prior` of each name. The priors' numbers are array leaves (traced by a jitted function that
    takes the problem) and only their structure (Gaussian or uniform, which bounds are finite, folded) is static, so
    problems that differ only in prior numbers (a star's own log g prior) reuse every compiled program."""

    obs_model: ObservationLike
    names: tuple[str, ...] = eqx.field(static=True)
    prior: PriorArrays  # priors of the free parameters (order of ``names``)
    fixed: dict[str, Any]

    def __init__(self, obs_model, names, priors, fixed):
        self.obs_model = obs_model
        self.names = tuple(names)
        self.prior = priors if isinstance(priors, PriorArrays) else _prior_arrays(tuple(priors))
        self.fixed = fixed
        if len(self.prior) != len(self.names):
            raise PriorError(f"{len(self.names)} free parameters but {len(self.prior)} priors")

    @property
    def prior_specs(self) -> tuple[Prior, ...]:
        """The :class:`~.priors.Prior` of each free parameter (eager: not inside ``jit``, where the numbers are
        traced), for reports."""
        return self.prior.to_priors()

    # ---- construction (eager, validating) -------------------------------------------------------
    @classmethod
    def build(
        cls,
        obs_model,
        priors=None,
        *,
        free: Sequence[str] | None = None,
        fixed: Mapping[str, float] | None = None,
    ) -> "Problem":
        """``priors``: overrides (texts like ``"logg=4.4+-0.1"`` or a mapping); ``free``: parameters to
        fit (default: all of ``obs_model.param_names`` not in ``fixed``); ``fixed``: name → value."""
        all_names = tuple(obs_model.param_names)
        bounds = _bounds_of(obs_model, all_names)
        fixed = dict(fixed or {})
        for name in fixed:
            if name not in all_names:
                raise PriorError(f"cannot fix unknown parameter {name!r}; this fit has {', '.join(all_names)}")
        if free is None:
            free = tuple(n for n in all_names if n not in fixed)
        else:
            free = tuple(free)
            unknown = [n for n in free if n not in all_names]
            if unknown:
                raise PriorError(f"unknown free parameter(s) {unknown}; this fit has {', '.join(all_names)}")
            clash = [n for n in free if n in fixed]
            if clash:
                raise PriorError(f"parameter(s) {clash} are both free and fixed; choose one")
        if not free:
            raise PriorError("no free parameters: leave at least one parameter free")
        specs = resolve_priors(bounds, priors)
        defaults = resolve_priors(bounds)
        unused = [n for n in specs if n not in free and specs[n] != defaults[n]]
        if unused:
            raise PriorError(
                f"prior(s) given for {unused}, which are not free in this fit; free them or drop the prior"
            )
        init = dict(obs_model.initial_params())
        fixed_values = {}
        for n in all_names:
            if n in free:
                continue
            v = float(fixed.get(n, init.get(n, np.nan)))
            lo, hi = bounds[n]
            if not np.isfinite(v):
                raise PriorError(f"parameter {n!r} is not free and has no value; pass fixed={{'{n}': value}}")
            if not lo <= v <= hi:
                raise PriorError(f"fixed {n}={v:g} is outside its range [{lo:g}, {hi:g}]; choose a value inside")
            fixed_values[n] = jnp.asarray(v, dtype=jnp.float64)
        prior_specs = tuple(specs[n] for n in free)
        return cls(obs_model, free, prior_specs, fixed_values)

    # ---- pure JAX -------------------------------------------------------------------------------
    @property
    def n_free(self) -> int:
        return len(self.names)

    def constrain(self, z: Float[Array, "n"]) -> dict[str, Float[Array, ""]]:
        """Unconstrained vector → parameter dict (free + fixed), the ObservationModel's input."""
        x = self.prior.to_constrained(z)
        params = dict(self.fixed)
        params.update({n: x[..., i] for i, n in enumerate(self.names)})
        return params

    def to_vector(self, params: Mapping[str, Any]) -> Float[Array, "n"]:
        """Parameter dict → constrained vector of the free parameters (order of ``names``)."""
        return jnp.stack([jnp.asarray(params[n], dtype=jnp.float64) for n in self.names], axis=-1)

    def unconstrain(self, params: Mapping[str, Any]) -> Float[Array, "n"]:
        """Parameter dict (values strictly inside the box) → unconstrained vector."""
        return self.prior.to_unconstrained(self.to_vector(params))

    def log_likelihood(self, z: Float[Array, "n"]) -> Float[Array, ""]:
        return self.obs_model.log_likelihood(self.constrain(z))

    def log_prior(self, z: Float[Array, "n"]) -> Float[Array, ""]:
        """Log prior density of the constrained parameters (no Jacobian)."""
        return self.prior.log_prob(self.prior.to_constrained(z))

    def log_jacobian(self, z: Float[Array, "n"]) -> Float[Array, ""]:
        return jnp.sum(self.prior.log_abs_det_jacobian(z))

    def log_density(self, z: Float[Array, "n"]) -> Float[Array, ""]:
        """Log posterior density of ``z`` (unconstrained, Jacobian included): sample this."""
        lp = self.log_prior(z) + self.log_jacobian(z) + self.log_likelihood(z)
        return jnp.where(jnp.isnan(lp), -jnp.inf, lp)

    # ---- least-squares split, for Gauss–Newton curvature ----------------------------------------
    @property
    def has_residuals(self) -> bool:
        """Whether the likelihood splits as −½|ρ(z)|² + (slowly varying normalisation)."""
        return hasattr(self.obs_model, "likelihood_terms")

    def whitened_residuals(self, z: Float[Array, "n"]) -> Float[Array, "n_res"]:
        """ρ(z) with ``log_likelihood = −½|ρ|² + normalisation`` (see ``ObservationModel.likelihood_terms``)."""
        return self.obs_model.likelihood_terms(self.constrain(z))[0]

    def log_density_remainder(self, z: Float[Array, "n"], jacobian: bool = True) -> Float[Array, ""]:
        """``log_density + ½|ρ|²`` (``log_posterior + ½|ρ|²`` without ``jacobian``): prior, Jacobian and the
        likelihood's normalisation, the smooth part a Gauss–Newton step takes exact second derivatives of."""
        norm = self.obs_model.likelihood_terms(self.constrain(z))[1]
        return self.log_prior(z) + (self.log_jacobian(z) if jacobian else 0.0) + norm

    def log_posterior(self, z: Float[Array, "n"]) -> Float[Array, ""]:
        """Log posterior density of the *constrained* parameters at ``x(z)``: its maximum is the MAP."""
        lp = self.log_prior(z) + self.log_likelihood(z)
        return jnp.where(jnp.isnan(lp), -jnp.inf, lp)

    # ---- eager helpers --------------------------------------------------------------------------
    def initial_z(self) -> np.ndarray:
        """The observation model's initial guess moved strictly inside the box, unconstrained."""
        init = dict(self.obs_model.initial_params())
        lo, hi = np.asarray(self.prior.lower), np.asarray(self.prior.upper)
        x = np.array(
            [
                float(init.get(n, 0.5 * (lo[i] + hi[i]) if np.isfinite(hi[i] - lo[i]) else 0.0))
                for i, n in enumerate(self.names)
            ]
        )
        x = transforms.clip_to_interior(x, lo, hi, margin=1e-3)
        return np.array(self.prior.to_unconstrained(x))

    def to_numpy_params(self, z) -> dict[str, np.ndarray]:
        """Constrained free parameters as NumPy arrays (any leading batch shape of ``z``)."""
        x = np.asarray(self.prior.to_constrained(jnp.asarray(z)))
        return {n: x[..., i] for i, n in enumerate(self.names)}

    def unfolded(self) -> "Problem":
        """The same posterior with no parameter folded: every box logit-scaled (the MAP's coordinates:
        :func:`~stellarinf.inference.map.find_map` says why); ``self`` if nothing is folded."""
        if not any(self.prior.folded):
            return self
        return Problem(self.obs_model, self.names, self.prior.unfolded(), self.fixed)

    def with_obs_model(self, obs_model) -> "Problem":
        """The same parameters and priors over another observation model of the same data (e.g. its emulator
        error scaled to the star: :mod:`stellarinf.observe.error_scale`)."""
        return Problem(obs_model, self.names, self.prior, self.fixed)

    def z_from(self, other: "Problem", z: Float[Array, "... n"]) -> Float[Array, "... n"]:
        """``z`` of ``other`` (the same parameters, other coordinates, e.g. :meth:`unfolded`) in this problem's
        coordinates; a value ``other`` puts on a bound (float rounding at |z| ≳ 37) is moved 1e-12 of the span inside."""
        po, ps = other.prior, self.prior
        x = po.to_constrained(z)
        boxed = ps.boxed
        span = jnp.where(boxed, jnp.where(boxed, ps.upper, 1.0) - jnp.where(boxed, ps.lower, 0.0), 1.0)
        x = jnp.clip(x, ps.lower + 1e-12 * span, ps.upper - 1e-12 * span)
        return ps.to_unconstrained(x)

    def bounds(self) -> dict[str, tuple[float, float]]:
        return {n: (float(self.prior.lower[i]), float(self.prior.upper[i])) for i, n in enumerate(self.names)}


@functools.lru_cache(maxsize=256)
def _prior_arrays(specs: tuple[Prior, ...]) -> PriorArrays:
    return PriorArrays.from_priors(dict(enumerate(specs)), range(len(specs)))


def _bounds_of(obs_model, names) -> dict[str, tuple[float, float]]:
    raw = dict(obs_model.default_bounds())
    missing = [n for n in names if n not in raw]
    if missing:
        raise StellarinfError(f"the observation model gives no bounds for {missing}; this is a bug in the model")
    return {n: (float(raw[n][0]), float(raw[n][1])) for n in names}


def make_log_density(obs_model, priors=None, *, free=None, fixed=None):
    """``(logdensity_fn, unflatten)`` for BlackJAX-style use.

    ``logdensity_fn(z)`` takes the unconstrained vector (or a dict name → unconstrained value) and
    returns the log posterior density (Jacobian included); ``unflatten(z)`` gives the dict of physical
    parameters (free + fixed) that the observation model takes. ``logdensity_fn.problem`` is the
    :class:`Problem` behind it.
    """
    problem = obs_model if isinstance(obs_model, Problem) else Problem.build(obs_model, priors, free=free, fixed=fixed)

    def logdensity_fn(z):
        if isinstance(z, Mapping):
            z = jnp.stack([jnp.asarray(z[n]) for n in problem.names], axis=-1)
        return problem.log_density(z)

    logdensity_fn.problem = problem
    return logdensity_fn, problem.constrain
