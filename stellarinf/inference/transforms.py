"""Bijections between bounded parameters and the unconstrained space samplers and optimisers work in.

Each parameter has a box ``[lower, upper]`` (either end may be infinite):

- both ends finite: ``x = lower + (upper - lower) * sigmoid(z)`` (logit-scaled box);
- only ``lower`` finite: ``x = lower + exp(z)``;
- only ``upper`` finite: ``x = upper - exp(z)``;
- neither: ``x = z``.

These are the same bijections NumPyro's ``biject_to`` uses for ``interval``, ``greater_than``,
``less_than`` and ``real`` supports, so a point in our unconstrained space is the same point NumPyro's
NUTS works with; no sampler can ever leave the box.

**Folded** parameters (``fold``, a finite box; :data:`stellarinf.inference.priors.FOLDED` says which: v sin i and
v macro on ``[0, hi]``) are sampled as a signed value ``v`` on the mirrored box ``[lower - (upper - lower), upper]``, logit-scaled
as above, and used as ``x = lower + |v - lower|``, i.e. ``x = lower + (upper - lower) |tanh(z/2)|``. Why: a v sin i
below the instrument's resolution has its posterior piled against 0, which in the logit coordinate is a long tail
to −∞ that NUTS explores slowly and a Gaussian (Laplace) at the mode describes badly. Broadening depends on v sin i
only through even powers near 0 (a symmetric kernel's width), so the likelihood is smooth in ``v`` through 0 and
that posterior becomes a smooth ridge through ``z = 0``, in the middle of the box. ``v`` and ``-v`` give the same
``x``: a prior density ``p(x)`` on the box is ``p(|v|)/2`` on the mirrored box (for a uniform prior: uniform on it),
so :func:`log_abs_det_jacobian` (the density correction) is ``log |dv/dz| - log 2``, which is the very formula of the
unfolded box. Going back (:func:`to_unconstrained`) takes the branch ``v ≥ lower``; ``x = lower`` maps to ``z = 0``.
Everything users see is ``x`` (v sin i itself), never ``v``.

Functions are pure JAX and work elementwise on ``(..., n)`` arrays. ``fold`` and ``kind`` (which transform: from
which bounds are finite, :func:`bound_kinds`) are static NumPy arrays ``(n,)`` (or scalars); the bound *values* may
be traced (JAX arrays inside ``jit``) when ``kind`` is given, so priors that differ only in their numbers share one
compiled program (:class:`~stellarinf.inference.priors.PriorArrays` passes its static ``kind``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

_INTERVAL, _LOWER, _UPPER, _REAL = 0, 1, 2, 3
# Variance of z = logit((x − lower)/(upper − lower)) when x is uniform on its box (a standard logistic
# distribution; the same for a folded box): data only narrow a posterior, so a variance above this in z is a flat
# direction.
LOGISTIC_VARIANCE = float(np.pi**2 / 3.0)


def bound_kinds(lower_finite, upper_finite) -> np.ndarray:
    """Each parameter's transform (interval, lower, upper or real) from which of its bounds are finite (booleans)."""
    lo_f, hi_f = np.asarray(lower_finite, dtype=bool), np.asarray(upper_finite, dtype=bool)
    return np.where(lo_f & hi_f, _INTERVAL, np.where(lo_f, _LOWER, np.where(hi_f, _UPPER, _REAL)))


def _kinds(lower, upper, kind=None) -> np.ndarray:
    """``kind`` if given (static, e.g. :attr:`.priors.PriorArrays.kind`: the bounds may then be traced), else from
    the (concrete) bounds."""
    if kind is not None:
        return np.asarray(kind)
    try:
        return bound_kinds(np.isfinite(lower), np.isfinite(upper))
    except jax.errors.TracerArrayConversionError:
        raise TypeError(
            "traced bounds need their kind (which ends are finite) given: pass kind=PriorArrays.kind"
        ) from None


def _safe(lower, upper, kind):
    """``(lo, hi, upper_safe)``: finite stand-ins for infinite bounds so unused ``where`` branches stay finite (no NaN
    grads); which bounds are finite comes from the static ``kind``, so the bound values may be traced."""
    lo_f = (kind == _INTERVAL) | (kind == _LOWER)
    hi_f = (kind == _INTERVAL) | (kind == _UPPER)
    xp = (
        np
        if isinstance(lower, (float, int, np.ndarray, np.number))
        and isinstance(upper, (float, int, np.ndarray, np.number))
        else jnp
    )
    lower = xp.asarray(lower, dtype=np.float64)
    upper = xp.asarray(upper, dtype=np.float64)
    lo = xp.where(lo_f, lower, 0.0)
    hi = xp.where(kind == _INTERVAL, upper, lo + 1.0)
    return lo, hi, xp.where(hi_f, upper, 0.0)


def _folded(fold, kind):
    fold = np.asarray(fold, dtype=bool)
    if np.any(fold & (kind != _INTERVAL)):
        raise ValueError("a folded parameter needs a finite box [lower, upper]")
    return fold


def to_constrained(z: Float[Array, "... n"], lower, upper, fold=False, kind=None) -> Float[Array, "... n"]:
    """Unconstrained ``z`` → parameters inside ``[lower, upper]`` (``fold``: folded at ``lower``, module docstring;
    ``kind``: :func:`bound_kinds` of the bounds, needed when they are traced)."""
    kind = _kinds(lower, upper, kind)
    lo, hi, upper_safe = _safe(lower, upper, kind)
    z = jnp.asarray(z)
    # tanh(z/2) = 2 sigmoid(z) - 1: the mirrored box's logit map, folded at its middle
    interval = jnp.where(
        _folded(fold, kind), lo + (hi - lo) * jnp.abs(jnp.tanh(0.5 * z)), lo + (hi - lo) * jax.nn.sigmoid(z)
    )
    # clip the exponent: exp overflows only far outside any sensible region
    zc = jnp.clip(z, -700.0, 700.0)
    return jnp.select(
        [kind == _INTERVAL, kind == _LOWER, kind == _UPPER],
        [interval, lo + jnp.exp(zc), upper_safe - jnp.exp(zc)],
        z,
    )


def to_unconstrained(x: Float[Array, "... n"], lower, upper, fold=False, kind=None) -> Float[Array, "... n"]:
    """Parameters inside ``(lower, upper)`` → unconstrained ``z``; values on a bound map to ±inf (a folded
    parameter's ``lower`` maps to 0, its branch ``v ≥ lower`` is taken). ``kind`` as in :func:`to_constrained`."""
    kind = _kinds(lower, upper, kind)
    lo, hi, upper_safe = _safe(lower, upper, kind)
    x = jnp.asarray(x)
    u = (x - lo) / (hi - lo)
    interval = jnp.where(_folded(fold, kind), jnp.log1p(u) - jnp.log1p(-u), jnp.log(u) - jnp.log1p(-u))
    return jnp.select(
        [kind == _INTERVAL, kind == _LOWER, kind == _UPPER],
        [interval, jnp.log(x - lo), jnp.log(upper_safe - x)],
        x,
    )


def log_abs_det_jacobian(z: Float[Array, "... n"], lower, upper, kind=None) -> Float[Array, "... n"]:
    """Elementwise ``log |dx/dz|`` of :func:`to_constrained` (sum it for the density correction). For a folded
    parameter it is ``log |dv/dz| - log 2`` (two values of ``v`` per ``x``: module docstring), the same formula, so
    it takes no ``fold``. ``kind`` as in :func:`to_constrained`."""
    kind = _kinds(lower, upper, kind)
    lo, hi, _ = _safe(lower, upper, kind)
    z = jnp.asarray(z)
    interval = jnp.log(hi - lo) + jax.nn.log_sigmoid(z) + jax.nn.log_sigmoid(-z)
    return jnp.select([kind == _INTERVAL, kind == _LOWER, kind == _UPPER], [interval, z, z], jnp.zeros_like(z))


def clip_to_interior(x, lower, upper, margin: float = 1e-6) -> np.ndarray:
    """Move values onto the open box (a fraction ``margin`` of the span inside), so z is finite (and a folded
    parameter starts off ``z = 0``, where its density's gradient vanishes by symmetry whatever the data say)."""
    x = np.asarray(x, dtype=np.float64)
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    span = np.where(np.isfinite(upper - lower), upper - lower, 1.0)
    lo = np.where(np.isfinite(lower), lower + margin * span, -np.inf)
    hi = np.where(np.isfinite(upper), upper - margin * span, np.inf)
    return np.clip(x, lo, hi)
