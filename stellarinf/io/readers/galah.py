"""GALAH per-CCD files: the DR3 layout (iraf 5.x) and the DR4-era iraf 6.x layout, chosen by the reduction
version in the header (``PIPE_VER``); a version or layout this reader does not know is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import SpectrumError
from ._common import (
    RawSpectrum,
    ReadOptions,
    _medium_from_header,
    _note,
    _simple_header,
    _wcs_unit_record,
    _wcs_wavelength,
)


def detect(hdul, opts: ReadOptions) -> bool:
    return _looks_like_galah(hdul)


def read(hdul, path, opts: ReadOptions) -> RawSpectrum:
    return _read_galah(hdul, path, opts.hdu, opts.unit)


_GALAH_MIN_HDUS = 5

_GALAH_HDUS = {0: "unnormalised", 4: "normalised"}  # flux HDUs the reader can use; HDU1 = relative error of HDU0


def _header_text(header, keys) -> str:
    return " ".join(str(header.get(k, "")) for k in keys).upper()


def _is_galah_image(h) -> bool:
    from astropy.io import fits

    return isinstance(h, (fits.PrimaryHDU, fits.ImageHDU)) and h.data is not None and h.data.ndim == 1


def _galah_layout_problem(hdul) -> str | None:
    """Why ``hdul`` does not have the GALAH DR3 layout (None if it does)."""
    if len(hdul) < _GALAH_MIN_HDUS:
        return f"the GALAH DR3 layout has {_GALAH_MIN_HDUS} HDUs (0 flux, 1 relative error, ..., 4 normalised flux); this file has {len(hdul)}"
    for i in (0, 1, 4):
        if not _is_galah_image(hdul[i]):
            return f"HDU{i} is not a 1-D image; the GALAH DR3 layout has 1-D spectra in HDUs 0, 1 and 4"
    for i in (0, 4):
        if "CRVAL1" not in hdul[i].header:
            return f"HDU{i} has no wavelength WCS (CRVAL1/CDELT1)"
    return None


def _looks_like_galah(hdul) -> bool:
    h0 = hdul[0].header
    if "HERMES" in _header_text(h0, ("INSTRUME", "ORIGIN", "TELESCOP")):
        return True  # a HERMES file in another layout then fails in _read_galah with a clear message
    if "PIPE_VER" in h0 and "IRAF REDUCTION PIPELINE" in _header_text(h0, ("ORIGIN",)):
        return True  # the GALAH iraf reduction (DR4 era) stamps its version
    if _galah_layout_problem(hdul) is not None:
        return False
    extname4 = str(hdul[4].header.get("EXTNAME", "")).lower()
    if "normalised" in extname4 or "normalized" in extname4:
        return True
    obs = _header_text(h0, ("TELESCOP", "ORIGIN"))
    return "AAT" in obs.split() or "ANGLO-AUSTRALIAN" in obs


def _galah_ccd(path) -> tuple[str, int] | None:
    """(sobject_id, CCD) from a GALAH DR3 file name ``<15-digit sobject_id><CCD 1-4>.fits``, else None."""
    stem = Path(path).name.lower().removesuffix(".gz")
    for ext in (".fits", ".fit", ".fts"):
        stem = stem.removesuffix(ext)
    if len(stem) == 16 and stem.isdigit() and stem[-1] in "1234":
        return stem[:-1], int(stem[-1])
    return None


def galah_arm_set(paths) -> dict[int, object] | None:
    """``{CCD: path}`` when ``paths`` are two or more GALAH per-CCD files (``<sobject_id><CCD>.fits``) of one star
    with distinct CCDs, i.e. the arms of one star (``stellarinf fit`` combines them); else None."""
    found = [(_galah_ccd(p), p) for p in paths]
    if len(found) < 2 or any(ids is None for ids, _ in found):
        return None
    if len({ids[0] for ids, _ in found}) != 1 or len({ids[1] for ids, _ in found}) != len(found):
        return None
    return {ids[1]: p for ids, p in sorted(found, key=lambda t: t[0][1])}


def _galah_wavelength(header, n, unit, where, meta) -> np.ndarray:
    """Air wavelengths of a GALAH HDU from its linear WCS; ``CRPIX1 = 0`` means pixel 1 (GALAH convention)."""
    if header.get("CRPIX1") == 0:
        header = header.copy()
        header["CRPIX1"] = 1.0
        _note(meta, f"{where}: CRPIX1 = 0 read as 1 (the GALAH convention: CRVAL1 is the first pixel)", warn=False)
    return _wcs_wavelength(header, n, unit, where)


def _on_grid(values, wl_from, wl_to, where, meta) -> np.ndarray:
    """``values`` given on ``wl_from`` placed on ``wl_to``: the same grid or a pixel-aligned part of it is sliced
    exactly, anything else linearly interpolated (NaN outside ``wl_from``)."""
    step = wl_from[1] - wl_from[0]
    if wl_to.size > 1 and abs((wl_to[1] - wl_to[0]) - step) <= 1e-6 * abs(step):
        offset = (wl_to[0] - wl_from[0]) / step
        start = int(round(offset))
        if abs(offset - start) < 1e-3 and 0 <= start and start + wl_to.size <= wl_from.size:
            return values[start : start + wl_to.size]
    _note(meta, f"{where}: relative errors interpolated onto the flux pixels (their WCS grids differ)", warn=False)
    return np.interp(wl_to, wl_from, values, left=np.nan, right=np.nan)


# GALAH reductions by version (PIPE_VER in the primary header): "dr3" = iraf 5.x (DR3, 5 HDUs, normalised flux in
# HDU4); "iraf6" = iraf 6.x (DR4 era, 8 HDUs: 0 flux in counts, 1 normalized, 2 relative_error, 3 sky, 4 teluric,
# 5 scattered, 6 cross_talk, 7 resolution_profile = LSF FWHM in Å per pixel; one linear WCS for all).
# Read with the other's rule, an iraf-6 file gives the telluric spectrum as flux and the normalised flux as error.
_GALAH_IRAF6_EXTNAMES = {1: "normalized", 2: "relative_error", 4: "teluric"}


_GALAH_IRAF6_HDUS = {0: "unnormalised", 1: "normalised"}


def _extname(hdul, i) -> str:
    return str(hdul[i].header.get("EXTNAME", "")).strip().lower() if i < len(hdul) else ""


def galah_reduction(hdul, name: str = "this file") -> str:
    """The GALAH layout of ``hdul`` from its reduction version: ``"dr3"`` or ``"iraf6"``; a version this reader does
    not know, or a version whose extensions do not match it, raises :class:`SpectrumError` (reading a layout by
    another's rule gives plausible-looking garbage: the telluric spectrum as flux)."""
    version = str(hdul[0].header.get("PIPE_VER", "")).strip()
    iraf6_names = all(_extname(hdul, i) == n for i, n in _GALAH_IRAF6_EXTNAMES.items())
    plain = "pass format='fits-image' with hdu=N (CLI: --format fits-image --hdu N) to read one extension as a plain spectrum"
    if not version:
        return "iraf6" if iraf6_names else "dr3"
    try:
        major = int(float(version))
    except ValueError:
        major = None
    if major is not None and major <= 5 and not iraf6_names:
        return "dr3"
    if major == 6 and iraf6_names:
        return "iraf6"
    names = ", ".join(f"{i}:{_extname(hdul, i) or '-'}" for i in range(len(hdul)))
    if major == 6 or (major is not None and major <= 5):
        raise SpectrumError(
            f"{name}: GALAH reduction version {version} (PIPE_VER) but its extensions ({names}) are not that version's "
            f"layout; the file may have been rewritten. {plain}"
        )
    raise SpectrumError(
        f"{name}: GALAH reduction version {version!r} (PIPE_VER) is not one this reader knows (iraf 5.x = DR3, 6.x = DR4 "
        f"era; extensions here: {names}). Reading it with another version's layout would take the wrong extension as "
        f"the flux; {plain}"
    )


def _read_galah(hdul, path, hdu, unit):
    if galah_reduction(hdul, path.name) == "iraf6":
        return _read_galah_iraf6(hdul, path, hdu, unit)
    problem = _galah_layout_problem(hdul)
    if problem is not None:
        raise SpectrumError(
            f"{path.name}: not a GALAH DR3 spectrum: {problem}; pass format='fits-image' or 'fits-table' (CLI: --format fits-image) to read it "
            "as a plain FITS spectrum"
        )
    flux_idx = 4 if hdu is None else hdu
    if flux_idx not in _GALAH_HDUS:
        raise SpectrumError(
            f"{path.name}: GALAH DR3 flux is HDU4 (normalised, default) or HDU0 (unnormalised); got hdu={hdu!r} (CLI: --hdu 4 or --hdu 0)"
        )
    flux_hdu, err_hdu = hdul[flux_idx], hdul[1]
    meta = {
        "format": "galah-dr3",
        "hdu": flux_idx,
        "flux": _GALAH_HDUS[flux_idx],
        "header": _simple_header(hdul[0].header),
    }
    ids = _galah_ccd(path)
    if ids is not None:
        meta["sobject_id"], meta["ccd"] = ids
    flux = np.asarray(flux_hdu.data, dtype=np.float64)
    rel = np.asarray(err_hdu.data, dtype=np.float64)
    wl = _galah_wavelength(flux_hdu.header, flux.size, unit, f"{path.name}[{flux_idx}]", meta)
    # HDU1 is the relative error of HDU0, on HDU0's pixels (its own WCS when it has one)
    if rel.size != hdul[0].data.size:
        raise SpectrumError(
            f"{path.name}: HDU1 (relative error) has {rel.size} pixels but HDU0 (flux) has {hdul[0].data.size}"
        )
    rel = np.where(np.isfinite(rel) & (rel != 0), rel, np.nan)  # bad errors must not leak into interpolated neighbours
    if flux_idx != 0:
        err_header = err_hdu.header if "CRVAL1" in err_hdu.header else hdul[0].header
        wl_err = _galah_wavelength(err_header, rel.size, unit, f"{path.name}[1]", meta)
        rel = _on_grid(rel, wl_err, wl, path.name, meta)
    sigma = np.abs(rel * flux)  # the sign of σ/flux follows the flux in noisy line cores; σ is its size
    # NaN fluxes are counted (and masked) by _finalise; here only pixels with a flux but no usable error
    bad = np.isfinite(flux) & ~(np.isfinite(sigma) & (sigma > 0))
    if np.any(bad):
        _note(
            meta,
            f"{int(bad.sum())} GALAH pixel(s) whose σ = |relative error × flux| is not finite and positive were masked",
        )
    header = {**dict(hdul[0].header), **dict(flux_hdu.header)}
    # GALAH is air; honour an explicit medium keyword, but not a generic CTYPE1 = 'WAVE' written by IRAF
    hint = _medium_from_header({k: v for k, v in header.items() if k != "CTYPE1"})
    return RawSpectrum(
        wavelength=wl,
        flux=flux,
        sigma=np.where(bad, np.nan, sigma),
        mask=~bad,
        segments=None,
        meta=meta,
        header=header,
        medium_hint=hint or "air",
        medium_hint_source="header" if hint else "format",
        wavelength_unit=_wcs_unit_record(flux_hdu.header, unit),
    )


def _read_galah_iraf6(hdul, path, hdu, unit):
    """GALAH iraf 6.x (DR4 era): flux HDU1 (normalised, default) or HDU0 (counts), σ = |relative error (HDU2) × flux|
    on the same pixels, resolving power R(λ) = λ / FWHM per pixel from the resolution profile (HDU7) when it has one
    (pixels without a usable FWHM take R interpolated from their neighbours)."""
    flux_idx = 1 if hdu is None else hdu
    if flux_idx not in _GALAH_IRAF6_HDUS:
        raise SpectrumError(
            f"{path.name}: GALAH iraf-6 flux is HDU1 (normalised, default) or HDU0 (counts); got hdu={hdu!r} (CLI: --hdu 1 or --hdu 0)"
        )
    version = str(hdul[0].header.get("PIPE_VER", "6")).strip()
    meta = {
        "format": "galah-iraf6",
        "reduction": f"iraf {version}",
        "hdu": flux_idx,
        "flux": _GALAH_IRAF6_HDUS[flux_idx],
        "header": _simple_header(hdul[0].header),
    }
    ids = _galah_ccd(path)
    if ids is not None:
        meta["sobject_id"], meta["ccd"] = ids
    flux = np.asarray(hdul[flux_idx].data, dtype=np.float64)
    rel = np.asarray(hdul[2].data, dtype=np.float64)
    if flux.ndim != 1 or rel.shape != flux.shape:
        raise SpectrumError(
            f"{path.name}: HDU{flux_idx} (flux) has shape {flux.shape} and HDU2 (relative error) {rel.shape}; "
            "the iraf-6 layout has equal 1-D spectra"
        )
    wl = _galah_wavelength(hdul[flux_idx].header, flux.size, unit, f"{path.name}[{flux_idx}]", meta)
    sigma = np.abs(np.where(np.isfinite(rel) & (rel != 0), rel, np.nan) * flux)
    bad = np.isfinite(flux) & ~(np.isfinite(sigma) & (sigma > 0))
    if np.any(bad):
        _note(
            meta,
            f"{int(bad.sum())} GALAH pixel(s) whose σ = |relative error × flux| is not finite and positive were masked",
        )
    header = {**dict(hdul[0].header), **dict(hdul[flux_idx].header)}
    header = {
        k: v for k, v in header.items() if str(k).upper() not in ("RES", "RESOLUTN", "SPEC_RES", "RESOLUTION", "R")
    }
    resolution = None
    if len(hdul) > 7 and hdul[7].data is not None and np.asarray(hdul[7].data).shape == flux.shape:
        fwhm = np.asarray(hdul[7].data, dtype=np.float64)
        ok = np.isfinite(fwhm) & (fwhm > 0)
        if np.count_nonzero(ok) > flux.size // 2:
            o = np.argsort(wl[ok])
            resolution = np.interp(wl, wl[ok][o], (wl[ok] / fwhm[ok])[o])  # R per pixel; gaps from neighbours
            header["RESOLUTN"] = float(np.median(resolution))
            _note(
                meta,
                f"resolving power R(λ) per pixel from the resolution profile (HDU7, λ/FWHM): "
                f"{resolution.min():,.0f}–{resolution.max():,.0f}, median {header['RESOLUTN']:,.0f}"
                + (f" ({int((~ok).sum())} pixel(s) without a usable FWHM interpolated)" if not ok.all() else ""),
                warn=False,
            )
    hint = _medium_from_header({k: v for k, v in header.items() if k != "CTYPE1"})
    return RawSpectrum(
        wavelength=wl,
        flux=flux,
        sigma=np.where(bad, np.nan, sigma),
        mask=~bad,
        segments=None,
        meta=meta,
        header=header,
        medium_hint=hint or "air",
        medium_hint_source="header" if hint else "format",
        wavelength_unit=_wcs_unit_record(hdul[flux_idx].header, unit),
        resolution=resolution,
    )
