"""The one table of the emulators shipped in ``data/models/``: name → folder, network kind, window, what it is.

Light on purpose (no JAX): the command line's help texts and ``emulator="auto"`` read it before any model loads.
Adding a shipped model is its folder under ``data/models/`` (made as ``data/models/RECIPE.md`` says) plus one entry
here; :mod:`stellarinf.emulators.registry` loads them, :data:`AUTO_MODELS` says which ``"auto"`` picks from.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ShippedModel:
    """One shipped emulator.

    - ``folder``: its directory, relative to the data folder;
    - ``kind``: its network kind (:data:`stellarinf.emulators.NETWORK_KINDS`; for the message that says how to
      train a missing one);
    - ``window``: the model window it covers (:mod:`stellarinf.wavelength`);
    - ``about``: a few words for help texts.
    """

    folder: str
    kind: str
    window: str
    about: str


SHIPPED_MODELS: dict[str, ShippedModel] = {
    "default": ShippedModel("models/transformer-payne-small", "transformer-payne", "galah-red", "TransformerPayne"),
    "default-payne": ShippedModel("models/payne-mlp", "payne", "galah-red", "the Payne MLP"),
    # the same labels, box and grid size as default-payne, with Anstee-Barklem-O'Mara van der Waals damping and the
    # log gf and empirical solar lines calibrated with it: the observed Sun's red arm alone within 12 K and 0.08 dex
    # (S/N 50, ten seeds) where default-payne is 91 K and 0.19 off (RECIPE.md, fifty-seventh and -eighth sessions);
    # what "auto" fits a real star's red arm with on a CPU
    "default-payne-abo": ShippedModel("models/payne-mlp-abo", "payne", "galah-red", "the Payne MLP, ABO damping"),
    "default-payne-blue": ShippedModel("models/payne-mlp-blue", "payne", "galah-blue", "the Payne MLP, with molecules"),
    "default-payne-green": ShippedModel("models/payne-mlp-green", "payne", "galah-green", "the Payne MLP"),
    "default-payne-ir": ShippedModel("models/payne-mlp-ir", "payne", "galah-ir", "the Payne MLP"),
    "default-payne-rvs": ShippedModel("models/payne-mlp-rvs", "payne", "gaia-rvs", "the Payne MLP"),
    # Gaia RVS's Payne on the same ABO physics as default-payne-abo (RECIPE.md, fifty-seventh session)
    "default-payne-rvs-abo": ShippedModel(
        "models/payne-mlp-rvs-abo", "payne", "gaia-rvs", "the Payne MLP, ABO damping"
    ),
    # the broad domain (issue #18): 35 labels (Teff, log g, [Fe/H], vmic, [α/Fe], 30 elements), [Fe/H] down to -2.5,
    # molecules; one Payne per GALAH arm and one for Gaia RVS, all with the same labels, so the arms of one star
    # combine (set "broad")
    "broad-payne-blue": ShippedModel("models/broad-payne-blue", "payne", "galah-blue", "the Payne, broad domain"),
    "broad-payne-green": ShippedModel("models/broad-payne-green", "payne", "galah-green", "the Payne, broad domain"),
    "broad-payne-red": ShippedModel("models/broad-payne-red", "payne", "galah-red", "the Payne, broad domain"),
    "broad-payne-ir": ShippedModel("models/broad-payne-ir", "payne", "galah-ir", "the Payne, broad domain"),
    "broad-payne-rvs": ShippedModel("models/broad-payne-rvs", "payne", "gaia-rvs", "the Payne, broad domain"),
    # the same domain and labels with TransformerPayne, trained on the same grids on a GPU (set "broad-tp")
    "broad-tp-blue": ShippedModel("models/broad-tp-blue", "transformer-payne", "galah-blue", "TransformerPayne, broad"),
    "broad-tp-green": ShippedModel(
        "models/broad-tp-green", "transformer-payne", "galah-green", "TransformerPayne, broad"
    ),
    "broad-tp-red": ShippedModel("models/broad-tp-red", "transformer-payne", "galah-red", "TransformerPayne, broad"),
    "broad-tp-ir": ShippedModel("models/broad-tp-ir", "transformer-payne", "galah-ir", "TransformerPayne, broad"),
}

# the shipped models "auto" picks from, per machine, in order of preference: for each arm of a spectrum the first
# that covers it (TransformerPayne covers galah-red only; the other arms have a Payne each). The red and RVS arms get
# the ABO Paynes, whose physics puts the observed Sun where it is (benchmarks/README.md, "The observed Sun as it
# stands"); TransformerPayne (retraining it needs a GPU) and the other arms' Paynes learned Unsöld × 2 (in green and IR
# ABO did not bring the synthesized Sun closer: benchmarks/results/sun_fit_{green,ir}_synth_abo.json)
AUTO_MODELS = {
    "cpu": (
        "default-payne-abo",
        "default-payne-blue",
        "default-payne-green",
        "default-payne-ir",
        "default-payne-rvs-abo",
    ),
    "accelerator": (
        "default",
        "default-payne-blue",
        "default-payne-green",
        "default-payne-ir",
        "default-payne-rvs-abo",
    ),
}


# named sets of shipped models, one per arm: a fit given the set's name evaluates each arm of its spectrum by the
# set's model that covers it (as "auto" does with AUTO_MODELS)
MODEL_SETS = {
    "broad": ("broad-payne-blue", "broad-payne-green", "broad-payne-red", "broad-payne-ir", "broad-payne-rvs"),
    "broad-tp": ("broad-tp-blue", "broad-tp-green", "broad-tp-red", "broad-tp-ir"),
}


# names that fit with the 1D LTE synthesizer itself instead of an emulator (no emulation error; minutes per arm on a
# CPU: every gradient is a synthesis), each arm on its model window: name -> van der Waals damping. "synth" draws the
# physics the shipped emulators learned; "synth-abo" uses ABO cross-sections (log gf and empirical lines calibrated with
# them in every arm: data/loggf_solar_abo.ecsv, data/lines_solar_empirical.ecsv)
SYNTHESIZER_MODELS = {"synth": "unsold", "synth-abo": "abo"}


def set_members(name: str) -> dict[str, str]:
    """The members of set ``name`` (:data:`MODEL_SETS`) by the window each covers, in the set's order."""
    return {SHIPPED_MODELS[m].window: m for m in MODEL_SETS[name]}


def shipped_models_text(synth: bool = True) -> str:
    """``'default' (TransformerPayne, galah-red), ...``: the shipped names for help texts and messages (``synth``:
    and the synthesizer's names, which fit one spectrum at a time, not a catalogue)."""
    models = ", ".join(f"{name!r} ({m.about}, {m.window})" for name, m in SHIPPED_MODELS.items())
    sets = ", ".join(f"{name!r} (a model per arm: {', '.join(members)})" for name, members in MODEL_SETS.items())
    text = f"{models}; sets {sets}"
    if synth:
        text += (
            "; 'synth' / 'synth-abo' (the 1D LTE synthesizer itself, Unsöld × 2 / ABO damping: no emulator error, "
            "minutes)"
        )
    return text
