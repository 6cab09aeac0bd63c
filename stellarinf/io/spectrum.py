"""Observed spectra: the :class:`Spectrum` container, :func:`read_spectrum`, a FITS writer.

The format readers live in :mod:`stellarinf.io.readers` (one module per format, a (name, detect, read) table,
each returning a :class:`~stellarinf.io.readers.RawSpectrum`); this module applies the rules every format shares
(air → vacuum, ordering, NaN masking, uncertainties, provenance) and validates the result.

Everything inside is vacuum Å (``stellarinf.wavelength`` conventions); readers convert units and air
wavelengths at the edge. Supported inputs (``read_spectrum`` picks by extension and content):

- **FITS binary table** (first table HDU with a wavelength column): columns matched case-insensitively:
  wavelength (``wavelength, wave, lambda, lam, wl``; or ``loglam`` = log10 Å), flux (``flux``), one
  uncertainty column (``error, err, sigma, uncertainty, flux_err, e_flux`` as σ; ``ivar,
  inverse_variance, invvar`` as 1/σ²; ``variance, var`` as σ²), optional ``mask`` (True/1 = use) or
  ``bad``/``bitmask``/``and_mask`` (non-zero = do not use), optional ``segment``/``order``/``arm``
  (integer id per pixel), optional ``resolution`` (resolving power R = λ/FWHM per pixel, as
  :func:`write_spectrum_fits` writes it). Units from ``TUNITn``.
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
  (default; ``hdu=0`` for counts), σ = |HDU2 × flux|, one linear air-Å WCS, R(λ) = λ/FWHM of HDU7 per pixel. The
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
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import SpectrumError, WavelengthError
from ..wavelength import SPEED_OF_LIGHT_KMS, air_to_vacuum
from .atomic import atomic_path
from .readers import (
    FORMATS,
    RawSpectrum,
    ReadOptions,
    SpectrumWarning,
    galah_reduction,
    is_fits_name,
    read_fits,
    read_object,
    read_text,
)
from .readers._common import _MEDIA, _SOURCES, _flux_and_sigma_values, _note, _spectral_axis_in_angstrom, _to_unit

__all__ = [
    "Spectrum",
    "SpectrumWarning",
    "crop_to_model",
    "der_snr_noise",
    "describe_resolution",
    "galah_reduction",
    "read_spectrum",
    "resolution_summary",
    "resolution_value",
    "write_spectrum_fits",
]


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
    - ``meta``: free-form dict (source file, header cards, notes); ``resolution``: instrument resolving power
      R = λ/FWHM of a Gaussian LSF, if known: one number for the whole spectrum, a 1-D array of one R per
      pixel (R(λ) sampled at ``wavelength``; a per-pixel LSF FWHM in Å converts as ``wavelength / fwhm``), or a
      mapping ``{segment id: R, R-per-pixel array of that segment, or None}`` for a spectrum with several
      **arms** (instruments), one per segment, each with its own R (:meth:`from_arms`, :meth:`arms`,
      :attr:`is_multi_arm`). Every R must be finite and > 0. A multi-arm spectrum is fitted by one
      :class:`~stellarinf.observe.multi_arm.MultiArmObservationModel` (one observation model per arm, shared
      stellar parameters); a single R with several segments (echelle orders) keeps one observation model with
      a continuum polynomial per segment;
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
    resolution: float | Mapping[int, float | None] | None = None
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
        self.segments = (
            np.zeros(n, np.int64) if self.segments is None else self._column(self.segments, "segments", np.int64)
        )
        if isinstance(self.resolution, Mapping):
            self.resolution = _arm_resolutions(self.resolution, self.segments)
        else:
            self.resolution = resolution_value(self.resolution, n, "spectrum")
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
            raise SpectrumError(
                "every pixel of the spectrum is masked; nothing to fit (check the mask / quality flags)"
            )
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
            raise SpectrumError(
                f"{name} has shape {arr.shape} but wavelength has {self.wavelength.shape}; give one value per pixel"
            )
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
        """A new spectrum with only the pixels where ``keep`` is True (arms left without a pixel are dropped)."""
        keep = np.asarray(keep, bool)
        meta = dict(self.meta)
        if note:
            meta["notes"] = list(meta.get("notes", [])) + [note]
        resolution = self.resolution
        if isinstance(resolution, Mapping):
            left = set(np.unique(self.segments[keep]).tolist())
            resolution = {
                s: r[keep[self.segments == s]] if isinstance(r, np.ndarray) else r
                for s, r in resolution.items()
                if s in left
            }
        elif isinstance(resolution, np.ndarray):
            resolution = resolution[keep]
        return dataclasses.replace(
            self,
            wavelength=self.wavelength[keep],
            flux=self.flux[keep],
            sigma=self.sigma[keep],
            mask=self.mask[keep],
            segments=self.segments[keep],
            meta=meta,
            resolution=resolution,
        )

    # --- arms -----------------------------------------------------------------------------------
    @property
    def is_multi_arm(self) -> bool:
        """Whether the segments are arms (instruments) with their own resolving power: ``resolution`` is a
        mapping {segment id: R}. Such a spectrum is fitted with one observation model per arm."""
        return isinstance(self.resolution, Mapping)

    def resolution_of(self, segment: int) -> float | np.ndarray | None:
        """The resolving power of one segment (arm): the mapping's entry, or the spectrum's single R (an array of
        one R per pixel of that segment when R varies per pixel)."""
        if isinstance(self.resolution, Mapping):
            if int(segment) not in self.resolution:
                raise SpectrumError(f"segment {segment} is not an arm of this spectrum; arms: {self.segment_ids}")
            return self.resolution[int(segment)]
        if isinstance(self.resolution, np.ndarray):
            return self.resolution[self.segments == int(segment)]
        return self.resolution

    def arm_range(self, segment: int) -> tuple[float, float]:
        """(min, max) vacuum Å of one segment (arm)."""
        wl = self.wavelength[self.segments == int(segment)]
        return float(wl.min()), float(wl.max())

    def arms(self) -> list["Spectrum"]:
        """One single-arm :class:`Spectrum` per segment (in order of appearance), each with its own ``resolution``
        (one R, or one R per pixel of the arm); segment ids are kept (the continuum parameters ``cont_<segment>_<k>`` keep their names).
        An arm whose pixels are all masked is left out."""
        out = []
        for seg in self.segment_ids:
            sel = self.segments == seg
            if not np.any(self.mask[sel]):
                continue
            meta = dict(self.meta)
            meta["arm"] = int(seg)
            per_arm = (self.meta.get("arms") or {}).get(str(seg)) if isinstance(self.meta.get("arms"), dict) else None
            if per_arm:
                meta.update({k: v for k, v in per_arm.items() if k in ("source", "format", "flux_unit")})
            out.append(
                dataclasses.replace(
                    self,
                    wavelength=self.wavelength[sel],
                    flux=self.flux[sel],
                    sigma=self.sigma[sel],
                    mask=self.mask[sel],
                    segments=self.segments[sel],
                    meta=meta,
                    resolution=self.resolution_of(seg),
                )
            )
        return out

    @classmethod
    def from_arms(cls, arms: Sequence["Spectrum"], *, ids: Sequence[int] | None = None) -> "Spectrum":
        """One multi-arm spectrum from several spectra of the same star, each an arm (instrument) with its own
        wavelengths, flux, σ, mask and resolving power (``arm.resolution``, None = unknown).

        Segment ids: ``ids`` if given (one per input spectrum), else each input's own ids when they are
        distinct across the inputs, else 0, 1, 2, ... in the order given. An input with several segments
        (echelle orders) contributes one arm per segment, all with its R. Raises :class:`SpectrumError` when
        two arms overlap in wavelength (the same pixels cannot be two independent measurements: crop one)
        or the arms' flux units differ (``meta["flux_unit"]``: convert them to one unit first)."""
        arms = list(arms)
        if not arms:
            raise SpectrumError("from_arms needs at least one spectrum")
        for i, a in enumerate(arms):
            if not isinstance(a, Spectrum):
                raise SpectrumError(
                    f"arm {i} is a {type(a).__name__}, not a Spectrum; read it with read_spectrum first"
                )
        units = [str(a.meta.get("flux_unit") or "") for a in arms]
        if len(set(units)) > 1:
            listed = ", ".join(
                f"arm {i} ({_arm_name(a)}): {u or 'no unit (normalised?)'}" for i, (a, u) in enumerate(zip(arms, units))
            )
            raise SpectrumError(
                f"the arms have different flux units ({listed}); convert them to one unit (or normalise each "
                "arm) before combining them: each arm's continuum absorbs a constant scale, not a unit mismatch"
            )
        # segment ids of the result: one per (input, its segment)
        pieces = [(i, seg) for i, a in enumerate(arms) for seg in a.segment_ids]
        if ids is not None:
            ids = [int(v) for v in ids]
            if len(ids) != len(arms) or len(set(ids)) != len(ids):
                raise SpectrumError(f"ids must give one distinct id per arm ({len(arms)} arms), got {ids}")
            if any(len(a.segment_ids) > 1 for a in arms):
                raise SpectrumError("ids= needs single-segment arms; an input has several segments")
            new_ids = {(i, arms[i].segment_ids[0]): ids[i] for i in range(len(arms))}
        elif len({seg for _, seg in pieces}) == len(pieces):
            new_ids = {p: p[1] for p in pieces}
        else:
            new_ids = {p: k for k, p in enumerate(pieces)}
        ranges = [(new_ids[(i, seg)], arms[i].arm_range(seg), i) for i, seg in pieces]
        for a_idx in range(len(ranges)):
            for b_idx in range(a_idx + 1, len(ranges)):
                (sa, (lo_a, hi_a), ia), (sb, (lo_b, hi_b), ib) = ranges[a_idx], ranges[b_idx]
                if lo_a <= hi_b and lo_b <= hi_a:
                    raise SpectrumError(
                        f"arms {sa} ({_arm_name(arms[ia])}, {lo_a:.2f}–{hi_a:.2f} Å) and {sb} ({_arm_name(arms[ib])}, "
                        f"{lo_b:.2f}–{hi_b:.2f} Å) overlap in wavelength; arms must be disjoint: crop one of them "
                        "(Spectrum.select) or fit them separately"
                    )

        def cat(attr):
            return np.concatenate([getattr(arms[i], attr)[arms[i].segments == seg] for i, seg in pieces])

        segments = np.concatenate(
            [np.full(int(np.sum(arms[i].segments == seg)), new_ids[(i, seg)], np.int64) for i, seg in pieces]
        )
        resolution = {new_ids[(i, seg)]: arms[i].resolution_of(seg) for i, seg in pieces}
        first = arms[0]
        meta = {
            "source": " + ".join(str(a.meta.get("source", f"arm {i}")) for i, a in enumerate(arms)),
            "format": first.meta.get("format"),
            "arms": {
                str(new_ids[(i, seg)]): {
                    "source": arms[i].meta.get("source"),
                    "format": arms[i].meta.get("format"),
                    "flux_unit": arms[i].meta.get("flux_unit"),
                    "resolution": resolution_summary(arms[i].resolution_of(seg)),
                    "input_medium": arms[i].input_medium,
                    "medium_source": arms[i].medium_source,
                }
                for i, seg in pieces
            },
            "notes": [f"arm {new_ids[(i, seg)]}: {n}" for i, seg in pieces for n in arms[i].meta.get("notes", [])],
        }
        if units[0]:
            meta["flux_unit"] = units[0]
        return cls(
            cat("wavelength"),
            cat("flux"),
            cat("sigma"),
            cat("mask"),
            segments,
            meta,
            resolution,
            input_medium=first.input_medium,
            medium_source=first.medium_source,
            input_wavelength_unit=first.input_wavelength_unit,
            wavelength_unit_source=first.wavelength_unit_source,
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
            spectral_axis=self.wavelength * u.AA,
            flux=self.flux * unit,
            uncertainty=StdDevUncertainty(sigma * unit),
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
            "resolution": {str(k): resolution_summary(v) for k, v in self.resolution.items()}
            if isinstance(self.resolution, Mapping)
            else resolution_summary(self.resolution),
        }

    def snr(self) -> float:
        """Median S/N per used pixel."""
        m = self.mask
        return float(np.median(np.abs(self.flux[m]) / self.sigma[m]))


def _arm_name(spectrum) -> str:
    src = spectrum.meta.get("source")
    return Path(str(src)).name if src else "in memory"


def resolution_value(value, n: int, where: str) -> float | np.ndarray | None:
    """A resolving power checked for ``n`` pixels of ``where``: None, one R > 0 (float), or a float64 array of one
    finite R > 0 per pixel. Raises :class:`SpectrumError` naming the problem and the fix."""
    if value is None:
        return None
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise SpectrumError(
            f"resolution of the {where} must be a number or an array of numbers (R = λ/FWHM), got {value!r}"
        ) from None
    if arr.ndim == 0:
        r = float(arr)
        if not (r > 0 and np.isfinite(r)):
            raise SpectrumError(f"resolution of the {where} must be a finite positive resolving power, got {r}")
        return r
    if arr.ndim != 1 or arr.shape[0] != n:
        raise SpectrumError(
            f"a per-pixel resolution of the {where} needs one R per pixel ({n} values), got shape {arr.shape}; give "
            "R(λ) sampled at its wavelengths (from an LSF FWHM in Å: wavelength / fwhm), or one number"
        )
    bad = ~(np.isfinite(arr) & (arr > 0))
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise SpectrumError(
            f"the per-pixel resolution of the {where} must be finite and > 0 at every pixel; {int(bad.sum())} are not "
            f"(first: pixel {i}, R = {arr[i]}); fill those pixels (e.g. interpolate R from their neighbours)"
        )
    return arr.copy()


def resolution_summary(value):
    """A resolving power for the record (JSON, headers): None, one R, or for a per-pixel R(λ)
    ``{"per_pixel": True, "min": ..., "median": ..., "max": ...}``."""
    if isinstance(value, np.ndarray):
        return {
            "per_pixel": True,
            "min": float(value.min()),
            "median": float(np.median(value)),
            "max": float(value.max()),
        }
    return None if value is None else float(value)


def describe_resolution(value) -> str:
    """One R as text: ``"28,000"``, ``"R(λ) 24,000–31,000 per pixel (median 28,000)"`` or ``"unknown"``."""
    if value is None:
        return "unknown"
    if isinstance(value, np.ndarray):
        return f"R(λ) {value.min():,.0f}–{value.max():,.0f} per pixel (median {np.median(value):,.0f})"
    return f"{float(value):,.0f}"


def _arm_resolutions(mapping, segments) -> dict[int, float | np.ndarray | None]:
    """A per-arm resolution mapping checked against the segment ids: one entry per segment, R > 0, one R > 0 per
    pixel of the arm, or None."""
    out = {}
    for k, v in mapping.items():
        try:
            seg = int(k)
        except (TypeError, ValueError):
            raise SpectrumError(f"resolution mapping keys must be segment ids (integers), got {k!r}") from None
        out[seg] = resolution_value(v, int(np.sum(segments == seg)), f"arm {seg}")
    ids = set(np.unique(segments).tolist())
    missing, extra = sorted(ids - set(out)), sorted(set(out) - ids)
    if missing or extra:
        raise SpectrumError(
            "a per-arm resolution mapping needs one entry per segment id "
            f"(segments {sorted(ids)}; "
            + (f"missing {missing}" if missing else "")
            + ("; " if missing and extra else "")
            + (f"no such segment {extra}" if extra else "")
            + "); give R (or None) for every arm"
        )
    return out


def _check_segments_contiguous(segments):
    change = np.flatnonzero(np.diff(segments) != 0) + 1
    starts = np.concatenate([[0], change])
    ids = segments[starts]
    if len(set(ids.tolist())) != len(ids):
        raise SpectrumError("each segment id must label one contiguous block of pixels; reorder the pixels by segment")


# --------------------------------------------------------------------------------------------------
# units and column names
# --------------------------------------------------------------------------------------------------


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
        format: ``"eso-phase3"``, ``"fits-table"``, ``"fits-image"``, ``"apogee"``, ``"galah"``, ``"ascii"`` or None (detect).
        medium: ``"vacuum"``, ``"air"`` or None (from the header when it says, else vacuum, noted in meta).
        wavelength_unit: unit of the wavelengths when the file has none (or to override it), e.g. ``"nm"``.
        wavelength_col, flux_col, error_col, ivar_col, mask_col: explicit column names (case-insensitive).
        hdu: FITS HDU (index or name) holding the table / flux image; default: detect. GALAH: 4 (normalised,
            default) or 0 (unnormalised).
        row: row of a 2-D flux image (APOGEE: row 0 is the combined spectrum).
        default_snr: if the file has no (or unusable) uncertainties, set σ = |flux|/default_snr with a warning
            instead of raising; ``"estimate"``: estimate σ from the flux itself (:func:`der_snr_noise`, per segment),
            with a warning.
        resolution: instrument resolving power to record: one R, or one R per pixel (else the file's per-pixel
            R, e.g. a ``resolution`` column or GALAH's resolution profile, else the ``RESOLUTN``/``SPEC_RES``/``R``
            header card).

    NaN/inf fluxes are masked (with a warning giving the count); a segment in descending wavelength order
    is reversed (with a note); unsorted or duplicated wavelengths, missing or non-positive uncertainties
    and fully masked spectra raise :class:`SpectrumError`.
    """
    if medium is not None and medium not in _MEDIA:
        raise SpectrumError(f"medium must be 'vacuum', 'air' or None, got {medium!r}")
    if format is not None and format not in FORMATS:
        raise SpectrumError(f"unknown format {format!r}; use {', '.join(map(repr, FORMATS))} or None")
    cols = dict(wavelength=wavelength_col, flux=flux_col, error=error_col, ivar=ivar_col, mask=mask_col)
    opts = ReadOptions(
        hdu=hdu, row=row, columns=cols, unit=wavelength_unit if _is_object(path) else _to_unit(wavelength_unit)
    )
    if _is_object(path):
        raw = read_object(path, opts)
        if raw is None:
            raise SpectrumError(
                f"read_spectrum takes a file path or a specutils Spectrum/Spectrum1D, not a {type(path).__name__}; for arrays "
                "use Spectrum(wavelength, flux, sigma)"
            )
        return _finalise(raw, medium=medium, default_snr=default_snr, resolution=resolution)
    path = Path(path)
    if not path.exists():
        raise SpectrumError(f"spectrum file {str(path)!r} does not exist; check the path")
    if format not in (None, "ascii") and format in FORMATS or (format is None and is_fits_name(path)):
        raw = read_fits(path, format, opts)
    else:
        raw = read_text(path, opts)
    raw.meta["source"] = str(path)
    return _finalise(raw, medium=medium, default_snr=default_snr, resolution=resolution)


def _is_object(source) -> bool:
    return not isinstance(source, (str, os.PathLike))


def _finalise(raw: RawSpectrum, *, medium, default_snr, resolution) -> Spectrum:
    """The rules every format shares: air → vacuum, descending segments reversed, NaN fluxes masked, σ checked or
    filled (``default_snr``), resolving power from the header; the result validated as a :class:`Spectrum`."""
    meta = raw.meta
    wl = np.asarray(raw.wavelength, dtype=np.float64)
    flux = np.asarray(raw.flux, dtype=np.float64)
    n = wl.shape[0]
    if wl.ndim != 1 or flux.shape != wl.shape:
        raise SpectrumError(f"wavelength {wl.shape} and flux {flux.shape} must be 1-D arrays of the same length")
    mask = np.asarray(raw.mask, bool) if raw.mask is not None else np.ones(n, bool)
    segments = raw.segments
    segments = np.zeros(n, np.int64) if segments is None else np.asarray(segments, np.int64)
    sigma = raw.sigma
    per_pixel_r = None if raw.resolution is None else np.asarray(raw.resolution, dtype=np.float64)
    if per_pixel_r is not None and per_pixel_r.shape != wl.shape:
        raise SpectrumError(
            f"the file's per-pixel resolution has shape {per_pixel_r.shape} but the wavelengths {wl.shape}; fix the file"
        )
    header = raw.header or {}

    medium, medium_source = _choose_medium(medium, raw.medium_hint, raw.medium_hint_source, meta)
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
        per_pixel_r = None if per_pixel_r is None else per_pixel_r[order]

    # non-finite fluxes: mask them
    bad_flux = ~np.isfinite(flux)
    if np.any(bad_flux & mask):
        _note(meta, f"{int((bad_flux & mask).sum())} pixel(s) with NaN/inf flux were masked")
    mask = mask & ~bad_flux

    sigma = _fill_sigma(flux, sigma, mask, segments, default_snr, meta, wl)
    if not np.any(mask):
        raise SpectrumError("every pixel is masked (NaN fluxes, zero inverse variance or mask column); nothing to fit")

    cards = {str(k).upper(): v for k, v in dict(header).items()}
    arm_r = {int(seg): cards.get(f"RESOL{int(seg)}") for seg in np.unique(segments)}
    multi_arm = len(arm_r) > 1 and all(isinstance(v, (int, float)) and v > 0 for v in arm_r.values())
    if resolution is None and per_pixel_r is not None:  # R per pixel from the file: it wins over header cards
        if multi_arm:
            resolution = {
                seg: per_pixel_r[segments == seg] if np.any(np.isfinite(per_pixel_r[segments == seg])) else None
                for seg in arm_r
            }
        else:
            resolution = per_pixel_r
    if resolution is None and multi_arm:
        resolution = {seg: float(v) for seg, v in arm_r.items()}  # a multi-arm spectrum (write_spectrum_fits)
    if resolution is None:
        for key in ("RESOLUTN", "SPEC_RES", "RESOLUTION", "R"):
            val = {str(k).upper(): v for k, v in dict(header).items()}.get(key)
            if isinstance(val, (int, float)) and not isinstance(val, bool) and val > 0:
                resolution = float(val)
                break
    # masked pixels may hold anything; keep them finite so downstream arithmetic stays clean
    flux = np.where(np.isfinite(flux), flux, 0.0)
    sigma = np.where(np.isfinite(sigma) & (sigma > 0), sigma, np.inf)
    unit_text, unit_source = raw.wavelength_unit or ("Angstrom", "default")
    return Spectrum(
        wl,
        flux,
        sigma,
        mask,
        segments,
        meta,
        resolution,
        input_medium=medium,
        medium_source=medium_source,
        input_wavelength_unit=unit_text,
        wavelength_unit_source=unit_source,
    )


def _choose_medium(medium, hint, hint_source, meta) -> tuple[str, str]:
    """(medium, who said so): the caller wins over the file (with a note when they disagree); with neither, vacuum
    is assumed and said, because an air spectrum read as vacuum fits RV ≈ −82.7 km/s and looks fine otherwise."""
    if medium is not None:
        if hint is not None and hint != medium:
            _note(
                meta,
                f"the file says its wavelengths are in {hint} ({hint_source}) but medium={medium!r} was given; using {medium}",
            )
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


_SNR_HINT = (
    "pass default_snr=<S/N per pixel> (CLI: --snr S/N) to assume σ = |flux|/S/N, or default_snr='estimate' "
    "(CLI: --snr estimate) to estimate the noise from the flux itself"
)


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
            _note(
                meta,
                f"{where}: estimated σ from the flux itself (DER_SNR, Stoehr et al. 2008): "
                f"{_describe_estimate(est, flux, mask)}; give real uncertainties (or --snr S/N) if you have them",
            )
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
    ``mask`` (True = use), ``segment``; ``MEDIUM = 'vacuum'``, ``RESOLUTN`` when known, or ``RESOL<segment>`` per arm
    of a multi-arm spectrum (read back as its per-arm resolution). A per-pixel R(λ) goes in a ``resolution`` column
    (R per pixel, NaN in an arm of unknown R; read back as per-pixel R), its median in the cards."""
    from astropy.io import fits

    sigma = np.where(np.isfinite(spectrum.sigma), spectrum.sigma, 0.0)  # FITS readers dislike inf
    columns = [
        fits.Column(name="wavelength", format="D", unit="Angstrom", array=spectrum.wavelength),
        fits.Column(name="flux", format="D", unit=spectrum.meta.get("flux_unit"), array=spectrum.flux),
        fits.Column(name="error", format="D", unit=spectrum.meta.get("flux_unit"), array=sigma),
        fits.Column(name="mask", format="L", array=spectrum.mask),
        fits.Column(name="segment", format="K", array=spectrum.segments),
    ]
    res = spectrum.resolution
    arrays = res.values() if isinstance(res, Mapping) else [res]
    if any(isinstance(r, np.ndarray) for r in arrays):
        per_pixel = np.full(spectrum.n_pix, np.nan)
        for seg in spectrum.segment_ids:
            r = spectrum.resolution_of(seg)
            if r is not None:
                per_pixel[spectrum.segments == seg] = r
        columns.append(fits.Column(name="resolution", format="D", array=per_pixel))
        median = lambda r: None if r is None else float(np.median(r))  # noqa: E731
        res = {s: median(r) for s, r in res.items()} if isinstance(res, Mapping) else median(res)
    table = fits.BinTableHDU.from_columns(columns, name="SPECTRUM")
    table.header["MEDIUM"] = ("vacuum", "wavelengths are vacuum")
    if isinstance(res, Mapping):
        for seg, r in res.items():
            if r is not None:
                table.header[f"RESOL{seg}"] = (r, f"resolving power of arm (segment) {seg}")
    elif res is not None:
        table.header["RESOLUTN"] = (res, "instrument resolving power")
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
