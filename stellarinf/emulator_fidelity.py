"""Emulator fidelity for Cramér–Rao bounds: how far an emulator's bounds are from the synthesizer's.

A Cramér–Rao bound is only as good as the model's derivatives. An emulator whose spectrum moves more with a
label than the synthesizer's does (a mis-learned weak line, e.g. Li I 6708 Å) claims a bound smaller than
the data can deliver: the shipped TransformerPayne once claimed a [Li/Fe] bound of 0.083 dex where the
synthesizer's was 0.350 (4.2× optimistic). This module measures, per label,

    ratio = CRB(emulator) / CRB(synthesizer)      (marginal bounds, same star, window, R, S/N and nuisances)

at the named reference stars inside the emulator's label box (:data:`REFERENCE_STARS`: solar twin, K dwarf,
metal-poor dwarf and turn-off star, red-clump, cool and metal-poor giants; :mod:`stellarinf.reference_stars`) on the emulator's own wavelength range and resolving power, twice:

- ``ratio``: the emulator's bound with its own error (``SpectrumModel.error``, scaled to the star where the
  emulator measured how its error varies, as a fit scales it: :mod:`stellarinf.observe.error_scale`) added to the
  noise in quadrature, at the reference S/N (what ``crb --emulator-error --emulator-error-model white`` computes;
  the default ``--emulator-error`` integrates its correlated error modes out, as a fit does);
- ``ratio_noise_only``: both bounds from the noise alone (what ``crb`` computes by default); exactly
  independent of the S/N, since both bounds scale as 1/(S/N).

The stored per-label value is the smallest over the reference stars (the worst over-claim). ``stellarinf
fidelity MODEL`` computes it and stores it in the model's ``model.json`` (key ``"fidelity"``);
:func:`stellarinf.forecast.forecast` (and so ``stellarinf crb``) records it with every emulator forecast and
warns, in words, for labels whose ratio is below :data:`OVER_CLAIM` (the emulator over-claims), and says so
when the model has no (or a stale) stored fidelity.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .errors import StellarinfError
from .reference_stars import REFERENCE_STARS as NAMED_STARS
from .reference_stars import reference_star
from .wavelength import SPEED_OF_LIGHT_KMS, Window

OVER_CLAIM = 0.8  # ratio below which an emulator's bound claims precision the synthesizer does not support
FIDELITY_KEY = "fidelity"
DEFAULT_SNR = 100.0
# the emulator's range less this Doppler margin at each end: room for the broadening kernels
WINDOW_MARGIN_KMS = 50.0
INSET = 0.05  # reference stars are kept this fraction of the box span inside each edge

# every named reference star (stellarinf.reference_stars, the one registry): dwarfs, turn-off stars and giants
# from solar to metal-poor. Seven, not three since the twenty-first session: a fit's flag uses the stored star
# nearest it, and between three stars that transfer missed over-claims (benchmarks/arm_fidelity.py)
REFERENCE_STARS: tuple[tuple[str, dict[str, float]], ...] = tuple((name, reference_star(name)) for name in NAMED_STARS)


class FidelityWarning(UserWarning):
    """An emulator's Cramér–Rao bound over-claims against the synthesizer's, or its fidelity is unknown."""


# --------------------------------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------------------------------
def reference_labels(label_space, stars=REFERENCE_STARS, inset: float = INSET) -> list[tuple[str, dict[str, float]]]:
    """The reference stars as full label sets of ``label_space``: given labels clipped to the box (``inset``
    of the span inside each edge), abundance ratios [X/Fe] at 0 (or the box middle when 0 is outside)."""
    out = []
    for name, given in stars:
        labels = {}
        for lab in (label_space[n] for n in label_space.names):
            span = lab.upper - lab.lower
            lo, hi = lab.lower + inset * span, lab.upper - inset * span
            v = float(given.get(lab.name, 0.0 if lo <= 0.0 <= hi else 0.5 * (lab.lower + lab.upper)))
            labels[lab.name] = float(np.clip(v, lo, hi))
        out.append((name, labels))
    return out


def emulator_window(model, resolution: float | None = None, margin_kms: float = WINDOW_MARGIN_KMS) -> Window:
    """The instrument window of the emulator's own range (less a Doppler margin) at its own R."""
    wmin, wmax = (float(w) for w in model.wavelength_range)
    r = resolution or getattr(model, "resolution", None) or 28_000.0
    f = 1.0 + margin_kms / SPEED_OF_LIGHT_KMS
    return Window("emulator-range", wmin * f, wmax / f, float(r), 2.5, "the emulator's own wavelength range and R")


def synthesizer_for(model, window: Window):
    """The realistic synthesizer over ``window`` (padded by 5 Å) with the emulator's labels and the log gf its
    training grid used (:func:`~stellarinf.physics_options.training_physics`: log gf, damping, molecules)."""
    from .forecast import ForecastError, synth_coverage
    from .physics_options import training_physics
    from .synth import SynthesizerModel

    cover = [(lo, hi) for lo, hi in synth_coverage() if lo <= window.wmin and window.wmax <= hi]
    if not cover:
        raise ForecastError(
            f"the synthesizer's line list does not cover the emulator's range {window.wmin:.1f}–{window.wmax:.1f} Å, "
            "so its fidelity cannot be measured against it"
        )
    lo, hi = cover[0]
    padded = dataclasses.replace(
        window, name="emulator-range-padded", wmin=max(lo, window.wmin - 5.0), wmax=min(hi, window.wmax + 5.0)
    )
    return SynthesizerModel(model.label_space, padded, "realistic", **training_physics(model))


@dataclasses.dataclass
class FidelityResult:
    """Per reference star: the labels and the emulator's and the reference model's marginal bounds."""

    names: tuple[str, ...]
    stars: list[dict[str, Any]]
    snr: float
    snr_mode: str
    window: Window
    marginalize: tuple[str, ...]
    truth_model: str

    def _ratios(self, key: str) -> dict[str, float | None]:
        out = {}
        for n in self.names:
            vals = [s[key][n] for s in self.stars if s[key].get(n) is not None]
            out[n] = round(min(vals), 4) if vals else None
        return out

    @property
    def ratio(self) -> dict[str, float | None]:
        """Smallest CRB(emulator, with its error)/CRB(synthesizer) over the reference stars, per label."""
        return self._ratios("ratio")

    @property
    def ratio_noise_only(self) -> dict[str, float | None]:
        """Smallest CRB(emulator)/CRB(synthesizer) over the stars, both from the noise alone, per label."""
        return self._ratios("ratio_noise_only")

    def over_claims(self, key: str = "ratio_noise_only", threshold: float = OVER_CLAIM) -> dict[str, float]:
        return {n: r for n, r in self._ratios(key).items() if r is not None and r < threshold}

    def to_json(self) -> dict[str, Any]:
        return {
            "statistic": "CRB(emulator)/CRB(synthesizer): marginal Cramér–Rao bounds at the same star, window, R, "
            "S/N and nuisances; per label the smallest over the reference stars (below 1: the emulator claims more "
            "precision than the synthesizer's spectrum carries)",
            "ratio": self.ratio,
            "ratio_noise_only": self.ratio_noise_only,
            "over_claim_threshold": OVER_CLAIM,
            "snr": self.snr,
            "snr_mode": self.snr_mode,
            "window": [round(self.window.wmin, 3), round(self.window.wmax, 3)],
            "resolution": self.window.resolution,
            "marginalized": list(self.marginalize),
            "truth_model": self.truth_model,
            "stars": self.stars,
        }


def _ratio(a: float, b: float) -> float | None:
    if not (math.isfinite(a) and math.isfinite(b)) or b <= 0:
        return None
    return round(a / b, 4)


def _rounded(d: Mapping[str, float]) -> dict[str, float | None]:
    return {k: (float(f"{v:.5g}") if math.isfinite(v) else None) for k, v in d.items()}


def measure_fidelity(
    model,
    truth_model=None,
    *,
    stars=REFERENCE_STARS,
    snr: float = DEFAULT_SNR,
    snr_mode: str = "constant",
    window: Window | None = None,
    marginalize: Sequence[str] | None = None,
    progress: Callable[[str], Any] | None = None,
) -> FidelityResult:
    """Cramér–Rao bounds of ``model`` (an emulator) and of ``truth_model`` (default: :func:`synthesizer_for`
    the emulator's window) at each reference star; see the module doc. ``progress`` takes a line per star."""
    from .fisher import noise_sigma
    from .forecast import DEFAULT_MARGINALIZE, forecast

    window = window or emulator_window(model)
    marginalize = tuple(DEFAULT_MARGINALIZE if marginalize is None else marginalize)
    if truth_model is None:
        truth_model = synthesizer_for(model, window)
    names = tuple(model.label_space.names)
    missing = [n for n in names if n not in truth_model.label_space.names]
    if missing:
        raise StellarinfError(f"the reference model lacks the emulator's label(s) {missing}; it cannot serve as truth")
    out = []
    for star, labels in reference_labels(model.label_space, stars):
        t0 = time.perf_counter()
        kw = dict(window=window, snr=snr, snr_mode=snr_mode, marginalize=marginalize)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # weak-constraint and degeneracy notes are the forecast's business
            # the error added per pixel in quadrature (the stored ratios' definition), so that with_noise below
            # is the noise-only bound (a forecast with modes would keep them)
            emu = forecast(model, labels, emulator_error="white", **kw)
            b_err = emu.result.marginal()
            sigma0 = noise_sigma(emu.flux, snr, snr_mode)
            b_noise = emu.result.with_noise(sigma0, mask=emu.result.weights > 0).marginal()
            truth_labels = {n: v for n, v in labels.items() if n in truth_model.label_space.names}
            ref = forecast(truth_model, truth_labels, emulator_error=False, **kw)
            b_ref = ref.result.marginal()
            shared, f_emu = continuum_marginal_fisher(emu.result)
            shared_ref, f_ref = continuum_marginal_fisher(ref.result)
        out.append(
            {
                "name": star,
                "labels": {k: round(v, 4) for k, v in labels.items()},
                "ratio": {n: _ratio(b_err[n], b_ref[n]) for n in names},
                "ratio_noise_only": {n: _ratio(b_noise[n], b_ref[n]) for n in names},
                "crb_emulator": _rounded({n: b_err[n] for n in names}),
                "crb_emulator_noise_only": _rounded({n: b_noise[n] for n in names}),
                "crb_reference": _rounded({n: b_ref[n] for n in names}),
                # both Fisher matrices (continuum marginalised): what a fit of several arms combines
                **(
                    {"fisher": {"names": list(shared), "emulator": f_emu.tolist(), "synthesizer": f_ref.tolist()}}
                    if shared == shared_ref
                    else {}
                ),
            }
        )
        if progress is not None:
            progress(f"{star}: done in {time.perf_counter() - t0:.0f} s")
    return FidelityResult(names, out, float(snr), snr_mode, window, marginalize, _describe(truth_model))


def continuum_marginal_fisher(result) -> tuple[tuple[str, ...], np.ndarray]:
    """(names, matrix): a forecast's Fisher matrix with its continuum coefficients (``cont_*``) marginalised
    (Schur complement), i.e. the information on the labels and shared nuisances whatever the continuum is."""
    names = list(result.names)
    f = np.asarray(result.fisher, dtype=np.float64)
    keep = [i for i, n in enumerate(names) if not n.startswith("cont_")]
    drop = [i for i, n in enumerate(names) if n.startswith("cont_")]
    out = f[np.ix_(keep, keep)]
    if drop:
        b = f[np.ix_(keep, drop)]
        out = out - b @ np.linalg.solve(f[np.ix_(drop, drop)], b.T)
    return tuple(names[i] for i in keep), 0.5 * (out + out.T)


def _describe(model) -> str:
    kind = type(model).__name__
    if kind == "SynthesizerModel":
        return f"SynthesizerModel(realistic, loggf={getattr(model, 'loggf', 'solar')})"
    return kind


# --------------------------------------------------------------------------------------------------
# storing and reading
# --------------------------------------------------------------------------------------------------
def store_fidelity(model_dir, result: FidelityResult, *, command: str = "", elapsed_s: float | None = None) -> dict:
    """Write ``result`` into ``model_dir/model.json`` under ``"fidelity"`` (atomically; the weights and error
    modes are untouched), tagged with the weights' checksum so a retrained model's stale entry is recognised."""
    from pathlib import Path

    from .emulators.model_io import MODEL_FILE, read_model_document
    from .io.atomic import write_json_atomic

    path = Path(model_dir)
    doc = read_model_document(path)
    entry = {
        **result.to_json(),
        "weights_sha256": (doc.get("weights") or {}).get("sha256"),
        "error_model_created": (doc.get("error_model") or {}).get("created"),
        "command": command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if elapsed_s is not None:
        entry["elapsed_s"] = round(float(elapsed_s), 1)
    doc[FIDELITY_KEY] = entry
    write_json_atomic((path / MODEL_FILE) if path.is_dir() else path, doc)
    return entry


def stored_fidelity(model) -> tuple[dict | None, str | None]:
    """(the stored fidelity entry, None) or (None, why there is none usable) for a model with ``metadata``."""
    meta = getattr(model, "metadata", None) or {}
    entry = meta.get(FIDELITY_KEY)
    if not entry:
        return None, "this emulator has no stored fidelity (emulator/synthesizer bound ratio)"
    sha = (meta.get("weights") or {}).get("sha256")
    if entry.get("weights_sha256") and sha and entry["weights_sha256"] != sha:
        return None, "this emulator's stored fidelity was measured for other weights (the model was retrained)"
    created = (meta.get("error_model") or {}).get("created")
    if created and entry.get("error_model_created") not in (None, created):
        return None, "this emulator's stored fidelity predates its current error model"
    return entry, None


def has_fidelity_question(model) -> bool:
    """Whether bounds from ``model`` need an emulator fidelity: emulators (models carrying ``metadata``) do; the
    synthesizer (the reference itself) and the analytic test model do not."""
    return getattr(model, "metadata", None) is not None


def nearest_star(entry: Mapping[str, Any], labels: Mapping[str, float] | None, label_space) -> dict | None:
    """The stored reference star closest to ``labels`` in T_eff, log g and [Fe/H] (each over its box width)."""
    stars = [s for s in entry.get("stars", []) if s.get("labels")]
    if not labels or not stars or label_space is None:
        return None
    keys = [k for k in ("teff", "logg", "feh") if k in labels and k in label_space.names]
    if not keys:
        return None

    def distance(star):
        return sum(
            ((star["labels"].get(k, labels[k]) - labels[k]) / (label_space[k].upper - label_space[k].lower)) ** 2
            for k in keys
        )

    return min(stars, key=distance)


def fidelity_meta(
    model, names: Sequence[str], emulator_error: bool, labels: Mapping[str, float] | None = None
) -> tuple[dict[str, Any] | None, list[str]]:
    """(``meta["emulator_fidelity"]`` for a forecast of ``model``, warning messages). The ratio used is the one
    matching the forecast: with the emulator's error when ``emulator_error``, else from the noise alone. With the
    star's ``labels``, the warning uses the nearest reference star's ratios (and names labels that over-claim only
    elsewhere in the box); without, the worst over the stars."""
    if not has_fidelity_question(model):
        return None, []
    entry, why = stored_fidelity(model)
    if entry is None:
        return {"stored": False, "reason": why}, [
            f"{why}: these bounds are not checked against the synthesizer's and may over-claim (a [Li/Fe] bound "
            "4× too small has happened); measure it with `stellarinf fidelity MODEL_DIR`"
        ]
    key = "ratio" if emulator_error else "ratio_noise_only"
    worst = {n: entry.get(key, {}).get(n) for n in names if n in entry.get(key, {})}
    for n in worst:  # the stars' own values, where stored (the summary is their minimum)
        vals = [s[key][n] for s in entry.get("stars", []) if s.get(key, {}).get(n) is not None]
        worst[n] = min(vals) if vals else worst[n]
    near = nearest_star(entry, labels, getattr(model, "label_space", None))
    ratios = {n: near[key].get(n) for n in worst} if near is not None and key in near else worst
    threshold = float(entry.get("over_claim_threshold", OVER_CLAIM))
    over = {n: r for n, r in ratios.items() if r is not None and r < threshold}
    elsewhere = sorted(n for n, r in worst.items() if r is not None and r < threshold and n not in over)
    where = (
        f"at the nearest reference star ({near['name']})"
        if near is not None and key in near
        else f"at {len(entry.get('stars', []))} reference stars (worst case)"
    )
    meta = {
        "stored": True,
        "ratio_kind": key,
        "ratio": ratios,
        "ratio_worst": worst,
        "reference_star": near["name"] if near is not None and key in near else "worst of the reference stars",
        "snr": entry.get("snr"),
        "n_reference_stars": len(entry.get("stars", [])),
        "over_claiming": sorted(over),
        "over_claiming_elsewhere": elsewhere,
        "threshold": threshold,
    }
    messages = []
    if over:
        what = "with its own error included" if emulator_error else "from the noise alone"
        listed = "; ".join(f"{n} {r:.2f}× ({_larger(r)})" for n, r in over.items())
        messages.append(
            f"the emulator over-claims on {', '.join(over)}: its bound {what} is below {threshold:g}× the "
            f"synthesizer's {where}: {listed}. Do not quote these bounds; use --emulator synth (where the window "
            "is covered)" + ("" if emulator_error else " or add --emulator-error")
        )
    if elsewhere:
        messages.append(
            f"the emulator over-claims on {', '.join(elsewhere)} at other reference stars of its box "
            f"(worst ratio {', '.join(f'{n} {worst[n]:.2f}' for n in elsewhere)}); check these bounds against "
            "--emulator synth before quoting them"
        )
    return meta, messages


def _larger(ratio: float) -> str:
    """How much larger the real bound is, in words (a stored 0: the synthesizer sees no information at all)."""
    if ratio < 1e-3:
        return "the synthesizer's spectrum carries no measurable information on it: there is no real bound"
    return f"the real bound is about {1 / ratio:.1f}× larger"


def format_fidelity(meta: Mapping[str, Any] | None) -> str | None:
    """One line for the crb output: the stored ratio per label, or why there is none."""
    if meta is None:
        return None
    if not meta.get("stored"):
        return f"emulator fidelity: none stored ({meta.get('reason')}); run `stellarinf fidelity MODEL_DIR`"
    kind = {"ratio": "with its error", "ratio_noise_only": "noise only"}.get(meta["ratio_kind"], meta["ratio_kind"])
    cells = ", ".join(f"{n} {'n/a' if r is None else f'{r:.2f}'}" for n, r in meta["ratio"].items())
    star = meta["reference_star"]
    star = " / ".join(str(s) for s in star) if isinstance(star, (list, tuple)) else star
    return (
        f"emulator fidelity (CRB emulator/synthesizer, {kind}, {star}; "
        f"below {meta['threshold']:g} = over-claims): {cells}"
    )


# --------------------------------------------------------------------------------------------------
# fits: a per-label flag where the emulator over-claims near the fitted star
# --------------------------------------------------------------------------------------------------
def fit_fidelity_document(model) -> dict | None:
    """What a fit records of the stored fidelity (``idata`` attrs): per reference star its labels (T_eff, log g,
    [Fe/H]) and the ratio with the emulator's error (fits carry that error); None without a usable entry."""
    if not has_fidelity_question(model):
        return None
    entry, _ = stored_fidelity(model)
    if entry is None:
        return None
    stars = [
        {
            "name": s.get("name"),
            "labels": {k: v for k, v in (s.get("labels") or {}).items() if k in ("teff", "logg", "feh")},
            "ratio": s.get("ratio", {}),
            **({"fisher": s["fisher"]} if s.get("fisher") else {}),
        }
        for s in entry.get("stars", [])
        if s.get("ratio")
    ]
    if not stars:
        return None
    return {"threshold": float(entry.get("over_claim_threshold", OVER_CLAIM)), "stars": stars}


def nearest_reference_star(doc: Mapping[str, Any] | None, p50: Mapping[str, float], bounds: Mapping[str, Any]):
    """The reference star of a fit's fidelity document (``doc``) nearest the fitted star (``p50``; distances over
    the box widths in ``bounds``); None without any."""
    if not doc or not doc.get("stars"):
        return None
    keys = [k for k in ("teff", "logg", "feh") if k in p50 and k in bounds]

    def distance(star):
        return sum(
            ((star["labels"].get(k, p50[k]) - p50[k]) / max(float(bounds[k][1]) - float(bounds[k][0]), 1e-12)) ** 2
            for k in keys
        )

    return min(doc["stars"], key=distance)


def nearest_star_ratios(doc: Mapping[str, Any] | None, p50: Mapping[str, float], bounds: Mapping[str, Any]) -> dict:
    """The stored ratios (``{label: ratio}``) of :func:`nearest_reference_star`; ``{}`` without any."""
    star = nearest_reference_star(doc, p50, bounds)
    return {} if star is None else dict(star["ratio"])


def fit_fidelity_flags(doc: Mapping[str, Any] | None, p50: Mapping[str, float], bounds: Mapping[str, Any]) -> set[str]:
    """Labels whose stored ratio at the reference star nearest the fitted star (:func:`nearest_star_ratios`) is
    below the threshold: the fit's sd may be too small and its value biased there."""
    ratios = nearest_star_ratios(doc, p50, bounds)
    return {n for n, r in ratios.items() if r is not None and r < float(doc["threshold"])}
