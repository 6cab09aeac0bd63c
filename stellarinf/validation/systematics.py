"""Emulator systematics in label space: how far the emulator's best fit lands from the truth on
*noiseless* spectra made by the synthesizer, measured on independent calibration stars.

Why: at high S/N the posterior width shrinks like 1/S/N, but the emulator's own error does not average
down: its residual against the synthesizer is star-specific (only part of it is the common correlated
pattern the error modes absorb), and weakly constrained parameters (v sin i below the resolution
element, weak lines such as Li) absorb it. The fitted posterior is the right answer *for the emulator's
spectrum*; the scatter measured here is what separates that from the truth. The summary table reports
it per label as ``sd_sys`` and combines it with the posterior sd in quadrature (``sd_total``), the way
survey pipelines quote a systematic floor.

Procedure (:func:`measure_label_systematics`): for each calibration star draw labels inside the box and
an RV and v sin i, make the synthesizer's noiseless spectrum through the same observation pipeline, set
σ = 1/S/N (the weighting a real fit would use), and find the MAP from the truth with the emulator.
``sd_sys`` is the root-mean-square of (MAP − truth) over the stars.

The result is stored as data in the emulator's model document (``metadata["label_systematics"]``, written by
``stellarinf error-model --systematics N``); reporting (:func:`stellarinf.inference.results.label_systematics_of`)
reads the stored numbers and never imports this module.
"""

from __future__ import annotations

import dataclasses
import warnings

import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ..inference.density import Problem
from ..inference.map import find_map
from ..io.spectrum import Spectrum
from .mocks import noiseless_flux, random_truth

__all__ = ["SystematicsResult", "measure_label_systematics"]


@dataclasses.dataclass
class SystematicsResult:
    names: tuple[str, ...]
    bias: np.ndarray  # (n_stars, n_names) MAP − truth
    truths: np.ndarray  # (n_stars, n_names)
    snr: float

    @property
    def rms(self) -> dict[str, float]:
        return {n: float(np.sqrt(np.mean(self.bias[:, i] ** 2))) for i, n in enumerate(self.names)}

    def to_json(self) -> dict:
        return {
            "sd": {k: round(v, 6) for k, v in self.rms.items()},
            "median_abs": {n: round(float(np.median(np.abs(self.bias[:, i]))), 6) for i, n in enumerate(self.names)},
            "snr": self.snr,
            "n_stars": int(self.bias.shape[0]),
            "statistic": "rms of (MAP - truth) on noiseless synthesizer spectra, sigma = 1/snr",
        }


def measure_label_systematics(
    emulator,
    truth_model,
    wavelength: np.ndarray,
    resolution: float,
    *,
    n_stars: int = 100,
    snr: float = 100.0,
    seed: int = 0,
    rv_max: float = 60.0,
    vsini_range: tuple[float, float] = (2.0, 15.0),
    obs_kwargs: dict | None = None,
    progress: bool = False,
) -> SystematicsResult:
    """Fit ``n_stars`` noiseless ``truth_model`` spectra with ``emulator`` (MAP from the truth) and return
    the label offsets. ``obs_kwargs`` go to the fitting ObservationModel (defaults: marginalised
    degree-1 continuum, vmacro fixed at 0, RV bound 100 km/s, v sin i bound 30 km/s)."""
    from ..observe.model import ObservationModel

    kw = dict(
        rv_max=100.0,
        vsini_max=30.0,
        vmacro_max=10.0,
        fixed={"vmacro": 0.0},
        continuum_degree=1,
        continuum="marginalise",
    )
    kw.update(obs_kwargs or {})
    rng = np.random.default_rng(seed)
    names, biases, truths = None, [], []
    for _ in tqdm(range(n_stars), desc="systematics", unit="star", disable=not progress, leave=False):
        truth = random_truth(emulator.label_space, rng, rv_max=rv_max, vsini_range=vsini_range)
        flux = noiseless_flux(truth_model, wavelength, truth, resolution)
        spec = Spectrum(wavelength, flux, np.full_like(flux, 1.0 / snr), resolution=resolution)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            problem = Problem.build(ObservationModel(emulator, spec, **kw))
        names = problem.names
        z_true = problem.unconstrain({n: truth[n] for n in names})
        fit = find_map(problem, starts=jnp.asarray(z_true)[None])
        biases.append([fit.params[n] - truth[n] for n in names])
        truths.append([truth[n] for n in names])
    return SystematicsResult(tuple(names), np.array(biases), np.array(truths), float(snr))
