"""Observed spectra: the :class:`Spectrum` container, readers for common file layouts, a FITS writer.

Everything inside is vacuum Å (``stellarinf.wavelength`` conventions); readers convert units and air
wavelengths at the edge. Supported inputs (``read_spectrum`` picks by extension and content):

- **FITS binary table** (first table HDU with a wavelength column): columns matched case-insensitively:
  wavelength (``wavelength, wave, lambda, lam, wl``; or ``loglam`` = log10 Å), flux (``flux``), one
  uncertainty column (``error, err, sigma, uncertainty, flux_err, e_flux`` as σ; ``ivar,
  inverse_variance, invvar`` as 1/σ²; ``variance, var`` as σ²), optional ``mask`` (True/1 = use) or
  ``bad``/``bitmask``/``and_mask`` (non-zero = do not use), optional ``segment``/``order``/``arm``
  (integer id per pixel). Units from ``TUNITn``.
- **FITS 1-D image** with a linear or log-linear WCS (``CRVAL1``, ``CDELT1`` or ``CD1_1``, ``CRPIX1``;
  log10 λ if ``DC-FLAG = 1`` or ``CTYPE1 = 'LOG-LINEAR'``, natural-log algorithm for ``CTYPE1 =
  'WAVE-LOG'``; ``CTYPE1 = 'AWAV'`` or ``AIRORVAC = 'air'`` mean air wavelengths; ``CUNIT1`` for the unit,
  default Å) and an optional uncertainty image (an extension named ERROR/ERR/SIGMA/UNCERTAINTY/NOISE,
  IVAR/INVVAR or VARIANCE/VAR, else the next unnamed image of the same shape, taken as σ).
- **APOGEE apStar/aspcapStar** (``TELESCOP`` apo25m/lco25m or ``CRVAL1`` ≈ 4.179 log10 Å): HDU1 flux,
  HDU2 σ, log10-λ WCS, vacuum; the first row when 2-D (the combined spectrum); zero-flux pixels (chip
  gaps) are masked.
- **GALAH DR3** per-CCD files (``<sobject_id><ccd>.fits``, CCD 1–4 = blue, green, red, near-IR; detected by
  HERMES in ``INSTRUME``/``ORIGIN``/``TELESCOP``, an HDU4 ``EXTNAME`` saying normalised, or ``TELESCOP``/``ORIGIN``
  naming the AAT on a file with that layout): HDU0 unnormalised sky-subtracted flux, HDU1 its relative error
  (σ/flux), HDU2–3 the spectrum without sky subtraction and its error (unused), HDU4 the continuum-normalised
  flux. Read: HDU4 (default; ``hdu=0`` for the unnormalised flux) with σ = |relative error × flux|, the relative
  error placed on that HDU's pixels through the WCS (HDU4 of CCD 4 is shorter than HDU1). Each HDU has its own
  linear WCS in air Å (``CRPIX1 = 0`` is read as 1, as the GALAH tools do), converted to vacuum; pixels with
  unusable σ are masked with a warning.
- **GALAH iraf 6.x** (DR4-era reduction; ``PIPE_VER = '6.0'``, ``ORIGIN = 'IRAF reduction pipeline'``, EXTNAMEs
  normalized / relative_error / sky / teluric / scattered / cross_talk / resolution_profile): HDU1 normalised flux
  (default; ``hdu=0`` for counts), σ = |HDU2 × flux|, one linear air-Å WCS, R = median λ/FWHM of HDU7. The
  reduction version picks the layout; an unknown version, or extensions that do not match it, is refused
  (:func:`galah_reduction`).
- **specutils** ``Spectrum``/``Spectrum1D`` objects (``read_spectrum(obj)``): axis unit, uncertainty, mask.
- **CSV / ASCII / ECSV** via ``astropy.io.ascii`` with the same column names as the FITS table.

Bad input raises :class:`~stellarinf.errors.SpectrumError` saying what is wrong and how to fix it.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpectrumError, WavelengthError
from ..wavelength import SPEED_OF_LIGHT_KMS, air_to_vacuum
from .atomic import atomic_path

__all__ = ["Spectrum", "SpectrumWarning", "crop_to_model", "der_snr_noise", "galah_reduction", "read_spectrum", "write_spectrum_fits"]


class SpectrumWarning(UserWarning):
    """Something in an observed spectrum was repaired or assumed (masked pixels, reversed order, ...)."""


# --------------------------------------------------------------------------------------------------
# the container
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Spectrum:
    """An observed spectrum, validated on construction.

    - ``wavelength`` (n,) vacuum Å, float64, strictly increasing within each segment;
    - ``flux`` (n,), ``sigma`` (n,) 1σ uncertainty in the same units (finite, > 0 where used);
    - ``mask`` (n,) bool, True = use the pixel (default all True);
    - ``segments`` (n,) int id per pixel (arm / echelle order; default 0), each segment one contiguous block;
    - ``meta``: free-form dict (source file, header cards, notes); ``resolution``: instrument R if known;
    - ``input_medium``: whether the wavelengths were given in ``"air"`` or ``"vacuum"`` (they are stored in
      vacuum either way) and ``medium_source``: who said so, ``"header"`` (a keyword of the file), ``"format"``
      (the instrument's convention, e.g. GALAH = air), ``"caller"`` (``medium=`` / ``--medium``) or
      ``"default"`` (nobody: assumed vacuum). Kept because an air spectrum read as vacuum fits an RV near
      −82.7 km/s and nothing else looks wrong; outputs copy :meth:`provenance`;
    - ``input_wavelength_unit`` / ``wavelength_unit_source``: the unit the wavelengths came in and who said so
      (same vocabulary; ``"default"`` = no unit anywhere, read as Å).

    ``wavelength``, ``flux`` and ``sigma`` may be astropy ``Quantity`` objects (any length, frequency or energy
    unit for the spectral axis; σ convertible to the flux unit) and ``sigma`` an astropy/specutils uncertainty
    (std, variance or inverse variance): they are converted, never silently stripped. Array wavelengths are
    vacuum Å; air wavelengths must be converted first (:func:`~stellarinf.wavelength.air_to_vacuum`) or read
    with ``read_spectrum(..., medium="air")``.
    """

    wavelength: np.ndarray
    flux: np.ndarray
    sigma: np.ndarray
    mask: np.ndarray | None = None
    segments: np.ndarray | None = None
    meta: dict = dataclasses.field(default_factory=dict)
    resolution: float | None = None
    input_medium: str = "vacuum"
    medium_source: str = "caller"
    input_wavelength_unit: str = "Angstrom"
    wavelength_unit_source: str = "caller"

    def __post_init__(self):
        self.meta = dict(self.meta)
        self.wavelength, unit = _spectral_axis_in_angstrom(self.wavelength)
        if unit is not None:
            self.input_wavelength_unit, self.wavelength_unit_source = unit, "caller"
        self.flux, self.sigma = _flux_and_sigma_values(self.flux, self.sigma, self.meta)
        if self.input_medium not in _MEDIA:
            raise SpectrumError(f"input_medium must be 'air' or 'vacuum', got {self.input_medium!r}")
        if self.medium_source not in _SOURCES or self.wavelength_unit_source not in _SOURCES:
            raise SpectrumError(f"medium_source and wavelength_unit_source must be one of {', '.join(_SOURCES)}")
        wl = np.asarray(self.wavelength, dtype=np.float64)
        n = wl.shape[0] if wl.ndim == 1 else -1
        if wl.ndim != 1 or n < 2:
            raise SpectrumError(f"a spectrum needs a 1-D wavelength array with at least 2 pixels, got shape {wl.shape}")
        self.wavelength = wl
        self.flux = self._column(self.flux, "flux", np.float64)
        self.sigma = self._column(self.sigma, "sigma", np.float64)
        self.mask = np.ones(n, bool) if self.mask is None else self._column(self.mask, "mask", bool)
        self.segments = np.zeros(n, np.int64) if self.segments is None else self._column(self.segments, "segments", np.int64)
        if self.resolution is not None:
            self.resolution = float(self.resolution)
            if not self.resolution > 0:
                raise SpectrumError(f"resolution must be a positive resolving power, got {self.resolution}")
        if not np.all(np.isfinite(wl)) or np.any(wl <= 0):
            i = int(np.argmax(~np.isfinite(wl) | (wl <= 0)))
            raise SpectrumError(f"wavelength[{i}] = {wl[i]} is not a finite positive number; fix or drop that pixel")
        _check_segments_contiguous(self.segments)
        for seg in np.unique(self.segments):
            idx = np.flatnonzero(self.segments == seg)
            bad = np.flatnonzero(np.diff(wl[idx]) <= 0)
            if bad.size:
                i = int(idx[bad[0] + 1])
                raise SpectrumError(
                    f"wavelengths are unsorted or duplicated at pixel {i} (segment {seg}): {wl[i]:.6f} Å follows "
                    f"{wl[i - 1]:.6f} Å; sort the spectrum, drop duplicates, or give overlapping orders distinct "
                    "segment ids"
                )
        use = self.mask
        if not np.any(use):
            raise SpectrumError("every pixel of the spectrum is masked; nothing to fit (check the mask / quality flags)")
        if not np.all(np.isfinite(self.flux[use])):
            i = int(np.flatnonzero(use & ~np.isfinite(self.flux))[0])
            raise SpectrumError(f"flux[{i}] is not finite but the pixel is not masked; mask it (mask[{i}] = False)")
        bad_sigma = use & ~(np.isfinite(self.sigma) & (self.sigma > 0))
        if np.any(bad_sigma):
            i = int(np.flatnonzero(bad_sigma)[0])
            raise SpectrumError(
                f"{int(bad_sigma.sum())} used pixel(s) have non-positive or non-finite uncertainties (first: sigma[{i}] = "
                f"{self.sigma[i]} at {wl[i]:.3f} Å); fix the uncertainties or mask those pixels"
            )

    def _column(self, values, name, dtype):
        arr = np.asarray(values).astype(dtype, copy=False)
        if arr.shape != self.wavelength.shape:
            raise SpectrumError(f"{name} has shape {arr.shape} but wavelength has {self.wavelength.shape}; give one value per pixel")
        return arr

    # --- convenience ----------------------------------------------------------------------------
    @property
    def n_pix(self) -> int:
        return int(self.wavelength.shape[0])

    @property
    def segment_ids(self) -> tuple[int, ...]:
        """Segment ids in order of appearance."""
        _, first = np.unique(self.segments, return_index=True)
        return tuple(int(self.segments[i]) for i in np.sort(first))

    def select(self, keep: np.ndarray, note: str | None = None) -> "Spectrum":
        """A new spectrum with only the pixels where ``keep`` is True."""
        keep = np.asarray(keep, bool)
        meta = dict(self.meta)
        if note:
            meta["notes"] = list(meta.get("notes", [])) + [note]
        return dataclasses.replace(
            self, wavelength=self.wavelength[keep], flux=self.flux[keep], sigma=self.sigma[keep], mask=self.mask[keep],
            segments=self.segments[keep], meta=meta,
        )

    @classmethod
    def from_specutils(cls, spectrum, **kwargs) -> "Spectrum":
        """A specutils ``Spectrum``/``Spectrum1D`` (units, uncertainty, mask) → :class:`Spectrum`; ``kwargs`` as
        for :func:`read_spectrum` (``medium=``, ``default_snr=``, ``resolution=``, ``row=``)."""
        return read_spectrum(spectrum, **kwargs)

    def to_specutils(self):
        """This spectrum as a ``specutils.Spectrum`` (``Spectrum1D`` on specutils < 2): vacuum Å axis, flux in
        ``meta['flux_unit']`` (dimensionless if unknown), σ as ``StdDevUncertainty``, specutils mask (True = bad)."""
        from astropy import units as u
        from astropy.nddata import StdDevUncertainty

        try:
            from specutils import Spectrum as SpecutilsSpectrum
        except ImportError:
            try:
                from specutils import Spectrum1D as SpecutilsSpectrum
            except ImportError:
                raise SpectrumError("to_specutils needs specutils: pip install 'stellarinf[specutils]'") from None
        unit = u.Unit(self.meta.get("flux_unit", "")) if self.meta.get("flux_unit") else u.dimensionless_unscaled
        sigma = np.where(np.isfinite(self.sigma), self.sigma, np.nan)
        return SpecutilsSpectrum(
            spectral_axis=self.wavelength * u.AA, flux=self.flux * unit, uncertainty=StdDevUncertainty(sigma * unit),
            mask=~self.mask,
        )

    def provenance(self) -> dict:
        """What was read or assumed about the wavelengths (and where from), for outputs to record: a fit of an
        air spectrum read as vacuum is wrong by ~82.7 km/s in RV, and only this record tells a reader why."""
        return {
            "source": self.meta.get("source"),
            "format": self.meta.get("format"),
            "input_medium": self.input_medium,
            "medium_source": self.medium_source,
            "input_wavelength_unit": self.input_wavelength_unit,
            "wavelength_unit_source": self.wavelength_unit_source,
            "resolution": self.resolution,
        }

    def snr(self) -> float:
        """Median S/N per used pixel."""
        m = self.mask
        return float(np.median(np.abs(self.flux[m]) / self.sigma[m]))


_MEDIA = ("air", "vacuum")
_SOURCES = ("header", "format", "caller", "default")


def _spectral_axis_in_angstrom(values) -> tuple[np.ndarray, str | None]:
    """Wavelengths as float64 Å and the unit they came in (None for a bare array, which is Å by contract).

    A ``Quantity`` in a length, frequency, wavenumber or energy unit is converted (``u.spectral()``); a
    non-spectral unit is refused rather than its numbers being taken as Å.
    """
    from astropy import units as u

    if isinstance(values, u.Quantity):
        try:
            wl = values.to_value(u.AA, equivalencies=u.spectral())
        except u.UnitConversionError:
            raise SpectrumError(
                f"wavelengths in {values.unit} cannot be converted to Å; give a length (Å, nm, µm), frequency or energy"
            ) from None
        return np.asarray(wl, dtype=np.float64), values.unit.to_string()
    return values, None


def _uncertainty_as_sigma(sigma):
    """An astropy/specutils ``NDUncertainty`` (std, var or ivar) → σ (Quantity or array); anything else as is."""
    kind = getattr(sigma, "uncertainty_type", None)
    if kind is None or not hasattr(sigma, "array"):
        return sigma
    from astropy import units as u

    arr = np.asarray(sigma.array, dtype=np.float64)
    unit = getattr(sigma, "unit", None)
    if kind == "std":
        out, out_unit = arr, unit
    elif kind == "var":
        out, out_unit = np.sqrt(np.where(arr > 0, arr, np.nan)), None if unit is None else unit**0.5
    elif kind == "ivar":
        out, out_unit = np.where(arr > 0, 1.0 / np.sqrt(np.where(arr > 0, arr, 1.0)), np.nan), None if unit is None else unit**-0.5
    else:
        raise SpectrumError(f"uncertainty of type {kind!r} is not supported; give a standard deviation, variance or inverse variance")
    return out if out_unit is None else out * u.Unit(out_unit)


def _flux_and_sigma_values(flux, sigma, meta) -> tuple[np.ndarray, np.ndarray]:
    """Flux and σ as plain arrays in one unit: σ given as a ``Quantity`` is converted to the flux's unit (a flux
    in counts with σ in another unit would otherwise be a wrong likelihood); the flux unit goes to ``meta``."""
    from astropy import units as u

    sigma = _uncertainty_as_sigma(sigma)
    flux_unit = flux.unit if isinstance(flux, u.Quantity) else None
    if flux_unit is not None:
        meta.setdefault("flux_unit", flux_unit.to_string())
        flux = flux.value
    if isinstance(sigma, u.Quantity):
        target = flux_unit if flux_unit is not None else u.dimensionless_unscaled
        try:
            sigma = sigma.to_value(target)
        except u.UnitConversionError:
            raise SpectrumError(
                f"the uncertainties are in {sigma.unit} but the flux is in {target.to_string() or 'no unit'}; give them in "
                "the same (or convertible) units"
            ) from None
    return flux, sigma


def _check_segments_contiguous(segments):
    change = np.flatnonzero(np.diff(segments) != 0) + 1
    starts = np.concatenate([[0], change])
    ids = segments[starts]
    if len(set(ids.tolist())) != len(ids):
        raise SpectrumError("each segment id must label one contiguous block of pixels; reorder the pixels by segment")


def _note(meta: dict, message: str, warn: bool = True) -> None:
    meta.setdefault("notes", []).append(message)
    if warn:
        warnings.warn(message, SpectrumWarning, stacklevel=3)


# --------------------------------------------------------------------------------------------------
# units and column names
# --------------------------------------------------------------------------------------------------
_WAVELENGTH_NAMES = ("wavelength", "wave", "lambda", "lam", "wl", "wavelength_vac", "wavelength_air", "loglam")
_FLUX_NAMES = ("flux", "fl", "f", "flux_norm", "norm_flux", "spectrum")
_SIGMA_NAMES = ("error", "err", "sigma", "uncertainty", "flux_err", "flux_error", "e_flux", "unc", "noise")
_IVAR_NAMES = ("ivar", "inverse_variance", "invvar", "inv_var")
_VAR_NAMES = ("variance", "var")
_GOOD_MASK_NAMES = ("mask", "good", "use")
_BAD_MASK_NAMES = ("bad", "bitmask", "and_mask", "pixel_mask", "flags")
_SEGMENT_NAMES = ("segment", "order", "arm", "ccd", "camera")

_UNIT_ALIASES = {
    "a": "Angstrom",
    "aa": "Angstrom",
    "angstrom": "Angstrom",
    "angstroms": "Angstrom",
    "angs": "Angstrom",
    "å": "Angstrom",
    "nm": "nm",
    "nanometer": "nm",
    "nanometers": "nm",
    "um": "um",
    "µm": "um",
    "micron": "um",
    "microns": "um",
    "micrometer": "um",
}


def _to_unit(unit):
    """A string / astropy unit / None → astropy length unit or None (no unit given)."""
    from astropy import units as u

    if unit is None or (isinstance(unit, str) and not unit.strip()):
        return None
    if isinstance(unit, str):
        key = unit.strip().lower()
        text = _UNIT_ALIASES.get(key, unit.strip())
        try:
            unit = u.Unit(text)
        except ValueError:
            raise SpectrumError(f"unknown wavelength unit {unit!r}; use 'Angstrom', 'nm' or 'um'") from None
    try:
        unit.to(u.AA)
    except u.UnitConversionError:
        raise SpectrumError(f"wavelength unit {unit} is not a length; use 'Angstrom', 'nm' or 'um'") from None
    return unit


def _wavelength_in_angstrom(values, unit, where: str) -> np.ndarray:
    from astropy import units as u

    wl = np.asarray(values, dtype=np.float64)
    if unit is None:
        finite = wl[np.isfinite(wl)]
        if finite.size and np.median(finite) < 1000.0:
            raise SpectrumError(
                f"{where}: wavelengths without a unit are read as Å, but their median {np.median(finite):g} looks like "
                "nm or µm; pass wavelength_unit='nm' or 'um' (CLI: --wavelength-unit nm), or 'Angstrom' to insist"
            )
        return wl
    return (wl * unit).to_value(u.AA)


def _find(names_lower: Mapping[str, str], candidates, explicit=None, what="column"):
    """Original column name for the first candidate present (case-insensitive), or None."""
    if explicit is not None:
        key = explicit.lower()
        if key not in names_lower:
            raise SpectrumError(f"{what} {explicit!r} not found; available columns: {', '.join(names_lower.values())}")
        return names_lower[key]
    for c in candidates:
        if c in names_lower:
            return names_lower[c]
    return None


# --------------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------------
def read_spectrum(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    medium: str | None = None,
    wavelength_unit=None,
    wavelength_col: str | None = None,
    flux_col: str | None = None,
    error_col: str | None = None,
    ivar_col: str | None = None,
    mask_col: str | None = None,
    hdu: int | str | None = None,
    row: int = 0,
    default_snr: float | str | None = None,
    resolution: float | None = None,
) -> Spectrum:
    """Read an observed spectrum into a validated :class:`Spectrum` (vacuum Å).

    Args:
        path: FITS (``.fits``, ``.fit``, ``.fts``, optionally ``.gz``) or text (``.csv``, ``.txt``, ``.dat``,
            ``.ecsv``, ...) file; or a specutils ``Spectrum``/``Spectrum1D`` (its axis unit, uncertainty and mask
            are used; ``medium`` from its WCS/header when they say, else as for files).
        format: ``"fits-table"``, ``"fits-image"``, ``"apogee"``, ``"galah"``, ``"ascii"`` or None (detect).
        medium: ``"vacuum"``, ``"air"`` or None (from the header when it says, else vacuum, noted in meta).
        wavelength_unit: unit of the wavelengths when the file has none (or to override it), e.g. ``"nm"``.
        wavelength_col, flux_col, error_col, ivar_col, mask_col: explicit column names (case-insensitive).
        hdu: FITS HDU (index or name) holding the table / flux image; default: detect. GALAH: 4 (normalised,
            default) or 0 (unnormalised).
        row: row of a 2-D flux image (APOGEE: row 0 is the combined spectrum).
        default_snr: if the file has no (or unusable) uncertainties, set σ = |flux|/default_snr with a warning
            instead of raising; ``"estimate"``: estimate σ from the flux itself (:func:`der_snr_noise`, per segment),
            with a warning.
        resolution: instrument resolving power to record (else ``RESOLUTN``/``SPEC_RES``/``R`` header card).

    NaN/inf fluxes are masked (with a warning giving the count); a segment in descending wavelength order
    is reversed (with a note); unsorted or duplicated wavelengths, missing or non-positive uncertainties
    and fully masked spectra raise :class:`SpectrumError`.
    """
    if _is_specutils_like(path):
        raw = _from_specutils(path, row, wavelength_unit)
        return _finalise(raw, medium=medium, default_snr=default_snr, resolution=resolution)
    if not isinstance(path, (str, os.PathLike)):
        raise SpectrumError(
            f"read_spectrum takes a file path or a specutils Spectrum/Spectrum1D, not a {type(path).__name__}; for arrays "
            "use Spectrum(wavelength, flux, sigma)"
        )
    path = Path(path)
    if not path.exists():
        raise SpectrumError(f"spectrum file {str(path)!r} does not exist; check the path")
    if medium is not None and medium not in ("vacuum", "air"):
        raise SpectrumError(f"medium must be 'vacuum', 'air' or None, got {medium!r}")
    unit = _to_unit(wavelength_unit)
    cols = dict(wavelength=wavelength_col, flux=flux_col, error=error_col, ivar=ivar_col, mask=mask_col)
    name = path.name.lower().removesuffix(".gz")
    is_fits = name.endswith((".fits", ".fit", ".fts")) or format in ("fits-table", "fits-image", "apogee", "galah")
    if format not in (None, "fits-table", "fits-image", "apogee", "galah", "ascii"):
        raise SpectrumError(f"unknown format {format!r}; use 'fits-table', 'fits-image', 'apogee', 'galah', 'ascii' or None")
    if is_fits:
        raw = _read_fits(path, format, hdu, row, cols, unit)
    else:
        raw = _read_ascii(path, cols, unit)
    raw["meta"]["source"] = str(path)
    return _finalise(raw, medium=medium, default_snr=default_snr, resolution=resolution)


def _is_specutils_like(obj) -> bool:
    """Duck typing: a specutils ``Spectrum``/``Spectrum1D`` (or anything with the same attributes) has a
    ``spectral_axis`` and a ``flux``, both ``Quantity``."""
    return not isinstance(obj, (str, os.PathLike)) and hasattr(obj, "spectral_axis") and hasattr(obj, "flux")


def _from_specutils(obj, row, wavelength_unit):
    """The reader's raw record from a specutils spectrum: its axis unit, its uncertainty type (std, var, ivar),
    its mask (True = bad there, inverted here), and air wavelengths when its WCS or header says ``AWAV``/air."""
    from astropy import units as u

    if wavelength_unit is not None:
        raise SpectrumError("a specutils spectrum carries the unit of its spectral axis; drop wavelength_unit")
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
            raise SpectrumError(f"row {row} does not exist; this specutils spectrum holds {flux_values.shape[0]} spectra")
        _note(meta, f"specutils flux is 2-D {flux_values.shape}; using row {row}", warn=False)
        flux_values = flux_values[row]
        sigma_values = None if sigma_values is None else np.asarray(sigma_values)[row]
        mask_bad = mask_bad[row] if mask_bad.ndim == 2 else mask_bad
    if flux_values.shape != wl.shape:
        raise SpectrumError(f"the flux has {flux_values.shape} values but the spectral axis {wl.shape}; give one per pixel")
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
    return dict(wavelength=wl, flux=flux_values, sigma=sigma_out, mask=~mask_bad, segments=None, meta=meta,
                header=_simple_header(header), medium_hint=hint, wavelength_unit=(unit_text, "header"))


def _open_fits(path):
    from astropy.io import fits

    try:
        return fits.open(path, memmap=False)
    except OSError as exc:
        raise SpectrumError(f"cannot read {str(path)!r} as FITS ({exc}); check that it is a FITS file") from None


def _read_fits(path, format, hdu, row, cols, unit):
    from astropy.io import fits

    with _open_fits(path) as hdul:
        if format in (None, "fits-table"):
            table_hdu = _table_hdu(hdul, hdu)
            if table_hdu is not None:
                return _from_table_columns(_fits_table_columns(table_hdu), cols, unit, f"{path.name}[{table_hdu.name}]", dict(table_hdu.header))
            if format == "fits-table":
                raise SpectrumError(f"{path.name}: no binary table with a wavelength column; give hdu= or wavelength_col= (CLI: --hdu, --wavelength-col)")
        if format == "apogee" or (format is None and _looks_like_apogee(hdul)):
            return _read_apogee(hdul, path, row, unit)
        if format == "galah" or (format is None and _looks_like_galah(hdul)):
            return _read_galah(hdul, path, hdu, unit)
        images = [h for h in hdul if isinstance(h, (fits.PrimaryHDU, fits.ImageHDU)) and h.data is not None]
        if not images:
            raise SpectrumError(f"{path.name}: no table with a wavelength column and no image with flux; not a spectrum file?")
        flux_hdu = hdul[hdu] if hdu is not None else images[0]
        return _read_fits_image(hdul, flux_hdu, path, row, unit)


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
        raise SpectrumError(f"{where}: no wavelength column (looked for {', '.join(_WAVELENGTH_NAMES)}); pass wavelength_col=NAME (CLI: --wavelength-col NAME)")
    flux_name = _find(lower, _FLUX_NAMES, cols["flux"], "flux column")
    if flux_name is None:
        raise SpectrumError(f"{where}: no flux column (looked for {', '.join(_FLUX_NAMES)}); pass flux_col=NAME (CLI: --flux-col NAME)")
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
    meta["columns"] = {"wavelength": wl_name, "flux": flux_name, "error": err_name or ivar_name or var_name}
    if flux_unit is not None:
        meta["flux_unit"] = str(flux_unit)
    wl_unit_record = ("log10 Angstrom", "format") if wl_name.lower() == "loglam" else _unit_record(unit, wl_unit)
    return dict(wavelength=wl, flux=flux, sigma=sigma, mask=mask, segments=segments, meta=meta, header=header,
                medium_hint=_medium_from_header(header, wl_name), wavelength_unit=wl_unit_record)


def _unit_record(caller_unit, file_unit) -> tuple[str, str]:
    """(unit, who said so) of the wavelengths: the caller's unit, else the file's (if readable), else Å by default."""
    if caller_unit is not None:
        return caller_unit.to_string(), "caller"
    known = _to_unit_quiet(file_unit)
    if known is not None:
        return known.to_string(), "header"
    return "Angstrom", "default"


def _to_unit_quiet(unit):
    if unit is None:
        return None
    try:
        return _to_unit(str(unit))
    except SpectrumError:
        return None


def _unit_ratio(err_unit, flux_unit) -> float:
    # errors given in other (convertible) units than the flux are converted to the flux's unit
    if err_unit is None or flux_unit is None or str(err_unit) == str(flux_unit):
        return 1.0
    from astropy import units as u

    try:
        return float(u.Unit(str(err_unit)).to(u.Unit(str(flux_unit))))
    except (ValueError, u.UnitConversionError):
        return 1.0


def _as_bool_mask(values, name):
    arr = np.asarray(values)
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind in "iu" or arr.dtype.kind == "f":
        if not np.all(np.isin(arr, (0, 1))):
            raise SpectrumError(
                f"mask column {name!r} must be boolean or 0/1 with 1 = use the pixel; for bit masks name the column "
                "'bitmask' (non-zero = bad)"
            )
        return arr.astype(bool)
    if arr.dtype.kind in "US":
        low = np.char.lower(arr.astype(str))
        return np.isin(low, ("true", "t", "1", "yes"))
    raise SpectrumError(f"cannot interpret mask column {name!r} of type {arr.dtype}")


def _sigma_from_ivar(ivar, mask, meta):
    # ivar = 0 is the usual flag of a bad pixel: mask it instead of failing
    zero = ~(ivar > 0)
    if np.any(zero):
        _note(meta, f"{int(zero.sum())} pixel(s) with inverse variance <= 0 (or NaN) were masked")
    sigma = np.where(ivar > 0, 1.0 / np.sqrt(np.where(ivar > 0, ivar, 1.0)), np.nan)
    return sigma, mask & ~zero


def _simple_header(header) -> dict:
    out = {}
    for k, v in dict(header).items():
        if k and isinstance(v, (str, int, float, bool)) and k not in ("COMMENT", "HISTORY"):
            out[k] = v
    return out


def _medium_from_header(header, wl_name: str | None = None) -> str | None:
    h = {str(k).upper(): v for k, v in dict(header).items()}
    ctype = str(h.get("CTYPE1", "")).upper()
    if ctype.startswith("AWAV"):
        return "air"
    if ctype.startswith("WAVE"):
        return "vacuum"
    for key in ("AIRORVAC", "MEDIUM", "WAVEMED", "WAVMEDIUM"):
        if key in h:
            val = str(h[key]).strip().lower()
            if val.startswith("air"):
                return "air"
            if val.startswith("vac"):
                return "vacuum"
    if "VACUUM" in h and isinstance(h["VACUUM"], bool):
        return "vacuum" if h["VACUUM"] else "air"
    if wl_name is not None and wl_name.lower().endswith("_air"):
        return "air"
    if wl_name is not None and wl_name.lower().endswith("_vac"):
        return "vacuum"
    return None


def _looks_like_apogee(hdul) -> bool:
    h0 = hdul[0].header
    tel = str(h0.get("TELESCOP", "")).lower()
    if tel in ("apo25m", "lco25m", "apo1m") or "APRED" in h0 or "APSTAR" in h0:
        return True
    if len(hdul) > 2 and hdul[0].data is None and hdul[1].data is not None:
        crval = hdul[1].header.get("CRVAL1")
        return crval is not None and abs(float(crval) - 4.179) < 0.01 and "CDELT1" in hdul[1].header
    return False


def _wcs_wavelength(header, n, unit, where) -> np.ndarray:
    h = header
    if "CRVAL1" not in h:
        raise SpectrumError(f"{where}: the flux image has no wavelength WCS (CRVAL1/CDELT1); use a table with a wavelength column")
    crval = float(h["CRVAL1"])
    cdelt = h.get("CDELT1", h.get("CD1_1"))
    if cdelt is None:
        raise SpectrumError(f"{where}: the WCS has CRVAL1 but neither CDELT1 nor CD1_1; cannot build wavelengths")
    cdelt = float(cdelt)
    crpix = float(h.get("CRPIX1", 1.0))
    pix = np.arange(1, n + 1, dtype=np.float64)
    w = cdelt * (pix - crpix)
    ctype = str(h.get("CTYPE1", "")).upper()
    wunit = unit if unit is not None else _to_unit_quiet(h.get("CUNIT1"))
    if ctype.endswith("-LOG"):  # FITS WCS paper III logarithmic axis: λ = λ_r exp(w / λ_r)
        lam = crval * np.exp(w / crval)
    elif int(h.get("DC-FLAG", 0)) == 1 or ctype.startswith("LOG-LINEAR") or ctype == "LOGLAM":
        lam = 10.0 ** (crval + w)  # IRAF/SDSS convention: log10 λ in Å
        wunit = unit  # the log is of Å unless the caller says otherwise
    else:
        lam = crval + w
    return _wavelength_in_angstrom(lam, wunit, where)


def _error_image(hdul, flux_hdu, shape):
    from astropy.io import fits

    named = {"ERROR": "sigma", "ERR": "sigma", "SIGMA": "sigma", "UNCERTAINTY": "sigma", "NOISE": "sigma", "IVAR": "ivar", "INVVAR": "ivar", "VARIANCE": "var", "VAR": "var"}
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
    return dict(wavelength=wl, flux=data, sigma=sigma, mask=mask, segments=None, meta=meta, header=header,
                medium_hint=_medium_from_header(header), wavelength_unit=_wcs_unit_record(flux_hdu.header, unit))


def _wcs_unit_record(header, caller_unit) -> tuple[str, str]:
    ctype = str(header.get("CTYPE1", "")).upper()
    if int(header.get("DC-FLAG", 0)) == 1 or ctype.startswith("LOG-LINEAR") or ctype == "LOGLAM":
        return ("log10 " + caller_unit.to_string(), "caller") if caller_unit is not None else ("log10 Angstrom", "format")
    return _unit_record(caller_unit, header.get("CUNIT1"))


def _read_apogee(hdul, path, row, unit):
    if len(hdul) < 3 or hdul[1].data is None or hdul[2].data is None:
        raise SpectrumError(f"{path.name}: APOGEE layout needs HDU1 = flux and HDU2 = error; this file has {len(hdul)} HDUs")
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
        _note(meta, f"{int(gap.sum())} APOGEE pixel(s) with zero flux or no valid error (chip gaps) were masked", warn=False)
    sigma = np.where(gap, np.nan, err)
    return dict(wavelength=wl, flux=flux, sigma=sigma, mask=~gap, segments=None, meta=meta, header=dict(hdul[0].header),
                medium_hint="vacuum", medium_hint_source="format", wavelength_unit=_wcs_unit_record(hdul[1].header, unit))


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
        raise SpectrumError(f"{path.name}: GALAH DR3 flux is HDU4 (normalised, default) or HDU0 (unnormalised); got hdu={hdu!r} (CLI: --hdu 4 or --hdu 0)")
    flux_hdu, err_hdu = hdul[flux_idx], hdul[1]
    meta = {"format": "galah-dr3", "hdu": flux_idx, "flux": _GALAH_HDUS[flux_idx], "header": _simple_header(hdul[0].header)}
    ids = _galah_ccd(path)
    if ids is not None:
        meta["sobject_id"], meta["ccd"] = ids
    flux = np.asarray(flux_hdu.data, dtype=np.float64)
    rel = np.asarray(err_hdu.data, dtype=np.float64)
    wl = _galah_wavelength(flux_hdu.header, flux.size, unit, f"{path.name}[{flux_idx}]", meta)
    # HDU1 is the relative error of HDU0, on HDU0's pixels (its own WCS when it has one)
    if rel.size != hdul[0].data.size:
        raise SpectrumError(f"{path.name}: HDU1 (relative error) has {rel.size} pixels but HDU0 (flux) has {hdul[0].data.size}")
    rel = np.where(np.isfinite(rel) & (rel != 0), rel, np.nan)  # bad errors must not leak into interpolated neighbours
    if flux_idx != 0:
        err_header = err_hdu.header if "CRVAL1" in err_hdu.header else hdul[0].header
        wl_err = _galah_wavelength(err_header, rel.size, unit, f"{path.name}[1]", meta)
        rel = _on_grid(rel, wl_err, wl, path.name, meta)
    sigma = np.abs(rel * flux)  # the sign of σ/flux follows the flux in noisy line cores; σ is its size
    # NaN fluxes are counted (and masked) by _finalise; here only pixels with a flux but no usable error
    bad = np.isfinite(flux) & ~(np.isfinite(sigma) & (sigma > 0))
    if np.any(bad):
        _note(meta, f"{int(bad.sum())} GALAH pixel(s) whose σ = |relative error × flux| is not finite and positive were masked")
    header = {**dict(hdul[0].header), **dict(flux_hdu.header)}
    # GALAH is air; honour an explicit medium keyword, but not a generic CTYPE1 = 'WAVE' written by IRAF
    hint = _medium_from_header({k: v for k, v in header.items() if k != "CTYPE1"})
    return dict(wavelength=wl, flux=flux, sigma=np.where(bad, np.nan, sigma), mask=~bad, segments=None, meta=meta, header=header,
                medium_hint=hint or "air", medium_hint_source="header" if hint else "format",
                wavelength_unit=_wcs_unit_record(flux_hdu.header, unit))


def _read_galah_iraf6(hdul, path, hdu, unit):
    """GALAH iraf 6.x (DR4 era): flux HDU1 (normalised, default) or HDU0 (counts), σ = |relative error (HDU2) × flux|
    on the same pixels, resolving power = median λ / FWHM of the resolution profile (HDU7) when it has one."""
    flux_idx = 1 if hdu is None else hdu
    if flux_idx not in _GALAH_IRAF6_HDUS:
        raise SpectrumError(
            f"{path.name}: GALAH iraf-6 flux is HDU1 (normalised, default) or HDU0 (counts); got hdu={hdu!r} (CLI: --hdu 1 or --hdu 0)"
        )
    version = str(hdul[0].header.get("PIPE_VER", "6")).strip()
    meta = {"format": "galah-iraf6", "reduction": f"iraf {version}", "hdu": flux_idx, "flux": _GALAH_IRAF6_HDUS[flux_idx],
            "header": _simple_header(hdul[0].header)}
    ids = _galah_ccd(path)
    if ids is not None:
        meta["sobject_id"], meta["ccd"] = ids
    flux = np.asarray(hdul[flux_idx].data, dtype=np.float64)
    rel = np.asarray(hdul[2].data, dtype=np.float64)
    if flux.ndim != 1 or rel.shape != flux.shape:
        raise SpectrumError(f"{path.name}: HDU{flux_idx} (flux) has shape {flux.shape} and HDU2 (relative error) {rel.shape}; "
                            "the iraf-6 layout has equal 1-D spectra")
    wl = _galah_wavelength(hdul[flux_idx].header, flux.size, unit, f"{path.name}[{flux_idx}]", meta)
    sigma = np.abs(np.where(np.isfinite(rel) & (rel != 0), rel, np.nan) * flux)
    bad = np.isfinite(flux) & ~(np.isfinite(sigma) & (sigma > 0))
    if np.any(bad):
        _note(meta, f"{int(bad.sum())} GALAH pixel(s) whose σ = |relative error × flux| is not finite and positive were masked")
    header = {**dict(hdul[0].header), **dict(hdul[flux_idx].header)}
    header = {k: v for k, v in header.items() if str(k).upper() not in ("RES", "RESOLUTN", "SPEC_RES", "RESOLUTION", "R")}
    if len(hdul) > 7 and hdul[7].data is not None and np.asarray(hdul[7].data).shape == flux.shape:
        fwhm = np.asarray(hdul[7].data, dtype=np.float64)
        ok = np.isfinite(fwhm) & (fwhm > 0)
        if np.count_nonzero(ok) > flux.size // 2:
            header["RESOLUTN"] = float(np.median(wl[ok] / fwhm[ok]))
            _note(meta, f"resolving power {header['RESOLUTN']:,.0f} from the resolution profile (HDU7, median λ/FWHM)", warn=False)
    hint = _medium_from_header({k: v for k, v in header.items() if k != "CTYPE1"})
    return dict(wavelength=wl, flux=flux, sigma=np.where(bad, np.nan, sigma), mask=~bad, segments=None, meta=meta, header=header,
                medium_hint=hint or "air", medium_hint_source="header" if hint else "format",
                wavelength_unit=_wcs_unit_record(hdul[flux_idx].header, unit))


def _read_ascii(path, cols, unit):
    from astropy.io import ascii as astropy_ascii

    hint = "give a CSV/ECSV with a header line naming the columns wavelength, flux, error"
    if not path.read_bytes()[:65536].strip():
        raise SpectrumError(f"{path.name} is empty; {hint}")
    try:
        table = astropy_ascii.read(path)
    except Exception as exc:  # astropy raises many types for unreadable text; its format-guess report is ~76 lines
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        raise SpectrumError(
            f"cannot read {path.name} as a text table ({type(exc).__name__}: {first[:160]}); {hint}"
        ) from None
    if len(table) == 0:
        raise SpectrumError(f"{path.name} has a header but no rows; {hint}")
    columns = {name: (np.asarray(table[name]), table[name].unit) for name in table.colnames}
    header = {str(k): v for k, v in table.meta.items() if isinstance(v, (str, int, float, bool))}
    return _from_table_columns(columns, cols, unit, path.name, header)


def _finalise(raw, *, medium, default_snr, resolution) -> Spectrum:
    meta = raw["meta"]
    wl = np.asarray(raw["wavelength"], dtype=np.float64)
    flux = np.asarray(raw["flux"], dtype=np.float64)
    n = wl.shape[0]
    if wl.ndim != 1 or flux.shape != wl.shape:
        raise SpectrumError(f"wavelength {wl.shape} and flux {flux.shape} must be 1-D arrays of the same length")
    mask = np.asarray(raw["mask"], bool) if raw.get("mask") is not None else np.ones(n, bool)
    segments = raw.get("segments")
    segments = np.zeros(n, np.int64) if segments is None else np.asarray(segments, np.int64)
    sigma = raw.get("sigma")
    header = raw.get("header", {})

    medium, medium_source = _choose_medium(medium, raw.get("medium_hint"), raw.get("medium_hint_source", "header"), meta)
    meta["medium_in_file"] = medium
    if not np.all(np.isfinite(wl)):
        i = int(np.flatnonzero(~np.isfinite(wl))[0])
        raise SpectrumError(f"wavelength[{i}] is {wl[i]}; every pixel needs a finite wavelength (drop that row)")
    if medium == "air":
        try:
            wl = air_to_vacuum(wl)
        except WavelengthError as exc:
            raise SpectrumError(f"cannot convert air wavelengths to vacuum: {exc}") from None

    # descending segments are reversed (common in some pipelines); anything else unsorted is an error
    order = np.arange(n)
    reversed_any = []
    for seg in _ordered_unique(segments):
        idx = np.flatnonzero(segments == seg)
        if idx.size > 1 and np.all(np.diff(wl[idx]) < 0):
            order[idx] = idx[::-1]
            reversed_any.append(int(seg))
    if reversed_any:
        _note(meta, f"wavelengths were in descending order (segment(s) {reversed_any}); reversed them")
        wl, flux, mask, segments = wl[order], flux[order], mask[order], segments[order]
        sigma = None if sigma is None else np.asarray(sigma)[order]

    # non-finite fluxes: mask them
    bad_flux = ~np.isfinite(flux)
    if np.any(bad_flux & mask):
        _note(meta, f"{int((bad_flux & mask).sum())} pixel(s) with NaN/inf flux were masked")
    mask = mask & ~bad_flux

    sigma = _fill_sigma(flux, sigma, mask, segments, default_snr, meta, wl)
    if not np.any(mask):
        raise SpectrumError("every pixel is masked (NaN fluxes, zero inverse variance or mask column); nothing to fit")

    if resolution is None:
        for key in ("RESOLUTN", "SPEC_RES", "RESOLUTION", "R"):
            val = {str(k).upper(): v for k, v in dict(header).items()}.get(key)
            if isinstance(val, (int, float)) and not isinstance(val, bool) and val > 0:
                resolution = float(val)
                break
    # masked pixels may hold anything; keep them finite so downstream arithmetic stays clean
    flux = np.where(np.isfinite(flux), flux, 0.0)
    sigma = np.where(np.isfinite(sigma) & (sigma > 0), sigma, np.inf)
    unit_text, unit_source = raw.get("wavelength_unit") or ("Angstrom", "default")
    return Spectrum(wl, flux, sigma, mask, segments, meta, resolution, input_medium=medium, medium_source=medium_source,
                    input_wavelength_unit=unit_text, wavelength_unit_source=unit_source)


def _choose_medium(medium, hint, hint_source, meta) -> tuple[str, str]:
    """(medium, who said so): the caller wins over the file (with a note when they disagree); with neither, vacuum
    is assumed and said, because an air spectrum read as vacuum fits RV ≈ −82.7 km/s and looks fine otherwise."""
    if medium is not None:
        if hint is not None and hint != medium:
            _note(meta, f"the file says its wavelengths are in {hint} ({hint_source}) but medium={medium!r} was given; using {medium}")
        return medium, "caller"
    if hint is not None:
        return hint, hint_source
    _note(
        meta,
        "the file does not say whether its wavelengths are in air or vacuum; assumed vacuum. If they are air "
        "wavelengths pass medium='air' (CLI: --medium air): read as vacuum they shift the fitted RV by about -83 km/s",
    )
    return "vacuum", "default"


def _ordered_unique(a):
    _, first = np.unique(a, return_index=True)
    return a[np.sort(first)]


_SNR_HINT = ("pass default_snr=<S/N per pixel> (CLI: --snr S/N) to assume σ = |flux|/S/N, or default_snr='estimate' "
             "(CLI: --snr estimate) to estimate the noise from the flux itself")


def _fill_sigma(flux, sigma, mask, segments, default_snr, meta, wl):
    """σ per pixel: the file's where usable; where not (or no column at all), from ``default_snr`` (a number: σ =
    |flux|/S/N; ``"estimate"``: the DER_SNR noise of each segment), said in a warning; without it, an error."""
    if default_snr is not None and not isinstance(default_snr, str) and not default_snr > 0:
        raise SpectrumError(f"default_snr must be a positive S/N or 'estimate', got {default_snr}")
    if isinstance(default_snr, str) and default_snr != "estimate":
        raise SpectrumError(f"default_snr must be a positive S/N or 'estimate', got {default_snr!r}")

    def filled(where):
        if default_snr == "estimate":
            est = _estimated_sigma(flux, mask, segments)
            _note(meta, f"{where}: estimated σ from the flux itself (DER_SNR, Stoehr et al. 2008): "
                        f"{_describe_estimate(est, flux, mask)}; give real uncertainties (or --snr S/N) if you have them")
            return est
        _note(meta, f"{where}: assumed σ = |flux| / {default_snr:g}")
        return _assumed_sigma(flux, mask, default_snr)

    if sigma is None:
        if default_snr is None:
            raise SpectrumError(
                "the spectrum has no uncertainty column/extension (looked for error/err/sigma/uncertainty, ivar, "
                f"variance); add one, or {_SNR_HINT}"
            )
        return filled("no uncertainties in the file")
    sigma = np.asarray(sigma, dtype=np.float64)
    bad_sigma = mask & ~(np.isfinite(sigma) & (sigma > 0))
    if not np.any(bad_sigma):
        return sigma
    if default_snr is None and np.array_equal(bad_sigma, mask):
        col = (meta.get("columns") or {}).get("error")
        raise SpectrumError(
            f"the uncertainties{f' (column {col!r})' if col else ''} are zero, negative or NaN at every pixel, so "
            f"the file gives no noise level; fix them, or {_SNR_HINT}"
        )
    if default_snr is None:
        i = int(np.flatnonzero(bad_sigma)[0])
        raise SpectrumError(
            f"{int(bad_sigma.sum())} pixel(s) have non-positive or non-finite uncertainties (first: pixel {i} at "
            f"{wl[i]:.3f} Å, σ = {sigma[i]}); fix the error column, mask those pixels, or {_SNR_HINT}"
        )
    return np.where(bad_sigma, filled(f"{int(bad_sigma.sum())} pixel(s) had unusable uncertainties"), sigma)


def der_snr_noise(flux) -> float:
    """The noise σ of a spectrum estimated from its flux alone (DER_SNR, Stoehr et al. 2008):
    σ ≈ 1.482602 / √6 · median |2 fᵢ − fᵢ₋₂ − fᵢ₊₂|. Unbiased for white Gaussian noise on a spectrum that is smooth
    over a few pixels (well-sampled lines bias it up slightly, i.e. conservatively). NaNs are ignored."""
    f = np.asarray(flux, dtype=np.float64)
    f = f[np.isfinite(f)]
    if f.size < 5:
        raise SpectrumError(f"cannot estimate the noise from {f.size} pixel(s); DER_SNR needs at least 5")
    return float(1.482602 / np.sqrt(6.0) * np.median(np.abs(2.0 * f[2:-2] - f[:-4] - f[4:])))


def _estimated_sigma(flux, mask, segments):
    out = np.full(flux.shape, np.nan)
    for seg in _ordered_unique(segments):
        idx = np.flatnonzero((segments == seg) & mask)
        if idx.size == 0:
            continue
        noise = der_snr_noise(flux[idx])
        if not noise > 0:
            raise SpectrumError(
                f"the flux of segment {seg} has no pixel-to-pixel noise (DER_SNR σ = 0: synthetic, smoothed or constant), so "
                "the noise cannot be estimated from it; pass default_snr=<S/N> (CLI: --snr S/N)"
            )
        out[segments == seg] = noise
    return out


def _describe_estimate(sigma, flux, mask) -> str:
    use = mask & np.isfinite(sigma)
    noise = float(np.median(sigma[use]))
    snr = float(np.median(np.abs(flux[use])) / noise)
    return f"σ ≈ {noise:.3g} per pixel (S/N ≈ {snr:.3g})"


def _assumed_sigma(flux, mask, snr):
    if not snr > 0:
        raise SpectrumError(f"default_snr must be positive, got {snr}")
    level = np.median(np.abs(flux[mask & np.isfinite(flux)])) if np.any(mask & np.isfinite(flux)) else 1.0
    return np.maximum(np.abs(np.nan_to_num(flux)), 1e-3 * level) / snr


# --------------------------------------------------------------------------------------------------
# writer and model cropping
# --------------------------------------------------------------------------------------------------
def write_spectrum_fits(path: str | os.PathLike, spectrum: Spectrum) -> None:
    """Write the simple table format (atomic): columns ``wavelength`` (vacuum Å), ``flux``, ``error``,
    ``mask`` (True = use), ``segment``; ``MEDIUM = 'vacuum'``, ``RESOLUTN`` when known."""
    from astropy.io import fits

    sigma = np.where(np.isfinite(spectrum.sigma), spectrum.sigma, 0.0)  # FITS readers dislike inf
    columns = [
        fits.Column(name="wavelength", format="D", unit="Angstrom", array=spectrum.wavelength),
        fits.Column(name="flux", format="D", unit=spectrum.meta.get("flux_unit"), array=spectrum.flux),
        fits.Column(name="error", format="D", unit=spectrum.meta.get("flux_unit"), array=sigma),
        fits.Column(name="mask", format="L", array=spectrum.mask),
        fits.Column(name="segment", format="K", array=spectrum.segments),
    ]
    table = fits.BinTableHDU.from_columns(columns, name="SPECTRUM")
    table.header["MEDIUM"] = ("vacuum", "wavelengths are vacuum")
    if spectrum.resolution is not None:
        table.header["RESOLUTN"] = (spectrum.resolution, "instrument resolving power")
    primary = fits.PrimaryHDU()
    primary.header["ORIGIN"] = "stellarinf"
    with atomic_path(path, suffix=".fits") as tmp:
        fits.HDUList([primary, table]).writeto(tmp, overwrite=True)


def crop_to_model(spectrum: Spectrum, model, *, margin_kms: float = 0.0) -> Spectrum:
    """Keep the pixels inside ``model.wavelength_range`` shrunk by ``margin_kms`` at each end (e.g. the largest
    |RV| you will fit, so the Doppler-shifted model stays inside its range).

    Raises :class:`WavelengthError` when the spectrum and the model do not overlap; a partial overlap is
    cropped with a note (warning) saying how many pixels were dropped.
    """
    wmin, wmax = (float(w) for w in model.wavelength_range)
    f = margin_kms / SPEED_OF_LIGHT_KMS
    lo, hi = wmin * (1 + f), wmax * (1 - f)
    wl = spectrum.wavelength
    keep = (wl >= lo) & (wl <= hi)
    if not np.any(keep & spectrum.mask):
        raise WavelengthError(
            f"the spectrum ({wl.min():.2f}–{wl.max():.2f} Å vacuum) lies outside the model's range {lo:.2f}–{hi:.2f} Å"
            + (f" (shrunk by {margin_kms:g} km/s)" if margin_kms else "")
            + "; use a model trained on this wavelength window (or check the spectrum's wavelength unit / air-vacuum)"
        )
    if np.all(keep):
        return spectrum
    note = f"cropped to the model range {lo:.2f}–{hi:.2f} Å: dropped {int((~keep).sum())} of {wl.size} pixels"
    warnings.warn(note, SpectrumWarning, stacklevel=2)
    return spectrum.select(keep, note)
