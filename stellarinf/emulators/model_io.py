"""Emulator model directories: ``weights.eqx`` + ``model.json``. No pickle.

- ``weights.eqx``: the network's arrays, written by ``equinox.tree_serialise_leaves``;
- ``error_modes.npy`` (optional): the emulator error's correlated modes, float32 (n_modes, n_bins) on the
  error-table wavelengths (:mod:`~stellarinf.emulators.error_model`; a plain ``.npy``, read with
  ``allow_pickle=False``);
- ``model.json``: everything needed to rebuild the network skeleton and use it::

    format="stellarinf-emulator", format_version,
    architecture {kind, hyperparameters, dtype}, label_space [...], wavelength_range [wmin, wmax],
    resolution, has_continuum, training_wavelength (Payne: the pixels it predicts; TransformerPayne, optional: its training pixels),
    error_table {wavelength, rms, modes?: {file, sha256, n_modes}}, training_grid {...provenance}, metrics {...}, training {...config},
    weights {file, sha256, bytes}, stellarinf_version, created

Writes are atomic (weights first, then ``model.json``, whose sha256 names the weights it belongs to),
so a crash never leaves a directory that loads as a wrong model.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ModelFileError, StellarinfError
from ..io.atomic import write_bytes_atomic, write_json_atomic
from ..labels import LabelSpace
from .emulator import Emulator
from .kinds import NETWORK_KINDS, get_kind, kind_of

FORMAT = "stellarinf-emulator"
FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.eqx"
MODEL_FILE = "model.json"
MODES_FILE = "error_modes.npy"
KINDS = tuple(NETWORK_KINDS)


# ------------------------------------------------------------------------------ architecture
def architecture_of(network) -> dict:
    """``{kind, hyperparameters, dtype}`` of a network."""
    kind = kind_of(network).name
    return {"kind": kind, "hyperparameters": network.config.to_json(), "dtype": str(jnp.dtype(network.dtype))}


def network_from_architecture(arch: dict, key=None, *, shapes_only: bool = False):
    """A network built from an architecture dict: freshly initialised, or (``shapes_only``) a skeleton of
    ``jax.ShapeDtypeStruct`` leaves to deserialise weights into without running any initialiser."""
    kind = get_kind(arch.get("kind"))
    dtype = jnp.dtype(arch.get("dtype", "float32"))
    key = jax.random.key(0) if key is None else key

    def make(k):
        return kind.build(arch["hyperparameters"], k, dtype)

    return eqx.filter_eval_shape(lambda: make(key)) if shapes_only else make(key)


def serialise(tree) -> bytes:
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, tree)
    return buf.getvalue()


def deserialise(data: bytes, like):
    return eqx.tree_deserialise_leaves(io.BytesIO(data), like)


# ------------------------------------------------------------------------------ save
def modes_bytes(emulator: Emulator) -> bytes | None:
    """The ``.npy`` bytes of the emulator's error modes (float32), or None when it has none."""
    if emulator.n_error_modes == 0:
        return None
    buf = io.BytesIO()
    np.save(buf, np.asarray(emulator.error_modes, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def model_document(emulator: Emulator, weights_bytes: bytes, error_modes_bytes: bytes | None = None) -> dict:
    """The ``model.json`` document for ``emulator`` (its metadata provides provenance and metrics)."""
    import stellarinf

    meta = emulator.metadata
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": architecture_of(emulator.network),
        "label_space": emulator.label_space.to_json(),
        "wavelength_range": list(emulator.wavelength_range),
        "resolution": emulator.resolution,
        "has_continuum": emulator.has_continuum,
        "error_table": {
            "wavelength": np.asarray(emulator.error_wavelength).tolist(),
            "rms": np.asarray(emulator.error_sigma).tolist(),
            "statistic": "rms of held-out normalised-flux residuals per wavelength bin",
        },
        "training_grid": meta.get("training_grid", {}),
        "metrics": meta.get("metrics", {}),
        "training": meta.get("training", {}),
        "weights": {
            "file": WEIGHTS_FILE,
            "sha256": hashlib.sha256(weights_bytes).hexdigest(),
            "bytes": len(weights_bytes),
        },
        "stellarinf_version": stellarinf.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if error_modes_bytes is not None:
        doc["error_table"]["modes"] = {
            "file": MODES_FILE,
            "sha256": hashlib.sha256(error_modes_bytes).hexdigest(),
            "n_modes": emulator.n_error_modes,
            "statistic": "scaled principal components of held-out residuals (covariance = modes.T @ modes + diag)",
        }
    if emulator.training_wavelength is not None:
        doc["training_wavelength"] = np.asarray(emulator.training_wavelength).tolist()
    for k, v in meta.items():  # keep any extra provenance the caller attached
        doc.setdefault(k, v)
    return doc


def save_emulator(path: str | os.PathLike, emulator: Emulator) -> Path:
    """Write ``emulator`` into directory ``path`` (created if needed); return the path."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    data = serialise(emulator.network)
    modes = modes_bytes(emulator)
    if modes is not None:
        write_bytes_atomic(path / MODES_FILE, modes)
    write_bytes_atomic(path / WEIGHTS_FILE, data)
    write_json_atomic(path / MODEL_FILE, model_document(emulator, data, modes))
    return path


# ------------------------------------------------------------------------------ load
def read_model_document(path: str | os.PathLike) -> dict:
    """Read and check ``model.json`` of a model directory; clear errors for every failure."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(
            f"no emulator model at {path}; train one with `stellarinf train --grid GRID.h5 -o {path}` or check the path"
        )
    doc_path = path / MODEL_FILE if path.is_dir() else path
    if not doc_path.exists():
        raise ModelFileError(
            f"{path} has no {MODEL_FILE}: it is not an emulator model directory, or training has not finished "
            "(rerun `stellarinf train` with the same -o to resume)"
        )
    try:
        doc = json.loads(doc_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{doc_path} is corrupt ({exc}); retrain the model or restore the file") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ModelFileError(
            f"{doc_path} is not a stellarinf emulator file (format={doc.get('format') if isinstance(doc, dict) else None!r})"
        )
    version = doc.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelFileError(
            f"{doc_path} has an invalid format_version {version!r}; the file is corrupt — retrain the model"
        )
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{doc_path} has emulator format version {version}; this stellarinf reads up to {FORMAT_VERSION} — upgrade stellarinf"
        )
    for key in ("architecture", "label_space", "wavelength_range", "weights"):
        if key not in doc:
            raise ModelFileError(f"{doc_path} lacks '{key}'; the file is incomplete — retrain the model")
    return doc


def load_model_directory(path: str | os.PathLike) -> Emulator:
    """Load a model directory written by :func:`save_emulator`."""
    path = Path(path)
    doc = read_model_document(path)
    base = path if path.is_dir() else path.parent
    wpath = base / doc["weights"].get("file", WEIGHTS_FILE)
    if not wpath.exists():
        raise ModelFileError(
            f"weights file {wpath} is missing; the model directory is incomplete — retrain or restore it"
        )
    data = wpath.read_bytes()
    if hashlib.sha256(data).hexdigest() != doc["weights"].get("sha256"):
        raise ModelFileError(
            f"{wpath} does not match {MODEL_FILE} (checksum differs): the weights are corrupt or belong to another "
            "model — retrain, or restore both files together"
        )
    try:
        skeleton = network_from_architecture(doc["architecture"], shapes_only=True)
        network = deserialise(data, skeleton)
    except StellarinfError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    except Exception as exc:  # shape/dtype mismatch between JSON and weights
        raise ModelFileError(
            f"{wpath} does not fit the architecture in {MODEL_FILE} ({exc}); the model files are inconsistent"
        ) from None
    table = doc.get("error_table") or {}
    modes = _read_modes(base, table.get("modes"))
    try:
        label_space = LabelSpace.from_json(doc["label_space"])
    except (StellarinfError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{path}: invalid label_space in {MODEL_FILE} ({exc})") from None
    return Emulator(
        network,
        label_space,
        tuple(doc["wavelength_range"]),
        resolution=doc.get("resolution"),
        error_wavelength=table.get("wavelength"),
        error_sigma=table.get("rms"),
        error_modes=modes,
        training_wavelength=doc.get("training_wavelength"),
        has_continuum=doc.get("has_continuum", False),
        metadata=doc,
    )


def _read_modes(base: Path, entry: dict | None) -> np.ndarray | None:
    """The error modes referenced by ``model.json`` (None when there are none); checksum-checked."""
    if not entry:
        return None
    mpath = base / entry.get("file", MODES_FILE)
    if not mpath.exists():
        raise ModelFileError(
            f"{mpath} (the emulator's error modes) is missing; restore it, or refit with `stellarinf error-model`"
        )
    raw = mpath.read_bytes()
    if hashlib.sha256(raw).hexdigest() != entry.get("sha256"):
        raise ModelFileError(
            f"{mpath} does not match {MODEL_FILE} (checksum differs); refit with `stellarinf error-model`"
        )
    try:
        return np.load(io.BytesIO(raw), allow_pickle=False).astype(np.float64)
    except ValueError as exc:
        raise ModelFileError(
            f"{mpath} is not a valid .npy array ({exc}); refit with `stellarinf error-model`"
        ) from None
