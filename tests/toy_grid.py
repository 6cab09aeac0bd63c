"""A cheap analytic stand-in for synthetic spectra, for emulator tests (no synthesizer needed).

A few Gaussian absorption lines whose depths, widths and positions depend smoothly on the labels,
on a smooth Planck-like continuum. Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np

from stellarinf.io.grid import SpectralGrid
from stellarinf.labels import LabelSpace

TOY_SPACE = LabelSpace.from_bounds({"teff": (4500.0, 6500.0), "logg": (2.0, 5.0), "feh": (-1.5, 0.5)})
TOY_RANGE = (6000.0, 6030.0)
# (centre Å, base depth, depth sensitivity to teff, to feh)
_LINES = np.array(
    [
        [6004.0, 0.5, -0.3, 0.4],
        [6009.5, 0.3, 0.4, 0.3],
        [6015.0, 0.6, -0.2, 0.5],
        [6021.3, 0.2, 0.3, 0.2],
        [6026.0, 0.4, -0.4, 0.4],
    ]
)


def toy_spectrum(labels: np.ndarray, wavelength: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flux, continuum) for labels (N, 3) [teff, logg, feh] at wavelength (n_pix,)."""
    lab = np.atleast_2d(labels)
    t = (lab[:, 0:1] - 5500.0) / 1000.0
    g = (lab[:, 1:2] - 3.5) / 1.5
    m = lab[:, 2:3] + 0.5
    tau = np.zeros((lab.shape[0], wavelength.size))
    for c, d0, dt, dm in _LINES:
        depth = np.clip(d0 + dt * t * 0.5 + dm * m * 0.5, 0.02, 1.5)
        width = 0.25 * (1.0 + 0.3 * g)
        centre = c + 0.05 * t
        tau += depth * np.exp(-0.5 * ((wavelength - centre) / width) ** 2)
    flux = np.exp(-tau)
    x = (wavelength - 6015.0) / 15.0
    cont = 1e14 * (1.0 + 0.8 * t) * (1.0 - 0.05 * x * (1 + 0.3 * t))
    return flux.astype(np.float32), cont.astype(np.float32)


def make_toy_grid(
    n: int = 64,
    n_pix: int = 300,
    seed: int = 0,
    wavelength_range=TOY_RANGE,
    continuum: bool = True,
    oversample: int = 1,
) -> SpectralGrid:
    """``n`` toy spectra at ``n_pix`` pixels (× ``oversample`` samples per pixel, as ``stellarinf grid --oversample``)."""
    rng = np.random.default_rng(seed)
    labels = TOY_SPACE.lower + rng.random((n, len(TOY_SPACE))) * (TOY_SPACE.upper - TOY_SPACE.lower)
    wl = np.linspace(*wavelength_range, oversample * (n_pix - 1) + 1)
    flux, cont = toy_spectrum(labels, wl)
    return SpectralGrid(
        TOY_SPACE,
        labels,
        wl,
        flux,
        cont if continuum else None,
        {"generator": "toy", "seed": seed, "resolution": 50000.0, "oversample": oversample},
    )
