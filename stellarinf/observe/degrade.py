"""Observed spectra sharper than the model: degrade them to the model's resolving power (``fit --degrade-to-model``).

A model computed at R_model cannot be sharpened, so data at R_obs > R_model cannot be fitted as they are. The
way forward is to smooth the data instead: per segment, convolve with the Gaussian that takes R_obs to R_model
(FWHM = c·√(1/R_model² − 1/R_obs²), Gaussian σ_k) and sample the result on a grid uniform in ln λ with step
Δv_new = 2√π σ_k (never finer than the data's own pixels).

Noise: smoothing correlates neighbouring pixels, and the likelihood treats pixels as independent. At the step
2√π σ_k the smoothed noise of neighbours is correlated by only exp(−π) ≈ 4 %, and its per-pixel σ is
σ_old · √(Δv_old/Δv_new) (white noise smoothed by a Gaussian of σ_k has variance σ² Δv_old / (2√π σ_k)): the
same total information as the original pixels, and a reduced χ² of ≈ 1. The new pixels are point samples of the
smoothed spectrum (the model is evaluated at the same points), coarser than the model's resolution element when
R_obs is well above R_model; that discards only the noise the smoothing averaged away.
Masked pixels are interpolated over before smoothing; a new pixel is masked when more than 5 % of its smoothed
weight came from masked ones. Edges lose 3 kernel σ (the kernel runs off the data there).
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from ..errors import SpectrumError
from ..wavelength import SPEED_OF_LIGHT_KMS
from .broadening import FWHM_PER_SIGMA, broaden

__all__ = ["degrade_spectrum", "match_model_resolution"]

BAD_WEIGHT_MAX = 0.05


def _log_grid(w0: float, w1: float, dv: float) -> np.ndarray:
    n = int(math.floor(math.log(w1 / w0) * SPEED_OF_LIGHT_KMS / dv)) + 1
    return w0 * np.exp(np.arange(n) * dv / SPEED_OF_LIGHT_KMS)


def degrade_spectrum(spec, resolution: float):
    """``spec`` (a :class:`~stellarinf.io.spectrum.Spectrum` at R_obs = ``spec.resolution``) as an instrument at
    ``resolution`` would have seen it (see the module doc); ``spec`` itself when it is not sharper."""
    r_obs, r_new = spec.resolution, float(resolution)
    if r_obs is None:
        raise SpectrumError("the spectrum's resolving power is unknown, so it cannot be degraded; give --resolution R")
    if isinstance(r_obs, np.ndarray):
        raise SpectrumError(
            "degrading needs one resolving power for the spectrum, and it has one per pixel (R(λ)); give one R "
            "(--resolution R) to degrade from"
        )
    if r_obs <= r_new:
        return spec
    r_kernel = 1.0 / math.sqrt(1.0 / r_new**2 - 1.0 / float(r_obs) ** 2)
    sigma_kernel = SPEED_OF_LIGHT_KMS / (FWHM_PER_SIGMA * r_kernel)  # km/s
    segments = spec.segments if spec.segments is not None else np.zeros(spec.n_pix, dtype=int)
    mask = spec.mask if spec.mask is not None else np.ones(spec.n_pix, dtype=bool)
    out = {"wavelength": [], "flux": [], "sigma": [], "mask": [], "segments": []}
    for seg in np.unique(segments):
        sel = segments == seg
        wl, f, s, m = spec.wavelength[sel], spec.flux[sel], spec.sigma[sel], mask[sel]
        good = m & np.isfinite(f) & np.isfinite(s) & (s > 0)
        if good.sum() < 2:
            continue
        dv_old = float(np.median(np.diff(np.log(wl)))) * SPEED_OF_LIGHT_KMS
        fine = _log_grid(wl[0], wl[-1], dv_old)
        f_fine = np.interp(fine, wl[good], f[good])
        bad_fine = np.interp(fine, wl, (~good).astype(np.float64))
        f_conv = np.asarray(broaden(jnp.asarray(f_fine), dv_old, resolution=r_kernel))
        bad_conv = np.asarray(broaden(jnp.asarray(bad_fine), dv_old, resolution=r_kernel))
        dv_new = max(dv_old, 2.0 * math.sqrt(math.pi) * sigma_kernel)
        edge = 1.0 + 3.0 * sigma_kernel / SPEED_OF_LIGHT_KMS
        grid = _log_grid(wl[0] * edge, wl[-1] / edge, dv_new)
        if grid.size < 2:
            continue
        out["wavelength"].append(grid)
        out["flux"].append(np.interp(grid, fine, f_conv))
        out["sigma"].append(np.interp(grid, wl[good], s[good]) * math.sqrt(dv_old / dv_new))
        out["mask"].append(np.interp(grid, fine, bad_conv) <= BAD_WEIGHT_MAX)
        out["segments"].append(np.full(grid.size, seg))
    if not out["wavelength"]:
        raise SpectrumError("too few usable pixels to degrade the spectrum to the model's resolving power")
    arrays = {k: np.concatenate(v) for k, v in out.items()}
    note = (
        f"degraded from R {float(r_obs):,.0f} to the model's R {r_new:,.0f} (Gaussian smoothing, {spec.n_pix} → "
        f"{arrays['wavelength'].size} pixels, one pixel per {2.0 * math.sqrt(math.pi) * sigma_kernel:.1f} km/s, where the smoothed noise is uncorrelated)"
    )
    meta = {**spec.meta, "notes": [*spec.meta.get("notes", []), note], "degraded_from_resolution": float(r_obs)}
    return dataclasses.replace(
        spec,
        wavelength=arrays["wavelength"],
        flux=arrays["flux"],
        sigma=arrays["sigma"],
        mask=arrays["mask"],
        segments=arrays["segments"] if spec.segments is not None else None,
        resolution=r_new,
        meta=meta,
    )


def match_model_resolution(spec, model, resolution: float | None, degrade: bool):
    """``(spectrum, resolution, note)`` ready for the model: a spectrum sharper than the model is degraded to the
    model's R when ``degrade``, else refused with the way forward; anything else passes unchanged (note None)."""
    r_model = getattr(model, "resolution", None)
    r_obs = resolution if resolution is not None else spec.resolution
    if isinstance(r_obs, np.ndarray):  # R(λ) per pixel: the sharpest pixel decides
        r_obs = float(np.max(r_obs))
        if r_model is not None and r_obs > float(r_model) * (1 + 1e-12):
            raise SpectrumError(
                f"the spectrum's resolving power R(λ) reaches {r_obs:,.0f}, higher than the model's "
                f"R={float(r_model):,.0f}, and a model cannot be sharpened; degrading a per-pixel R(λ) is not "
                "supported: give one R to degrade to (--resolution R --degrade-to-model), or use a model computed at "
                "a higher resolution"
            )
    if r_model is None or r_obs is None or float(r_obs) <= float(r_model) * (1 + 1e-12):
        return spec, resolution, None
    if not degrade:
        raise SpectrumError(
            f"the spectrum's resolving power R={float(r_obs):,.0f} is higher than the model's R={float(r_model):,.0f}, "
            "and a model cannot be sharpened: degrade the data to the model's R with --degrade-to-model (Python: "
            "degrade_to_model=True), or use a model computed at a higher resolution"
        )
    out = degrade_spectrum(dataclasses.replace(spec, resolution=float(r_obs)), float(r_model))
    return out, float(r_model), out.meta["notes"][-1]
