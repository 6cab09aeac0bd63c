"""Find emulators by name or path: ``load_emulator("default")`` and friends."""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

from ..errors import ModelFileError, StellarinfError
from ..paths import data_dir
from ..shipped_models import SHIPPED_MODELS
from .emulator import Emulator
from .model_io import load_model_directory

# Shipped models (the one table is stellarinf.shipped_models): folder relative to data/, and network kind
NAMED_MODELS = {name: m.folder for name, m in SHIPPED_MODELS.items()}
NAMED_MODEL_KINDS = {name: m.kind for name, m in SHIPPED_MODELS.items()}


def model_path(name_or_path: str | os.PathLike) -> Path:
    """Directory of a shipped model (:data:`stellarinf.shipped_models.SHIPPED_MODELS`) or the given path."""
    name = str(name_or_path)
    if name in NAMED_MODELS:
        try:
            return data_dir() / NAMED_MODELS[name]
        except StellarinfError as exc:
            raise ModelFileError(f"cannot locate the {name!r} emulator: {exc}") from None
    return Path(name_or_path)


def shipped_name_refusal(name: str, output) -> str | None:
    """Why a command that stores a measurement in a model's ``model.json`` refuses ``name`` (None: it does not): a
    shipped model named without ``-o`` (its files are the installed package's; its directory may be passed)."""
    if output is None and str(name) in NAMED_MODELS:
        return (
            f"{name!r} is a shipped model: pass its directory ({model_path(name)}) to update it in place, "
            "or -o DIR to write an updated copy"
        )
    return None


def update_destination(name: str, output) -> Path:
    """Where a command stores a measurement in a model's ``model.json``: the model's own directory, or ``output``
    with the model's files copied there first (when it is another folder)."""
    src = model_path(name)
    if output is None:
        return src
    dest = Path(output)
    if dest.resolve() != src.resolve():
        shutil.copytree(src, dest, dirs_exist_ok=True)
    return dest


def model_wavelength_range(name_or_path: str | os.PathLike) -> tuple[float, float] | None:
    """The vacuum Å range a model answers inside, read from its ``model.json`` without loading the weights; None
    where there is no model file."""
    import json

    path = model_path(name_or_path) / "model.json"
    if not path.exists():
        return None
    lo, hi = json.loads(path.read_text())["wavelength_range"]
    return float(lo), float(hi)


def model_training_physics(name_or_path: str | os.PathLike) -> dict[str, str]:
    """The synthesizer choices (``loggf``, ``damping``, ``molecules``) a model's training grid recorded
    (:func:`~stellarinf.physics_options.training_physics`), read from its ``model.json`` without loading the
    weights; the legacy choices where there is no model file."""
    import json
    from types import SimpleNamespace

    from ..physics_options import training_physics

    path = model_path(name_or_path) / "model.json"
    metadata = json.loads(path.read_text()) if path.exists() else {}
    return training_physics(SimpleNamespace(metadata=metadata))


@functools.cache
def shipped_with_tio() -> tuple[str, ...]:
    """The shipped models that learned TiO: their training grid's ``molecules`` is ``"on+tio"``
    (:func:`model_training_physics`, in table order; a model whose folder is missing is left out). Read once per
    process."""
    return tuple(name for name in SHIPPED_MODELS if model_training_physics(name)["molecules"] == "on+tio")


def load_emulator(name_or_path: str | os.PathLike | Emulator) -> Emulator:
    """Load a shipped model by name (``"default"``, ``"default-payne"``, ...: the table is
    :data:`stellarinf.shipped_models.SHIPPED_MODELS`) or a model directory."""
    if isinstance(name_or_path, Emulator):
        return name_or_path
    path = model_path(name_or_path)
    if str(name_or_path) in NAMED_MODELS and not (path / "model.json").exists():
        raise ModelFileError(
            f"the {name_or_path!r} emulator is not there yet ({path} has no model.json); train it with "
            f"`stellarinf train --grid GRID.h5 --model {NAMED_MODEL_KINDS[str(name_or_path)]} -o {path}` "
            "or pass the path of a trained model directory"
        )
    return load_model_directory(path)
