"""Numerical settings of the realistic synthesizer: how finely it samples angle, depth and the Voigt function.

Three presets (:data:`PRESETS`, chosen by name with :func:`settings_preset`; :data:`DEFAULT_PRESET` is used
unless another is asked for):

- ``"extended"`` (the default since the nineteenth session): 52 depths from log τ_Ross = −6.75: the cores of Hα,
  Hβ, Ca II and the strongest metal lines form above log τ = −5. Against the reference at R 28,000 it keeps every
  arm within 0.5 % (benchmarks/synth_speed.py).
- ``"standard"``: 45 depths from log τ_Ross = −5, about 15 % faster; what the grids, emulators and log gf
  calibrations up to the eighteenth session were made with (their files call it ``"default"``, read as this one).
  Strong-line cores come out up to 16 % off (Hα of hot metal-poor stars).
- ``"reference"``: slow, resolving each choice further (every ATLAS9 depth, 8 angles, the 24-term Voigt function,
  line windows to 1e-4 of the continuum opacity instead of 1e-3: about 3× wider damping wings), used with a finer
  wavelength grid (:data:`REFERENCE_FINE_RESOLUTION`) to measure how far the others are from converged.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .lines import EDGE_TOLERANCE

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
    first) the transfer uses; ``voigt_terms``: terms of Weideman's Voigt approximation in line cores (16 or 24);
    ``edge_tolerance``: a line's window ends where its opacity falls to this fraction of the continuum's in the
    reference atmospheres of :mod:`.selection` (smaller: wider windows)."""

    n_mu: int = 5
    depth_index: tuple[int, ...] = DEFAULT_DEPTH_INDEX
    voigt_terms: int = 16
    edge_tolerance: float = EDGE_TOLERANCE

    def __post_init__(self):
        if self.n_mu < 1 or self.voigt_terms not in (16, 24):
            raise ValueError("SynthSettings: n_mu must be ≥ 1 and voigt_terms 16 or 24")
        if not 0.0 < self.edge_tolerance < 0.1:
            raise ValueError("SynthSettings: edge_tolerance must be in (0, 0.1), e.g. 1e-3")
        d = np.asarray(self.depth_index)
        if d.size < 10 or np.any(np.diff(d) <= 0) or d[0] < 0 or d[-1] > 71:
            raise ValueError("SynthSettings: depth_index must be ≥ 10 increasing ATLAS9 indices within 0..71")


STANDARD_SETTINGS = SynthSettings()
EXTENDED_SETTINGS = SynthSettings(depth_index=tuple(range(1, 15, 2)) + DEFAULT_DEPTH_INDEX)
REFERENCE_SETTINGS = SynthSettings(n_mu=8, depth_index=tuple(range(72)), voigt_terms=24, edge_tolerance=1e-4)
PRESETS = {"extended": EXTENDED_SETTINGS, "standard": STANDARD_SETTINGS, "reference": REFERENCE_SETTINGS}
DEFAULT_PRESET = "extended"
DEFAULT_SETTINGS = PRESETS[DEFAULT_PRESET]
# names files recorded before the presets were renamed (nineteenth session)
LEGACY_NAMES = {"default": "standard"}


def preset_name(name: str) -> str:
    """The current name of a preset (an old file's ``"default"`` is ``"standard"``); unknown names are an error."""
    name = LEGACY_NAMES.get(name, name)
    if name not in PRESETS:
        raise ValueError(f"unknown synthesizer settings {name!r}; choose one of {', '.join(PRESETS)}")
    return name


def settings_preset(name: str) -> SynthSettings:
    """A preset of :data:`PRESETS` by name; an unknown name is an error that lists them."""
    return PRESETS[preset_name(name)]


def fine_resolution(name: str) -> float:
    """The fine wavelength grid's resolving power a preset is meant to be used with."""
    return REFERENCE_FINE_RESOLUTION if preset_name(name) == "reference" else DEFAULT_FINE_RESOLUTION
