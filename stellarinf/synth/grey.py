"""Simple fidelity: cheap, smooth spectra for pre-training, on deliberately simplified physics.

- Atmosphere: grey Eddington T(τ)⁴ = ¾ Teff⁴ (τ + ⅔); the line-forming layer is τ = 0.3, with a
  gas pressure scaled from the Sun's at that depth as P ∝ g^0.6 · 10^(−0.3 [Fe/H]) (the scaling of
  an H⁻-opacity photosphere) and the electron density from Saha charge balance at that layer.
- Lines: only the strongest lines of the list (:data:`N_STRONGEST`), Gaussian profiles (thermal +
  microturbulent width), no damping; line-to-continuum opacity ratio η from the realistic
  chemistry and continuum at the single layer.
- Transfer: Milne–Eddington solution with the Planck function linearised in τ,
  F = 2π [B₀/2 + B₁ / (3 (1 + η φ))], normalised by the same with η = 0. Closed form: no depth grid.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from .abundances import log_abundances, number_fractions
from .chemistry import Populations, ionisation_fractions, log_partition_functions
from .constants import C_KMS, CHI_HMINUS, K_B, K_B_EV, SAHA_CONST
from .continuum import continuum_opacity
from .lines import line_data, line_params
from .selection import select_lines
from .transfer import planck

N_STRONGEST = 400
TAU_FORM = 0.3
P_SUN_FORM = 6.0e4  # dyn cm^-2, gas pressure near τ = 0.3 in the solar ATLAS9 model
LOGG_SUN = 4.438
HALF_WIDTH_DOPPLER = 4.0  # Gaussian windows cover ±4 Doppler widths (at 8000 K, vmic 3 km/s)


def eddington_temperature(teff, tau):
    """Grey Eddington temperature T(τ) = Teff (¾ (τ + ⅔))^¼."""
    return teff * (0.75 * (tau + 2.0 / 3.0)) ** 0.25


def layer_populations(teff, logg, feh, logeps, n_iter: int = 12) -> Populations:
    """Populations at the single line-forming layer (shape (1,)), n_e from Saha charge balance."""
    T = jnp.atleast_1d(eddington_temperature(teff, TAU_FORM))
    P = P_SUN_FORM * 10.0 ** (0.6 * (logg - LOGG_SUN) - 0.3 * feh)
    n_tot = P / (K_B * T)
    frac = number_fractions(logeps)
    log_u = log_partition_functions(T)

    def step(ln_ne, _):
        f = ionisation_fractions(T, jnp.exp(ln_ne), log_u)
        donors = jnp.sum(frac[:, None] * (f[:, 1] + 2.0 * f[:, 2]), axis=0) * n_tot
        return 0.5 * (ln_ne + jnp.log(donors)), None  # geometric damping: converges in a few steps

    ln_ne, _ = jax.lax.scan(step, jnp.log(1e-4 * n_tot), None, length=n_iter)
    ne = jnp.exp(ln_ne)
    n_nuclei = n_tot - ne
    species = frac[:, None, None] * n_nuclei * ionisation_fractions(T, ne, log_u)
    n_hm = species[1, 0] * ne * jnp.exp(CHI_HMINUS / (K_B_EV * T) - log_u[1, 0]) / (2.0 * SAHA_CONST * T**1.5)
    return Populations(n_nuclei, species, log_u, n_hm, ne)


@functools.lru_cache(maxsize=8)
def strongest_lines(wmin: float, wmax: float, n: int = N_STRONGEST) -> np.ndarray:
    """Indices (into the line list) of the ``n`` strongest lines for a mid-box reference star."""
    idx, _ = select_lines(wmin, wmax)
    lines = line_data(idx)

    @jax.jit
    def ratio():
        logeps = log_abundances(0.0)
        pops = layer_populations(5000.0, 3.0, 0.0, logeps)
        T = jnp.atleast_1d(eddington_temperature(5000.0, TAU_FORM))
        a, s = continuum_opacity(jnp.asarray(lines.wavelength), T, pops.electron_density, pops)
        p = line_params(lines, T, pops.electron_density, pops, 1.0)
        return p.amplitude[:, 0] / (a + s)[0]

    eta = np.asarray(ratio())
    order = np.argsort(eta)[::-1][:n]
    return np.sort(idx[order])


def simple_synthesizer(wavelength: np.ndarray, names: tuple[str, ...]):
    """Pure JAX ``labels → (flux, continuum)`` for the simple fidelity on ``wavelength``."""
    from .synthesize import _unpack  # shared label unpacking

    idx = strongest_lines(round(float(wavelength[0]), 3), round(float(wavelength[-1]), 3))
    lines = line_data(idx)
    ln_wl = np.log(wavelength)
    step = float(np.median(np.diff(ln_wl))) * C_KMS
    xi_max = np.sqrt(2.0 * K_B * 8000.0 / (lines.mass * 1.6605e-24) * 1e-10 + 9.0)
    pix, li, dv = [], [], []
    for i, lam in enumerate(lines.wavelength):
        n_half = int(np.ceil(HALF_WIDTH_DOPPLER * xi_max[i] / step))
        c = int(np.searchsorted(ln_wl, np.log(lam)))
        p = np.arange(c - n_half, c + n_half + 1)
        p = p[(p >= 0) & (p < len(wavelength))]
        pix.append(p)
        li.append(np.full(p.size, i))
        dv.append((ln_wl[p] - np.log(lam)) * C_KMS)
    pix, li, dv = (jnp.asarray(np.concatenate(x)) for x in (pix, li, dv))
    wl = jnp.asarray(wavelength)
    wl_lines = jnp.asarray(lines.wavelength)

    def fn(labels):
        teff, logg, feh, vmic, _, xfe = _unpack(labels, names)  # [α/Fe] acts through xfe (no atmosphere here)
        logeps = log_abundances(feh, xfe)
        pops = layer_populations(teff, logg, feh, logeps)
        T = jnp.atleast_1d(eddington_temperature(teff, TAU_FORM))
        a, s = continuum_opacity(wl_lines, T, pops.electron_density, pops)
        p = line_params(lines, T, pops.electron_density, pops, vmic)
        eta = p.amplitude[:, 0] / (a + s)[0]  # line-centre opacity ratio per unit H
        xi = p.doppler_kms[:, 0]
        prof = eta[li] * jnp.exp(-((dv / xi[li]) ** 2))
        eta_phi = jnp.zeros(wl.shape[0]).at[pix].add(prof)
        b0 = planck(wl, jnp.atleast_1d(eddington_temperature(teff, 0.0)))[0]
        b1 = planck(wl, jnp.atleast_1d(eddington_temperature(teff, 1.0)))[0] - b0
        cont = 2.0 * jnp.pi * (0.5 * b0 + b1 / 3.0)
        flux = 2.0 * jnp.pi * (0.5 * b0 + b1 / (3.0 * (1.0 + eta_phi)))
        return flux / cont, cont

    return fn
