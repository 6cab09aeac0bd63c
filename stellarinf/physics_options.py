"""The synthesizer's physics-data choices, in one place that imports nothing heavy (the CLI offers them
without loading JAX).

- ``loggf``: ``"solar"`` (astrophysical log gf fitted to the observed Sun, ``data/loggf_solar*.ecsv``, plus the
  empirical lines for solar features the list lacks, ``data/lines_solar_empirical.ecsv``) or ``"laboratory"``
  (linemake's values as shipped).
- ``damping``: ``"unsold"`` (Unsöld × 2 for every line) or ``"abo"`` (Anstee–Barklem–O'Mara cross-sections and
  tabulated widths from the Gaia-ESO list where it has them; ``data/damping.ecsv``).

- ``molecules``: ``"off"`` (atoms only), ``"on"`` (the molecular equilibrium of H, C, N, O, Mg and the CH, MgH,
  C2 and CN lines of ``data/linelist_molecules.ecsv``) or ``"on+tio"`` (and Ti in the equilibrium, with the TiO lines
  of ``data/linelist_tio.h5``: 46, 47, 49 and 50TiO from the pinned source, 48TiO, 74 % of TiO, derived from them
  by its reduced mass, ``data/isotopologue.py``).

Grids record the choices in their metadata; files made before a choice existed used the ``LEGACY_*`` value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

LOGGF_CHOICES = ("solar", "laboratory")
DEFAULT_LOGGF = "solar"

DAMPING_CHOICES = ("unsold", "abo")
# The synthesizer's default is the physics most shipped emulators learned (data/models/RECIPE.md): default-payne,
# TransformerPayne, the blue, green and IR Paynes, the broad sets and the demo star. The red and RVS Paynes "auto" fits
# real stars with (default-payne-abo, default-payne-rvs-abo) learned "abo"; every model records its own
# (training_physics), which the synthesizer reproduces and the physics-error term follows (model_damping).
DEFAULT_DAMPING = "unsold"
# what grids and emulators made before the damping choice existed used
LEGACY_DAMPING = "unsold"

MOLECULES_CHOICES = ("off", "on", "on+tio")
# off until the shipped red, green, IR and RVS emulators are retrained with molecules (only default-payne-blue is):
# the synthesizer's default must be what they learned
DEFAULT_MOLECULES = "off"
LEGACY_MOLECULES = "off"


# Where TiO matters: below this Teff (K, linear in log g between the points, constant beyond them) the TiO lines
# change a realistic spectrum of solar composition by more than 0.1 % rms after an R 28,000 LSF (about the shipped
# emulators' own error): the crossings of galah-red with the complete TiO list (48TiO derived), interpolated in log
# rms between scan points 100-150 K apart (benchmarks/tio_effect.py, results/tio_effect_boundary.json; the other
# arms' rms within a factor 1.5). A fit there through physics without TiO is flagged ``no_tio``.
TIO_TEFF_LIMIT = ((1.5, 4410.0), (2.5, 4460.0), (3.5, 4555.0), (4.6, 4695.0))  # (log g, Teff)
# Near the limit the TiO lines are weak, so their rms scales with the TiO number, ∝ n(Ti) × n(O not in CO): per dex
# of [Ti/H] + log(free O / the Sun's) the limit moves by 1/TIO_DEX_PER_K; the rms falls by 0.365 dex per 100 K there
# (the boundary scan's mean). TIO_MARGIN_DEX (the rule's scatter) is flagged too: at solar composition the rule flags
# above 0.05 % rms (dwarfs below 4777 K). Checked on 128 rows of the broad red box with and without TiO (35 labels,
# C/O up to > 1; benchmarks/tio_rule.py, README section 6): 9 rows above 0.1 %, all flagged, none flagged below; the
# limit at solar composition alone, without the margin, missed one and flagged 15 that were not.
TIO_DEX_PER_K = 0.00365
TIO_MARGIN_DEX = 0.3
# solar log ε of C and O (Asplund et al. 2021, data/solar_abundances.ecsv): the oxygen CO leaves free
SOLAR_LOG_EPS_C, SOLAR_LOG_EPS_O = 8.46, 8.69


def tio_composition_dex(composition: Mapping[str, float] | None = None) -> float:
    """log10 of a star's TiO number against the Sun's at the same structure: [Ti/H] + log10 of the oxygen CO leaves
    free (O − C by number, at least 0.1 % of O: a carbon-rich star has almost no TiO). ``composition``: labels feh,
    ti_fe, o_fe, c_fe, alpha_fe; absent ones solar-scaled, Ti and O following alpha_fe."""
    labels = composition or {}
    alpha = float(labels.get("alpha_fe", 0.0))
    feh, ti_fe = float(labels.get("feh", 0.0)), float(labels.get("ti_fe", alpha))
    n_o = 10.0 ** (SOLAR_LOG_EPS_O + feh + float(labels.get("o_fe", alpha)))
    n_c = 10.0 ** (SOLAR_LOG_EPS_C + feh + float(labels.get("c_fe", 0.0)))
    free = max(n_o - n_c, 1e-3 * n_o) / (10.0**SOLAR_LOG_EPS_O - 10.0**SOLAR_LOG_EPS_C)
    return float(feh + ti_fe + math.log10(free))


def tio_matters(teff: float, logg: float, composition: Mapping[str, float] | None = None) -> bool:
    """Whether TiO bands change a spectrum of this Teff, log g and ``composition`` (as :func:`tio_composition_dex`)
    by more than 0.1 % rms, within the rule's margin (:data:`TIO_TEFF_LIMIT`, :data:`TIO_DEX_PER_K`,
    :data:`TIO_MARGIN_DEX`)."""
    dex = tio_composition_dex(composition)
    g, t = zip(*TIO_TEFF_LIMIT)
    x = min(max(float(logg), g[0]), g[-1])
    k = next(k for k in range(len(g) - 1) if x <= g[k + 1])
    limit = t[k] + (t[k + 1] - t[k]) * (x - g[k]) / (g[k + 1] - g[k])
    return float(teff) < limit + (dex + TIO_MARGIN_DEX) / TIO_DEX_PER_K


def model_molecules(model) -> str | None:
    """The ``molecules`` physics a model draws spectra with: the synthesizer's own setting, an emulator's training
    grid's (:func:`training_physics`), or None where the model does not say (a test or user model)."""
    return _model_choice(model, "molecules")


def model_damping(model) -> str | None:
    """The van der Waals ``damping`` a model draws spectra with (as :func:`model_molecules`): which physics-error term
    measured on the observed Sun is its (:func:`stellarinf.observe.physics_error.physics_error_for`)."""
    return _model_choice(model, "damping")


def _model_choice(model, key: str) -> str | None:
    """The synthesizer choice ``key`` of ``model``: its own attribute (the synthesizer), else its training grid's."""
    own = getattr(model, key, None)
    if isinstance(own, str):
        return own
    return None if _training_grid_metadata(model) is None else training_physics(model)[key]


def _training_grid_metadata(model) -> dict | None:
    """``model.metadata["training_grid"]["metadata"]``, or None where a model does not have it."""
    return ((getattr(model, "metadata", None) or {}).get("training_grid") or {}).get("metadata")


def no_tio_message(teff: float, logg: float, models, composition: Mapping[str, float] | None = None) -> str | None:
    """Words (starting ``no_tio:``) for a star at ``teff``, ``logg`` (and ``composition``, as :func:`tio_matters`)
    where TiO bands matter seen through ``models`` whose physics has no TiO; None if TiO does not matter there, or no
    model says its physics (:func:`model_molecules`), or every one that does has TiO."""
    if not tio_matters(teff, logg, composition):
        return None
    physics = [model_molecules(m) for m in models]
    if all(p is None or p == "on+tio" for p in physics):
        return None
    from .emulators.registry import shipped_with_tio

    molecules = ", ".join(sorted({p or "unknown" for p in physics}))
    learned = shipped_with_tio()
    shipped = (
        f"Of the shipped models only {', '.join(learned)} {'has' if len(learned) == 1 else 'have'} learned TiO "
        "(fine-tuned on TiO spectra; the others' grids were made without it"
        if learned
        else "None of the shipped models has learned TiO (their grids were made without it"
    )
    return (
        f"no_tio: at Teff {teff:.0f} K and log g {logg:.2f} (with its Ti, O and C) TiO bands change the spectrum by "
        "more than 0.1 % rms (8-12 % in the optical arms at 4000 K for a dwarf of solar composition), and this "
        f"model's physics has no TiO (its training grid's molecules: {molecules}): labels and bounds for a star this "
        "cool can be biased (measured at S/N 100 through broad-payne-red: log g -0.06 to -0.19 and [Fe/H] -0.08 to "
        "-0.15, 0.7-3.2 total sd, for 4000-4250 K dwarfs; at most 0.05 dex for 4300-4500 K dwarfs and 4000-4250 K "
        f"giants and subgiants). {shipped}: data/models/RECIPE.md)"
    )


def training_physics(model) -> dict[str, str]:
    """The synthesizer choices an emulator's training grid recorded (``loggf``, ``damping``, ``molecules``, from
    ``model.metadata["training_grid"]["metadata"]``), each the value grids used before the choice existed when the
    grid predates it: the synthesizer that reproduces what the emulator learned is ``make_synthesizer(**this)``."""
    meta = _training_grid_metadata(model) or {}

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
    "TIO_TEFF_LIMIT",
    "TIO_DEX_PER_K",
    "TIO_MARGIN_DEX",
    "tio_composition_dex",
    "tio_matters",
    "model_molecules",
    "model_damping",
    "no_tio_message",
]
