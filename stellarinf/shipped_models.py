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
    "default-payne-blue": ShippedModel("models/payne-mlp-blue", "payne", "galah-blue", "the Payne MLP, with molecules"),
    "default-payne-green": ShippedModel("models/payne-mlp-green", "payne", "galah-green", "the Payne MLP"),
    "default-payne-ir": ShippedModel("models/payne-mlp-ir", "payne", "galah-ir", "the Payne MLP"),
    "default-payne-rvs": ShippedModel("models/payne-mlp-rvs", "payne", "gaia-rvs", "the Payne MLP"),
}

# the shipped models "auto" picks from, per machine, in order of preference: for each arm of a spectrum the first
# that covers it (TransformerPayne covers galah-red only; the other arms have a Payne each)
AUTO_MODELS = {
    "cpu": ("default-payne", "default-payne-blue", "default-payne-green", "default-payne-ir", "default-payne-rvs"),
    "accelerator": ("default", "default-payne-blue", "default-payne-green", "default-payne-ir", "default-payne-rvs"),
}


def shipped_models_text() -> str:
    """``'default' (TransformerPayne, galah-red), ...``: the shipped names for help texts and messages."""
    return ", ".join(f"{name!r} ({m.about}, {m.window})" for name, m in SHIPPED_MODELS.items())
