"""Hydrogen lines (Hα in the red window, Hβ in GALAH's blue arm, high Paschen lines in the Gaia RVS window).

Approximations (documented so that nobody mistakes them for a full Stark-profile treatment):

- Doppler core: thermal H + microturbulence.
- Lorentzian part: radiative damping (4.4e8 s⁻¹; for Hβ the sum of its two levels' Einstein A sums) plus, for Hα and Hβ,
  self-resonance broadening by H I with the Barklem, Piskunov & O'Mara (2000, A&A 363, 1091)
  cross-sections at 10 km/s (Hα σ = 1180 a0², α = 0.677; Hβ σ = 2320 a0², α = 0.455).
- Linear Stark broadening by ions (quasi-static, Holtsmark): represented by the normalised
  profile g(Δλ) ∝ (Δλ_S'² + Δλ²)^(−5/4), whose far wings match the Holtsmark asymptote
  ∝ Δλ^(−5/2) for a Stark half-width Δλ_S = 1.475 X_eff (3/2) e a0 F0 λ²/hc with the normal field
  F0 = 2.603 e N_e^(2/3) and an effective Stark component X_eff = 0.8 (n_u² − n_l²)
  (4 for Hα); Δλ_S' = √(Δλ_S² + Δλ_D²) folds in the Doppler core. The total profile is
  (1 − w) Voigt + g with w = (Δλ_S/Δλ_S')^(3/2) = ∫ g, so it stays normalised.
- Electron impact broadening, the Stark–Doppler coupling and level dissolution are not modelled.
- Oscillator strengths: exact for Hα (0.6407) and Hβ (0.1193, Wiese & Fuhr 2009); Kramers × bound–bound
  Gaunt 0.9 for the Paschen lines.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gamma as gamma_fn

from .constants import AMU, BOHR, C_CGS, C_KMS, CHI_H, E_CHARGE, H_PLANCK, HC_EV_ANGSTROM, K_B, K_B_EV, PI_E2_MC
from .voigt import SQRT_PI, WING_V, voigt_h, voigt_wing

RYDBERG_H = 109677.58340280356  # cm^-1, for the H atom (reduced mass)
_HOLTSMARK_NORM = 2.3963  # ∫ (1 + x²)^(−5/4) dx = √π Γ(3/4) / Γ(5/4)


class HydrogenLine(NamedTuple):
    n_lower: int
    n_upper: int
    f_value: float
    wavelength: float  # vacuum Å


# vacuum wavelengths: the Rydberg formula has no fine structure and puts the Balmer lines ~4 km/s red of their
# observed centroids. Hβ and Hα use NIST's 4862.68 and 6564.61 Å (air 4861.35, 6562.79; the Kurucz solar atlas's
# cores: 4862.68-4862.69, 6564.63) instead of the formula's 4862.74 and 6564.70 (grids before the nineteenth session
# had Hα at 6564.70: their metadata lacks "hydrogen", read as "Rydberg Hα").
_WAVELENGTH = {(2, 3): 6564.61, (2, 4): 4862.68}
CENTROIDS = "NIST Hα, Hβ"  # recorded in grid files: which centroids made them
# exact oscillator strengths (Wiese & Fuhr 2009, J. Phys. Chem. Ref. Data 38, 565) where a line is fitted in a window
_EXACT_F = {(2, 3): 0.6407, (2, 4): 0.1193}
# Lorentzian radiative FWHM (s^-1): Hα keeps the value its grids were made with; Hβ is the sum of the n = 2 and 4
# levels' Einstein A sums (4.696e8 + 3.017e7, as tabulated in Barklem & Piskunov's HLINOP)
_GAMMA_RAD = {(2, 4): 4.998e8}
_GAMMA_RAD_DEFAULT = 4.4e8
# H I self-broadening, Barklem, Piskunov & O'Mara (2000): cross-section at 10 km/s (a0²) and velocity exponent
_SELF_BROADENING = {(2, 3): (1180.0, 0.677), (2, 4): (2320.0, 0.455)}


def _kramers_f(n: int, m: int, gaunt: float = 0.9) -> float:
    return gaunt * 32.0 / (3.0 * np.sqrt(3.0) * np.pi) / (n**5 * m**3) / (1.0 / n**2 - 1.0 / m**2) ** 3


def hydrogen_line(n_lower: int, n_upper: int) -> HydrogenLine:
    """Wavelength (vacuum: Rydberg formula, or NIST's where that is off) and oscillator strength of H I
    n_lower → n_upper."""
    lam = _WAVELENGTH.get((n_lower, n_upper)) or 1e8 / (RYDBERG_H * (1.0 / n_lower**2 - 1.0 / n_upper**2))
    f = _EXACT_F.get((n_lower, n_upper)) or _kramers_f(n_lower, n_upper)
    return HydrogenLine(n_lower, n_upper, f, lam)


HYDROGEN_LINES = tuple([hydrogen_line(2, 3), hydrogen_line(2, 4)] + [hydrogen_line(3, m) for m in range(12, 21)])


def lines_near(wmin: float, wmax: float, margin: float = 60.0) -> tuple[HydrogenLine, ...]:
    """Hydrogen lines whose centres lie within ``margin`` Å of [wmin, wmax]."""
    return tuple(h for h in HYDROGEN_LINES if wmin - margin <= h.wavelength <= wmax + margin)


# Beyond this distance from a line's centre (km/s) every layer is in the Voigt wing, |v| ≥ 5 Doppler widths (H at
# 20,000 K with vmic 5 km/s: 19 km/s): only the cheap wing formula is evaluated there (the value voigt_h gives), so
# the costly core formula runs on a few hundred pixels instead of the whole window.
CORE_KMS = 100.0


def hydrogen_line_opacity(line: HydrogenLine, wavelength, temperature, electron_density, n_hi, log_u_hi, vmic):
    """α (cm⁻¹) of one hydrogen line on ``wavelength`` (Å, a fixed numpy grid), shape (n_depth, n_wl)."""
    T = temperature[:, None]
    lam0 = line.wavelength
    wavelength = np.asarray(wavelength)
    core = np.flatnonzero(np.abs(wavelength - lam0) < lam0 * CORE_KMS / C_KMS)
    dl = jnp.asarray(wavelength)[None, :] - lam0
    nl = line.n_lower
    pop = n_hi[:, None] * 2.0 * nl**2 * jnp.exp(-CHI_H * (1.0 - 1.0 / nl**2) / (K_B_EV * T) - log_u_hi[:, None])
    xi = jnp.sqrt(2.0 * K_B * T / (1.008 * AMU) * 1e-10 + vmic**2)  # km/s
    dl_d = lam0 * xi / C_KMS  # Doppler width (Å)
    # Lorentzian FWHM γ (s^-1) → HWHM in Å.
    key = (nl, line.n_upper)
    gamma = _GAMMA_RAD.get(key, _GAMMA_RAD_DEFAULT) + (
        _self_broadening(T, *_SELF_BROADENING[key]) * n_hi[:, None] if key in _SELF_BROADENING else 0.0
    )
    hwhm = gamma * lam0**2 * 1e-8 / (4.0 * jnp.pi * C_CGS)
    # Holtsmark part.
    x_eff = 0.8 * (line.n_upper**2 - nl**2)
    f0 = 2.603 * E_CHARGE * electron_density[:, None] ** (2.0 / 3.0)
    dl_s = 1.475 * x_eff * 1.5 * E_CHARGE * BOHR * f0 * (lam0 * 1e-8) ** 2 / (H_PLANCK * C_CGS) * 1e8
    dl_s2 = jnp.sqrt(dl_s**2 + dl_d**2)
    w = (dl_s / dl_s2) ** 1.5
    r2 = dl_s2**2 + dl**2
    holts = dl_s**1.5 / _HOLTSMARK_NORM / (r2 * jnp.sqrt(jnp.sqrt(r2)))  # r2^-1.25 without a pow: whole-grid arrays
    phi = (1.0 - w) * _voigt(dl, dl_d, hwhm, core) + holts  # Å^-1
    stim = -jnp.expm1(-HC_EV_ANGSTROM / (lam0 * K_B_EV * T))
    return PI_E2_MC * line.f_value * pop * phi * lam0**2 * 1e-8 / C_CGS * stim


def _voigt(dl, width, hwhm, core: np.ndarray):
    """Area-normalised Voigt profile (Å⁻¹) in Δλ for a Doppler width ``width`` (Å) and Lorentzian HWHM, as
    :func:`~.voigt.voigt_profile`; the core formula only on the pixels ``core`` (a contiguous range), the wing
    formula elsewhere."""
    a = hwhm / width
    v = dl / width
    h = voigt_wing(a, jnp.maximum(jnp.abs(v), WING_V))
    if core.size:
        h = h.at[:, core[0] : core[-1] + 1].set(voigt_h(a, v[:, core[0] : core[-1] + 1]))
    return h / (width * SQRT_PI)


def _self_broadening(T, sigma_a0: float, alpha: float):
    # Barklem, Piskunov & O'Mara (2000): γ/N_H = 2 (4/π)^{α/2} Γ((4−α)/2) v̄ σ(v̄), σ ∝ v̄^−α.
    sigma0, v0 = sigma_a0 * BOHR**2, 1e6
    vbar = jnp.sqrt(8.0 * K_B * T / (jnp.pi * 0.5 * 1.008 * AMU))
    return (
        2.0 * (4.0 / jnp.pi) ** (alpha / 2.0) * gamma_fn((4.0 - alpha) / 2.0) * vbar * sigma0 * (vbar / v0) ** (-alpha)
    )
