"""LTE formal solution: optical depths from opacities, emergent flux by μ-quadrature.

The source function (Planck for LTE with absorption; scattering is treated as absorption, a
common and good approximation for the normalised spectrum in the optical red) is taken linear in τ
between depth points, which integrates exactly against exp(−τ/μ); the lower boundary uses the
diffusion approximation I = S + μ dS/dτ.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .constants import C_CGS, H_PLANCK, K_B

# Gauss–Legendre nodes on μ ∈ [0, 1] for the flux integral F = 2π ∫ I μ dμ (default count).
N_MU = 5


def mu_nodes(n_mu: int = N_MU) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on μ ∈ [0, 1]."""
    x, w = np.polynomial.legendre.leggauss(n_mu)
    return 0.5 * (x + 1.0), 0.5 * w


def planck(wavelength: Float[Array, "n_wl"], temperature: Float[Array, "n_depth"]) -> Float[Array, "n_depth n_wl"]:
    """B_λ(T) in erg s⁻¹ cm⁻² Å⁻¹ sr⁻¹; wavelength in Å."""
    lam = wavelength[None, :] * 1e-8
    x = H_PLANCK * C_CGS / (lam * K_B * temperature[:, None])
    return 2.0 * H_PLANCK * C_CGS**2 / lam**5 / jnp.expm1(x) * 1e-8


def optical_depth(alpha: Float[Array, "n_depth n_wl"], density: Float[Array, "n_depth"], rhox: Float[Array, "n_depth"]):
    """τ_λ at each depth: ∫ (α/ρ) dρx, trapezoidal in ln ρx (dτ = κ ρx d ln ρx); τ(top) = κ ρx."""
    kappa_m = alpha * (rhox / density)[:, None]  # κ ρx, smooth in ln ρx
    dln = jnp.diff(jnp.log(rhox))[:, None]
    steps = 0.5 * (kappa_m[1:] + kappa_m[:-1]) * dln
    return jnp.concatenate([kappa_m[:1], kappa_m[:1] + jnp.cumsum(steps, axis=0)], axis=0)


def emergent_flux(
    tau: Float[Array, "n_depth n_wl"], source: Float[Array, "n_depth n_wl"], n_mu: int = N_MU
) -> Float[Array, "n_wl"]:
    """Astrophysical surface flux F_λ = 2π ∫ I(μ) μ dμ (units of ``source`` × sr), ``n_mu`` Gauss–Legendre angles.

    Per ray: I(0, μ) = Σ_i e^{−t_i} [S_i (1 − e^{−Δ_i}) + (S_{i+1} − S_i) (1 − (1 + Δ_i) e^{−Δ_i}) / Δ_i]
    + e^{−t_N} (S_N + dS/dt|_N), t = τ/μ, Δ_i = t_{i+1} − t_i (exact for S linear in τ).
    """
    flux = 0.0
    dS = source[1:] - source[:-1]
    for mu, w in zip(*mu_nodes(n_mu)):
        d = (tau[1:] - tau[:-1]) / mu
        e = jnp.exp(-d)
        one_minus = 1.0 - e
        small = d < 1e-3
        d_safe = jnp.where(small, 1.0, d)
        lin = jnp.where(small, d * (0.5 - d / 3.0), (one_minus - d * e) / d_safe)  # series avoids 0/0
        one_minus = jnp.where(small, d * (1.0 - 0.5 * d), one_minus)
        att = jnp.exp(-tau[:-1] / mu)
        intensity = jnp.sum(att * (source[:-1] * one_minus + dS * lin), axis=0)
        att_bottom = att[-1] * e[-1]
        intensity = intensity + att_bottom * (source[-1] + dS[-1] / jnp.maximum(d[-1], 1e-30))
        flux = flux + 2.0 * jnp.pi * w * mu * intensity
    return flux
