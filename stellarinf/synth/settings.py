"""Numerical settings of the realistic synthesizer: how finely it samples angle, depth and the Voigt function.

Three presets (:data:`PRESETS`, chosen by name with :func:`settings_preset`):

- ``"default"``: what every shipped grid, emulator and log gf calibration was made with (45 depths from
  log τ_Ross = −5).
- ``"extended"``: the default plus seven layers above log τ = −5 (to −6.75): the cores of Hβ and of the strongest
  metal lines form there. Against the reference at R 28,000 it keeps every arm within 0.5 % where the default
  leaves up to 2.1 % in the blue arm (benchmarks/synth_speed.py), for about 15 % more time. For new grids.
- ``"reference"``: slow, resolving each choice further (every ATLAS9 depth, 8 angles, the 24-term Voigt function),
  used with a finer wavelength grid (:data:`REFERENCE_FINE_RESOLUTION`) to measure how far the others are from
  converged.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Depth points used by default: log τ_Ross from −5.0 to +2.0 (ATLAS indices 15..71): every 0.125 dex where lines
# and continuum form (−3 ≤ log τ ≤ +1), every 0.25 dex above and below (45 points).
DEFAULT_DEPTH_INDEX = tuple(
    int(k) for k in np.concatenate([np.arange(15, 31, 2), np.arange(31, 63), np.arange(63, 72, 2)])
)
DEFAULT_FINE_RESOLUTION = 300_000.0  # about 1 km/s per pixel (synth.R_FINE)
REFERENCE_FINE_RESOLUTION = 600_000.0


@dataclasses.dataclass(frozen=True)
class SynthSettings:
    """``n_mu``: Gauss–Legendre angles of the flux integral; ``depth_index``: ATLAS9 depth indices (0..71, top
    first) the transfer uses; ``voigt_terms``: terms of Weideman's Voigt approximation in line cores (16 or 24)."""

    n_mu: int = 5
    depth_index: tuple[int, ...] = DEFAULT_DEPTH_INDEX
    voigt_terms: int = 16

    def __post_init__(self):
        if self.n_mu < 1 or self.voigt_terms not in (16, 24):
            raise ValueError("SynthSettings: n_mu must be ≥ 1 and voigt_terms 16 or 24")
        d = np.asarray(self.depth_index)
        if d.size < 10 or np.any(np.diff(d) <= 0) or d[0] < 0 or d[-1] > 71:
            raise ValueError("SynthSettings: depth_index must be ≥ 10 increasing ATLAS9 indices within 0..71")


DEFAULT_SETTINGS = SynthSettings()
EXTENDED_SETTINGS = SynthSettings(depth_index=tuple(range(1, 15, 2)) + DEFAULT_DEPTH_INDEX)
REFERENCE_SETTINGS = SynthSettings(n_mu=8, depth_index=tuple(range(72)), voigt_terms=24)
PRESETS = {"default": DEFAULT_SETTINGS, "extended": EXTENDED_SETTINGS, "reference": REFERENCE_SETTINGS}


def settings_preset(name: str) -> SynthSettings:
    """A preset of :data:`PRESETS` by name; an unknown name is an error that lists them."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown synthesizer settings {name!r}; choose one of {', '.join(PRESETS)}") from None


def fine_resolution(name: str) -> float:
    """The fine wavelength grid's resolving power a preset is meant to be used with."""
    settings_preset(name)  # an unknown name is an error
    return REFERENCE_FINE_RESOLUTION if name == "reference" else DEFAULT_FINE_RESOLUTION
