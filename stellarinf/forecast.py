"""Precision forecasts: Cramér–Rao bounds for a star observed with an instrument, and scaling laws.

Building blocks (all eager, returning plain data):

- set-ups: every preset of the one table ``data/instruments.ecsv`` (:mod:`stellarinf.instruments`: real
  instruments with their arms and sources, stellarinf's model windows, generic ``R=<value>``), cut to what the
  model covers (:func:`instrument_for`); :func:`get_preset` gives a one-arm preset as a Window;
- :func:`resolve_model`: ``"synth"`` → :class:`~stellarinf.synth.SynthesizerModel` for the window, a
  name/dir → :func:`~stellarinf.emulators.registry.load_emulator`, or a ``SpectrumModel`` as is;
- :func:`forecast`: noiseless mock spectrum on the instrument grid at the given S/N, the full
  :class:`~stellarinf.observe.model.ObservationModel` (emulator → Doppler → broadening → LSF → resampling
  → continuum), and its :class:`~stellarinf.fisher.FisherResult`;
- :func:`bounds_vs_snr`, :func:`bounds_vs_resolution`, :func:`bounds_vs_window`: astropy Tables with
  columns ``marginal_<label>`` and ``conditional_<label>``.

S/N is per pixel at the continuum (``noise_sigma``); a different R keeps ``pixels_per_resolution`` of the
preset, so the pixel count changes with R. With ``emulator_error`` the noise has the fit's error model: the
emulator's correlated error modes on the forecast's pixels plus its white remainder (:func:`fit_error_terms`), so
the bound is the fit's (:func:`stellarinf.fisher.likelihood_fisher`) and saturates at the emulator's floor
(:func:`emulator_floor`) as S/N grows. Speed: the Jacobian of every parameter is taken once per star and
set-up (another S/N, prior or free set is linear algebra on it); for an emulator, R is a held parameter and the
pixel count is padded to a power-of-two bucket, so another R or preset of the same bucket reuses the compiled
Jacobian (about 0.1–0.5 s per forecast here instead of 5–9 s).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import StellarinfError
from .fisher import FisherResult, correlated_information, fisher_from_jacobian, jacobian_and_value, noise_sigma
from .instruments import Instrument, InstrumentError, get_instrument
from .observe.error_scale import check_error_scale_mode, model_error_scale
from .physics_options import DEFAULT_MOLECULES, no_tio_message
from .wavelength import Window

NUISANCE_DEFAULTS = {"rv": 0.0, "vsini": 2.0, "vmacro": 3.0}
# What `--marginalize` understands; "continuum" expands to every continuum coefficient of the model.
NUISANCE_GROUPS = ("rv", "vsini", "vmacro", "continuum", "resolution")
DEFAULT_MARGINALIZE = ("rv", "vsini", "vmacro", "continuum")
# ``forecast(emulator_error=...)``: the emulator's correlated error modes + white remainder (what a fit's likelihood
# uses; True), or its whole error as white per-pixel noise (the fit's ``--emulator-error white``)
EMULATOR_ERROR_MODELS = ("modes", "white")
FLOOR_SNR = 1e6  # the S/N standing in for "infinite" in emulator_floor (photon noise negligible beside any floor)


def synth_coverage() -> tuple[tuple[float, float], ...]:
    """The vacuum ranges (Å) the synthesizer's line list covers (``data/linelist.ecsv``): where it can model."""
    from .synth.data import linelist

    return linelist().coverage


class ForecastError(StellarinfError, ValueError):
    """A forecast cannot be set up as asked (unknown preset, label, nuisance, uncovered window)."""


def get_preset(name: str | Window) -> Window:
    """A one-arm set-up as a :class:`Window`: a preset of ``data/instruments.ecsv`` with one arm (e.g.
    ``galah-red``, ``harps``), a model window, or a :class:`Window` as is. Presets with several arms:
    :func:`stellarinf.instruments.get_instrument`."""
    if isinstance(name, Window):
        return name
    try:
        inst = get_instrument(name)
    except InstrumentError as exc:
        raise ForecastError(str(exc)) from None
    if len(inst.arms) != 1:
        raise ForecastError(
            f"preset {inst.name!r} has {len(inst.arms)} arms ({', '.join(a.name for a in inst.arms)}); pass it to "
            "forecast(window=...) as a whole, or one arm's window"
        )
    return inst.arms[0]


def instrument_window(window: str | Window, resolution: float | None = None) -> Window:
    """The one-arm preset, with its resolving power replaced by ``resolution`` if given (same sampling per element)."""
    w = get_preset(window)
    if resolution is None:
        return w
    r = float(resolution)
    if not (math.isfinite(r) and r > 0):
        raise ForecastError(f"resolving power must be a positive number, got {resolution}")
    return dataclasses.replace(w, resolution=r)


def model_coverage(model) -> tuple[tuple[float, float], ...]:
    """The vacuum ranges a forecast with ``model`` can use: the synthesizer's line list for ``"synth"``, else the
    model's own wavelength range."""
    if isinstance(model, str) and model == "synth":
        return synth_coverage()
    if isinstance(model, (list, tuple)):  # several emulators, one per arm: the union of their ranges
        return tuple(sorted(r for m in model for r in model_coverage(m)))
    lo, hi = model.wavelength_range
    return ((float(lo), float(hi)),)


def arms_not_covered(window, covered: Instrument) -> list[str]:
    """The arms of preset ``window`` that no model serves (dropped by the cut to the coverage), as
    ``"name wmin–wmax Å"``, then the parts ``covered`` left out (too sharp for their model) with why; empty for a
    generic ``R=`` set-up or a single Window served whole."""
    full = None
    if isinstance(window, Instrument):
        full = window
    elif isinstance(window, str):
        try:
            full = get_instrument(window)
        except InstrumentError:
            full = None
    used = [*covered.arms, *(part for part, _ in covered.left_out)]  # an arm left out for its R is said once
    outside = [
        f"{a.name} {a.wmin:.0f}–{a.wmax:.0f} Å"
        for a in (full.arms if full is not None else ())
        if not any(k.wmin < a.wmax and k.wmax > a.wmin for k in used)
    ]
    return outside + [f"{a.name} {a.wmin:.0f}–{a.wmax:.0f} Å ({why})" for a, why in covered.left_out]


def arm_model(models, arm: Window):
    """The model of ``models`` whose range holds ``arm`` (a preset arm already cut to their coverage); with one
    model (or ``"synth"``), that one."""
    if not isinstance(models, (list, tuple)):
        return models
    for m in models:
        lo, hi = (float(w) for w in m.wavelength_range)
        if lo - 1e-6 <= arm.wmin and arm.wmax <= hi + 1e-6:
            return m
    raise ForecastError(
        f"no model covers arm {arm.name!r} ({arm.wmin:.1f}–{arm.wmax:.1f} Å) whole"
    )  # cut: cannot happen


def instrument_for(model, window: str | Window | Instrument, resolution: float | None = None) -> Instrument:
    """The set-up ``window`` names (any preset, ``R=<value>[:<wmin>-<wmax>]``, a Window or an Instrument) at
    ``resolution`` if given, cut to what ``model`` covers (a clear error naming the covered ranges if nothing)."""
    ranges = model_coverage(model)
    widest = (min(lo for lo, _ in ranges), max(hi for _, hi in ranges)) if len(ranges) == 1 else None
    try:
        inst = get_instrument(window, default_range=widest)
        if resolution is not None:
            inst = inst.with_resolution(resolution)
        what = (
            "the synthesizer's line list"
            if isinstance(model, str)
            else ("the models" if isinstance(model, (list, tuple)) else "the model")
        )
        inst = inst.covered(ranges, what=what)
    except InstrumentError as exc:
        raise ForecastError(str(exc)) from None
    # a part sharper than the model that covers it is left out (and said: forecast meta, `crb` output) when the
    # others can be served, e.g. MIKE's red arm at R 22,000 through the broad set: its Gaia RVS part (a member at
    # R 11,500) cannot be sharpened, its GALAH parts can be used; nothing left is an error with the way forward
    keep, sharp = [], []
    for a in inst.arms:
        m = arm_model(model, a)
        r_model = None if isinstance(m, str) else getattr(m, "resolution", None)
        if r_model is not None and a.resolution > float(r_model) * (1 + 1e-9):
            sharp.append((a, float(r_model)))
        else:
            keep.append(a)
    if not keep:
        a, r_model = sharp[0]
        raise ForecastError(
            f"preset {inst.name!r} observes at R {a.resolution:,.0f} ({a.name}), sharper than the model's "
            f"R {r_model:,.0f} (a model cannot be sharpened): forecast it with the synthesizer (--emulator "
            "synth), or at the model's R or below (--resolution)"
        )
    left_out = tuple((a, f"R {a.resolution:,.0f} sharper than its model's {r:,.0f}") for a, r in sharp)
    return dataclasses.replace(inst, arms=tuple(keep), left_out=left_out) if sharp else inst


# --------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------
def resolve_model(
    model,
    window: str | Window = "galah-red",
    *,
    fidelity: str = "realistic",
    float64: bool = True,
    elements: Sequence[str] | None = None,
    alpha: bool = False,
    molecules: str = DEFAULT_MOLECULES,
):
    """``"synth"`` (ground truth), an emulator name/dir (``"default"``, ``"default-payne"``) or a ``SpectrumModel``
    (returned as is; tests pass :func:`stellarinf.validation.setups.analytic_model`, a cheap test double).

    ``elements``: for ``"synth"`` only, the elements whose [X/Fe] are labels (default: the default label space's);
    an emulator's labels are fixed by its training, so it refuses them. ``alpha``: for ``"synth"`` only, [α/Fe]
    is a label (α-enhanced atmospheres; the α elements without their own label follow it). ``molecules``: for
    ``"synth"`` only, "on" adds the molecular equilibrium and the CH, MgH, C2, CN lines.

    Emulators are converted to float64 (``astype``) when ``float64`` so Jacobians carry full precision.
    """
    from . import enable_float64

    enable_float64()  # Cramér–Rao bounds need float64, from the first array on
    is_synth = isinstance(model, str) and model == "synth"
    if (elements is not None or alpha) and not is_synth:
        raise ForecastError(
            "the labels a model has are fixed by its training; choosing them (--elements, --alpha) needs the "
            "synthesizer (--emulator synth)"
        )
    if molecules != DEFAULT_MOLECULES and not is_synth:
        raise ForecastError(
            "an emulator's physics is fixed by its training; molecules='on' needs model='synth' (--emulator synth)"
        )
    if not isinstance(model, (str, bytes)) and not hasattr(model, "__fspath__"):
        out = model
    elif str(model) == "synth":
        w = get_preset(window)
        cover = [(lo, hi) for lo, hi in synth_coverage() if lo <= w.wmin and w.wmax <= hi]
        if not cover:
            raise ForecastError(
                f"the synthesizer's line list covers {', '.join(f'{lo:g}–{hi:g}' for lo, hi in synth_coverage())} Å (vacuum); "
                f"window {w.name!r} ({w.wmin:g}–{w.wmax:g} Å) is outside it"
            )
        lo, hi = cover[0]
        # a few Å of margin so Doppler shifts and broadening kernels see real spectrum at the window edges
        padded = dataclasses.replace(w, name=f"{w.name}-padded", wmin=max(lo, w.wmin - 5.0), wmax=min(hi, w.wmax + 5.0))
        out = _synth_model(padded, fidelity, None if elements is None else tuple(elements), bool(alpha), molecules)
    else:
        return _named_model(str(model), bool(float64))
    if float64 and hasattr(out, "astype"):
        import jax.numpy as jnp

        out = out.astype(jnp.float64)
    return out


@functools.lru_cache(maxsize=16)
def _synth_model(
    window: Window,
    fidelity: str,
    elements: tuple[str, ...] | None,
    alpha: bool = False,
    molecules: str = DEFAULT_MOLECULES,
):
    """The synthesizer over one (padded) arm, built once per process: forecasts of several stars with the same arm
    and labels reuse it, and with it the Jacobian programs compiled for it."""
    from .labels import DEFAULT_ABUNDANCE_ELEMENTS, default_label_space
    from .synth import SynthesizerModel

    space = default_label_space(DEFAULT_ABUNDANCE_ELEMENTS if elements is None else elements, alpha=alpha)
    return SynthesizerModel(space, window, fidelity, molecules=molecules)


@functools.lru_cache(maxsize=8)
def _named_model(name: str, float64: bool):
    """An emulator by name or folder, loaded once per process: a scan of forecasts reuses it (and the programs
    compiled for it, which are keyed by the model's structure)."""
    from .emulators.registry import load_emulator

    out = load_emulator(name)
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


def _make_spectrum(wavelength, flux, sigma, resolution: float | None = None, mask=None):
    from .io.spectrum import Spectrum

    return Spectrum(
        wavelength=np.asarray(wavelength, dtype=np.float64),
        flux=np.asarray(flux, dtype=np.float64),
        sigma=np.asarray(sigma, dtype=np.float64),
        mask=None if mask is None else np.asarray(mask, bool),
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
    emulator_error: np.ndarray | None  # (n_pix,) added to the noise in quadrature: the white remainder with modes
    observation_model: Any = None
    spectrum_model: Any = None
    full_jacobian: np.ndarray | None = None  # (n_pix, n_params): every parameter of the observation model
    param_names: tuple[str, ...] = ()  # column order of full_jacobian
    instrument: Instrument | None = None  # the set-up, cut to the model's coverage (window = its first arm)
    arm_slices: tuple[slice, ...] = ()  # each arm's pixels in wavelength/flux/sigma/jacobian
    observation_pixels: np.ndarray | None = None  # this forecast's pixels among observation_model's (one arm)
    arm_models: tuple = ()  # each arm's spectrum model (several when each arm has its own emulator)
    error_modes: np.ndarray | None = None  # (n_pix, k): the emulator's correlated error (block-diagonal over arms)

    def marginal(self) -> dict[str, float]:
        return self.result.marginal()

    def at_snr(self, snr: float, snr_mode: str | None = None) -> FisherResult:
        """The same forecast at another S/N (same Jacobian, emulator error and modes; new photon noise). Exact: with
        modes the k × k Woodbury matrix is formed again (milliseconds, no new derivatives or compilation)."""
        mode = snr_mode or self.snr_mode
        sigma = noise_sigma(self.flux, snr, mode, emulator_error=self.emulator_error)
        return self.result.with_noise(sigma, mask=self.result.weights > 0, snr=float(snr), snr_mode=mode)

    def noise_only(self, snr: float | None = None) -> FisherResult:
        """The same forecast from the photon noise alone (no emulator error, no modes), at ``snr`` (default the
        forecast's): the part of the bound that falls as 1/(S/N)."""
        snr = self.snr if snr is None else float(snr)
        sigma = noise_sigma(self.flux, snr, self.snr_mode)
        res = dataclasses.replace(self.result, noise_modes=None)
        return res.with_noise(sigma, mask=self.result.weights > 0, snr=snr, emulator_error=False, error_model="none")

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
            noise_modes=self.error_modes,
        )

    def to_json(self) -> dict:
        return self.result.to_json()


def forecast(
    model,
    labels: Mapping[str, float],
    *,
    window: str | Window | Instrument = "galah-red",
    snr: float = 100.0,
    snr_mode: str = "constant",
    resolution: float | None = None,
    nuisances: Mapping[str, float] | None = None,
    marginalize: Sequence[str] = DEFAULT_MARGINALIZE,
    fix: Sequence[str] = (),
    priors: Mapping[str, float] | None = None,
    box_prior: bool = False,
    emulator_error: bool | str = False,
    error_scale: str = "star",
    model_name: str | None = None,
    obs_kwargs: Mapping[str, Any] | None = None,
    elements: Sequence[str] | None = None,
    alpha: bool = False,
    molecules: str = DEFAULT_MOLECULES,
) -> Forecast:
    """Cramér–Rao forecast for a star with ``labels`` observed with the set-up ``window`` at ``snr``.

    ``model``: anything :func:`resolve_model` accepts, a list of them (each arm served by the one whose range holds
    it; they must share one label set), or ``"auto"`` (the shipped emulators :func:`auto_model_names`: the galah
    preset's four arms each through its own Payne). ``window``: any preset of ``data/instruments.ecsv``
    (``galah``, ``harps``, ``giraffe-hr15n``, ... ; ``stellarinf crb --list-presets``), ``R=<value>`` (over the
    model's range) or ``R=<value>:<wmin>-<wmax>``, a :class:`Window` or an :class:`~stellarinf.instruments.Instrument`;
    it is cut to what the model covers, and arms left in it are forecast together (the star's labels, rv, v sin i
    and v macro shared, one continuum per arm, information summed over arms). ``resolution``: replaces every
    arm's R. ``labels``: values for the model's labels (missing ones take the middle of the training box).
    ``nuisances``: rv/vsini/vmacro fiducials (defaults :data:`NUISANCE_DEFAULTS`). ``marginalize``: nuisance
    groups kept free; the rest are held fixed. ``fix``: labels held fixed. ``priors``: {name: σ}. ``box_prior``:
    every free label without a prior in ``priors`` gets a Gaussian one of its model box's uniform sd
    (:func:`box_prior_sigmas`): what a fit's uniform box prior does to a label the data hardly constrain, and through
    the correlations to the others (without it, a single arm's bound on Teff with 35 labels free is ~1.3× the NUTS
    posterior's sd; with it 0.96–1.05: benchmarks/README.md, "Posterior vs bound").
    ``emulator_error``: the model's own error in the noise, as a fit's likelihood has it: True or ``"modes"`` (its
    correlated error modes, Doppler-shifted and LSF-smoothed onto each arm's pixels, block-diagonal over arms,
    plus its white remainder; the bound then saturates as S/N grows), ``"white"`` (its whole error added in
    quadrature per pixel), False (photon noise only). S/N is per pixel at the continuum, in every arm.
    ``error_scale``: ``"star"`` (default, as a fit has it): where an arm's emulator measured how its error varies
    over its box (:mod:`stellarinf.emulators.error_scale`), that error × s at this star's labels
    (``meta["error_scale"]``); ``"box"``: the error table as measured.
    ``elements``: with ``model="synth"``, the elements whose [X/Fe] are labels (e.g. every candidate of a survey).
    ``alpha``: with ``model="synth"``, [α/Fe] is a label too. ``molecules``: with ``model="synth"``, "on" adds
    molecular equilibrium and lines (CH, MgH, C2, CN).
    """
    from . import enable_float64

    enable_float64()  # Cramér–Rao bounds need float64, from the first array on
    if not (isinstance(snr, (int, float, np.number)) and math.isfinite(float(snr)) and float(snr) > 0):
        raise ForecastError(f"S/N must be a positive number, got {snr!r}")
    error_kind = emulator_error_kind(emulator_error)
    check_error_scale_mode(error_scale, ForecastError)
    is_synth = isinstance(model, str) and model == "synth"
    base = None if is_synth else resolve_models(model, elements=elements, alpha=alpha, molecules=molecules)
    inst = instrument_for("synth" if is_synth else base, window, resolution)
    if model_name:
        name = model_name
    elif isinstance(model, (list, tuple)):
        name = "+".join(m if isinstance(m, str) else type(m).__name__ for m in model)
    else:
        name = model if isinstance(model, str) else type(model).__name__
    arms = [
        _arm_setup(
            resolve_model(model, arm, elements=elements, alpha=alpha, molecules=molecules)
            if is_synth
            else arm_model(base, arm),
            arm,
            labels,
            nuisances,
            marginalize,
            obs_kwargs,
        )
        for arm in inst.arms
    ]
    sm, space = arms[0].model, arms[0].model.label_space
    other = [a.model for a in arms if tuple(a.model.label_space.names) != tuple(space.names)]
    if other:
        raise ForecastError(
            f"the arms' models have different labels ({', '.join(space.names)} against "
            f"{', '.join(other[0].label_space.names)}); a forecast over several arms needs one label set: forecast "
            "each arm alone (window=<arm>) or use models trained on the same labels"
        )
    multi = len(arms) > 1
    # one column per parameter: labels and rv/vsini/vmacro/resolution shared, each arm's continuum its own
    shared = [n for n in arms[0].names if not n.startswith("cont_")]
    names = list(shared)
    for i, arm in enumerate(arms):
        names += [_arm_name(n, i, multi) for n in arm.names if n.startswith("cont_")]
    free = expand_free(space.names, names, marginalize, fix)
    check_prior_names(priors or {}, free, names)  # before the Jacobians: they are the expensive part
    if box_prior:
        priors = {**box_prior_sigmas(label_box(space), free), **dict(priors or {})}
    arms = [_with_jacobian(arm) for arm in arms]
    n_pix = [arm.wavelength.size for arm in arms]
    J_all = np.zeros((sum(n_pix), len(names)))
    params: dict[str, float] = {}
    edges = np.concatenate([[0], np.cumsum(n_pix)])
    slices = tuple(slice(int(edges[i]), int(edges[i + 1])) for i in range(len(arms)))
    for i, arm in enumerate(arms):
        cols = [names.index(n if not n.startswith("cont_") else _arm_name(n, i, multi)) for n in arm.names]
        J_all[slices[i], cols] = arm.jacobian
        params.update({(_arm_name(n, i, multi) if n.startswith("cont_") else n): v for n, v in arm.params.items()})
    wl = np.concatenate([arm.wavelength for arm in arms])
    flux = np.concatenate([arm.flux for arm in arms])
    # each arm's emulator error at this star: × s at its labels where the emulator measured its scale (as in a fit)
    scales = [model_error_scale(arm.model, arm.params) if error_scale == "star" else None for arm in arms]
    factors = [1.0 if s is None else s for s in scales]
    emu = np.concatenate(
        [np.asarray(arm.model.error(arm.wavelength), dtype=np.float64) * f for arm, f in zip(arms, factors)]
    )
    if error_kind == "modes":
        terms = [fit_error_terms(arm, marginalize, obs_kwargs) for arm in arms]
        white = np.concatenate([t[0] * f for t, f in zip(terms, factors)])
        modes = block_modes([t[1] * f for t, f in zip(terms, factors)])
    else:
        white, modes = (emu if error_kind == "white" else None), None
    sigma = noise_sigma(flux, snr, snr_mode, emulator_error=white)
    w0 = inst.arms[0]
    meta = {
        "model": str(name),
        "instrument": inst.name,
        "arms_not_covered": arms_not_covered(window, inst),
        "window": w0.name if not multi else inst.name,
        "arms": [
            {"name": a.name, "wmin": a.wmin, "wmax": a.wmax, "resolution": a.resolution, "n_pixels": n}
            for a, n in zip(inst.arms, n_pix)
        ],
        "wmin": float(min(a.wmin for a in inst.arms)),
        "wmax": float(max(a.wmax for a in inst.arms)),
        "resolution": float(w0.resolution),
        "n_pixels": int(wl.size),
        "snr": float(snr),
        "snr_mode": snr_mode,
        "emulator_error": error_kind is not None,
        "error_model": "none" if error_kind is None else ("modes" if modes is not None else "white"),
        "error_scale": {"mode": error_scale, "scales": scales if any(s is not None for s in scales) else None},
        **({} if modes is None else {"n_error_modes": int(modes.shape[1])}),
        "marginalized": [n for n in free if n not in space.names],
        "fixed": [n for n in names if n not in free],
        "box_prior": bool(box_prior),
    }
    from .emulator_fidelity import FidelityWarning, fidelity_meta

    values = {n: params[n] for n in space.names}
    distinct = list({id(a.model): a.model for a in arms}.values())
    if len(distinct) > 1:  # each arm its emulator: their stored ratios combined by each arm's information here
        fid, fid_messages = combined_fidelity_meta(arms, J_all, sigma, slices, names, free, values, modes)
    else:  # stored emulator/synthesizer ratios
        fid, fid_messages = fidelity_meta(sm, free, error_kind is not None, values)
    if fid is not None:
        meta["emulator_fidelity"] = fid
    tio_message = (
        no_tio_message(params["teff"], params["logg"], distinct, params) if {"teff", "logg"} <= set(params) else None
    )
    if tio_message:
        meta["no_tio"] = tio_message
    idx = [names.index(n) for n in free]
    result = fisher_from_jacobian(
        J_all[:, idx],
        sigma,
        free,
        values=[params[n] for n in free],
        priors=priors,
        meta=meta,
        wavelength=wl,
        noise_modes=modes,
    )
    _warn_unconstrained(result, space, box_prior)
    for message in fid_messages:
        warnings.warn(message, FidelityWarning, stacklevel=2)
    if error_kind is None:
        message = emulator_error_message(emu, sigma)
        if message:
            warnings.warn(message, EmulatorErrorWarning, stacklevel=2)
    if tio_message:
        warnings.warn(tio_message, PhysicsCoverageWarning, stacklevel=2)
    return Forecast(
        result,
        wl,
        flux,
        sigma,
        params,
        w0,
        float(snr),
        snr_mode,
        white,
        arms[0].obs if not multi else None,
        sm,
        J_all,
        tuple(names),
        inst,
        slices,
        arms[0].pixels if not multi else None,
        tuple(a.model for a in arms),
        modes,
    )


def emulator_error_kind(emulator_error: bool | str | None) -> str | None:
    """``forecast(emulator_error=...)`` as one of :data:`EMULATOR_ERROR_MODELS`, or None for photon noise only
    (True is ``"modes"``: a fit's default likelihood)."""
    if emulator_error is None or isinstance(emulator_error, (bool, np.bool_)):
        return "modes" if emulator_error else None
    if isinstance(emulator_error, str) and emulator_error in EMULATOR_ERROR_MODELS:
        return emulator_error
    raise ForecastError(
        f"emulator_error must be True/False or one of {', '.join(EMULATOR_ERROR_MODELS)}, got {emulator_error!r}"
    )


def fit_error_terms(arm: _Arm, marginalize: Sequence[str], obs_kwargs) -> tuple[np.ndarray, np.ndarray]:
    """The arm's emulator error as a fit of this spectrum has it: ``(white (n_pix,), modes (n_pix, k))``, the white
    remainder σ and the correlated modes of an :class:`~stellarinf.observe.model.ObservationModel` on the arm's own
    pixels (:func:`~stellarinf.observe.build.emulator_error_terms`: LSF-smoothed at the instrument's R unless R is
    fitted) at the fiducial rv (:meth:`~stellarinf.observe.model.ObservationModel.error_mode_matrix`), times the
    flux level the fit scales them by. The forecast's own model cannot serve: its pixels are padded and R held
    as a parameter so that its compiled Jacobian is shared, which would leave the modes unsmoothed."""
    kwargs = dict(obs_kwargs or {})
    if "resolution" in marginalize:
        kwargs.setdefault("fit_resolution", True)
    kwargs.update(include_emulator_error=True, error_modes=True)
    r = float(arm.params.get("resolution", arm.obs.resolution))  # the instrument's R (a held parameter, or fixed)
    spec = _make_spectrum(arm.wavelength, arm.flux, np.full(arm.wavelength.size, 0.01), r)
    obs = _observation_model(arm.model, spec, r, **kwargs)
    scale = np.asarray(obs.flux_scale, dtype=np.float64)
    white = np.asarray(obs.emulator_error, dtype=np.float64) * scale
    modes = np.asarray(obs.error_mode_matrix({"rv": arm.params.get("rv", 0.0)}), dtype=np.float64)
    return white, modes * scale[:, None]


def block_modes(blocks: Sequence[np.ndarray]) -> np.ndarray | None:
    """The arms' modes (each (n_pix_arm, k_arm)) as one (n_pix, Σ k) matrix, block-diagonal: an arm's modes are
    zero on the other arms' pixels (each emulator's error is its own). None when no arm has modes."""
    k = sum(b.shape[1] for b in blocks)
    if k == 0:
        return None
    out = np.zeros((sum(b.shape[0] for b in blocks), k))
    r = c = 0
    for b in blocks:
        out[r : r + b.shape[0], c : c + b.shape[1]] = b
        r, c = r + b.shape[0], c + b.shape[1]
    return out


def resolve_models(
    model, *, elements: Sequence[str] | None = None, alpha: bool = False, molecules: str = DEFAULT_MOLECULES
):
    """:func:`resolve_model` for one model, or a list of them for ``"auto"`` (:func:`auto_model_names`), a set's name
    (:data:`stellarinf.shipped_models.MODEL_SETS`, e.g. ``"broad"``) or a list of names/models (one per arm); a list
    of one is that model."""
    from .shipped_models import MODEL_SETS

    names = auto_model_names() if isinstance(model, str) and model == "auto" else model
    if isinstance(model, str) and model in MODEL_SETS:
        names = list(MODEL_SETS[model])
    if not isinstance(names, (list, tuple)):
        return resolve_model(model, elements=elements, alpha=alpha, molecules=molecules)
    models = [resolve_model(m, elements=elements, alpha=alpha, molecules=molecules) for m in names]
    return models[0] if len(models) == 1 else models


def auto_model_names() -> list[str]:
    """The shipped emulators ``model="auto"`` forecasts with on this machine (one per window;
    :data:`stellarinf.shipped_models.AUTO_MODELS`), as ``fit_spectrum(emulator="auto")`` fits with."""
    import jax

    from .shipped_models import AUTO_MODELS

    return list(AUTO_MODELS["cpu" if jax.default_backend() == "cpu" else "accelerator"])


def combined_fidelity_meta(
    arms, jacobian, sigma, slices, names, free, values, modes=None
) -> tuple[dict | None, list[str]]:
    """``(meta["emulator_fidelity"], warnings)`` for a forecast whose arms have different emulators: each arm's
    stored emulator/synthesizer bound ratios at the reference star nearest ``values``, combined by the information
    each arm carries in this forecast (:func:`stellarinf.inference.arm_combination.combined_fidelity`, the rule a
    multi-arm fit uses)."""
    from .emulator_fidelity import OVER_CLAIM, nearest_reference_star
    from .emulator_fidelity import fit_fidelity_document as fidelity_document
    from .inference.arm_combination import combined_fidelity

    space = arms[0].model.label_space
    bounds = {n: (float(lo), float(hi)) for n, lo, hi in zip(space.names, space.lower, space.upper)}
    stars = [nearest_reference_star(fidelity_document(arm.model), values, bounds) for arm in arms]
    if not any(stars):
        return None, []
    info = arm_information(jacobian[:, [names.index(n) for n in free]], 1.0 / sigma**2, slices, modes)
    ratios = combined_fidelity(info, list(free), stars)
    over = {n: r for n, r in ratios.items() if r < OVER_CLAIM}
    meta = {
        "stored": True,
        "ratio_kind": "combined over arms",
        "ratio": ratios,
        "reference_star": [None if st is None else st.get("name") for st in stars],
        "over_claiming": sorted(over),
        "threshold": OVER_CLAIM,
    }
    messages = []
    if over:
        listed = "; ".join(f"{n} {r:.2f}×" for n, r in over.items())
        messages.append(
            f"the arms' emulators together over-claim on {', '.join(over)}: the combined bound is below {OVER_CLAIM:g}× "
            f"the synthesizer's at the nearest reference stars: {listed}. Do not quote these bounds; use --emulator "
            "synth (where the windows are covered)"
        )
    return meta, messages


def arm_information(jacobian: np.ndarray, weights: np.ndarray, slices, modes: np.ndarray | None = None) -> np.ndarray:
    """Each arm's Fisher information Jᵀ C⁻¹ J over its pixels ``slices`` (n_arms, n, n), C = diag(1/weights) plus
    the arm's own correlated ``modes`` (n_pix, k) if given: what the arms' stored emulator terms are weighted by
    (:mod:`stellarinf.inference.arm_combination`)."""
    if modes is None:
        return np.asarray([(jacobian[sl].T * weights[sl]) @ jacobian[sl] for sl in slices])
    out = []
    for sl in slices:
        own = np.any(modes[sl] != 0.0, axis=0)  # the block-diagonal modes of this arm only
        out.append(correlated_information(jacobian[sl], weights[sl], modes[sl][:, own]))
    return np.asarray(out)


def _arm_name(name: str, arm: int, multi: bool) -> str:
    """A continuum coefficient ``cont_<segment>_<k>`` of one arm's model as ``cont_<arm>_<k>`` in a forecast with
    several arms (each arm's model sees one segment; the fitter's multi-arm names have the same form)."""
    if not multi:
        return name
    return f"cont_{arm}_{name.rsplit('_', 1)[-1]}"


@dataclasses.dataclass
class _Arm:
    model: Any
    obs: Any
    wavelength: np.ndarray
    flux: np.ndarray | None  # the noiseless model on the arm's pixels (after _with_jacobian)
    jacobian: np.ndarray | None  # (n_pix, len(names)) (after _with_jacobian)
    names: tuple[str, ...]  # the Jacobian's columns
    params: dict[str, float]  # every parameter of the observation model at the fiducial point
    pixels: np.ndarray  # the arm's pixels among the observation model's (its grid may be padded)


def _arm_setup(sm, arm: Window, labels, nuisances, marginalize, obs_kwargs) -> _Arm:
    """One arm, before its Jacobian: its pixel grid and observation model at the fiducial point. The Jacobian
    (:func:`_with_jacobian`) covers every parameter of the observation model: a free set is a choice of columns,
    so variants reuse it and the compiled code."""
    space = sm.label_space
    unknown = sorted(set(labels) - set(space.names))
    if unknown:
        raise ForecastError(f"unknown label(s) {unknown} for this model; it has {', '.join(space.names)}")
    values = space.validate(
        space.array_from_mapping(dict(labels), defaults=dict(zip(space.names, space.midpoint))), what="star labels"
    )
    wl = arm.grid()
    check_coverage(sm, wl)
    kwargs = dict(obs_kwargs or {})
    padded = wl
    if not kwargs:
        # the compiled Jacobian is keyed by the observation model's static shapes: with the pixel count padded to a
        # bucket, and (for a model with its own R, whose fine grid does not depend on the instrument's) R a held
        # parameter with fixed bounds, another R or window of the same bucket reuses it
        padded = _padded_grid(wl)
        if getattr(sm, "resolution", None) is not None:
            kwargs = {"fit_resolution": True, "resolution_bounds": _resolution_bounds(sm, arm.resolution)}
    if "resolution" in marginalize:
        kwargs.setdefault("fit_resolution", True)
    # with R a parameter, the model's R is only a starting value (a static field): the same for every R
    r_start = float(sm.resolution) if kwargs.get("resolution_bounds") else arm.resolution
    keep = _real_pixels(wl.size, padded.size)
    mask = np.zeros(padded.size, bool)
    mask[keep] = True  # the inserted pixels are masked: the fine grid's step follows the real pixels' spacing
    placeholder = _make_spectrum(padded, np.ones_like(padded), np.full_like(padded, 0.01), r_start, mask)
    obs = _observation_model(sm, placeholder, r_start, **kwargs)
    params = fiducial_params(obs, dict(zip(space.names, map(float, values))), nuisances, arm.resolution)
    names = tuple(n for n in obs.param_names if n in params)
    if "resolution" not in marginalize:
        names = tuple(n for n in names if n != "resolution")
    return _Arm(sm, obs, wl, None, None, names, {n: float(v) for n, v in params.items()}, keep)


def _with_jacobian(arm: _Arm) -> _Arm:
    """The arm with its noiseless flux and Jacobian (the compiled, expensive step), real pixels only."""
    J, flux = jacobian_and_value(_predict_fn(arm.obs), arm.params, arm.names)
    return dataclasses.replace(arm, flux=flux[arm.pixels], jacobian=J[arm.pixels])


MIN_BUCKET = 1024  # small grids are cheap to pad; one compiled Jacobian serves every R below ~9,000 here
R_FLOOR = 1_000.0  # lower bound of the (held) resolving-power parameter: the LSF kernel is sized for it


def _bucket(n: int) -> int:
    """The padded pixel count: the next power of two (at least :data:`MIN_BUCKET`)."""
    return max(MIN_BUCKET, 1 << max(0, int(n - 1).bit_length()))


def _padded_grid(wl: np.ndarray) -> np.ndarray:
    """``wl`` with extra pixels between its last two (same range, so the same continuum basis and fine grid),
    up to :func:`_bucket`; their rows are dropped from the Jacobian (:func:`_real_pixels`)."""
    extra = _bucket(wl.size) - wl.size
    if extra == 0 or wl.size < 2:
        return wl
    fill = wl[-2] + (wl[-1] - wl[-2]) * np.arange(1, extra + 1) / (extra + 1)
    return np.concatenate([wl[:-1], fill, wl[-1:]])


def _real_pixels(n_real: int, n_padded: int) -> np.ndarray:
    """Indices of the real pixels in :func:`_padded_grid` (all but the inserted ones before the last)."""
    if n_padded == n_real:
        return np.arange(n_real)
    return np.concatenate([np.arange(n_real - 1), [n_padded - 1]])


def _resolution_bounds(model, resolution: float) -> tuple[float, float]:
    """Bounds of the held R parameter of a model with its own R (an emulator): up to that R, so every R below it
    shares the compiled Jacobian."""
    return (min(R_FLOOR, float(resolution)), max(float(model.resolution), float(resolution)))


def systematic_floor(fc: Forecast) -> dict[str, dict[str, float]]:
    """The emulator's label-space systematic sd (``sd_sys``, measured against its synthesizer and stored with it)
    beside each bound, and the S/N above which it dominates: the photon-noise bound falls as 1/(S/N), the floor
    does not, so past ``snr_floor_dominates`` = S/N × photon bound / sd_sys more photons do not buy precision (the
    photon bound is the forecast's own without emulator error, else :meth:`Forecast.noise_only`). Empty for a
    model without stored systematics (the synthesizer, a test model)."""
    from .inference.results import label_systematics_of

    models = list({id(m): m for m in fc.arm_models}.values())
    if len(models) > 1:  # each arm its emulator: their sd_sys combined by each arm's information (as a fit does)
        from .inference.arm_combination import combined_systematics

        r = fc.result
        info = arm_information(r.jacobian, r.weights, fc.arm_slices, r.noise_modes)
        arm_sd = [label_systematics_of(m, fc.params) for m in fc.arm_models]
        sd_sys = combined_systematics(info, r.covariance, np.ones(len(r.names)), list(r.names), arm_sd)
    else:
        sd_sys = label_systematics_of(fc.spectrum_model, fc.params)  # at the star's labels where it varies
    return _beside_bounds(fc, sd_sys, "sd_sys")


def _beside_bounds(fc: Forecast, sd: Mapping[str, float], key: str) -> dict[str, dict[str, float]]:
    """``{label: {key: sd, "snr_floor_dominates": S/N × photon bound / sd}}`` for each label with a positive ``sd``
    and a finite bound (the photon bound: the forecast's own without emulator error, else its noise-only one)."""
    marg = fc.result.marginal() if fc.emulator_error is None else fc.noise_only().marginal()
    out = {}
    for name in fc.result.names:
        floor = sd.get(name)
        if floor is None or not (floor > 0) or not math.isfinite(marg.get(name, math.nan)):
            continue
        out[name] = {key: float(floor), "snr_floor_dominates": float(fc.snr * marg[name] / floor)}
    return out


def physics_floor(fc: Forecast) -> dict[str, dict[str, float]]:
    """What a real star's fit adds beside each bound: the physics label floor ``sd_phys`` a fit through the
    forecast's model(s) reports (measured on the observed Sun through the model itself where it was fitted to the
    Sun, else through its window's reference model: :func:`stellarinf.observe.physics_error.physics_error_for`;
    several arms' combined by their information, as a fit does), and ``snr_floor_dominates``, the S/N above which it
    exceeds the photon-noise bound: a survey observed deeper than that measures real stars no better. Measured on the
    Sun, so for a star unlike the Sun a lower bound. Only labels with a nonzero floor."""
    from .observe.physics_error import physics_error_for

    slices = fc.arm_slices or (slice(None),)
    models = fc.arm_models
    if len({id(m) for m in models}) <= 1:  # one model for every arm (as systematic_floor takes it)
        models = (fc.spectrum_model,) * len(slices)
    r = fc.result
    floors = []
    for sl, m in zip(slices, models):
        wl = np.asarray(fc.wavelength)[sl]
        floors.append(physics_error_for(float(wl.min()), float(wl.max()), model=m)[1])
    if len(floors) > 1:
        from .inference.arm_combination import combined_floor

        info = arm_information(r.jacobian, r.weights, fc.arm_slices, r.noise_modes)
        sd_phys = combined_floor(info, list(r.names), floors)
    else:
        sd_phys = floors[0]
    return _beside_bounds(fc, sd_phys, "sd_phys")


def emulator_floor(fc: Forecast, snr_max: float = FLOOR_SNR) -> dict[str, dict[str, float]]:
    """What the emulator's own error (as the forecast includes it: modes + white remainder, or white) leaves of each
    marginal bound when photons are free: ``floor``, the bound at S/N ``snr_max`` (:data:`FLOOR_SNR`, where photon
    noise is negligible), and ``snr_floor_dominates`` = S/N × photon bound / floor, the S/N above which the
    photon-noise bound is below the floor (more photons then do not help). Empty for a forecast without emulator
    error, or with an error of zero (its bound falls as 1/(S/N) for ever)."""
    if fc.emulator_error is None or (fc.error_modes is None and not np.any(fc.emulator_error > 0)):
        return {}
    floor = fc.at_snr(snr_max).marginal()
    photon = fc.noise_only().marginal()
    out = {}
    for name in fc.result.names:
        f, b = floor[name], photon[name]
        if not (math.isfinite(f) and f > 0 and math.isfinite(b)):
            continue
        out[name] = {"floor": float(f), "snr_floor_dominates": float(fc.snr * b / f)}
    return out


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


class PhysicsCoverageWarning(UserWarning):
    """The forecast star lies where the model's physics lacks something that shapes its spectrum (TiO below ~4780 K
    for a dwarf of solar composition): its bounds miss that information and its labels' derivatives are those of the
    incomplete physics."""


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


BOX_PRIOR_DOMINATES = 0.9  # a bound above this share of its box prior's σ is the prior's, not the data's


def box_prior_sigmas(box: Mapping[str, tuple[float, float]], names: Sequence[str]) -> dict[str, float]:
    """{label: (upper − lower)/√12} for the labels of ``box`` ({label: (lower, upper)}, e.g. a model's label box or a
    fit's bounds) among ``names``: the sd of a uniform prior over the box, as a Gaussian prior's σ
    (``forecast(box_prior=True)``, ``crb --prior box``, the demo's bounds)."""
    return {n: (box[n][1] - box[n][0]) / math.sqrt(12.0) for n in names if n in box}


def label_box(space) -> dict[str, tuple[float, float]]:
    """{label: (lower, upper)} of a label space."""
    return {n: (float(space[n].lower), float(space[n].upper)) for n in space.names}


def _warn_unconstrained(result: FisherResult, space, box_prior: bool = False) -> None:
    marg = result.marginal()
    if box_prior:  # the bound cannot exceed the box: say where the prior, not the data, sets it
        sigmas = box_prior_sigmas(label_box(space), result.names)
        weak = [n for n, s in sigmas.items() if math.isfinite(marg[n]) and marg[n] > BOX_PRIOR_DOMINATES * s]
        what = f"the bound is above {BOX_PRIOR_DOMINATES:g}× its box prior's σ"
    else:
        weak = [
            n
            for n in result.names
            if n in space.names and math.isfinite(marg[n]) and marg[n] > (space[n].upper - space[n].lower)
        ]
        what = "the marginal bound exceeds the width of the model's label box"
    if weak:
        fix = "" if box_prior else " (--prior box: every label's box as a Gaussian prior, as a fit's box prior acts)"
        warnings.warn(
            f"{', '.join(weak)}: {what}, i.e. this window/S/N carries essentially no information on them; hold them "
            f"fixed (--fix) or add a prior{fix}",
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


def bounds_vs_window(model, labels: Mapping[str, float], windows: Sequence[str | Window | Instrument], **kwargs):
    """Bounds for each instrument preset (at its own R unless ``resolution`` is given), cut to what the model covers.

    ``model="synth"`` builds a synthesizer for each arm; presets the model cannot serve are skipped with a warning.
    """
    rows, names = [], None
    kwargs.setdefault("model_name", model if isinstance(model, str) else type(model).__name__)
    for win in windows:
        try:
            fc = forecast(model, labels, window=win, **kwargs)
        except ForecastError as exc:
            label = getattr(win, "name", win)
            warnings.warn(f"window {label!r} skipped: {exc}", stacklevel=2)
            continue
        names = names or fc.result.names
        inst = fc.instrument
        rows.append(
            {
                "window": inst.name,
                "wmin": min(a.wmin for a in inst.arms),
                "wmax": max(a.wmax for a in inst.arms),
                "n_arms": len(inst.arms),
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
    observation model adds no emulator error of its own: its likelihood is exactly the forecast's. With the
    emulator's error modes the mock carries a draw of them too, its σ is the photon noise, and the observation
    model integrates the modes out (as :func:`fit_error_terms` built them), so again its likelihood is the
    forecast's."""
    if len(fc.arm_slices) > 1:
        raise ForecastError(
            f"mock_observation draws one-arm spectra; this forecast has {len(fc.arm_slices)} arms: forecast one arm "
            "(window=<arm window>) to draw mocks"
        )
    rng = np.random.default_rng(seed)
    noisy = fc.flux + rng.normal(size=fc.flux.shape) * fc.sigma
    sigma, kwargs = fc.sigma, {"include_emulator_error": False, **dict(obs_kwargs or {})}
    if fc.error_modes is not None:
        noisy = noisy + fc.error_modes @ rng.normal(size=fc.error_modes.shape[1])
        sigma = noise_sigma(fc.flux, fc.snr, fc.snr_mode)
        kwargs.update(include_emulator_error=True, error_modes=True)
    spec = _make_spectrum(fc.wavelength, noisy, sigma, fc.window.resolution)
    obs = _observation_model(fc.spectrum_model, spec, fc.window.resolution, **kwargs)
    return spec, obs
