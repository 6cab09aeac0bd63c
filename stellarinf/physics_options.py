"""The synthesizer's physics-data choices, in one place that imports nothing heavy (the CLI offers them
without loading JAX).

- ``loggf``: ``"solar"`` (astrophysical log gf fitted to the observed Sun; ``data/loggf_solar*.ecsv``) or
  ``"laboratory"`` (linemake's values as shipped).
- ``damping``: ``"unsold"`` (Unsöld × 2 for every line) or ``"abo"`` (Anstee–Barklem–O'Mara cross-sections and
  tabulated widths from the Gaia-ESO list where it has them; ``data/damping.ecsv``).

Grids record both choices in their metadata; files made before a choice existed used :data:`LEGACY_DAMPING`.
"""

from __future__ import annotations

LOGGF_CHOICES = ("solar", "laboratory")
DEFAULT_LOGGF = "solar"

DAMPING_CHOICES = ("unsold", "abo")
# The synthesizer's default must be the physics the shipped emulators learned (data/models/RECIPE.md): the
# synthesizer and the emulators must draw the same spectra.
DEFAULT_DAMPING = "unsold"
# what grids and emulators made before the damping choice existed used
LEGACY_DAMPING = "unsold"

__all__ = ["LOGGF_CHOICES", "DEFAULT_LOGGF", "DAMPING_CHOICES", "DEFAULT_DAMPING", "LEGACY_DAMPING"]
