"""Wavelength conventions: vacuum Ångström internally, air↔vacuum at the edges, instrument windows.

A bare array is taken to be in Ångström; an astropy ``Quantity`` is converted to Ångström.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from .errors import WavelengthError

SPEED_OF_LIGHT_KMS = 299_792.458


def as_angstrom(wavelength) -> np.ndarray:
    """Return wavelengths as a float64 array in Å; accepts a ``Quantity`` in any length unit
    (a bare array is taken as Å)."""
    try:
        from astropy import units as u
    except ImportError:  # pragma: no cover - astropy is a dependency
        u = None
    if u is not None and isinstance(wavelength, u.Quantity):
        try:
            return np.asarray(wavelength.to_value(u.AA, equivalencies=u.spectral()), dtype=np.float64)
        except u.UnitConversionError:
            raise WavelengthError(
                f"cannot convert wavelengths in {wavelength.unit} to Ångström; give a length unit"
            ) from None
    return np.asarray(wavelength, dtype=np.float64)


def _air_refractive_index(sigma2):
    # IAU standard (Morton 2000, after Ciddor 1996); sigma2 = (1e4 / lambda[Å])^2 in µm^-2.
    return 1.0 + 8.34254e-5 + 2.406147e-2 / (130.0 - sigma2) + 1.5998e-4 / (38.9 - sigma2)


def vacuum_to_air(wavelength):
    """Vacuum → air wavelength (Å), Morton (2000) / Ciddor (1996). Valid above 2000 Å."""
    lam = as_angstrom(wavelength)
    _check_optical(lam)
    sigma2 = (1e4 / lam) ** 2
    return lam / _air_refractive_index(sigma2)


def air_to_vacuum(wavelength):
    """Air → vacuum wavelength (Å): inverse of :func:`vacuum_to_air` (Piskunov's VALD formula,
    refined by two fixed-point steps so the round trip is exact to < 1e-8 Å)."""
    lam_air = as_angstrom(wavelength)
    _check_optical(lam_air)
    s2 = (1e4 / lam_air) ** 2
    n = 1.0 + 8.336624212083e-5 + 2.408926869968e-2 / (130.1065924522 - s2) + 1.599740894897e-4 / (38.92568793293 - s2)
    lam = lam_air * n
    for _ in range(3):
        lam = lam + (lam_air - vacuum_to_air(lam)) * _air_refractive_index((1e4 / lam) ** 2)
    return lam


def _check_optical(lam):
    if np.any(~np.isfinite(lam)) or np.any(lam < 2000.0):
        raise WavelengthError(
            "air/vacuum conversion needs finite wavelengths above 2000 Å (given in Å or as a Quantity)"
        )


def air_vacuum_rv_offset(wavelength) -> float:
    """The radial velocity (km/s) that an **air** spectrum read as **vacuum** fits, at these wavelengths.

    Air wavelengths are shorter than vacuum ones by the factor n(λ) ≈ 1.000276 in the optical, so a spectrum read
    in the wrong medium fits the right labels at an RV shifted by c·(1/n − 1): about −82.7 km/s at 6500 Å
    (and +82.7 km/s for a vacuum spectrum read as air). Evaluated at the median wavelength (the offset varies
    by < 0.5 km/s across a typical window).
    """
    lam = float(np.median(as_angstrom(wavelength)))
    return SPEED_OF_LIGHT_KMS * (float(vacuum_to_air(np.array([lam]))[0]) / lam - 1.0)


def rv_medium_warning(
    rv_kms: float,
    wavelength,
    medium: str,
    *,
    medium_source: str = "default",
    rv_sigma_kms: float = 0.0,
    tolerance_kms: float = 3.0,
) -> str | None:
    """A message when a fitted RV sits at the air/vacuum offset for how the spectrum was read, else None.

    Pure (no I/O, no warnings module) so a pipeline can print it, store it in its outputs and flag the fit.
    ``medium`` is the medium the wavelengths were *read as* (``Spectrum.input_medium``) and ``medium_source``
    who said so (``Spectrum.medium_source``); the message is stronger when nobody did (``"default"``). The RV
    counts as "at the offset" within ``tolerance_kms`` plus 3 × ``rv_sigma_kms``. A real star can have such an
    RV, so this is a warning with a fix to try, not an error.
    """
    if medium not in ("air", "vacuum"):
        raise WavelengthError(f"medium must be 'air' or 'vacuum', got {medium!r}")
    offset = air_vacuum_rv_offset(wavelength)  # negative: air read as vacuum
    suspect = offset if medium == "vacuum" else -offset
    tol = float(tolerance_kms) + 3.0 * float(rv_sigma_kms)
    if not np.isfinite(rv_kms) or abs(float(rv_kms) - suspect) > tol:
        return None
    other = "air" if medium == "vacuum" else "vacuum"
    how = {
        "default": "was assumed (the file does not say)",
        "caller": "was given by you",
        "header": "is what the file header says",
        "format": "is this format's convention",
    }.get(medium_source, f"came from {medium_source}")
    return (
        f"the fitted RV {rv_kms:+.1f} km/s is within {tol:.1f} km/s of {suspect:+.1f} km/s, the shift {'an' if other == 'air' else 'a'} {other} spectrum read "
        f"as {medium} produces at these wavelengths; the medium '{medium}' {how}. If the wavelengths are {other} "
        f"wavelengths, refit with --medium {other} (Python: read_spectrum(..., medium='{other}'))"
    )


def doppler_factor(rv_kms):
    """Non-relativistic Doppler factor (1 + v/c); λ_obs = λ_rest · factor."""
    return 1.0 + rv_kms / SPEED_OF_LIGHT_KMS


def log_uniform_grid(
    wmin: float, wmax: float, resolving_power: float, pixels_per_resolution: float = 2.5, oversample: int = 1
) -> np.ndarray:
    """Wavelengths (Å) uniform in ln λ with step 1/(R · pixels_per_resolution), covering [wmin, wmax].

    ``oversample`` K > 1 puts K samples in every pixel: the same first and last wavelength, step 1/K of a pixel, so
    every K-th sample is a pixel of the K = 1 grid (what training grids that teach an emulator the wavelengths
    between pixels store).
    """
    if not (0 < wmin < wmax):
        raise WavelengthError(f"need 0 < wmin < wmax, got wmin={wmin}, wmax={wmax}")
    if resolving_power <= 0 or pixels_per_resolution <= 0:
        raise WavelengthError("resolving power and pixels per resolution element must be positive")
    if int(oversample) != oversample or oversample < 1:
        raise WavelengthError(f"oversample must be a whole number ≥ 1, got {oversample}")
    step = 1.0 / (resolving_power * pixels_per_resolution)
    n = int(np.floor(np.log(wmax / wmin) / step)) + 1
    k = int(oversample)
    return wmin * np.exp((step / k) * np.arange(k * (n - 1) + 1))


@dataclasses.dataclass(frozen=True)
class Window:
    """An instrument setup: vacuum wavelength range, resolving power and sampling."""

    name: str
    wmin: float
    wmax: float
    resolution: float
    pixels_per_resolution: float = 2.5
    description: str = ""

    def grid(self, oversample: int = 1) -> np.ndarray:
        """The instrument pixel grid (vacuum Å, uniform in log λ); ``oversample`` K: K samples per pixel."""
        return log_uniform_grid(self.wmin, self.wmax, self.resolution, self.pixels_per_resolution, oversample)


class _ModelWindows(Mapping):
    """stellarinf's model windows, read from the one table of set-ups (``data/instruments.ecsv``, rows of kind
    ``window``) on first use: the fitter's windows and the forecaster's presets are the same table."""

    def _windows(self) -> dict[str, Window]:
        from .instruments import model_windows

        return model_windows()

    def __getitem__(self, name: str) -> Window:
        return self._windows()[name]

    def __iter__(self):
        return iter(self._windows())

    def __len__(self) -> int:
        return len(self._windows())


WINDOWS: Mapping[str, Window] = _ModelWindows()
DEFAULT_WINDOW = "galah-red"


def get_window(name: str) -> Window:
    try:
        return WINDOWS[name]
    except KeyError:
        raise WavelengthError(f"unknown window {name!r}; choose one of {', '.join(WINDOWS)}") from None
