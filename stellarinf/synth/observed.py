"""Synthesis at instrument resolution: fine spectrum → broadening → resampling to a pixel grid."""

from __future__ import annotations

import numpy as np

from ..errors import WavelengthError
from ..physics_options import DEFAULT_MOLECULES
from ..wavelength import SPEED_OF_LIGHT_KMS, Window, get_window, log_uniform_grid
from .synthesize import R_FINE, fine_grid, synthesize


def padded_fine_grid(
    wmin: float,
    wmax: float,
    *,
    resolution=None,
    vsini: float = 0.0,
    vmacro: float = 0.0,
    fine_resolution: float = R_FINE,
) -> np.ndarray:
    """Fine grid (``fine_resolution``, default :data:`R_FINE`) covering [wmin, wmax] plus room for the broadening
    kernels (≥ 2 Å each side)."""
    width_kms = (
        (vsini or 0.0)
        + 5.0 * (vmacro or 0.0)
        + (6.0 * SPEED_OF_LIGHT_KMS / (2.355 * resolution) if resolution else 0.0)
    )
    pad = max(2.0, 1.2 * wmax * width_kms / SPEED_OF_LIGHT_KMS)
    return fine_grid(wmin - pad, wmax + pad, fine_resolution)


def resolve_window(window: str | Window | None = "galah-red", wmin=None, wmax=None, resolution=None) -> Window:
    """A :class:`Window` from a name, or from explicit wmin/wmax (and R, default 28,000)."""
    if wmin is not None or wmax is not None:
        if wmin is None or wmax is None:
            raise WavelengthError("give both wmin and wmax (vacuum Å)")
        return Window("custom", float(wmin), float(wmax), float(resolution or 28_000.0))
    w = window if isinstance(window, Window) else get_window(window or "galah-red")
    if resolution is not None:
        w = Window(w.name, w.wmin, w.wmax, float(resolution), w.pixels_per_resolution, w.description)
    return w


def synthesize_observed(
    labels,
    window: str | Window = "galah-red",
    resolution=None,
    vsini: float = 0.0,
    vmacro: float = 0.0,
    *,
    fidelity: str = "realistic",
    limb_darkening: float = 0.6,
    label_names=None,
    wavelength=None,
    molecules: str = DEFAULT_MOLECULES,
):
    """Spectrum at instrument resolution on the window's pixel grid (uniform in ln λ, vacuum Å).

    Args:
        labels: as for :func:`~stellarinf.synth.synthesize` (mapping or array (n_labels,) / (n, n_labels)).
        window: name in :data:`stellarinf.wavelength.WINDOWS` or a :class:`Window`.
        resolution: resolving power (default: the window's). vsini, vmacro: km/s.
        wavelength: optional output pixel grid (vacuum Å) instead of the window's grid.
        molecules: "off" (default), "on" or "on+tio" (see :func:`~stellarinf.synth.make_synthesizer`).

    Returns:
        (wavelength (n_pix,), flux (…, n_pix) normalised, continuum (…, n_pix) erg s⁻¹ cm⁻² Å⁻¹).
    """
    from ..observe.broadening import broaden, resample, velocity_step

    win = resolve_window(window, resolution=resolution)
    out_wl = win.grid() if wavelength is None else np.asarray(wavelength, dtype=np.float64)
    fine = padded_fine_grid(float(out_wl[0]), float(out_wl[-1]), resolution=win.resolution, vsini=vsini, vmacro=vmacro)
    flux, cont = synthesize(labels, fine, fidelity, label_names=label_names, molecules=molecules)
    dv = velocity_step(fine)
    kw = dict(resolution=win.resolution, vsini=vsini, vmacro=vmacro, limb_darkening=limb_darkening)
    flux_b = broaden(flux, dv, **kw)
    cont_b = broaden(cont, dv, **kw)
    return out_wl, np.asarray(resample(fine, flux_b, out_wl)), np.asarray(resample(fine, cont_b, out_wl))


def instrument_grid(window: Window) -> np.ndarray:
    """The window's pixel grid (alias of ``window.grid()``)."""
    return log_uniform_grid(window.wmin, window.wmax, window.resolution, window.pixels_per_resolution)
