"""The synthesizer-vs-reality error: how far the physics behind every emulator is from a real star.

An emulator is compared with its synthesizer (its error modes, ``sd_sys``); the synthesizer itself is 1D,
LTE, with an imperfect line list, and leaves residuals against the observed Sun even after its log gf are
calibrated there. A likelihood without a term for that error treats those residuals as signal, and the
fit buys them down by moving the labels with error bars far too small (the observed Sun once came out at
log g 2.7 ± 0.05). The term here, measured on the observed Sun (``data/physics_error.json``, made by
``data/measure_physics_error.py``), is

    σ_phys(pixel) = √(floor² + (depth_fraction · depth)²)     (fraction of the continuum)

with ``depth`` the observed line depth (see :func:`stellarinf.observe.build.physics_error_per_pixel`):
physics errors live in the lines and grow with their depth. ``label_floor`` holds, per label, the part of the
observed Sun's fit offsets from the Sun's labels that the fits' own uncertainty (posterior sd and the emulator's
``sd_sys``) does not explain (:func:`systematic_floor`), reported beside the posterior as a systematic floor.

A window's label floor was measured through one model (the window's Payne); another model learned the same physics
with its own errors, and its offsets on the Sun can be several times larger (Gaia RVS through the broad-domain Payne:
121 K in Teff where the window's is 11 K). A model that has been fitted to the observed Sun itself carries its own
floor in its ``model.json`` (``physics_label_floor``, :func:`model_label_floor`; written by
``data/measure_physics_error.py --label-floor FITS --model NAME``), and that replaces the window's.

Every number here is measured on one star, the Sun. A fit of a star far from it (:data:`SUN_REACH`) is told that its
floor is a lower bound (:func:`unlike_sun_note`).
"""

from __future__ import annotations

import functools
import json

import numpy as np

from ..errors import StellarinfError
from ..paths import data_dir
from ..synth.calibration import SUN_LABELS

TABLE = "physics_error.json"
OWN_FLOOR = "measured through this model"  # how :func:`label_floor_source` starts for a model's own floor
# The observed Sun is the one star the physics error is measured on. How far from it that measurement still speaks for
# a star is not measured (no second standard star yet); these distances are a convention: about where a dwarf turns
# into a subgiant, a G star into a K or F star, and a metal-poor star's lines into a different regime of saturation.
SUN = {name: SUN_LABELS[name] for name in ("teff", "logg", "feh")}
SUN_REACH = {"teff": 500.0, "logg": 0.5, "feh": 0.5}


@functools.lru_cache(maxsize=1)
def physics_error_table() -> dict:
    """The shipped measurements: ``{window: {"floor", "depth_fraction", "wmin", "wmax", "label_floor", ...}}``
    ({} when the table is missing)."""
    path = data_dir() / TABLE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())["windows"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise StellarinfError(
            f"{path} is not a valid physics-error table ({exc}); rerun `python data/measure_physics_error.py`"
        ) from None


def model_label_floor(model) -> dict[str, float] | None:
    """The physics label floor measured on the observed Sun through ``model`` itself (its ``model.json``'s
    ``physics_label_floor``), or None where it was not: also where it was measured through other weights (a model
    fine-tuned from one with a floor inherits its metadata, not its offsets)."""
    meta = getattr(model, "metadata", None) or {}
    doc = meta.get("physics_label_floor") or {}
    floor = doc.get("label_floor")
    if not floor or doc.get("weights_sha256") != (meta.get("weights") or {}).get("sha256"):
        return None
    return {k: float(v) for k, v in floor.items()}


def label_floor_source(wmin: float, wmax: float, damping: str | None = None, model=None) -> str | None:
    """In words, where the label floor :func:`physics_error_for` gives for these arguments was measured: through the
    model itself, or through the window's model (whose offsets on the Sun need not be this model's); None when
    nothing was measured (no floor)."""
    table = physics_error_table()
    if not table:
        return None
    if model_label_floor(model) is not None:
        return f"{OWN_FLOOR}: " + str(model.metadata["physics_label_floor"].get("source", ""))
    window = _window_values(table, wmin, wmax, damping, model)
    if window is None:
        return "the largest measured floors (no window was measured here)"
    source = window[1].get("label_floor_source")
    if not source:
        return "the largest measured floors (the window's was not measured)"
    return "the window's, measured through its reference model, not this one: " + source


def _window_values(table: dict, wmin: float, wmax: float, damping: str | None, model) -> tuple[dict, dict] | None:
    """``(entry, values)``: the measured window that overlaps ``wmin``–``wmax`` most, and its values for ``damping``
    (``model``'s when not given; the window's own where it has none for that physics). None: no window overlaps."""
    best, best_overlap = None, 0.0
    for entry in table.values():
        overlap = min(wmax, entry["wmax"]) - max(wmin, entry["wmin"])
        if overlap > best_overlap:
            best, best_overlap = entry, overlap
    if best is None:
        return None
    if damping is None and model is not None:
        from ..physics_options import model_damping

        damping = model_damping(model)
    return best, {**best, **best.get("by_damping", {}).get(damping, {})}


def physics_error_for(
    wmin: float, wmax: float, damping: str | None = None, model=None
) -> tuple[tuple | None, dict[str, float]]:
    """``((floor, depth_fraction, regions), label_floor)`` for a spectrum spanning ``wmin``–``wmax`` (vacuum Å);
    ``regions`` are ranges the fit leaves out, ``(lo, hi)`` (the Balmer wings, the Ca II triplet cores, Paschen P14:
    :func:`stellarinf.observe.build.physics_excluded` says why), or keeps with more error, ``(lo, hi, sd)`` (the
    O2 A band, for a spectrum fitted with it kept).

    Uses the measured window that overlaps the range most; a range that no measured window overlaps gets
    the largest measured values (no measurement is not the same as no error). ``damping`` (the model's van der Waals
    widths, :func:`stellarinf.physics_options.model_damping`): the values measured with that physics where the
    window has them (``by_damping``; ABO's leave smaller residuals), else the window's own (Unsöld × 2's). ``model``:
    the model that serves the range; its damping when ``damping`` is not given, and its own label floor where it was
    measured through it (:func:`model_label_floor`) in place of the window's. ``(None, {})`` when nothing was
    measured.
    """
    table = physics_error_table()
    if not table:
        return None, {}
    own = model_label_floor(model)
    window = _window_values(table, wmin, wmax, damping, model)
    largest_floor: dict[str, float] = {}
    for e in table.values():
        for k, v in e.get("label_floor", {}).items():
            largest_floor[k] = max(largest_floor.get(k, 0.0), float(v))
    if window is None:
        floor = max(e["floor"] for e in table.values())
        frac = max(e["depth_fraction"] for e in table.values())
        return (floor, frac, ()), own or largest_floor
    best, values = window
    regions = tuple(tuple(float(v) for v in r) for r in best.get("regions", []))
    # a window whose label floor was not measured (no fits of the observed Sun there) gets the largest measured
    labels = {k: float(v) for k, v in values.get("label_floor", {}).items()} or largest_floor
    return (float(values["floor"]), float(values["depth_fraction"]), regions), own or labels


def unlike_sun_note(labels, reads: str = "sd_total") -> str | None:
    """Words for a fit (or a forecast: ``reads`` names what to read as a lower bound) whose physics error, measured on
    the Sun, stands in for that of a star far from the Sun: any of ``labels``' Teff, log g, [Fe/H] (``{name: value}``)
    farther from :data:`SUN` than :data:`SUN_REACH`; None if not. Such a star's own physics error is not measured, and
    cool giants and metal-poor stars are where 1D LTE is known to do worse, so its label floor is a lower bound."""
    far = [
        f"{name} {float(labels[name]):.4g} (the Sun's {SUN[name]:g})"
        for name in SUN
        if name in labels and abs(float(labels[name]) - SUN[name]) > SUN_REACH[name]
    ]
    if not far:
        return None
    return (
        "label floor: the physics error behind it was measured on the observed Sun, the one standard star so far, "
        f"and this star is far from it ({', '.join(far)}): its own is not measured and is likely larger, so read "
        f"{reads} as a lower bound"
    )


def fit_error_model(residual: np.ndarray, depth: np.ndarray, n_bins: int = 10) -> tuple[float, float]:
    """Least-squares ``(floor, depth_fraction)`` with E[r²] = floor² + (depth_fraction · depth)².

    The mean squared residual is taken in ``n_bins`` bins of depth (equal counts), so the many continuum
    pixels do not drown the few deep ones; negative solutions are clipped to 0.
    """
    r2 = np.asarray(residual, np.float64) ** 2
    d = np.asarray(depth, np.float64)
    order = np.argsort(d)
    bins = np.array_split(order, n_bins)
    x = np.array([np.mean(d[b] ** 2) for b in bins])
    y = np.array([np.mean(r2[b]) for b in bins])
    a = np.stack([np.ones_like(x), x], axis=1)
    (c0, c1), *_ = np.linalg.lstsq(a, y, rcond=None)
    if c1 < 0:
        return float(np.sqrt(max(np.mean(y), 0.0))), 0.0
    if c0 < 0:
        c1 = float(np.sum(x * y) / np.sum(x * x))
        return 0.0, float(np.sqrt(c1))
    return float(np.sqrt(c0)), float(np.sqrt(c1))


def systematic_floor(offsets, other_sd, n_grid: int = 4001) -> tuple[float, float, float]:
    """Maximum-likelihood ``(floor, lo, hi)`` of the sd ``f`` in offsets ``Δᵢ ~ N(0, sᵢ² + f²)``: the systematic
    part of fits' offsets from a known truth beyond their own uncertainty ``sᵢ`` (``other_sd``), with its
    68 % profile-likelihood interval ``lo``–``hi``.

    The rms offset would count the noise of low-S/N fits as systematic (the observed Sun's 9 fits at S/N 50–200
    put ~60 K of S/N-50 scatter into a red-arm floor whose S/N-200 offset is ~11 K); this estimator weights each fit
    by its own precision, so the high-S/N fits set it. With equal ``sᵢ = s`` it is ``√max(0, mean Δ² − s²)``.
    """
    d2 = np.asarray(offsets, np.float64) ** 2
    s2 = np.asarray(other_sd, np.float64) ** 2
    if d2.shape != s2.shape or d2.size == 0:
        raise ValueError(f"systematic_floor: need as many sds as offsets (got {d2.size} and {s2.size}), at least one")
    top = 3.0 * float(np.sqrt(d2.max() + s2.max())) + 1e-300
    f = np.linspace(0.0, top, n_grid)
    v = s2[None, :] + f[:, None] ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        loglike = -0.5 * np.sum(np.log(v) + d2[None, :] / v, axis=1)
    loglike = np.where(np.isfinite(loglike), loglike, -np.inf)  # f = 0 with an sᵢ = 0
    best = int(np.argmax(loglike))
    inside = f[loglike >= loglike[best] - 0.5]
    return float(f[best]), float(inside.min()), float(inside.max())
