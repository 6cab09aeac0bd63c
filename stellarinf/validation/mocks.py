"""Mock observed spectra with known truth, for tests, recovery and calibration benchmarks.

A mock is made by any :class:`~stellarinf.emulators.base.SpectrumModel` (the synthesizer, an emulator or
the :class:`~stellarinf.emulators.analytic.AnalyticLineModel`) pushed through the same observation
pipeline the fit uses (Doppler shift, rotation/macroturbulence, instrumental LSF, resampling), then
Gaussian noise at a given S/N is added.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np

from ..io.spectrum import Spectrum
from ..labels import LabelSpace
from ..wavelength import SPEED_OF_LIGHT_KMS


def log_uniform_grid(wmin: float, wmax: float, resolution: float, pixels_per_resel: float = 2.5) -> np.ndarray:
    """Vacuum wavelengths uniform in ln λ sampling the resolution element with ``pixels_per_resel`` pixels."""
    step = 1.0 / (resolution * pixels_per_resel)
    n = int(math.floor(math.log(wmax / wmin) / step)) + 1
    return wmin * np.exp(step * np.arange(n))


def noiseless_flux(
    model, wavelength: np.ndarray, params: Mapping[str, float], resolution: float | None, **obs_kwargs
) -> np.ndarray:
    """The observation pipeline's prediction (no continuum) of ``model`` at ``params`` on ``wavelength``."""
    from .. import enable_float64

    enable_float64()  # mocks are made in float64, like the fits they feed
    from ..observe.model import ObservationModel

    dummy = Spectrum(wavelength, np.ones_like(wavelength), np.ones_like(wavelength), resolution=resolution)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        om = ObservationModel(model, dummy, continuum_degree=-1, **obs_kwargs)
    p = {k: jnp.asarray(float(v)) for k, v in params.items() if k in om.param_names}
    missing = [n for n in om.param_names if n not in p]
    if missing:
        raise ValueError(f"mock parameters miss {missing}")
    return np.asarray(om.predict(p))


def make_mock(
    model,
    wavelength: np.ndarray,
    params: Mapping[str, float],
    *,
    snr: float,
    resolution: float | None,
    seed: int = 0,
    **obs_kwargs,
) -> Spectrum:
    """A noisy mock spectrum: σ = 1/snr per pixel (normalised flux), Gaussian noise from ``seed``."""
    flux = noiseless_flux(model, wavelength, params, resolution, **obs_kwargs)
    rng = np.random.default_rng(seed)
    sigma = np.full_like(flux, 1.0 / snr)
    meta = {"source": "mock", "truth": {k: float(v) for k, v in params.items()}, "snr": snr}
    return Spectrum(wavelength, flux + sigma * rng.standard_normal(flux.shape), sigma, meta=meta, resolution=resolution)


def random_truth(
    label_space: LabelSpace,
    rng: np.random.Generator,
    *,
    inset: float = 0.1,
    rv_max: float = 50.0,
    vsini_range=(2.0, 15.0),
) -> dict[str, float]:
    """Random labels inside the box (``inset`` fraction kept away from each edge), RV and vsini."""
    lo, hi = label_space.lower, label_space.upper
    span = hi - lo
    x = rng.uniform(lo + inset * span, hi - inset * span)
    truth = dict(zip(label_space.names, map(float, x)))
    truth["rv"] = float(rng.uniform(-rv_max, rv_max))
    truth["vsini"] = float(rng.uniform(*vsini_range))
    truth["vmacro"] = 0.0
    return truth


def analytic_setup(
    names=("teff", "logg", "feh"),
    wavelength_range=(5000.0, 5030.0),
    resolution: float = 20000.0,
    n_lines: int = 20,
    seed: int = 0,
):
    """A cheap AnalyticLineModel (test double) and an instrument grid inside its range (for tests, --quick)."""
    from .. import enable_float64

    enable_float64()  # the models' arrays are made in float64
    from ..emulators.analytic import AnalyticLineModel
    from ..labels import default_label_space

    full = default_label_space()
    space = LabelSpace(tuple(full[n] for n in names))
    model = AnalyticLineModel(space, wavelength_range, None, n_lines=n_lines, seed=seed)
    margin = 1 + 80.0 / SPEED_OF_LIGHT_KMS  # leave room for |rv| up to ~80 km/s
    wl = log_uniform_grid(wavelength_range[0] * margin, wavelength_range[1] / margin, resolution)
    return model, wl


def benchmark_setup(emulator: str | None, *, quick: bool, truth: str = "synth", resolution: float = 28000.0):
    """(fit_model, truth_model, wavelength, resolution, description) for the inference benchmarks.

    ``quick``: the analytic test model is both truth and fit model (checks the machinery in seconds).
    Otherwise ``emulator`` is loaded (``load_emulator``) and the truth model is the synthesizer
    (``truth="synth"``, mocks not made by the emulator) or the emulator itself (``truth="emulator"``).
    """
    from .. import enable_float64

    enable_float64()  # the models' arrays are made in float64
    if quick:
        model, wl = analytic_setup(resolution=resolution)
        return (
            model,
            model,
            wl,
            resolution,
            {"fit_model": "AnalyticLineModel (quick)", "truth_model": "AnalyticLineModel (quick)"},
        )
    from ..emulators.registry import load_emulator

    fit_model = load_emulator(emulator or "default")
    if truth == "emulator":
        wl = observed_wavelength(fit_model, resolution)
        return fit_model, fit_model, wl, resolution, {"fit_model": str(emulator), "truth_model": "emulator"}
    truth_model, wl = synthesizer_truth(fit_model, resolution)
    return (
        fit_model,
        truth_model,
        wl,
        resolution,
        {"fit_model": str(emulator), "truth_model": "SynthesizerModel(realistic)"},
    )


def observed_wavelength(fit_model, resolution: float, margin_kms: float = 120.0) -> np.ndarray:
    """Mock pixels: the model's range less ``margin_kms`` at each end (room for a Doppler shift), 2.5 px per resel."""
    wmin, wmax = fit_model.wavelength_range
    margin = 1 + margin_kms / SPEED_OF_LIGHT_KMS
    return log_uniform_grid(wmin * margin, wmax / margin, resolution)


def synthesizer_truth(fit_model, resolution: float = 28000.0):
    """(realistic-fidelity SynthesizerModel over ``fit_model``'s range at ``resolution``, mock pixels)."""
    try:
        from ..synth import SynthesizerModel
    except ImportError as exc:  # pragma: no cover - depends on the synthesizer being present
        raise RuntimeError(f"the synthesizer is not available ({exc}); run with --truth emulator or --quick") from None
    from ..wavelength import Window

    wmin, wmax = fit_model.wavelength_range
    window = Window(
        "emulator-range", float(wmin), float(wmax), resolution, 2.5, "the fitted emulator's wavelength range"
    )
    return SynthesizerModel(fit_model.label_space, window, "realistic"), observed_wavelength(fit_model, resolution)
