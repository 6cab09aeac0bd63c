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
``sd_sys`` is the root-mean-square of (MAP − truth) over the stars, and, from 40 stars on, a log-linear model of
how it varies with Teff, log g, [Fe/H] and ln v sin i (:func:`fit_label_dependence`; kept per parameter only where it
predicts held-out stars better than the rms), so a fit reports the systematic error at its own star's labels.

The result is stored as data in the emulator's model document (``metadata["label_systematics"]``, written by
``stellarinf systematics MODEL``, or by ``stellarinf error-model --systematics N`` with a new error model); reporting
(:func:`stellarinf.inference.results.label_systematics_of`) reads the stored numbers and never imports this module.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ..inference.density import Problem
from ..inference.map import find_map
from ..io.spectrum import Spectrum
from .mocks import noiseless_fluxes, random_truth

__all__ = ["SystematicsResult", "fit_label_dependence", "fit_log_sd", "measure_label_systematics"]

# What ln sd may depend on (inference.label_systematics): the stellar labels and the rotation (slow rotators have
# the narrowest lines, where the emulator's error is the largest share of the line)
FEATURES = (("teff", "linear"), ("logg", "linear"), ("feh", "linear"), ("vsini", "log"))
RIDGE = (
    1.0  # Gaussian prior of sd 1 on each slope of ln sd (features in [-1, 1]): at most a factor e across half the box
)
MIN_STARS_FOR_MODEL = 40  # fewer stars: the rms alone
N_FOLDS = 5


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
        """The stored document: the rms per parameter and, from :data:`MIN_STARS_FOR_MODEL` stars on, how it
        varies across the box (:func:`fit_label_dependence`)."""
        doc = {
            "sd": {k: round(v, 6) for k, v in self.rms.items()},
            "median_abs": {n: round(float(np.median(np.abs(self.bias[:, i]))), 6) for i, n in enumerate(self.names)},
            "snr": self.snr,
            "n_stars": int(self.bias.shape[0]),
            "statistic": "rms of (MAP - truth) on noiseless synthesizer stars, sigma = 1/snr",
        }
        if self.bias.shape[0] >= MIN_STARS_FOR_MODEL:
            doc["model"] = fit_label_dependence(self)
        return doc


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
    stars = [random_truth(emulator.label_space, rng, rv_max=rv_max, vsini_range=vsini_range) for _ in range(n_stars)]
    fluxes = noiseless_fluxes(truth_model, wavelength, stars, resolution)  # batched: ~10x faster than one by one
    names, biases, truths = None, [], []
    for truth, flux in tqdm(
        zip(stars, fluxes), total=n_stars, desc="systematics", unit="star", disable=not progress, leave=False
    ):
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


def fit_log_sd(phi: np.ndarray, bias: np.ndarray, ridge: float = RIDGE, max_iter: int = 100) -> np.ndarray:
    """Maximum a posteriori ``c`` of ``bias_i ~ N(0, exp(phi_i · c)²)`` with a Gaussian prior of variance 1/ridge
    on every coefficient but the first (``phi[:, 0]`` = 1). The negative log likelihood is convex in ``c``: Newton
    steps with backtracking, from the constant model (``c_0 = ln rms``)."""
    phi = np.asarray(phi, dtype=np.float64)
    bias = np.asarray(bias, dtype=np.float64)
    b2 = bias**2
    reg = np.full(phi.shape[1], float(ridge))
    reg[0] = 0.0

    def loss(c):
        return float(np.sum(_gaussian_nll(phi @ c, bias)) + 0.5 * np.sum(reg * c**2))

    c = constant_log_sd(bias, phi.shape[1])
    f = loss(c)
    for _ in range(max_iter):
        w = b2 * np.exp(-2.0 * (phi @ c))
        grad = phi.T @ (1.0 - w) + reg * c
        hess = 2.0 * (phi.T * w) @ phi + np.diag(reg)
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-8 and loss(c - t * step) > f:
            t *= 0.5
        c_new = c - t * step
        f_new = loss(c_new)
        done = np.max(np.abs(c_new - c)) < 1e-10 or f - f_new < 1e-12 * max(1.0, abs(f))
        c, f = c_new, f_new
        if done:
            break
    return c


def constant_log_sd(bias: np.ndarray, n_coef: int) -> np.ndarray:
    """The coefficients of the constant model, ``[ln rms, 0, ...]`` (its maximum likelihood)."""
    c = np.zeros(n_coef)
    c[0] = 0.5 * math.log(float(np.mean(np.asarray(bias, dtype=np.float64) ** 2)))
    return c


def _gaussian_nll(eta: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Per-star negative log likelihood of ``bias`` under N(0, exp(eta)²), without the constant."""
    return eta + 0.5 * bias**2 * np.exp(-2.0 * eta)


def fit_label_dependence(result: SystematicsResult, ridge: float = RIDGE, seed: int = 0) -> dict:
    """How each parameter's systematic sd varies across the box: ``ln sd = c · [1, z(x)]`` fitted to the calibration
    stars' offsets (:func:`fit_log_sd`), ``z`` the :data:`FEATURES` scaled to [−1, 1] over the stars' range.

    A parameter keeps the dependence only if it predicts stars it was not fitted on better than the rms does
    (``N_FOLDS``-fold cross-validation, mean log-likelihood gain per star > 0); else its model is the constant rms.
    Returns the ``model`` of the ``label_systematics`` document (read by :mod:`stellarinf.inference.label_systematics`).
    """
    from ..inference.label_systematics import feature_value, feature_vector

    names = list(result.names)
    features = []
    for name, transform in FEATURES:
        if name not in names:
            continue
        v = feature_value(transform, result.truths[:, names.index(name)])
        lo, hi = float(np.min(v)), float(np.max(v))
        if hi > lo:
            features.append(
                {"name": name, "transform": transform, "center": (lo + hi) / 2, "half_width": (hi - lo) / 2}
            )
    phi = np.stack([feature_vector(features, dict(zip(names, row))) for row in result.truths])
    folds = np.random.default_rng(seed).permutation(len(phi)) % N_FOLDS
    coef, gain, dependent, spread = {}, {}, [], {}
    for i, name in enumerate(names):
        b = result.bias[:, i]
        if not np.any(b != 0) or not np.all(np.isfinite(b)):
            continue  # held or exact: nothing to model
        g = []
        for k in range(N_FOLDS):
            train, test = folds != k, folds == k
            if not np.any(b[train] != 0):
                continue
            c = fit_log_sd(phi[train], b[train], ridge)
            const = constant_log_sd(b[train], phi.shape[1])
            g.append(np.sum(_gaussian_nll(phi[test] @ const, b[test]) - _gaussian_nll(phi[test] @ c, b[test])))
        gain[name] = round(float(np.sum(g) / len(b)), 5)
        if gain[name] > 0:
            c = fit_log_sd(phi, b, ridge)
            dependent.append(name)
        else:
            c = constant_log_sd(b, phi.shape[1])
        coef[name] = [round(float(x), 6) for x in c]
        sd = np.exp(phi @ c)
        spread[name] = [round(float(np.min(sd)), 6), round(float(np.max(sd)), 6)]
    return {
        "form": "ln sd = coef . [1, z]; z_j = clip((f_j - center_j) / half_width_j, -1, 1), f_j the feature (log: ln max(x, 1))",
        "features": features,
        "coef": coef,
        "ridge": ridge,
        "heldout_gain_nats_per_star": gain,
        "label_dependent": dependent,
        "sd_range_over_stars": spread,
        "n_stars": int(len(phi)),
    }
