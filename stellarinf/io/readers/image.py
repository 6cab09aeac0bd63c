"""FITS 1-D (or 2-D, one spectrum per row) images with a linear / log-linear WCS and an optional error image."""

from __future__ import annotations

import numpy as np

from ...errors import SpectrumError
from ._common import (
    RawSpectrum,
    ReadOptions,
    _medium_from_header,
    _note,
    _sigma_from_ivar,
    _simple_header,
    _wcs_unit_record,
    _wcs_wavelength,
)


def _images(hdul):
    from astropy.io import fits

    return [h for h in hdul if isinstance(h, (fits.PrimaryHDU, fits.ImageHDU)) and h.data is not None]


def detect(hdul, opts: ReadOptions) -> bool:
    """Any image with data: the fallback after the instrument layouts."""
    return bool(_images(hdul))


def read(hdul, path, opts: ReadOptions) -> RawSpectrum:
    images = _images(hdul)
    if not images:
        raise SpectrumError(
            f"{path.name}: no table with a wavelength column and no image with flux; not a spectrum file?"
        )
    flux_hdu = hdul[opts.hdu] if opts.hdu is not None else images[0]
    return _read_fits_image(hdul, flux_hdu, path, opts.row, opts.unit)


def _error_image(hdul, flux_hdu, shape):
    from astropy.io import fits

    named = {
        "ERROR": "sigma",
        "ERR": "sigma",
        "SIGMA": "sigma",
        "UNCERTAINTY": "sigma",
        "NOISE": "sigma",
        "IVAR": "ivar",
        "INVVAR": "ivar",
        "VARIANCE": "var",
        "VAR": "var",
    }
    for h in hdul:
        if isinstance(h, fits.ImageHDU) and h.name.upper() in named and h.data is not None and h.data.shape == shape:
            return np.asarray(h.data, dtype=np.float64), named[h.name.upper()]
    # else: the next unnamed image of the same shape after the flux (the APOGEE / many pipelines layout)
    idx = hdul.index_of(flux_hdu.name) if flux_hdu.name else 0
    for h in list(hdul)[idx + 1 :]:
        if isinstance(h, fits.ImageHDU) and h.data is not None:
            if h.data.shape == shape and h.name.upper() in ("", "IMAGE"):
                return np.asarray(h.data, dtype=np.float64), "sigma"
            break
    return None, None


def _read_fits_image(hdul, flux_hdu, path, row, unit):
    where = f"{path.name}[{flux_hdu.name or 0}]"
    data = np.asarray(flux_hdu.data, dtype=np.float64)
    meta = {"format": "fits-image", "header": _simple_header(flux_hdu.header)}
    err, kind = _error_image(hdul, flux_hdu, data.shape)
    if data.ndim == 2:
        if not 0 <= row < data.shape[0]:
            raise SpectrumError(f"{where}: row {row} does not exist; the flux image has {data.shape[0]} rows")
        _note(meta, f"flux image is 2-D {data.shape}; using row {row}", warn=False)
        data = data[row]
        err = None if err is None else err[row]
    elif data.ndim != 1:
        raise SpectrumError(f"{where}: flux image has shape {data.shape}; need 1-D (or 2-D, one spectrum per row)")
    wl = _wcs_wavelength(flux_hdu.header, data.shape[0], unit, where)
    mask = np.ones(data.shape, bool)
    sigma = None
    if err is not None:
        if kind == "ivar":
            sigma, mask = _sigma_from_ivar(err, mask, meta)
        elif kind == "var":
            sigma = np.sqrt(np.where(err > 0, err, np.nan))
        else:
            sigma = err
    header = {**dict(hdul[0].header), **dict(flux_hdu.header)}
    return RawSpectrum(
        wavelength=wl,
        flux=data,
        sigma=sigma,
        mask=mask,
        segments=None,
        meta=meta,
        header=header,
        medium_hint=_medium_from_header(header),
        wavelength_unit=_wcs_unit_record(flux_hdu.header, unit),
    )
