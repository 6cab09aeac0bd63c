"""Precision forecasts: Cramér–Rao bounds for a star observed with an instrument, and scaling laws.

Building blocks (all eager, returning plain data):

- :data:`PRESETS` / :func:`get_preset`: instrument set-ups (window, R, sampling) that the synthesizer's
  line list covers (vacuum 6460–7020 Å and 8450–8760 Å);
- :func:`resolve_model`: ``"synth"`` → :class:`~stellarinf.synth.SynthesizerModel` for the window, a
  name/dir → :func:`~stellarinf.emulators.registry.load_emulator`, or a ``SpectrumModel`` as is;
- :func:`forecast`: noiseless mock spectrum on the instrument grid at the given S/N, the full
  :class:`~stellarinf.observe.model.ObservationModel` (emulator → Doppler → broadening → LSF → resampling
  → continuum), and its :class:`~stellarinf.fisher.FisherResult`;
- :func:`bounds_vs_snr`, :func:`bounds_vs_resolution`, :func:`bounds_vs_window`: astropy Tables with
  columns ``marginal_<label>`` and ``conditional_<label>``.

S/N is per pixel at the continuum (``noise_sigma``); a different R keeps ``pixels_per_resolution`` of the
preset, so the pixel count changes with R.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import StellarinfError
from .fisher import FisherResult, fisher_from_jacobian, jacobian_and_value, noise_sigma
from .wavelength import WINDOWS, Window

NUISANCE_DEFAULTS = {"rv": 0.0, "vsini": 2.0, "vmacro": 3.0}
# What `--marginalize` understands; "continuum" expands to every continuum coefficient of the model.
NUISANCE_GROUPS = ("rv", "vsini", "vmacro", "continuum", "resolution")
DEFAULT_MARGINALIZE = ("rv", "vsini", "vmacro", "continuum")
SYNTH_COVERAGE = ((6460.0, 7020.0), (8450.0, 8760.0))

PRESETS: dict[str, Window] = {
    "galah-red": WINDOWS["galah-red"],
    "gaia-rvs": WINDOWS["gaia-rvs"],
    "harps-red": Window(
        "harps-red", 6480.0, 6740.0, 115_000.0, 3.2, "HARPS-like high resolution over the GALAH red window"
    ),
    "4most-hrs-red": Window(
        "4most-hrs-red",
        6470.0,
        6790.0,
        20_000.0,
        2.5,
        "4MOST-HRS-like red arm (R 20,000), cropped to the line-list coverage (the arm starts at 6100 Å)",
    ),
}


class ForecastError(StellarinfError, ValueError):
    """A forecast cannot be set up as asked (unknown preset, label, nuisance, uncovered window)."""


def get_preset(name: str | Window) -> Window:
    """Instrument preset by name (also any window of :data:`stellarinf.wavelength.WINDOWS`)."""
    if isinstance(name, Window):
        return name
    if name in PRESETS:
        return PRESETS[name]
    if name in WINDOWS:
        return WINDOWS[name]
    raise ForecastError(
        f"unknown instrument preset {name!r}; choose one of {', '.join(sorted(set(PRESETS) | set(WINDOWS)))}"
    )


def instrument_window(window: str | Window, resolution: float | None = None) -> Window:
    """The preset, with its resolving power replaced by ``resolution`` if given (same sampling per element)."""
    w = get_preset(window)
    if resolution is None:
        return w
    r = float(resolution)
    if not (math.isfinite(r) and r > 0):
        raise ForecastError(f"resolving power must be a positive number, got {resolution}")
    return dataclasses.replace(w, resolution=r)


# --------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------
def resolve_model(model, window: str | Window = "galah-red", *, fidelity: str = "realistic", float64: bool = True):
    """``"synth"`` (ground truth), an emulator name/dir (``"default"``, ``"default-payne"``) or a ``SpectrumModel``
    (returned as is; tests pass :func:`stellarinf.validation.setups.analytic_model`, a cheap test double).

    Emulators are converted to float64 (``astype``) when ``float64`` so Jacobians carry full precision.
    """
    from . import enable_float64

    enable_float64()  # Cramér–Rao bounds need float64, from the first array on
    if not isinstance(model, (str, bytes)) and not hasattr(model, "__fspath__"):
        out = model
    elif str(model) == "synth":
        from .labels import default_label_space
        from .synth import SynthesizerModel

        w = get_preset(window)
        cover = [(lo, hi) for lo, hi in SYNTH_COVERAGE if lo <= w.wmin and w.wmax <= hi]
        if not cover:
            raise ForecastError(
                f"the synthesizer's line list covers {', '.join(f'{lo:g}–{hi:g}' for lo, hi in SYNTH_COVERAGE)} Å (vacuum); "
                f"window {w.name!r} ({w.wmin:g}–{w.wmax:g} Å) is outside it"
            )
        lo, hi = cover[0]
        # a few Å of margin so Doppler shifts and broadening kernels see real spectrum at the window edges
        padded = dataclasses.replace(w, name=f"{w.name}-padded", wmin=max(lo, w.wmin - 5.0), wmax=min(hi, w.wmax + 5.0))
        out = SynthesizerModel(default_label_space(), padded, fidelity)
    else:
        from .emulators.registry import load_emulator

        out = load_emulator(model)
    if float64 and hasattr(out, "astype"):
        import jax.numpy as jnp

        out = out.astype(jnp.float64)
    return out


def check_coverage(model, wavelength: np.ndarray) -> None:
    """Clear error if the instrument grid reaches outside the model's wavelength range."""
    wmin, wmax = model.wavelength_range
    if wavelength.min() < wmin or wavelength.max() > wmax:
        raise ForecastError(
            f"the instrument window {wavelength.min():.1f}–{wavelength.max():.1f} Å is not covered by the model "
            f"({wmin:.1f}–{wmax:.1f} Å); choose a window inside it or another model"
        )


def _observation_model(spectrum_model, spectrum, resolution: float, **kwargs):
    from .observe.model import ObservationModel

    kwargs.setdefault("continuum", "sample")  # continuum coefficients must be explicit parameters here
    return ObservationModel(spectrum_model, spectrum, resolution=resolution, **kwargs)


def _predict_fn(obs):
    return obs.predict


def _make_spectrum(wavelength, flux, sigma, resolution: float | None = None):
    from .io.spectrum import Spectrum

    return Spectrum(
        wavelength=np.asarray(wavelength, dtype=np.float64),
        flux=np.asarray(flux, dtype=np.float64),
        sigma=np.asarray(sigma, dtype=np.float64),
        resolution=resolution,
        meta={"source": "stellarinf.forecast mock"},
    )


# --------------------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------------------
def expand_free(
    label_names: Sequence[str],
    param_names: Sequence[str],
    marginalize: Sequence[str] = DEFAULT_MARGINALIZE,
    fix: Sequence[str] = (),
) -> list[str]:
    """Free set: every label of the model not in ``fix``, plus the ``marginalize`` nuisance groups
    present in the observation model (``continuum`` → its ``cont_*`` coefficients)."""
    params = list(param_names)
    free = [n for n in label_names if n not in set(fix)]
    for group in marginalize:
        g = group.strip()
        if not g:
            continue
        if g == "continuum":
            names = [p for p in params if p.startswith("cont_")]
        elif g in params:
            names = [g]
        elif g in NUISANCE_GROUPS:
            warnings.warn(
                f"the observation model has no {g!r} parameter; it cannot be marginalised and is ignored", stacklevel=2
            )
            names = []
        else:
            raise ForecastError(
                f"cannot marginalise {g!r}: use a comma-separated subset of {', '.join(NUISANCE_GROUPS)}"
            )
        free += [n for n in names if n not in free and n not in set(fix)]
    bad = [n for n in fix if n not in params]
    if bad:
        raise ForecastError(f"cannot hold {bad} fixed: not parameters of this model ({', '.join(params)})")
    if not free:
        raise ForecastError("nothing left to forecast: every parameter is held fixed")
    return free


@dataclasses.dataclass
class Forecast:
    """A forecast: the Fisher result plus what produced it (mock spectrum, noise, model)."""

    result: FisherResult
    wavelength: np.ndarray
    flux: np.ndarray
    sigma: np.ndarray
    params: dict[str, float]
    window: Window
    snr: float
    snr_mode: str
    emulator_error: np.ndarray | None
    observation_model: Any = None
    spectrum_model: Any = None
    full_jacobian: np.ndarray | None = None  # (n_pix, n_params): every parameter of the observation model
    param_names: tuple[str, ...] = ()  # column order of full_jacobian

    def marginal(self) -> dict[str, float]:
        return self.result.marginal()

    def at_snr(self, snr: float, snr_mode: str | None = None) -> FisherResult:
        """The same forecast at another S/N (same Jacobian, new noise)."""
        mode = snr_mode or self.snr_mode
        sigma = noise_sigma(self.flux, snr, mode, emulator_error=self.emulator_error)
        return self.result.with_noise(sigma, mask=self.result.weights > 0, snr=float(snr), snr_mode=mode)

    def with_free(self, free: Sequence[str], priors: Mapping[str, float] | None = None) -> FisherResult:
        """The same forecast with another free set (any parameters of the observation model), from the
        stored full Jacobian: no new derivatives are taken."""
        missing = [n for n in free if n not in self.param_names]
        if missing:
            raise ForecastError(f"{missing} are not parameters of this forecast ({', '.join(self.param_names)})")
        idx = [self.param_names.index(n) for n in free]
        meta = {
            **self.result.meta,
            "marginalized": [n for n in free if n not in self.spectrum_model.label_space.names],
            "fixed": [n for n in self.param_names if n not in free],
        }
        return fisher_from_jacobian(
            self.full_jacobian[:, idx],
            self.sigma,
            list(free),
            values=[self.params[n] for n in free],
            priors=priors,
            mask=self.result.weights > 0,
            meta=meta,
            wavelength=self.wavelength,
        )

    def to_json(self) -> dict:
        return self.result.to_json()


def forecast(
    model,
    labels: Mapping[str, float],
    *,
    window: str | Window = "galah-red",
    snr: float = 100.0,
    snr_mode: str = "constant",
    resolution: float | None = None,
    nuisances: Mapping[str, float] | None = None,
    marginalize: Sequence[str] = DEFAULT_MARGINALIZE,
    fix: Sequence[str] = (),
    priors: Mapping[str, float] | None = None,
    emulator_error: bool = False,
    model_name: str | None = None,
    obs_kwargs: Mapping[str, Any] | None = None,
) -> Forecast:
    """Cramér–Rao forecast for a star with ``labels`` observed through ``window`` at ``snr``.

    ``model``: anything :func:`resolve_model` accepts. ``labels``: values for the model's labels (missing
    ones take the middle of the training box). ``nuisances``: rv/vsini/vmacro fiducials (defaults
    :data:`NUISANCE_DEFAULTS`). ``marginalize``: nuisance groups kept free; the rest are held fixed.
    ``fix``: labels held fixed. ``priors``: {name: σ}. ``emulator_error``: add the model's error in quadrature.
    """
    from . import enable_float64

    enable_float64()  # Cramér–Rao bounds need float64, from the first array on
    w = instrument_window(window, resolution)
    name = model_name or (model if isinstance(model, str) else type(model).__name__)
    sm = resolve_model(model, w)
    space = sm.label_space
    unknown = sorted(set(labels) - set(space.names))
    if unknown:
        raise ForecastError(f"unknown label(s) {unknown} for this model; it has {', '.join(space.names)}")
    values = space.validate(
        space.array_from_mapping(dict(labels), defaults=dict(zip(space.names, space.midpoint))), what="star labels"
    )
    wl = w.grid()
    check_coverage(sm, wl)
    placeholder = _make_spectrum(wl, np.ones_like(wl), np.full_like(wl, 1.0 / float(snr)), w.resolution)
    obs_kwargs = dict(obs_kwargs or {})
    if "resolution" in marginalize:
        obs_kwargs.setdefault("fit_resolution", True)
    obs = _observation_model(sm, placeholder, w.resolution, **obs_kwargs)
    params = fiducial_params(obs, dict(zip(space.names, map(float, values))), nuisances, w.resolution)
    predict = _predict_fn(obs)
    # One Jacobian for every parameter of the observation model: a free set is a choice of its columns
    # (held-fixed parameters are dropped columns), so variants reuse it and the compiled code.
    all_names = tuple(n for n in obs.param_names if n in params)
    free = expand_free(space.names, obs.param_names, marginalize, fix)
    check_prior_names(priors or {}, free, obs.param_names)  # before the Jacobian: that is the minute-long part
    J_all, flux = jacobian_and_value(predict, params, all_names)
    emu = np.asarray(sm.error(wl), dtype=np.float64) if emulator_error else None
    sigma = noise_sigma(flux, snr, snr_mode, emulator_error=emu)
    meta = {
        "model": str(name),
        "window": w.name,
        "wmin": float(w.wmin),
        "wmax": float(w.wmax),
        "resolution": float(w.resolution),
        "n_pixels": int(wl.size),
        "snr": float(snr),
        "snr_mode": snr_mode,
        "emulator_error": bool(emulator_error),
        "marginalized": [n for n in free if n not in space.names],
        "fixed": [n for n in obs.param_names if n not in free],
    }
    from .emulator_fidelity import FidelityWarning, fidelity_meta

    fid, fid_messages = fidelity_meta(
        sm, free, emulator_error, dict(zip(space.names, map(float, values)))
    )  # stored emulator/synthesizer bound ratios
    if fid is not None:
        meta["emulator_fidelity"] = fid
    idx = [all_names.index(n) for n in free]
    result = fisher_from_jacobian(
        J_all[:, idx], sigma, free, values=[params[n] for n in free], priors=priors, meta=meta, wavelength=wl
    )
    _warn_unconstrained(result, space)
    for message in fid_messages:
        warnings.warn(message, FidelityWarning, stacklevel=2)
    if not emulator_error:
        message = emulator_error_message(np.asarray(sm.error(wl), dtype=np.float64), sigma)
        if message:
            warnings.warn(message, EmulatorErrorWarning, stacklevel=2)
    return Forecast(result, wl, flux, sigma, params, w, float(snr), snr_mode, emu, obs, sm, J_all, all_names)


def check_prior_names(priors: Mapping[str, float], free: Sequence[str], param_names: Sequence[str]) -> None:
    """Refuse priors on names that are not parameters (a typo) or not free (held fixed), naming both lists."""
    unknown = sorted(set(priors) - set(param_names))
    if unknown:
        raise ForecastError(f"prior(s) on {unknown}: no such parameter; this model has {', '.join(param_names)}")
    fixed = sorted(set(priors) - set(free))
    if fixed:
        raise ForecastError(
            f"prior(s) on {fixed} but those parameters are held fixed (free: {', '.join(free)}); a prior on a fixed "
            "parameter has no effect: free it (--marginalize, or drop it from --fix) or drop the prior"
        )


class EmulatorErrorWarning(UserWarning):
    """The model's own error exceeds the noise, and the forecast ignores it: the bounds are optimistic."""


def emulator_error_message(model_error: np.ndarray, noise: np.ndarray, *, ratio: float = 0.5) -> str | None:
    """A message when the model's own error (median over pixels) is above ``ratio`` × the noise σ: bounds computed
    from the noise alone then claim precision the model cannot deliver (a 0.0006 K Teff bound at S/N 10⁶)."""
    err = float(np.median(np.abs(model_error)))
    sig = float(np.median(noise))
    if not (err > 0 and sig > 0) or err < ratio * sig:
        return None
    return (
        f"the model's own error ({err:.2g} per pixel) is {err / sig:.2g}× the noise σ ({sig:.2g}) and this forecast leaves it "
        "out, so its bounds are optimistic; add --emulator-error (Python: emulator_error=True) for bounds the model can deliver"
    )


class WeakConstraintWarning(UserWarning):
    """A label's bound is wider than the model's whole label box: the window carries (almost) no information."""


def _warn_unconstrained(result: FisherResult, space) -> None:
    marg = result.marginal()
    weak = [
        n
        for n in result.names
        if n in space.names and math.isfinite(marg[n]) and marg[n] > (space[n].upper - space[n].lower)
    ]
    if weak:
        warnings.warn(
            f"{', '.join(weak)}: the marginal bound exceeds the width of the model's label box, i.e. this window/S/N "
            "carries essentially no information on them; hold them fixed (--fix) or add a prior",
            WeakConstraintWarning,
            stacklevel=3,
        )


def fiducial_params(
    obs, labels: Mapping[str, float], nuisances: Mapping[str, float] | None, resolution: float | None
) -> dict[str, float]:
    """Every parameter of ``obs`` at the fiducial point: the star's labels, nuisances (defaults
    :data:`NUISANCE_DEFAULTS`), the instrument R, and a continuum of exactly 1 (``cont_*_0 = 1``, others 0).
    Checked against the observation model's bounds (clear error for e.g. a negative v sin i)."""
    params = {n: 0.5 * (lo + hi) for n, (lo, hi) in obs.default_bounds().items()}
    params.update({k: float(v) for k, v in labels.items() if k in params})
    for k, v in {**NUISANCE_DEFAULTS, **dict(nuisances or {})}.items():
        if k in params:
            params[k] = float(v)
    if "resolution" in params and resolution is not None:
        params["resolution"] = float(resolution)
    if "ln_jitter" in params:
        params["ln_jitter"] = math.log(1e-3)
    for cname in getattr(obs, "continuum_names", ()):
        if cname in params:
            params[cname] = 1.0 if cname.endswith("_0") else 0.0
    obs.validate_params(params)
    return params


# --------------------------------------------------------------------------------------------------
# scaling laws
# --------------------------------------------------------------------------------------------------
def _bounds_row(result: FisherResult, names: Sequence[str]) -> dict[str, float]:
    m, c = result.marginal(), result.conditional()
    row = {}
    for n in names:
        row[f"marginal_{n}"] = m.get(n, math.nan) if n in m else math.nan
        row[f"conditional_{n}"] = c.get(n, math.nan) if n in c else math.nan
    return row


def _table(rows: list[dict], meta: Mapping[str, Any]):
    from astropy.table import Table

    t = Table(rows=rows) if rows else Table()
    t.meta.update({k: v for k, v in meta.items() if isinstance(v, (int, float, str, bool))})
    return t


def bounds_vs_snr(fc: Forecast, snrs: Sequence[float], snr_mode: str | None = None):
    """Bounds at each S/N (same Jacobian; exactly ∝ 1/(S/N) without priors or emulator error)."""
    names = fc.result.names
    rows = [{"snr": float(s), **_bounds_row(fc.at_snr(s, snr_mode), names)} for s in snrs]
    return _table(rows, {**fc.result.meta, "snr_mode": snr_mode or fc.snr_mode})


def bounds_vs_resolution(model, labels: Mapping[str, float], resolutions: Sequence[float], **kwargs):
    """Bounds at each resolving power (same window and S/N per pixel; pixels per element kept)."""
    rows, meta = [], {}
    sm = resolve_model(model, kwargs.get("window", "galah-red"))
    kwargs.setdefault("model_name", model if isinstance(model, str) else type(model).__name__)
    for r in resolutions:
        fc = forecast(sm, labels, resolution=float(r), **kwargs)
        rows.append(
            {"resolution": float(r), "n_pixels": int(fc.wavelength.size), **_bounds_row(fc.result, fc.result.names)}
        )
        meta = fc.result.meta
    return _table(rows, {k: v for k, v in meta.items() if k not in ("resolution", "n_pixels")})


def bounds_vs_window(model, labels: Mapping[str, float], windows: Sequence[str | Window], **kwargs):
    """Bounds for each instrument preset (at its own R unless ``resolution`` is given).

    ``model="synth"`` builds a synthesizer for each window; windows the model does not cover are skipped
    with a warning.
    """
    rows, names = [], None
    kwargs.setdefault("model_name", model if isinstance(model, str) else type(model).__name__)
    for win in windows:
        w = get_preset(win)
        try:
            fc = forecast(model, labels, window=w, **kwargs)
        except ForecastError as exc:
            warnings.warn(f"window {w.name!r} skipped: {exc}", stacklevel=2)
            continue
        names = names or fc.result.names
        rows.append(
            {
                "window": w.name,
                "wmin": w.wmin,
                "wmax": w.wmax,
                "resolution": fc.window.resolution,
                "n_pixels": int(fc.wavelength.size),
                **_bounds_row(fc.result, names),
            }
        )
    return _table(rows, {"snr": float(kwargs.get("snr", 100.0))})


# --------------------------------------------------------------------------------------------------
# mock observations (for validation against posteriors)
# --------------------------------------------------------------------------------------------------
def mock_observation(fc: Forecast, seed: int, obs_kwargs: Mapping[str, Any] | None = None):
    """A noisy mock spectrum drawn from the forecast's noiseless flux and noise, and an observation model
    built on it (same model, grid and resolution). Returns ``(spectrum, observation_model)``.

    The mock's σ is the forecast's (emulator error included only if the forecast included it), so the
    observation model adds no emulator error of its own: its likelihood is exactly the forecast's."""
    rng = np.random.default_rng(seed)
    noisy = fc.flux + rng.normal(size=fc.flux.shape) * fc.sigma
    spec = _make_spectrum(fc.wavelength, noisy, fc.sigma, fc.window.resolution)
    kwargs = {"include_emulator_error": False, **dict(obs_kwargs or {})}
    obs = _observation_model(fc.spectrum_model, spec, fc.window.resolution, **kwargs)
    return spec, obs
