"""Continuum: Chebyshev polynomials per segment, and the Gaussian likelihood with linear coefficients
either sampled, analytically marginalised, or profiled.

Model of the data: ``y = (m ⊙ (A β)) + noise``, where ``m`` is the normalised model flux at the observed
pixels, ``A`` the (block-diagonal, one block per segment) Chebyshev design matrix and β the continuum
coefficients. With ``M = diag(m) A``, noise covariance ``C = diag(V)`` (masked pixels dropped) and the
Gaussian prior β ~ N(μ₀, S), S = diag(s²), the marginal likelihood is exactly Gaussian,
``y ~ N(M μ₀, C + M S Mᵀ)``; it is evaluated with the normal equations (Woodbury identity and matrix
determinant lemma) at O(n k²) cost for k coefficients:

    r = y − M μ₀,   P = S⁻¹ + Mᵀ C⁻¹ M,   b = Mᵀ C⁻¹ r
    ln L = −½ [ rᵀC⁻¹r − bᵀP⁻¹b + ln|C| + ln|S| + ln|P| + n ln 2π ]

and the conditional posterior mean of β is ``μ₀ + P⁻¹ b``. The profile likelihood (β at its maximum,
no prior) is the same with S⁻¹ → 0 and without the ln|S| + ln|P| terms.
"""

from __future__ import annotations

import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, ArrayLike, Float

__all__ = [
    "chebyshev_design",
    "gaussian_log_likelihood",
    "gaussian_terms",
    "linear_continuum_fit",
    "linear_marginal_log_likelihood",
    "linear_marginal_terms",
]

_LOG_2PI = float(np.log(2.0 * np.pi))


def chebyshev_design(
    wavelength: Float[ArrayLike, "n_pix"], segments, segment_ids, degree: int
) -> Float[np.ndarray, "n_pix n_coef"]:
    """Block-diagonal Chebyshev design matrix (eager, numpy).

    Column ``s·(degree+1) + k`` is T_k(x) on segment ``segment_ids[s]`` (zero elsewhere), where x maps the
    segment's wavelength span linearly onto [−1, 1]. ``degree = -1`` gives an (n_pix, 0) matrix.
    """
    wl = np.asarray(wavelength, dtype=np.float64)
    segments = np.asarray(segments)
    n_per = degree + 1
    design = np.zeros((wl.size, len(segment_ids) * max(n_per, 0)))
    if n_per <= 0:
        return design
    for s, seg in enumerate(segment_ids):
        sel = segments == seg
        lo, hi = wl[sel].min(), wl[sel].max()
        x = 2.0 * (wl[sel] - lo) / (hi - lo) - 1.0 if hi > lo else np.zeros(int(sel.sum()))
        design[sel, s * n_per : (s + 1) * n_per] = np.polynomial.chebyshev.chebvander(x, degree)
    return design


def gaussian_terms(
    data: Float[Array, "n"], model: Float[Array, "n"], variance: Float[Array, "n"], weight: Float[Array, "n"]
) -> tuple[Float[Array, "n"], Float[Array, ""]]:
    """``(ρ, c)`` with ``ln L = −½|ρ|² + c`` for independent Gaussian pixels (weight 0 drops a pixel)."""
    rho = jnp.sqrt(weight) * (data - model) / jnp.sqrt(variance)  # sqrt(weight): no NaN tangent where weight = 0
    return rho, -0.5 * jnp.sum(weight * (jnp.log(variance) + _LOG_2PI))


def gaussian_log_likelihood(
    data: Float[Array, "n"], model: Float[Array, "n"], variance: Float[Array, "n"], weight: Float[Array, "n"]
) -> Float[Array, ""]:
    """Σ_i w_i · ln N(y_i | m_i, V_i): independent Gaussian pixels, weight 0 drops a pixel (jit-safe mask)."""
    rho, c = gaussian_terms(data, model, variance, weight)
    return -0.5 * jnp.sum(rho**2) + c


def _normal_equations(data, basis, variance, weight, prior_mean, prior_precision):
    w = weight / variance
    r = data - basis @ prior_mean
    p = jnp.diag(prior_precision) + basis.T @ (w[:, None] * basis)
    b = basis.T @ (w * r)
    chol = jnp.linalg.cholesky(p)
    z = jsl.solve_triangular(chol, b, lower=True)
    return w, r, chol, z


def linear_marginal_terms(
    data: Float[Array, "n"],
    basis: Float[Array, "n k"],
    variance: Float[Array, "n"],
    weight: Float[Array, "n"],
    prior_mean: Float[Array, "k"],
    prior_sd: Float[Array, "k"],
    *,
    profile: bool = False,
) -> tuple[Float[Array, "n+k"], Float[Array, ""]]:
    """``(ρ, c)`` with ``ln L = −½|ρ|² + c`` for the marginal (or profile) likelihood below.

    ``ρ = [√w (r − Mδ), δ/s]`` with δ = P⁻¹b the conditional posterior shift of β: ``|ρ|² = rᵀC⁻¹r − bᵀP⁻¹b``
    (expand the square). A sum of squares is what Gauss–Newton needs: JᵀJ is a curvature that is
    positive semi-definite by construction, and ``c`` (the log determinants) varies slowly."""
    precision = 1.0 / prior_sd**2
    w, r, chol, z = _normal_equations(data, basis, variance, weight, prior_mean, precision)
    delta = jsl.solve_triangular(chol.T, z, lower=False)
    rho = jnp.concatenate([jnp.sqrt(weight) * (r - basis @ delta) / jnp.sqrt(variance), delta / prior_sd])
    n_used = jnp.sum(weight)
    logdet_c = jnp.sum(weight * jnp.log(variance))
    if profile:
        return rho, -0.5 * (logdet_c + n_used * _LOG_2PI)
    logdet = logdet_c + jnp.sum(jnp.log(prior_sd**2)) + 2.0 * jnp.sum(jnp.log(jnp.diag(chol)))
    return rho, -0.5 * (logdet + n_used * _LOG_2PI)


def linear_marginal_log_likelihood(
    data: Float[Array, "n"],
    basis: Float[Array, "n k"],
    variance: Float[Array, "n"],
    weight: Float[Array, "n"],
    prior_mean: Float[Array, "k"],
    prior_sd: Float[Array, "k"],
    *,
    profile: bool = False,
) -> Float[Array, ""]:
    """ln p(y) for ``y = basis @ β + noise`` with β ~ N(prior_mean, diag(prior_sd²)) integrated out exactly
    (or, with ``profile=True``, β at its maximum-likelihood value and no prior; ``prior_sd`` then only
    regularises numerically and should be large). Pixels with weight 0 are dropped. See module docstring."""
    rho, c = linear_marginal_terms(data, basis, variance, weight, prior_mean, prior_sd, profile=profile)
    return -0.5 * jnp.sum(rho**2) + c


def linear_continuum_fit(
    data: Float[Array, "n"],
    basis: Float[Array, "n k"],
    variance: Float[Array, "n"],
    weight: Float[Array, "n"],
    prior_mean: Float[Array, "k"],
    prior_sd: Float[Array, "k"],
) -> Float[Array, "k"]:
    """Conditional posterior mean of β (= the weighted least-squares fit as ``prior_sd`` → ∞)."""
    return linear_conditional_posterior(data, basis, variance, weight, prior_mean, prior_sd)[0]


def linear_conditional_posterior(
    data: Float[Array, "n"],
    basis: Float[Array, "n k"],
    variance: Float[Array, "n"],
    weight: Float[Array, "n"],
    prior_mean: Float[Array, "k"],
    prior_sd: Float[Array, "k"],
) -> tuple[Float[Array, "k"], Float[Array, "k k"]]:
    """(mean of β given the data, lower Cholesky factor of its precision P = S⁻¹ + basisᵀ W basis)."""
    precision = 1.0 / prior_sd**2
    _, _, chol, z = _normal_equations(data, basis, variance, weight, prior_mean, precision)
    return prior_mean + jsl.solve_triangular(chol.T, z, lower=False), chol
