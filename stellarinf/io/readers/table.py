"""Column-based spectra: FITS binary tables, and the column rules text tables share (names, units, σ/ivar/var,
masks, segments)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ...errors import SpectrumError
from ._common import (
    _BAD_MASK_NAMES,
    _FLUX_NAMES,
    _GOOD_MASK_NAMES,
    _IVAR_NAMES,
    _SEGMENT_NAMES,
    _SIGMA_NAMES,
    _VAR_NAMES,
    _WAVELENGTH_NAMES,
    RawSpectrum,
    ReadOptions,
    _as_bool_mask,
    _find,
    _medium_from_header,
    _sigma_from_ivar,
    _simple_header,
    _to_unit_quiet,
    _unit_ratio,
    _unit_record,
    _wavelength_in_angstrom,
)


def detect(hdul, opts: ReadOptions) -> bool:
    """A binary table with a wavelength column (or the table HDU the caller named)."""
    return _table_hdu(hdul, opts.hdu) is not None


def read(hdul, path, opts: ReadOptions) -> RawSpectrum:
    table_hdu = _table_hdu(hdul, opts.hdu)
    if table_hdu is None:
        raise SpectrumError(
            f"{path.name}: no binary table with a wavelength column; give hdu= or wavelength_col= (CLI: --hdu, --wavelength-col)"
        )
    return _from_table_columns(
        _fits_table_columns(table_hdu),
        opts.columns,
        opts.unit,
        f"{path.name}[{table_hdu.name}]",
        dict(table_hdu.header),
    )


def _table_hdu(hdul, hdu):
    from astropy.io import fits

    candidates = [hdul[hdu]] if hdu is not None else [h for h in hdul if isinstance(h, fits.BinTableHDU)]
    for h in candidates:
        if isinstance(h, (fits.BinTableHDU, fits.TableHDU)):
            names = [n.lower() for n in h.columns.names]
            if hdu is not None or any(n in names for n in _WAVELENGTH_NAMES):
                return h
    return None


def _fits_table_columns(h):
    out = {}
    for col in h.columns:
        data = np.asarray(h.data[col.name])
        if data.ndim == 2 and data.shape[0] == 1:  # one-row tables holding whole arrays
            data = data[0]
        out[col.name] = (data, col.unit)
    return out


def _from_table_columns(columns: Mapping[str, tuple[np.ndarray, Any]], cols, unit, where, header):
    lower = {k.lower(): k for k in columns}
    meta = {"format": "table", "header": _simple_header(header)}
    wl_name = _find(lower, _WAVELENGTH_NAMES, cols["wavelength"], "wavelength column")
    if wl_name is None:
        raise SpectrumError(
            f"{where}: no wavelength column (looked for {', '.join(_WAVELENGTH_NAMES)}); pass wavelength_col=NAME (CLI: --wavelength-col NAME)"
        )
    flux_name = _find(lower, _FLUX_NAMES, cols["flux"], "flux column")
    if flux_name is None:
        raise SpectrumError(
            f"{where}: no flux column (looked for {', '.join(_FLUX_NAMES)}); pass flux_col=NAME (CLI: --flux-col NAME)"
        )
    wl_raw, wl_unit = columns[wl_name]
    if wl_name.lower() == "loglam":
        wl = 10.0 ** np.asarray(wl_raw, dtype=np.float64)
    else:
        wl = _wavelength_in_angstrom(wl_raw, unit if unit is not None else _to_unit_quiet(wl_unit), where)
    flux, flux_unit = columns[flux_name]
    flux = np.asarray(flux, dtype=np.float64)
    sigma = None
    mask = np.ones(flux.shape, bool)
    err_name = _find(lower, _SIGMA_NAMES, cols["error"], "error column")
    ivar_name = _find(lower, _IVAR_NAMES, cols["ivar"], "ivar column") if err_name is None else None
    var_name = _find(lower, _VAR_NAMES) if err_name is None and ivar_name is None else None
    if err_name is not None:
        sigma = np.asarray(columns[err_name][0], dtype=np.float64) * _unit_ratio(columns[err_name][1], flux_unit)
    elif ivar_name is not None:
        ivar = np.asarray(columns[ivar_name][0], dtype=np.float64)
        sigma, mask = _sigma_from_ivar(ivar, mask, meta)
    elif var_name is not None:
        var = np.asarray(columns[var_name][0], dtype=np.float64)
        sigma = np.sqrt(np.where(var > 0, var, np.nan))
    good_name = _find(lower, _GOOD_MASK_NAMES, cols["mask"], "mask column")
    if good_name is not None:
        mask &= _as_bool_mask(columns[good_name][0], good_name)
    else:
        bad_name = _find(lower, _BAD_MASK_NAMES)
        if bad_name is not None:
            mask &= np.asarray(columns[bad_name][0]) == 0
    seg_name = _find(lower, _SEGMENT_NAMES)
    segments = None if seg_name is None else np.asarray(columns[seg_name][0]).astype(np.int64)
    # per-pixel resolving power (R = λ/FWHM), as write_spectrum_fits writes it
    res_name = lower.get("resolution")
    resolution = None if res_name is None else np.asarray(columns[res_name][0], dtype=np.float64)
    meta["columns"] = {"wavelength": wl_name, "flux": flux_name, "error": err_name or ivar_name or var_name}
    if flux_unit is not None:
        meta["flux_unit"] = str(flux_unit)
    wl_unit_record = ("log10 Angstrom", "format") if wl_name.lower() == "loglam" else _unit_record(unit, wl_unit)
    return RawSpectrum(
        wavelength=wl,
        flux=flux,
        sigma=sigma,
        mask=mask,
        segments=segments,
        meta=meta,
        header=header,
        medium_hint=_medium_from_header(header, wl_name),
        wavelength_unit=wl_unit_record,
        resolution=resolution,
    )
