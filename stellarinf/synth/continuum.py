"""Continuous opacity: H⁻ bound–free and free–free, H I bound–free and free–free, Thomson and
Rayleigh scattering by H I. All return the linear extinction coefficient α (cm⁻¹) with shape
(n_depth, n_wavelength); stimulated emission is included for the absorptive terms.

References: H⁻ bf and ff fits of John (1988, A&A 193, 189), which reproduce Wishart (1979) and
Bell & Berrington (1987); hydrogenic Kramers cross-sections with Gaunt factors = 1 for H I;
Rayleigh by H I after Dalgarno (as in Kurucz 1970).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .constants import C_CGS, CHI_H, HC_EV_ANGSTROM, K_B, K_B_EV

SIGMA_THOMSON = 6.6524587e-25  # cm^2
_HMINUS_THRESHOLD_UM = 1.6419
_BF_C = np.array([152.519, 49.534, -118.858, 92.536, -34.194, 4.982])
# John (1988) free–free coefficients for λ > 0.3645 µm; rows n = 1..6, columns A..F.
_FF = np.array(
    [
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [2483.346, 285.827, -2054.291, 2827.776, -1341.537, 208.952],
        [-3449.889, -1158.382, 8746.523, -11485.632, 5303.609, -812.939],
        [2200.040, 2427.719, -13651.105, 16755.524, -7510.494, 1132.738],
        [-696.271, -1841.400, 8624.970, -10051.530, 4400.067, -655.020],
        [88.283, 444.517, -1863.864, 2095.288, -901.788, 132.985],
    ]
)


def stimulated_factor(wavelength, temperature):
    """1 − exp(−hν/kT), shape (n_depth, n_wl)."""
    return -jnp.expm1(-HC_EV_ANGSTROM / (wavelength[None, :] * K_B_EV * temperature[:, None]))


def hminus_bf_cross_section(wavelength: Float[Array, "n_wl"]) -> Float[Array, "n_wl"]:
    """H⁻ photodetachment cross-section (cm²) of John (1988); zero beyond the 16419 Å threshold."""
    lam = wavelength * 1e-4  # µm
    x = jnp.clip(1.0 / lam - 1.0 / _HMINUS_THRESHOLD_UM, 0.0, None)
    sx = jnp.sqrt(x)
    f = sum(c * sx**n for n, c in enumerate(_BF_C))
    return 1e-18 * lam**3 * x * sx * f


def hminus_ff_coefficient(wavelength: Float[Array, "n_wl"], temperature: Float[Array, "n_depth"]):
    """H⁻ free–free k_ff (cm⁴ dyn⁻¹ per H I atom per unit electron pressure), John (1988);
    stimulated emission included. Shape (n_depth, n_wl)."""
    lam = (wavelength * 1e-4)[None, :]
    theta = (5040.0 / temperature)[:, None]
    total = 0.0
    for n in range(1, 6):
        a, b, c, d, e, f = _FF[n]
        total = total + theta ** ((n + 2) / 2.0) * (a * lam**2 + b + c / lam + d / lam**2 + e / lam**3 + f / lam**4)
    return 1e-29 * total


def hminus_opacity(wavelength, temperature, electron_density, n_hi, n_hminus):
    """α(H⁻ bf) + α(H⁻ ff), cm⁻¹, shape (n_depth, n_wl)."""
    bf = n_hminus[:, None] * hminus_bf_cross_section(wavelength)[None, :] * stimulated_factor(wavelength, temperature)
    pe = electron_density * K_B * temperature
    ff = hminus_ff_coefficient(wavelength, temperature) * (pe * n_hi)[:, None]
    return bf + ff


def hydrogen_bf_ff_opacity(wavelength, temperature, electron_density, n_hi, n_hii, log_u_hi, n_max: int = 8):
    """H I bound–free (levels 1..n_max, Kramers, g = 1) and free–free (g = 1), cm⁻¹ (n_depth, n_wl)."""
    nu = C_CGS / (wavelength * 1e-8)
    kt = K_B_EV * temperature[:, None]
    bf = 0.0
    for n in range(1, n_max + 1):
        edge = CHI_H / n**2  # eV
        sigma = jnp.where(HC_EV_ANGSTROM / wavelength >= edge, 2.815e29 / (n**5 * nu**3), 0.0)
        pop = n_hi[:, None] * 2.0 * n**2 * jnp.exp(-(CHI_H - edge) / kt - log_u_hi[:, None])
        bf = bf + pop * sigma[None, :]
    ff = 3.692e8 * (electron_density * n_hii / jnp.sqrt(temperature))[:, None] / nu[None, :] ** 3
    return (bf + ff) * stimulated_factor(wavelength, temperature)


def rayleigh_hydrogen_cross_section(wavelength: Float[Array, "n_wl"]) -> Float[Array, "n_wl"]:
    """Rayleigh scattering cross-section of ground-state H I (cm²), λ in Å (valid redward of Lyα)."""
    return 5.799e-13 / wavelength**4 + 1.422e-6 / wavelength**6 + 2.784 / wavelength**8


def continuum_opacity(wavelength: Float[Array, "n_wl"], temperature, electron_density, pops) -> tuple[Array, Array]:
    """Total continuous (absorption, scattering) extinction, each (n_depth, n_wl) in cm⁻¹.

    Args:
        wavelength: vacuum Å. temperature, electron_density: (n_depth,).
        pops: :class:`~stellarinf.synth.chemistry.Populations`.
    """
    absorption = hminus_opacity(wavelength, temperature, electron_density, pops.n_hi, pops.n_hminus)
    absorption = absorption + hydrogen_bf_ff_opacity(
        wavelength, temperature, electron_density, pops.n_hi, pops.n_hii, pops.log_u[1, 0]
    )
    scattering = (SIGMA_THOMSON * electron_density)[:, None] + pops.n_hi[:, None] * rayleigh_hydrogen_cross_section(
        wavelength
    )[None, :]
    return absorption, scattering
