"""APOGEE apStar / aspcapStar: HDU1 flux, HDU2 σ, log10-λ WCS in vacuum; zero-flux chip gaps masked."""

from __future__ import annotations

import numpy as np

from ...errors import SpectrumError
from ._common import RawSpectrum, ReadOptions, _note, _simple_header, _wcs_unit_record, _wcs_wavelength


def detect(hdul, opts: ReadOptions) -> bool:
    return _looks_like_apogee(hdul)


def read(hdul, path, opts: ReadOptions) -> RawSpectrum:
    return _read_apogee(hdul, path, opts.row, opts.unit)


def _looks_like_apogee(hdul) -> bool:
    h0 = hdul[0].header
    tel = str(h0.get("TELESCOP", "")).lower()
    if tel in ("apo25m", "lco25m", "apo1m") or "APRED" in h0 or "APSTAR" in h0:
        return True
    if len(hdul) > 2 and hdul[0].data is None and hdul[1].data is not None:
        crval = hdul[1].header.get("CRVAL1")
        return crval is not None and abs(float(crval) - 4.179) < 0.01 and "CDELT1" in hdul[1].header
    return False


def _read_apogee(hdul, path, row, unit):
    if len(hdul) < 3 or hdul[1].data is None or hdul[2].data is None:
        raise SpectrumError(
            f"{path.name}: APOGEE layout needs HDU1 = flux and HDU2 = error; this file has {len(hdul)} HDUs"
        )
    flux = np.asarray(hdul[1].data, dtype=np.float64)
    err = np.asarray(hdul[2].data, dtype=np.float64)
    meta = {"format": "apogee", "header": _simple_header(hdul[0].header)}
    if flux.ndim == 2:
        flux, err = flux[row], err[row]
        _note(meta, f"APOGEE 2-D flux; using row {row} (row 0 is the combined spectrum)", warn=False)
    wl = _wcs_wavelength(hdul[1].header, flux.shape[0], unit, f"{path.name}[1]")
    # chip gaps and rejected pixels carry zero flux (and often zero/huge error): not data
    gap = ~(flux != 0) | ~np.isfinite(err) | ~(err > 0)
    if np.any(gap):
        _note(
            meta,
            f"{int(gap.sum())} APOGEE pixel(s) with zero flux or no valid error (chip gaps) were masked",
            warn=False,
        )
    sigma = np.where(gap, np.nan, err)
    return RawSpectrum(
        wavelength=wl,
        flux=flux,
        sigma=sigma,
        mask=~gap,
        segments=None,
        meta=meta,
        header=dict(hdul[0].header),
        medium_hint="vacuum",
        medium_hint_source="format",
        wavelength_unit=_wcs_unit_record(hdul[1].header, unit),
    )
