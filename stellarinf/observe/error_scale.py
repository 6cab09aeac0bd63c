"""The emulator's error scaled to one star, held fixed during the fit.

An emulator's error table is the rms over its held-out spectra, so over a broad box it overstates a warm star's
error several-fold and understates a cool one's. ``stellarinf error-model`` measures how the error varies,
s(θ) (:mod:`stellarinf.emulators.error_scale`). Applied at the labels being evaluated, s(θ) would make the
likelihood's log-determinant a force towards where the emulator is accurate (thirty-fifth session: Teff error
13 → 30 K rms on 30 mocks). So it is evaluated **once**, at a first fit's labels θ̂, and the observation model's
emulator error (white part and correlated modes) is multiplied by that number for the rest of the fit: the
likelihood then has no term that moves with s, as ``sd_sys`` is read at the fit's labels too.

Pure functions over observation models (one arm or several: each arm's own emulator and its own s).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "ERROR_SCALE_MODES",
    "check_error_scale_mode",
    "model_error_scale",
    "star_error_scales",
    "table_kept_note",
    "with_error_scales",
]

# "star": s at a first MAP's labels, held fixed (this module); "box": the error table as measured
ERROR_SCALE_MODES = ("star", "box")


def check_error_scale_mode(mode, error: type[Exception] = ValueError) -> None:
    """Refuse an ``error_scale`` that is not one of :data:`ERROR_SCALE_MODES` (raising ``error``)."""
    if mode not in ERROR_SCALE_MODES:
        raise error(f"error_scale must be {' or '.join(map(repr, ERROR_SCALE_MODES))}, got {mode!r}")


def table_kept_note(what: str, mode: str, models) -> str | None:
    """What a fit with no per-star second MAP (``what``: e.g. "a joint fit") says when ``mode`` asks for the
    scale and one of ``models`` has one: it keeps the table. None when nothing is lost."""
    if mode != "star" or all(getattr(m, "error_scale", None) is None for m in models):
        return None
    return (
        f"{what} keeps the emulator's error table as measured (no per-star second MAP to scale it to each star); "
        "fit the stars separately (`fit_spectra`, `stellarinf fit-catalog`) to scale it"
    )


def _arms(obs) -> tuple:
    return tuple(getattr(obs, "arms", (obs,)))


def _arm_params(obs, params: Mapping, i: int) -> Mapping:
    return obs.arm_params(params, i) if hasattr(obs, "arms") else params


def model_error_scale(model, labels: Mapping[str, float]) -> float | None:
    """s(θ) of ``model``'s measured error scale at ``labels`` (a mapping holding at least the scale's labels); None
    for a model without one (not measured, or not an emulator)."""
    scale = getattr(model, "error_scale", None)
    return None if scale is None else _scale_at(scale, labels)


def _scale_at(scale, labels: Mapping[str, float]) -> float:
    return float(scale(np.array([float(labels[n]) for n in scale.labels])))


def star_error_scales(obs, params: Mapping[str, float]) -> tuple[float | None, ...]:
    """Per arm, s(θ̂) of the arm's emulator at the labels in ``params`` (fixed ones read from the model); None for
    an arm whose emulator has no measured scale or whose observation model carries no emulator error."""
    out: list[float | None] = []
    for i, arm in enumerate(_arms(obs)):
        scale = getattr(arm.emulator, "error_scale", None)
        if scale is None or (not np.any(np.asarray(arm.emulator_error)) and arm.n_error_modes == 0):
            out.append(None)
            continue
        p = _arm_params(obs, params, i)
        out.append(_scale_at(scale, {n: arm.value(p, n) for n in scale.labels}))  # the scale read once (model.json)
    return tuple(out)


def with_error_scales(obs, scales: Sequence[float | None]):
    """A copy of ``obs`` with each arm's emulator error (white part and modes) multiplied by its scale (None:
    unchanged). Only array values change, so programs compiled for ``obs`` serve the copy; the emulators are the
    same objects (code that matches arms to their models by identity still does)."""
    arms = _arms(obs)
    if len(scales) != len(arms):
        raise ValueError(f"{len(scales)} error scales for {len(arms)} arms")
    scaled = tuple(
        arm if s is None else replaced(arm, emulator_error=arm.emulator_error * s, error_modes=arm.error_modes * s)
        for arm, s in zip(arms, scales)
    )
    return replaced(obs, arms=scaled) if hasattr(obs, "arms") else scaled[0]


def replaced(module, **fields):
    """A shallow copy of an (immutable) observation model with ``fields`` replaced. Not ``eqx.tree_at``: that
    rebuilds every node of the tree, the emulators too, and arms are matched to their models by identity."""
    new = copy.copy(module)
    for name, value in fields.items():
        object.__setattr__(new, name, value)
    return new
