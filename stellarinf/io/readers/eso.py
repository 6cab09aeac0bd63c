"""ESO Phase 3 one-dimensional spectra (the archive's ``ADP.*.fits`` files of HARPS, UVES, FEROS, X-shooter, ...).

The ESO Science Data Products Standard (ESO-044286) stores a spectrum as one row of a binary table whose cells
hold whole arrays: ``WAVE``, ``FLUX``, ``ERR`` (and often ``QUAL``, ``FLUX_REDUCED``/``ERR_REDUCED``,
``CONTINUUM``), with the primary header saying ``PRODCATG = 'SCIENCE.SPECTRUM'`` and, where known, the resolving
power in ``SPEC_RES``. Two conventions matter and are easy to get wrong:

- air or vacuum is said only by the spectral axis's UCD (``TUCDn``): ``em.wl;obs.atmos`` is air, bare ``em.wl`` is
  vacuum; no keyword says it (an air spectrum read as vacuum fits an RV off by 82.7 km/s);
- a flux and its error come from the same family: ``FLUX`` with ``ERR``, ``FLUX_REDUCED`` with ``ERR_REDUCED``
  (X-shooter's calibrated flux is in erg/cm²/s/Å and its reduced error in ADU: mixing them is wrong by the whole
  flux calibration while every number stays finite and positive).

``QUAL`` ≠ 0 marks bad pixels.
"""

from __future__ import annotations

import numpy as np

from ...errors import SpectrumError
from ._common import (
    RawSpectrum,
    ReadOptions,
    _note,
    _simple_header,
    _to_unit_quiet,
    _unit_ratio,
    _unit_record,
    _wavelength_in_angstrom,
)

# flux column → its error column, in the order they are preferred
_FLUX_FAMILIES = (("FLUX", "ERR"), ("FLUX_REDUCED", "ERR_REDUCED"))
_AIR_UCD = "em.wl;obs.atmos"


def detect(hdul, opts: ReadOptions) -> bool:
    """An ESO Phase 3 spectrum: ``PRODCATG`` SCIENCE.SPECTRUM and a binary table with a ``WAVE`` column."""
    h0 = hdul[0].header
    if not str(h0.get("PRODCATG", "")).upper().startswith("SCIENCE.SPECTRUM"):
        return False
    return _spectrum_hdu(hdul, opts.hdu) is not None


def read(hdul, path, opts: ReadOptions) -> RawSpectrum:
    h = _spectrum_hdu(hdul, opts.hdu)
    if h is None:
        raise SpectrumError(
            f"{path.name}: an ESO Phase 3 spectrum needs a binary table with a WAVE column; give --hdu (or hdu=) if "
            "the spectrum is in another extension"
        )
    where = f"{path.name}[{h.name}]"
    names = {n.upper(): i for i, n in enumerate(h.columns.names)}
    if h.data is None or len(h.data) < 1:
        raise SpectrumError(f"{where}: the spectrum table has no rows")
    row = opts.row if len(h.data) > 1 else 0
    if not 0 <= row < len(h.data):
        raise SpectrumError(
            f"{where}: row {row} does not exist (the table has {len(h.data)}); give read_spectrum(..., row=N) with N in 0..{len(h.data) - 1}"
        )
    meta = {"format": "eso-phase3", "header": _simple_header(hdul[0].header) | _simple_header(h.header)}
    if len(h.data) > 1 and opts.row == 0:
        _note(meta, f"{where} holds {len(h.data)} spectra; reading row 0 (another: read_spectrum(..., row=N))")

    def column(name: str) -> tuple[np.ndarray, str | None]:
        i = names[name]
        return np.asarray(h.data[h.columns.names[i]][row], dtype=np.float64).ravel(), h.columns[i].unit

    wl_name = (opts.column("wavelength") or "WAVE").upper()
    if wl_name not in names:
        raise SpectrumError(
            f"{where}: no {wl_name} column (columns: {', '.join(h.columns.names)}); give --wavelength-col"
        )
    wl_raw, wl_unit = column(wl_name)
    unit = opts.unit if opts.unit is not None else _to_unit_quiet(wl_unit)
    wl = _wavelength_in_angstrom(wl_raw, unit, where)

    flux_name, err_name = _flux_and_error(names, opts, where)
    flux, flux_unit = column(flux_name)
    sigma = None
    if err_name is not None:
        err, err_unit = column(err_name)
        sigma = err * _unit_ratio(err_unit, flux_unit)
    if flux.shape != wl.shape:
        raise SpectrumError(f"{where}: {flux_name} has {flux.size} values but {wl_name} has {wl.size}")
    mask = np.ones(wl.shape, bool)
    meta["columns"] = {"wavelength": wl_name, "flux": flux_name, "error": err_name}
    if "QUAL" in names:
        qual, _ = column("QUAL")
        bad = qual != 0
        mask &= ~bad
        if bad.any():
            _note(meta, f"{int(bad.sum())} pixel(s) flagged in QUAL were masked", warn=False)
    if flux_unit:
        meta["flux_unit"] = str(flux_unit)
    h0 = hdul[0].header
    for key in ("INSTRUME", "OBJECT", "SPECSYS", "FLUXCAL", "CONTNORM", "SPEC_RES", "SNR"):
        if key in h0:
            meta[key.lower()] = h0[key]
    ucd = str(h.header.get(f"TUCD{names[wl_name] + 1}", "")).strip().lower()
    medium = "air" if ucd == _AIR_UCD else "vacuum" if ucd == "em.wl" else None
    if medium is None:
        _note(meta, f"{where}: the wavelength column has no UCD saying air or vacuum (TUCD = {ucd or 'none'})")
    header = dict(h.header) | {k: h0[k] for k in ("SPEC_RES",) if k in h0}
    return RawSpectrum(
        wavelength=wl,
        flux=flux,
        sigma=sigma,
        mask=mask,
        segments=None,
        meta=meta,
        header=header,
        medium_hint=medium,
        medium_hint_source="header",
        wavelength_unit=_unit_record(opts.unit, wl_unit),
    )


def _spectrum_hdu(hdul, hdu):
    from astropy.io import fits

    candidates = [hdul[hdu]] if hdu is not None else list(hdul)
    for h in candidates:
        if isinstance(h, fits.BinTableHDU) and "WAVE" in {n.upper() for n in h.columns.names}:
            return h
    return None


def _flux_and_error(names, opts: ReadOptions, where: str) -> tuple[str, str | None]:
    """The flux column and the error column of the same family (``FLUX``+``ERR``, ``FLUX_REDUCED``+``ERR_REDUCED``);
    a caller's explicit choice wins."""
    asked_flux, asked_err = opts.column("flux"), opts.column("error")
    if asked_flux is not None:
        flux = asked_flux.upper()
        if flux not in names:
            raise SpectrumError(f"{where}: no column {asked_flux!r}; columns: {', '.join(names)}")
        err = asked_err.upper() if asked_err else dict(_FLUX_FAMILIES).get(flux)
        return flux, err if err in names else None
    for flux, err in _FLUX_FAMILIES:
        if flux in names:
            if asked_err is not None:
                return flux, asked_err.upper() if asked_err.upper() in names else None
            return flux, err if err in names else None
    raise SpectrumError(
        f"{where}: no FLUX or FLUX_REDUCED column (columns: {', '.join(names)}); name the flux with --flux-col"
    )
