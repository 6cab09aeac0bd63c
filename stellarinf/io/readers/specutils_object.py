"""specutils ``Spectrum`` / ``Spectrum1D`` objects (duck-typed: ``spectral_axis`` and ``flux`` Quantities, an
optional uncertainty and mask)."""

from __future__ import annotations

import os

import numpy as np

from ...errors import SpectrumError
from ._common import (
    RawSpectrum,
    ReadOptions,
    _flux_and_sigma_values,
    _medium_from_header,
    _note,
    _simple_header,
    _spectral_axis_in_angstrom,
    _uncertainty_as_sigma,
)


def detect(obj) -> bool:
    return _is_specutils_like(obj)


def read(obj, opts: ReadOptions) -> RawSpectrum:
    if opts.unit is not None:
        raise SpectrumError("a specutils spectrum carries the unit of its spectral axis; drop wavelength_unit")
    return _from_specutils(obj, opts.row)


def _is_specutils_like(obj) -> bool:
    """Duck typing: a specutils ``Spectrum``/``Spectrum1D`` (or anything with the same attributes) has a
    ``spectral_axis`` and a ``flux``, both ``Quantity``."""
    return not isinstance(obj, (str, os.PathLike)) and hasattr(obj, "spectral_axis") and hasattr(obj, "flux")


def _from_specutils(obj, row):
    """The reader's raw record from a specutils spectrum: its axis unit, its uncertainty type (std, var, ivar),
    its mask (True = bad there, inverted here), and air wavelengths when its WCS or header says ``AWAV``/air."""
    from astropy import units as u

    meta = {"format": "specutils", "header": {}, "source": f"<{type(obj).__module__}.{type(obj).__name__}>"}
    axis = obj.spectral_axis
    if not isinstance(axis, u.Quantity):
        raise SpectrumError(f"the spectral axis of this {type(obj).__name__} has no unit; give it one (e.g. * u.AA)")
    wl, unit_text = _spectral_axis_in_angstrom(axis)
    flux = obj.flux
    sigma = _uncertainty_as_sigma(obj.uncertainty) if getattr(obj, "uncertainty", None) is not None else None
    flux_unit = flux.unit if isinstance(flux, u.Quantity) else None
    flux_values, sigma_values = _flux_and_sigma_values(flux, sigma, meta)
    flux_values = np.asarray(flux_values, dtype=np.float64)
    mask_bad = getattr(obj, "mask", None)
    mask_bad = np.zeros(flux_values.shape, bool) if mask_bad is None else np.asarray(mask_bad, bool)
    if flux_values.ndim == 2:
        if not 0 <= row < flux_values.shape[0]:
            raise SpectrumError(
                f"row {row} does not exist; this specutils spectrum holds {flux_values.shape[0]} spectra"
            )
        _note(meta, f"specutils flux is 2-D {flux_values.shape}; using row {row}", warn=False)
        flux_values = flux_values[row]
        sigma_values = None if sigma_values is None else np.asarray(sigma_values)[row]
        mask_bad = mask_bad[row] if mask_bad.ndim == 2 else mask_bad
    if flux_values.shape != wl.shape:
        raise SpectrumError(
            f"the flux has {flux_values.shape} values but the spectral axis {wl.shape}; give one per pixel"
        )
    # a frequency/energy axis is increasing in ν: the λ order is then descending and _finalise reverses it
    header = dict(getattr(obj, "meta", {}) or {}).get("header") or {}
    header = {str(k): v for k, v in dict(header).items()}
    hint = _medium_from_header(header)
    try:
        ctype = str(obj.wcs.wcs.ctype[0]).upper()
        if ctype.startswith("AWAV"):
            hint = "air"
        elif ctype.startswith("WAVE") and hint is None:
            hint = "vacuum"
    except (AttributeError, IndexError, TypeError):
        pass
    if flux_unit is not None:
        meta["flux_unit"] = flux_unit.to_string()
    sigma_out = None if sigma_values is None else np.asarray(sigma_values, dtype=np.float64)
    return RawSpectrum(
        wavelength=wl,
        flux=flux_values,
        sigma=sigma_out,
        mask=~mask_bad,
        segments=None,
        meta=meta,
        header=_simple_header(header),
        medium_hint=hint,
        wavelength_unit=(unit_text, "header"),
    )
