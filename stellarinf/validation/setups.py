"""Ready-made (model, pixels) set-ups for tests and the inference benchmarks: the cheap analytic model on an
instrument grid or around an instrument window, or a trained emulator fitted to mocks made by the synthesizer (or by itself)."""

from __future__ import annotations

import numpy as np

from ..forecast import get_preset
from ..labels import LabelSpace, default_label_space
from ..wavelength import SPEED_OF_LIGHT_KMS, Window, log_uniform_grid
from .analytic import AnalyticLineModel


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
    full = default_label_space()
    space = LabelSpace(tuple(full[n] for n in names))
    model = AnalyticLineModel(space, wavelength_range, None, n_lines=n_lines, seed=seed)
    margin = 1 + 80.0 / SPEED_OF_LIGHT_KMS  # leave room for |rv| up to ~80 km/s
    wl = log_uniform_grid(wavelength_range[0] * margin, wavelength_range[1] / margin, resolution)
    return model, wl


def benchmark_setup(emulator: str | None, *, quick: bool, truth: str = "synth", resolution: float | None = None):
    """(fit_model, truth_model, wavelength, resolution, description) for the inference benchmarks.

    ``quick``: the analytic test model is both truth and fit model (checks the machinery in seconds).
    Otherwise ``emulator`` is loaded (``load_emulator``) and the truth model is the synthesizer
    (``truth="synth"``, mocks not made by the emulator) or the emulator itself (``truth="emulator"``).
    ``resolution``: the mocks' resolving power (default: the emulator's own, e.g. 11,500 for a Gaia RVS model;
    28,000 for the analytic model).
    """
    from .. import enable_float64

    enable_float64()  # the models' arrays are made in float64
    if quick:
        resolution = resolution or 28000.0
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
    resolution = float(resolution or getattr(fit_model, "resolution", None) or 28000.0)
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
    """(realistic-fidelity SynthesizerModel over ``fit_model``'s range at ``resolution`` with the physics its
    training grid used (:func:`~stellarinf.physics_options.training_physics`), mock pixels)."""
    try:
        from ..synth import SynthesizerModel
    except ImportError as exc:  # pragma: no cover - depends on the synthesizer being present
        raise RuntimeError(f"the synthesizer is not available ({exc}); run with --truth emulator or --quick") from None

    wmin, wmax = fit_model.wavelength_range
    window = Window(
        "emulator-range", float(wmin), float(wmax), resolution, 2.5, "the fitted emulator's wavelength range"
    )
    from ..physics_options import training_physics

    truth = SynthesizerModel(fit_model.label_space, window, "realistic", **training_physics(fit_model))
    return truth, observed_wavelength(fit_model, resolution)


def analytic_model(window: str | Window = "galah-red", *, lines_per_100a: float = 16.0, seed: int = 0):
    """The cheap :class:`~stellarinf.validation.analytic.AnalyticLineModel` (default labels) around a window:
    a test double for forecasts, not physics."""
    from .. import enable_float64

    enable_float64()  # the model's arrays are made in float64
    w = get_preset(window)
    lo, hi = w.wmin - 15.0, w.wmax + 15.0
    n_lines = max(16, int(round(lines_per_100a * (hi - lo) / 100.0)))
    return AnalyticLineModel(default_label_space(), (lo, hi), None, n_lines=n_lines, seed=seed)
