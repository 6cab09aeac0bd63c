"""Bijections between bounded parameters and the unconstrained space samplers and optimisers work in.

Each parameter has a box ``[lower, upper]`` (either end may be infinite):

- both ends finite: ``x = lower + (upper - lower) * sigmoid(z)`` (logit-scaled box);
- only ``lower`` finite: ``x = lower + exp(z)``;
- only ``upper`` finite: ``x = upper - exp(z)``;
- neither: ``x = z``.

These are the same bijections NumPyro's ``biject_to`` uses for ``interval``, ``greater_than``,
``less_than`` and ``real`` supports, so a point in our unconstrained space is the same point NumPyro's
NUTS works with; no sampler can ever leave the box.

Functions are pure JAX and work elementwise on ``(..., n)`` arrays; bounds are NumPy arrays ``(n,)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

_INTERVAL, _LOWER, _UPPER, _REAL = 0, 1, 2, 3


def _kinds(lower, upper):
    lo_f, hi_f = np.isfinite(lower), np.isfinite(upper)
    return np.where(lo_f & hi_f, _INTERVAL, np.where(lo_f, _LOWER, np.where(hi_f, _UPPER, _REAL)))


def _safe(lower, upper):
    """Finite stand-ins for infinite bounds so unused ``where`` branches stay finite (no NaN grads)."""
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    lo = np.where(np.isfinite(lower), lower, 0.0)
    hi = np.where(np.isfinite(upper), upper, 1.0)
    hi = np.where(np.isfinite(lower) & np.isfinite(upper), hi, lo + 1.0)
    return lo, hi


def to_constrained(z: Float[Array, "... n"], lower, upper) -> Float[Array, "... n"]:
    """Unconstrained ``z`` → parameters inside ``[lower, upper]``."""
    kind = _kinds(lower, upper)
    lo, hi = _safe(lower, upper)
    upper_safe = np.where(np.isfinite(upper), upper, 0.0)
    z = jnp.asarray(z)
    interval = lo + (hi - lo) * jax.nn.sigmoid(z)
    # clip the exponent: exp overflows only far outside any sensible region
    zc = jnp.clip(z, -700.0, 700.0)
    return jnp.select(
        [kind == _INTERVAL, kind == _LOWER, kind == _UPPER],
        [interval, lo + jnp.exp(zc), upper_safe - jnp.exp(zc)],
        z,
    )


def to_unconstrained(x: Float[Array, "... n"], lower, upper) -> Float[Array, "... n"]:
    """Parameters inside ``(lower, upper)`` → unconstrained ``z``; values on a bound map to ±inf."""
    kind = _kinds(lower, upper)
    lo, hi = _safe(lower, upper)
    upper_safe = np.where(np.isfinite(upper), upper, 0.0)
    x = jnp.asarray(x)
    u = (x - lo) / (hi - lo)
    interval = jnp.log(u) - jnp.log1p(-u)
    return jnp.select(
        [kind == _INTERVAL, kind == _LOWER, kind == _UPPER],
        [interval, jnp.log(x - lo), jnp.log(upper_safe - x)],
        x,
    )


def log_abs_det_jacobian(z: Float[Array, "... n"], lower, upper) -> Float[Array, "... n"]:
    """Elementwise ``log |dx/dz|`` of :func:`to_constrained` (sum it for the density correction)."""
    kind = _kinds(lower, upper)
    lo, hi = _safe(lower, upper)
    z = jnp.asarray(z)
    interval = jnp.log(hi - lo) + jax.nn.log_sigmoid(z) + jax.nn.log_sigmoid(-z)
    return jnp.select([kind == _INTERVAL, kind == _LOWER, kind == _UPPER], [interval, z, z], jnp.zeros_like(z))


def clip_to_interior(x, lower, upper, margin: float = 1e-6) -> np.ndarray:
    """Move values onto the open box (a fraction ``margin`` of the span inside), so z is finite."""
    x = np.asarray(x, dtype=np.float64)
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    span = np.where(np.isfinite(upper - lower), upper - lower, 1.0)
    lo = np.where(np.isfinite(lower), lower + margin * span, -np.inf)
    hi = np.where(np.isfinite(upper), upper - margin * span, np.inf)
    return np.clip(x, lo, hi)
