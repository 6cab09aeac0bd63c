"""The synthesizer's physics-data choices, in one place that imports nothing heavy (the CLI offers them
without loading JAX).

- ``loggf``: ``"solar"`` (astrophysical log gf fitted to the observed Sun, ``data/loggf_solar*.ecsv``, plus the
  empirical lines for solar features the list lacks, ``data/lines_solar_empirical.ecsv``) or ``"laboratory"``
  (linemake's values as shipped).
- ``damping``: ``"unsold"`` (Unsöld × 2 for every line) or ``"abo"`` (Anstee–Barklem–O'Mara cross-sections and
  tabulated widths from the Gaia-ESO list where it has them; ``data/damping.ecsv``).

- ``molecules``: ``"off"`` (atoms only) or ``"on"`` (the molecular equilibrium of H, C, N, O, Mg and the CH, MgH,
  C2 and CN lines of ``data/linelist_molecules.ecsv``).

Grids record the choices in their metadata; files made before a choice existed used the ``LEGACY_*`` value.
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

MOLECULES_CHOICES = ("off", "on")
# off until the shipped red, green, IR and RVS emulators are retrained with molecules (only default-payne-blue is):
# the synthesizer's default must be what they learned
DEFAULT_MOLECULES = "off"
LEGACY_MOLECULES = "off"


def training_physics(model) -> dict[str, str]:
    """The synthesizer choices an emulator's training grid recorded (``loggf``, ``damping``, ``molecules``, from
    ``model.metadata["training_grid"]["metadata"]``), each the value grids used before the choice existed when the
    grid predates it: the synthesizer that reproduces what the emulator learned is ``make_synthesizer(**this)``."""
    meta = ((getattr(model, "metadata", None) or {}).get("training_grid") or {}).get("metadata") or {}

    def pick(key: str, choices: tuple[str, ...], legacy: str) -> str:
        value = meta.get(key, legacy)
        return value if value in choices else legacy

    return {
        "loggf": pick("loggf", LOGGF_CHOICES, "solar"),
        "damping": pick("damping", DAMPING_CHOICES, LEGACY_DAMPING),
        "molecules": pick("molecules", MOLECULES_CHOICES, LEGACY_MOLECULES),
    }


__all__ = [
    "LOGGF_CHOICES",
    "DEFAULT_LOGGF",
    "DAMPING_CHOICES",
    "DEFAULT_DAMPING",
    "LEGACY_DAMPING",
    "MOLECULES_CHOICES",
    "DEFAULT_MOLECULES",
    "LEGACY_MOLECULES",
]
