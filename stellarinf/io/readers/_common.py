"""What every reader shares: the raw record a reader returns, reading options, units, column names, header
conventions (air/vacuum, WCS) and the warning class. No reader logic."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from ...errors import SpectrumError

__all__ = ["RawSpectrum", "ReadOptions", "SpectrumWarning"]


@dataclasses.dataclass
class RawSpectrum:
    """What a reader found, before the shared rules (medium conversion, sorting, NaN masking, σ filling, checks)
    make a :class:`~stellarinf.io.spectrum.Spectrum` of it.

    ``wavelength`` Å in the file's medium; ``sigma`` None when the file has none; ``mask`` True = use;
    ``medium_hint``: the medium the file declares (or its format implies), ``medium_hint_source`` ``"header"`` or
    ``"format"``; ``wavelength_unit``: (unit, who said so) of the wavelengths as read; ``resolution``: a per-pixel
    resolving power R = λ/FWHM the file gives (e.g. a GALAH resolution profile), None when it has none.
    """

    wavelength: np.ndarray
    flux: np.ndarray
    sigma: np.ndarray | None
    mask: np.ndarray | None
    segments: np.ndarray | None
    meta: dict
    header: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    medium_hint: str | None = None
    medium_hint_source: str = "header"
    wavelength_unit: tuple[str, str] | None = None
    resolution: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """The caller's reading choices a reader may need: FITS ``hdu``, image ``row``, explicit column names
    (``columns``: wavelength, flux, error, ivar, mask → name or None) and the wavelength ``unit`` (astropy unit)."""

    hdu: int | str | None = None
    row: int = 0
    columns: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
    unit: Any = None

    def column(self, key: str) -> str | None:
        return self.columns.get(key)


class SpectrumWarning(UserWarning):
    """Something in an observed spectrum was repaired or assumed (masked pixels, reversed order, ...)."""


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
        out, out_unit = (
            np.where(arr > 0, 1.0 / np.sqrt(np.where(arr > 0, arr, 1.0)), np.nan),
            None if unit is None else unit**-0.5,
        )
    else:
        raise SpectrumError(
            f"uncertainty of type {kind!r} is not supported; give a standard deviation, variance or inverse variance"
        )
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


def _note(meta: dict, message: str, warn: bool = True) -> None:
    meta.setdefault("notes", []).append(message)
    if warn:
        warnings.warn(message, SpectrumWarning, stacklevel=3)


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


def _open_fits(path):
    from astropy.io import fits

    try:
        return fits.open(path, memmap=False)
    except OSError as exc:
        raise SpectrumError(f"cannot read {str(path)!r} as FITS ({exc}); check that it is a FITS file") from None


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


def _wcs_wavelength(header, n, unit, where) -> np.ndarray:
    h = header
    if "CRVAL1" not in h:
        raise SpectrumError(
            f"{where}: the flux image has no wavelength WCS (CRVAL1/CDELT1); use a table with a wavelength column"
        )
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


def _wcs_unit_record(header, caller_unit) -> tuple[str, str]:
    ctype = str(header.get("CTYPE1", "")).upper()
    if int(header.get("DC-FLAG", 0)) == 1 or ctype.startswith("LOG-LINEAR") or ctype == "LOGLAM":
        return (
            ("log10 " + caller_unit.to_string(), "caller") if caller_unit is not None else ("log10 Angstrom", "format")
        )
    return _unit_record(caller_unit, header.get("CUNIT1"))
