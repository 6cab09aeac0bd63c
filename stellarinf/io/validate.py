"""Checks that a spectrum (and fixed values) can support a fit, before any model is loaded or compiled.

Pure functions raising :class:`~stellarinf.errors.SpectrumError` / :class:`~stellarinf.errors.LabelError`
with the problem and the fix. A fit pipeline calls :func:`validate_for_fit` once it knows how many
parameters are free, and :func:`validate_fixed_labels` on ``--fix`` values; neither touches a model.

Why they exist (issue #23): a 5-pixel spectrum "fitted" 16 parameters with dof −9 and no flag; an all-zero
flux was fitted with only a χ² flag; ``--fix teff=50000`` ran to garbage outside the training box.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import LabelError, SpectrumError

__all__ = ["usable_pixels", "validate_for_fit", "validate_fixed_labels"]

# flux varying by less than this fraction of its typical size carries no line information at any S/N
_FLAT_RELATIVE = 1e-10


def usable_pixels(spectrum) -> np.ndarray:
    """Boolean mask of the pixels a likelihood can use: unmasked, finite flux, finite positive σ."""
    flux, sigma = np.asarray(spectrum.flux), np.asarray(spectrum.sigma)
    return np.asarray(spectrum.mask, bool) & np.isfinite(flux) & np.isfinite(sigma) & (sigma > 0)


def validate_for_fit(spectrum, n_free: int, *, min_dof: int = 1) -> int:
    """Refuse a spectrum a fit with ``n_free`` free parameters cannot constrain; return the usable pixel count.

    - no usable pixel (all NaN flux, all masked) → error;
    - fewer than ``n_free + min_dof`` usable pixels (zero or negative degrees of freedom: the fit would
      interpolate the noise and report meaningless uncertainties) → error saying both numbers;
    - flux zero everywhere, or constant (no line, no slope: nothing tells labels apart) → error.

    ``n_free`` counts everything the fit varies: labels, RV, broadening, jitter and continuum coefficients.
    """
    n_free = int(n_free)
    if n_free < 0:
        raise ValueError(f"n_free must be >= 0, got {n_free}")
    use = usable_pixels(spectrum)
    n_use = int(use.sum())
    total = int(np.asarray(spectrum.mask).size)
    if n_use == 0:
        raise SpectrumError(
            f"the spectrum has no usable pixel ({total} pixels, all masked, NaN or without a valid uncertainty); "
            "check the flux and error columns (`stellarinf inspect FILE` shows what was read)"
        )
    if n_use < n_free + min_dof:
        raise SpectrumError(
            f"the spectrum has {n_use} usable pixel(s) but the fit has {n_free} free parameters (labels, RV, broadening, "
            f"continuum); it needs at least {n_free + min_dof}. Give a spectrum with more pixels, or free fewer "
            "parameters (--fix NAME=VALUE, a lower --continuum-degree)"
        )
    flux = np.asarray(spectrum.flux, dtype=np.float64)[use]
    scale = float(np.max(np.abs(flux)))
    if scale == 0.0:
        raise SpectrumError(
            f"the flux is zero at all {n_use} usable pixels: nothing to fit. Check that the flux column (CLI: "
            "--flux-col NAME) and the FITS extension (--hdu) are the right ones"
        )
    if float(np.ptp(flux)) <= _FLAT_RELATIVE * scale:
        raise SpectrumError(
            f"the flux is constant ({flux[0]:g}) at all {n_use} usable pixels: no line or slope to fit. Check the flux "
            "column (CLI: --flux-col NAME) and the FITS extension (--hdu); a placeholder or continuum-only spectrum "
            "cannot constrain labels"
        )
    return n_use


def validate_fixed_labels(fixed: Mapping[str, float], label_space) -> dict[str, float]:
    """Check ``--fix`` values before a fit: finite, and labels inside the model's training box (an emulator
    outside its box returns garbage, e.g. negative flux at teff 50,000). Names that are not labels (rv, vsini,
    continuum coefficients, ...) are left to the observation model, which knows them. Returns floats."""
    out = {}
    names = tuple(label_space.names)
    for name, value in fixed.items():
        v = float(value)
        if not np.isfinite(v):
            raise LabelError(f"--fix {name}={value}: the value must be finite")
        if name in names:
            j = names.index(name)
            lo, hi = float(label_space.lower[j]), float(label_space.upper[j])
            if not lo <= v <= hi:
                raise LabelError(
                    f"--fix {name}={v:g} is outside the model's training box [{lo:g}, {hi:g}]; an emulator gives garbage "
                    "outside it. Fix it inside the box, or use a model trained there"
                )
        out[name] = v
    return out
