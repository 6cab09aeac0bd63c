"""The emulator's label-space systematics at a star's labels (read side).

An emulator's ``metadata["label_systematics"]`` holds ``sd``, one rms of (MAP − truth) per parameter over
calibration stars spread across the box (:mod:`stellarinf.validation.systematics`), and, when measured, ``model``:
how that sd varies across the box. One rms over the box is too wide for the easy stars and too narrow for the hard
ones (metal-poor, slow rotators: their lines are weak or unblended, and the emulator's error is a larger share of
them), so a catalogue's coverage per star falls short where the hard stars are.

The model, per parameter ``k``: ``ln sd_k(x) = c_k0 + Σ_j c_kj z_j(x)``, with ``z_j`` each feature (Teff, log g,
[Fe/H], ln v sin i) scaled to [−1, 1] over the calibration stars' range and clipped there, so it never extrapolates
beyond the stars it was measured on. A parameter the model does not name keeps its constant ``sd``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

__all__ = ["feature_value", "feature_vector", "sd_at", "systematics_document"]

LOG_FLOOR = 1.0  # a "log" feature is ln max(x, 1): v sin i piled at zero stays finite and reads as 1 km/s


def feature_value(transform: str, x):
    """A feature before scaling: ``x`` itself (``"linear"``) or ln max(x, :data:`LOG_FLOOR`) (``"log"``); numbers
    or arrays."""
    return np.log(np.maximum(x, LOG_FLOOR)) if transform == "log" else x


def systematics_document(model) -> dict:
    """The stored ``label_systematics`` document of an emulator (``{}`` when it has none)."""
    meta = getattr(model, "metadata", None) or {}
    return dict(meta.get("label_systematics") or {})


def feature_vector(features: list[dict], params: Mapping[str, float]) -> np.ndarray:
    """``[1, z_1, ..., z_m]`` at ``params`` for the stored ``features`` (each ``name``, ``transform``
    ``"linear"`` or ``"log"``, ``center``, ``half_width``); a feature missing from ``params`` sits at its centre."""
    z = [1.0]
    for f in features:
        v = params.get(f["name"])
        if v is None or not math.isfinite(float(v)):
            z.append(0.0)
            continue
        v = float(feature_value(f["transform"], float(v)))
        z.append(float(np.clip((v - f["center"]) / f["half_width"], -1.0, 1.0)))
    return np.asarray(z)


def sd_at(document: Mapping, params: Mapping[str, float] | None = None) -> dict[str, float]:
    """sd per parameter from a ``label_systematics`` document: the constant ``sd``, replaced by the label-dependent
    ``model`` evaluated at ``params`` (a star's labels, rv, v sin i, ...) where both exist."""
    out = {k: float(v) for k, v in (document.get("sd") or {}).items()}
    model = document.get("model")
    if not model or params is None:
        return out
    phi = feature_vector(model["features"], params)
    for name, coef in model["coef"].items():
        out[name] = float(math.exp(float(np.dot(phi, np.asarray(coef, dtype=np.float64)))))
    return out
