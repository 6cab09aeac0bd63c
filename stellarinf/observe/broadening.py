"""Velocity-space broadening of spectra sampled uniformly in ln λ: instrumental LSF, rotation,
macroturbulence, and linear resampling.

On a log-uniform grid a Doppler velocity is a constant pixel offset, so every broadening mechanism is a
convolution with a fixed kernel in velocity. The grid step in velocity is ``dv = c · Δlnλ`` (km/s),
see :func:`velocity_step`.

Kernels (all normalised to unit sum, so the total flux and every equivalent width are conserved):

- **LSF**: Gaussian with FWHM = c/R (``resolution=R``) and/or a given σ in km/s (``lsf_sigma``); the two
  add in quadrature. :func:`lsf_sigma_for` gives the σ that degrades a model at R_model to R_obs.
- **Rotation** (Gray 2005, eq. 18.14): for |v| < v_L = v sin i,
  ``G(v) = [2(1-ε)√(1-(v/v_L)²) + (πε/2)(1-(v/v_L)²)] / [π v_L (1-ε/3)]`` with linear
  limb-darkening coefficient ε.
- **Macroturbulence**, radial–tangential (Gray 2005, eq. 17.15) with equal radial and tangential
  fractions and dispersions ζ = ``vmacro``; disk-integrated without limb darkening it has the closed
  form ``M(v) = (2/(√π ζ)) [exp(-x²) - √π |x| erfc|x|]`` with x = v/ζ.

Discretisation (why it is done this way): the Gaussian LSF is smooth, so its values at the pixel offsets
are used (a sampled Gaussian has exactly the continuous variance once σ ≳ dv). The
rotation profile has a hard edge at ±v sin i whose slope is infinite, so sampling it would make the
gradient in v sin i blow up whenever the edge crosses a pixel; instead it (and the cusped macroturbulence
profile) is integrated over each pixel's velocity bin through its closed-form CDF, which is smooth in the
width. Binning adds about dv²/12 of variance (one pixel box); when an LSF is present its Gaussian variance
is reduced by exactly that excess, so the combined kernel has the exact second moment. Every width gets a floor of 1e-3 pixel added in quadrature, so at zero width each kernel
is exactly a delta function and gradients in ``resolution``, ``vsini`` and ``vmacro`` stay finite
(they are 0 there, as they should be: broadening is quadratic in the width at zero).

The kernel lives on a fixed grid of ±K pixels, K = ceil(max_velocity/dv) (a static shape, so the whole
thing jit-compiles once); the spectrum is padded with its edge values before the convolution.

**An LSF whose width varies with wavelength** (R(λ), one R per observed pixel) is not a convolution. The observation
model splits it: the narrowest σ (largest R) is a stationary Gaussian applied with the rest of the kernel above,
and the remainder σ_res(λ) = √(σ(λ)² − σ_min²) (Gaussian widths add in quadrature) is a banded matrix built once,
eagerly, by :func:`variable_lsf_rows`: each observed pixel's row is its own Gaussian folded with its cubic
interpolation weights, applied in JAX as a gather and a weighted sum (:func:`discrete_gaussian_taps` gives the
Gaussians exactly their variance even below a pixel, and a delta at σ_res = 0, so pixels at the largest R see
exactly the constant-R model).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.signal import fftconvolve
from jax.scipy.special import erfcx
from jaxtyping import Array, ArrayLike, Float

from ..errors import SpectrumError, WavelengthError
from ..wavelength import SPEED_OF_LIGHT_KMS

__all__ = [
    "DEFAULT_MAX_VELOCITY",
    "FWHM_PER_SIGMA",
    "broaden",
    "broadening_kernel",
    "degrade_to_resolution",
    "kernel_half_width",
    "lsf_sigma_for",
    "macroturbulence_profile",
    "resample",
    "rotation_profile",
    "velocity_step",
]

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
# Used when max_velocity is not given and a width is traced (unknown at trace time): covers
# v sin i + 5 ζ + 6 σ_LSF up to e.g. v sin i = 150 km/s, ζ = 15 km/s, R = 10,000.
DEFAULT_MAX_VELOCITY = 300.0
_FLOOR_PIXELS = 1e-3  # width floor, in pixels, added in quadrature (see module docstring)
_FFT_MIN_TAPS = 96  # above this kernel length an FFT convolution is cheaper than a direct one


# --------------------------------------------------------------------------------------------------
# grid helpers (eager)
# --------------------------------------------------------------------------------------------------
def velocity_step(wavelength: ArrayLike, *, rtol: float = 1e-6) -> float:
    """Velocity step ``c · Δlnλ`` (km/s) of a grid uniform in ln λ.

    ``wavelength`` is a 1-D increasing array (Å). Raises :class:`WavelengthError` if it is not
    log-uniform to ``rtol`` (relative to the step), naming the first offending pixel.
    """
    wl = np.asarray(wavelength, dtype=np.float64)
    if wl.ndim != 1 or wl.size < 2:
        raise WavelengthError(f"velocity_step needs a 1-D wavelength grid with at least 2 pixels, got shape {wl.shape}")
    if not np.all(np.isfinite(wl)) or np.any(wl <= 0):
        raise WavelengthError("velocity_step needs finite, positive wavelengths (Å)")
    dlnl = np.diff(np.log(wl))
    if np.any(dlnl <= 0):
        i = int(np.argmax(dlnl <= 0))
        raise WavelengthError(
            f"wavelengths must increase strictly; pixel {i + 1} ({wl[i + 1]:.6f} Å) does not; sort the grid"
        )
    step = float(np.mean(dlnl))
    dev = np.abs(dlnl - step) / step
    if np.any(dev > rtol):
        i = int(np.argmax(dev > rtol))
        raise WavelengthError(
            f"wavelength grid is not uniform in ln λ: step {i} deviates by {dev[i]:.2e} (relative) from the mean "
            f"(tolerance {rtol:g}); resample onto a log-uniform grid first (stellarinf.wavelength.log_uniform_grid "
            "and stellarinf.observe.broadening.resample)"
        )
    return SPEED_OF_LIGHT_KMS * step


def _concrete(x) -> float | None:
    """The float value of x, or None if it is a tracer (unknown at trace time)."""
    if x is None:
        return 0.0
    try:
        return float(x)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError, TypeError):
        return None


def kernel_half_width(*, resolution=None, lsf_sigma=None, vsini=0.0, vmacro=0.0) -> float:
    """A safe kernel half-width (km/s) for the given (concrete) widths: v sin i + 5 ζ + 6 σ_LSF.

    Beyond it the combined kernel holds less than ~1e-8 of its weight (and of its variance). Eager helper; pass the largest
    widths you will use (e.g. the upper bounds of a fit) to get ``max_velocity`` for :func:`broaden`.
    """
    sig2 = 0.0
    if resolution is not None:
        sig2 += (SPEED_OF_LIGHT_KMS / (FWHM_PER_SIGMA * float(resolution))) ** 2
    if lsf_sigma is not None:
        sig2 += float(lsf_sigma) ** 2
    return float(vsini or 0.0) + 5.0 * float(vmacro or 0.0) + 6.0 * math.sqrt(sig2)


def lsf_sigma_for(resolution_obs, resolution_model=None):
    """Gaussian σ (km/s) that degrades a spectrum at ``resolution_model`` to ``resolution_obs``.

    σ = c / (2√(2 ln 2)) · √(1/R_obs² − 1/R_model²) (Gaussian widths add in quadrature); with
    ``resolution_model=None`` (an unbroadened model) it is simply the σ of FWHM = c/R_obs.
    JAX-friendly; raises :class:`SpectrumError` eagerly if concrete R_obs > R_model (a model cannot be
    sharpened). Traced values with R_obs ≥ R_model give ~0.
    """
    r_obs, r_mod = _concrete(resolution_obs), _concrete(resolution_model)
    if r_obs is not None and r_obs <= 0:
        raise SpectrumError(f"resolving power must be positive, got {r_obs}")
    if resolution_model is not None and r_obs is not None and r_mod is not None and r_obs > r_mod * (1 + 1e-12):
        raise SpectrumError(
            f"the observed resolving power R={r_obs:g} is higher than the model's R={r_mod:g}; a model cannot be "
            "sharpened: use a model computed at higher resolution (or an unbroadened one)"
        )
    var = 1.0 / jnp.asarray(resolution_obs, dtype=jnp.float64) ** 2
    if resolution_model is not None:
        var = jnp.maximum(var - 1.0 / jnp.asarray(resolution_model, dtype=jnp.float64) ** 2, 0.0)
    # tiny offset: sqrt has an infinite slope at 0 (its gradient is then multiplied by 0 from the clip)
    return SPEED_OF_LIGHT_KMS / FWHM_PER_SIGMA * jnp.sqrt(var + 1e-300)


# --------------------------------------------------------------------------------------------------
# analytic profiles (continuous, for reference and tests)
# --------------------------------------------------------------------------------------------------
def rotation_profile(v: Float[ArrayLike, "n"], vsini, limb_darkening=0.6) -> Float[Array, "n"]:
    """Gray's rotation profile G(v) (1/(km/s)), unit integral, zero for |v| ≥ v sin i."""
    y = jnp.asarray(v) / vsini
    eps = limb_darkening
    one = jnp.clip(1.0 - y**2, 0.0, None)
    return (2 * (1 - eps) * jnp.sqrt(one) + 0.5 * jnp.pi * eps * one) / (jnp.pi * vsini * (1 - eps / 3))


def macroturbulence_profile(v: Float[ArrayLike, "n"], vmacro) -> Float[Array, "n"]:
    """Radial–tangential macroturbulence profile M(v) (1/(km/s)), unit integral (equal R/T fractions)."""
    x = jnp.abs(jnp.asarray(v)) / vmacro
    # exp(-x²) - √π x erfc(x), written with erfcx to avoid cancellation in the tails
    return 2.0 / (jnp.sqrt(jnp.pi) * vmacro) * jnp.clip(jnp.exp(-(x**2)) * (1.0 - jnp.sqrt(jnp.pi) * x * erfcx(x)), 0.0)


@jax.custom_jvp
def _ellipse_area(y):
    # y√(1-y²) + arcsin y on [-1, 1]; derivative 2√(1-y²) (autodiff of the pieces gives ∞-∞ at ±1)
    return y * jnp.sqrt(jnp.clip(1.0 - y**2, 0.0)) + jnp.arcsin(y)


@_ellipse_area.defjvp
def _ellipse_area_jvp(primals, tangents):
    (y,), (ty,) = primals, tangents
    return _ellipse_area(y), 2.0 * jnp.sqrt(jnp.clip(1.0 - y**2, 0.0)) * ty


def _rotation_cdf(y, eps):
    # ∫_{-1}^{y} G dy' up to a constant, for y in [-1, 1] (velocities in units of v sin i)
    return ((1 - eps) * _ellipse_area(y) + 0.5 * jnp.pi * eps * (y - y**3 / 3.0)) / (jnp.pi * (1 - eps / 3.0))


# --------------------------------------------------------------------------------------------------
# discrete kernels on the pixel-offset grid v_k = k·dv, k = -K..K
# --------------------------------------------------------------------------------------------------
def _gaussian_kernel(v, variance, floor):
    s = jnp.sqrt(variance + floor**2)
    w = jnp.exp(-0.5 * (v / s) ** 2)
    return w / jnp.sum(w)


def _macro_cdf(x):
    # ∫_0^x M dx' (x = v/ζ): odd, → ±1/2; derivative (2/√π)[exp(-x²) - √π|x| erfc|x|]
    ax = jnp.abs(x)
    return (
        0.5 * jax.scipy.special.erf(x) - x * ax * jax.scipy.special.erfc(ax) + x * jnp.exp(-(x**2)) / jnp.sqrt(jnp.pi)
    )


def _macro_kernel(v, dv, vmacro, floor):
    z = jnp.sqrt(vmacro**2 + floor**2)
    w = _macro_cdf((v + 0.5 * dv) / z) - _macro_cdf((v - 0.5 * dv) / z)
    return w / jnp.sum(w), 0.25 * z**2  # kernel, continuous variance ζ²/4


def _rotation_kernel(v, dv, vsini, eps, floor):
    vl = jnp.sqrt(vsini**2 + floor**2)
    hi = jnp.clip((v + 0.5 * dv) / vl, -1.0, 1.0)
    lo = jnp.clip((v - 0.5 * dv) / vl, -1.0, 1.0)
    w = _rotation_cdf(hi, eps) - _rotation_cdf(lo, eps)
    variance = vl**2 * ((1 - eps) / 4 + 2 * eps / 15) / (1 - eps / 3)  # ∫v²G dv
    return w / jnp.sum(w), variance


def _is_static_zero(x) -> bool:
    return x is None or (isinstance(x, (int, float)) and x == 0)


def _half_width_pixels(dv, max_velocity, resolution, lsf_sigma, vsini, vmacro) -> int:
    if max_velocity is None:
        vals = [_concrete(x) for x in (resolution, lsf_sigma, vsini, vmacro)]
        if any(v is None for v in vals):
            max_velocity = DEFAULT_MAX_VELOCITY
        else:
            r, s, vs, vm = vals
            max_velocity = kernel_half_width(
                resolution=None if resolution is None else r,
                lsf_sigma=None if lsf_sigma is None else s,
                vsini=vs,
                vmacro=vm,
            )
    return max(1, int(math.ceil(float(max_velocity) / dv)) + 1)


def broadening_kernel(
    dv: float,
    *,
    resolution=None,
    lsf_sigma=None,
    vsini=0.0,
    vmacro=0.0,
    limb_darkening=0.6,
    max_velocity: float | None = None,
) -> Float[Array, "n_taps"]:
    """The combined (LSF ⊛ rotation ⊛ macroturbulence) kernel on offsets k·dv, k = -K..K; unit sum.

    Arguments as for :func:`broaden`. ``n_taps = 2K + 1`` with K = ceil(max_velocity/dv) + 1.
    """
    dv = _static_step(dv)
    half = _half_width_pixels(dv, max_velocity, resolution, lsf_sigma, vsini, vmacro)
    v = dv * jnp.arange(-half, half + 1, dtype=jnp.float64)
    floor = _FLOOR_PIXELS * dv
    kernels = []
    excess = 0.0  # variance the pixel binning adds beyond the continuous profiles (≈ dv²/12 each)
    if not _is_static_zero(vsini):
        k, var = _rotation_kernel(v, dv, jnp.asarray(vsini, dtype=jnp.float64), limb_darkening, floor)
        kernels.append(k)
        excess = excess + jnp.sum(k * v**2) - var
    if not _is_static_zero(vmacro):
        k, var = _macro_kernel(v, dv, jnp.asarray(vmacro, dtype=jnp.float64), floor)
        kernels.append(k)
        excess = excess + jnp.sum(k * v**2) - var
    if not (_is_static_zero(resolution) and _is_static_zero(lsf_sigma)):
        var = jnp.asarray(0.0)
        if resolution is not None:
            var = var + (SPEED_OF_LIGHT_KMS / (FWHM_PER_SIGMA * jnp.asarray(resolution, dtype=jnp.float64))) ** 2
        if lsf_sigma is not None:
            var = var + jnp.asarray(lsf_sigma, dtype=jnp.float64) ** 2
        # the (sampled, hence exact-variance) Gaussian absorbs the binning excess, so the combined kernel has
        # the exact second moment whenever the LSF is wider than that excess (always, at ≥ 2 px per FWHM)
        kernels.append(_gaussian_kernel(v, jnp.maximum(var - excess, 0.0), floor))
    if not kernels:
        return jnp.zeros(2 * half + 1).at[half].set(1.0)
    kernel = kernels[0]
    for other in kernels[1:]:
        kernel = jnp.convolve(kernel, other, mode="same")
    return kernel / jnp.sum(kernel)  # truncation at ±K loses a little weight; restore flux conservation


def _static_step(dv) -> float:
    value = _concrete(dv)
    if value is None:
        raise WavelengthError(
            "the velocity step dv must be a concrete number (it sets the kernel's shape), not a traced value"
        )
    if not (value > 0 and math.isfinite(value)):
        raise WavelengthError(f"the velocity step dv must be positive and finite (km/s), got {value}")
    return value


def _convolve_edges(flux, kernel):
    # pad with edge values so a flat continuum stays flat at the ends, then 'valid' convolution
    half = (kernel.shape[0] - 1) // 2
    lead = flux.shape[:-1]
    flat = flux.reshape((-1, flux.shape[-1]))
    padded = jnp.pad(flat, ((0, 0), (half, half)), mode="edge")
    if kernel.shape[0] >= _FFT_MIN_TAPS:
        out = jax.vmap(lambda row: fftconvolve(row, kernel, mode="valid"))(padded)
    else:
        out = jax.vmap(lambda row: jnp.convolve(row, kernel, mode="valid"))(padded)
    return out.reshape(lead + (flux.shape[-1],))


def broaden(
    flux: Float[ArrayLike, "... n_pix"],
    dv: float,
    *,
    resolution=None,
    lsf_sigma=None,
    vsini=0.0,
    vmacro=0.0,
    limb_darkening: float = 0.6,
    max_velocity: float | None = None,
) -> Float[Array, "... n_pix"]:
    """Broaden spectra sampled uniformly in ln λ with velocity step ``dv`` (km/s).

    - ``flux``: (..., n_pix); every leading index is broadened alike.
    - ``resolution``: resolving power R of a Gaussian LSF (FWHM = c/R), or None for no LSF.
    - ``lsf_sigma``: Gaussian σ in km/s (e.g. from :func:`lsf_sigma_for`); adds to ``resolution`` in
      quadrature.
    - ``vsini`` (km/s) with linear ``limb_darkening`` ε; ``vmacro`` = radial–tangential ζ (km/s).
    - ``max_velocity``: static kernel half-width (km/s). If None it is computed from the widths when they
      are concrete numbers, else :data:`DEFAULT_MAX_VELOCITY`; under ``jit``/``grad`` pass one that covers
      the largest widths you will use (:func:`kernel_half_width`).

    Differentiable in ``resolution``, ``lsf_sigma``, ``vsini``, ``vmacro`` (finite at zero widths);
    ``dv`` and ``max_velocity`` must be concrete. Widths given as literal 0/None skip their kernel.
    """
    flux = jnp.asarray(flux)
    kernel = broadening_kernel(
        dv,
        resolution=resolution,
        lsf_sigma=lsf_sigma,
        vsini=vsini,
        vmacro=vmacro,
        limb_darkening=limb_darkening,
        max_velocity=max_velocity,
    )
    if (
        _is_static_zero(resolution)
        and _is_static_zero(lsf_sigma)
        and _is_static_zero(vsini)
        and _is_static_zero(vmacro)
    ):
        return flux
    return _convolve_edges(flux, kernel.astype(jnp.result_type(flux.dtype, jnp.float32)))


# --------------------------------------------------------------------------------------------------
# resampling
# --------------------------------------------------------------------------------------------------
def resample(
    wavelength_in: Float[ArrayLike, "n_in"],
    flux_in: Float[ArrayLike, "... n_in"],
    wavelength_out: Float[ArrayLike, "n_out"],
) -> Float[Array, "... n_out"]:
    """Linear interpolation of ``flux_in`` (..., n_in) from increasing ``wavelength_in`` onto
    ``wavelength_out``. Outside the input range the end values are held (no extrapolation)."""
    wl_in = jnp.asarray(wavelength_in)
    wl_out = jnp.asarray(wavelength_out)
    flux_in = jnp.asarray(flux_in)
    interp = lambda f: jnp.interp(wl_out, wl_in, f)  # noqa: E731
    if flux_in.ndim == 1:
        return interp(flux_in)
    flat = flux_in.reshape((-1, flux_in.shape[-1]))
    return jax.vmap(interp)(flat).reshape(flux_in.shape[:-1] + (wl_out.shape[0],))


def interpolation_weights(wavelength_in, wavelength_out) -> tuple[np.ndarray, np.ndarray]:
    """Eager precomputation for repeated linear resampling between two fixed grids.

    Returns ``(index, t)`` such that ``flux_out = flux_in[..., index] * (1 - t) + flux_in[..., index + 1] * t``
    (equal to :func:`resample`, with end values held outside the input range).
    """
    wl_in = np.asarray(wavelength_in, dtype=np.float64)
    wl_out = np.asarray(wavelength_out, dtype=np.float64)
    if wl_in.ndim != 1 or wl_in.size < 2 or np.any(np.diff(wl_in) <= 0):
        raise WavelengthError("the input wavelength grid must be 1-D, strictly increasing, with at least 2 pixels")
    idx = np.clip(np.searchsorted(wl_in, wl_out, side="right") - 1, 0, wl_in.size - 2)
    t = np.clip((wl_out - wl_in[idx]) / (wl_in[idx + 1] - wl_in[idx]), 0.0, 1.0)
    return idx.astype(np.int64), t


__all__ += ["interpolation_weights"]


# --------------------------------------------------------------------------------------------------
# a Gaussian LSF whose width varies from pixel to pixel (eager numpy, built once)
# --------------------------------------------------------------------------------------------------
def _discrete_variance(s, k):
    w = np.exp(-0.5 * (k[None, :] / s[:, None]) ** 2)
    return np.sum(w * k[None, :] ** 2, axis=1) / np.sum(w, axis=1)


def discrete_gaussian_taps(sigma_px, half: int) -> np.ndarray:
    """``(n, 2·half + 1)`` unit-sum Gaussian weights on the integer offsets −half..half, one row per entry of
    ``sigma_px`` (widths in pixels), each with variance exactly ``sigma_px²`` (to 1e-12 relative; truncation at
    ``half`` aside): below ~2 pixels a sampled Gaussian's variance falls short of σ², so its width parameter is
    solved for (bisection); σ = 0 gives a delta. Eager numpy."""
    sig = np.asarray(sigma_px, dtype=np.float64)
    if np.any(~np.isfinite(sig)) or np.any(sig < 0):
        raise SpectrumError("LSF widths must be finite and >= 0")
    k = np.arange(-half, half + 1, dtype=np.float64)
    width = sig.copy()
    small = (sig > 0) & (sig < 2.0)  # above 2 px the sampled variance is exact to ~1e-30
    if np.any(small):
        target = sig[small] ** 2
        lo, hi = np.zeros_like(target), sig[small] + 1.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            under = _discrete_variance(mid, k) < target
            lo, hi = np.where(under, mid, lo), np.where(under, hi, mid)
        width[small] = 0.5 * (lo + hi)
    taps = np.zeros((sig.size, k.size))
    pos = width > 0
    if np.any(pos):
        w = np.exp(-0.5 * (k[None, :] / width[pos, None]) ** 2)
        taps[pos] = w / np.sum(w, axis=1, keepdims=True)
    taps[~pos, half] = 1.0
    return taps


def variable_lsf_rows(index: np.ndarray, weight: np.ndarray, sigma_px, n_fine: int) -> tuple[np.ndarray, np.ndarray]:
    """Interpolation rows ``(index, weight)`` (each ``(m, 4)``, consecutive nodes, e.g. 4-point cubic Lagrange)
    folded with one Gaussian per row of width ``sigma_px`` (fine-grid pixels): ``(m, 2h + 4)`` rows with
    h = ceil(6 max σ) + 1 (0 when every σ is 0) such that ``sum(fine[index] * weight, axis=1)`` is the fine spectrum
    smoothed by each row's own Gaussian and then interpolated. Eager numpy; indices clipped to the fine grid (the
    caller's grid should extend h pixels beyond the nodes)."""
    index, weight = np.asarray(index), np.asarray(weight, dtype=np.float64)
    sig = np.asarray(sigma_px, dtype=np.float64)
    smax = float(np.max(sig)) if sig.size else 0.0
    half = int(math.ceil(6.0 * smax)) + 1 if smax > 0 else 0
    taps = discrete_gaussian_taps(sig, half)
    n_taps = 2 * half + 1
    out = np.zeros((index.shape[0], n_taps + weight.shape[1] - 1))
    for q in range(weight.shape[1]):
        out[:, q : q + n_taps] += weight[:, q : q + 1] * taps
    start = index[:, :1] - half
    rows = np.clip(start + np.arange(out.shape[1])[None, :], 0, n_fine - 1)
    return rows.astype(index.dtype), out


def variable_lsf_apply(values: np.ndarray, sigma_px) -> np.ndarray:
    """``values`` (n, ...) on a grid uniform in ln λ, each point smoothed by its own Gaussian of width
    ``sigma_px[i]`` (grid pixels) centred on it; edges padded with their values. Eager numpy."""
    values = np.asarray(values, dtype=np.float64)
    sig = np.asarray(sigma_px, dtype=np.float64)
    smax = float(np.max(sig)) if sig.size else 0.0
    if smax == 0.0:
        return values
    half = int(math.ceil(6.0 * smax)) + 1
    taps = discrete_gaussian_taps(sig, half)
    padded = np.pad(values, [(half, half)] + [(0, 0)] * (values.ndim - 1), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1, axis=0)  # (n, ..., taps)
    return np.einsum("n...k,nk->n...", windows, taps)


__all__ += ["discrete_gaussian_taps", "variable_lsf_apply", "variable_lsf_rows"]


def degrade_to_resolution(wavelength: np.ndarray, flux: np.ndarray, resolution: float, step_kms: float = 0.5):
    """A high-resolution spectrum (e.g. a solar atlas) as an instrument at ``resolution`` would see it, before
    pixelisation: ``(grid, flux)`` on a grid uniform in ln λ with step ``step_kms`` spanning ``wavelength``,
    convolved with the Gaussian LSF of R (eager numpy; sample it at the pixels with ``np.interp``)."""
    wl = np.asarray(wavelength, dtype=np.float64)
    n = int(np.log(wl[-1] / wl[0]) * SPEED_OF_LIGHT_KMS / step_kms)
    grid = wl[0] * np.exp(np.arange(n) * step_kms / SPEED_OF_LIGHT_KMS)
    return grid, np.asarray(broaden(jnp.asarray(np.interp(grid, wl, flux)), step_kms, resolution=resolution))
