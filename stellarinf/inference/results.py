"""Posterior → ArviZ ``InferenceData`` (netCDF) and the astropy summary ``Table`` with diagnostic flags.

InferenceData groups:
- ``posterior``: one variable per free parameter, named canonically (``teff``, ``logg``, ``rv``...);
- ``sample_stats``: ``lp`` and, for NUTS, ``diverging``, ``tree_depth``, ``n_steps``, ``energy``,
  ``acceptance_rate``;
- ``observed_data``: ``flux`` (dim ``pixel``); ``constant_data``: ``wavelength``, ``flux_error``, ``mask``;
- ``posterior_predictive``: ``model_flux`` (noise-free) and ``flux`` (with noise) for a thinned set of draws.
Attributes (JSON strings where structured) record the method, priors, bounds, fixed values, the best
fit and its χ², timings.

Flags (``summary_table``): per parameter ``rhat`` (R-hat > 1.01), ``ess`` (bulk ESS < 100),
``edge_low``/``edge_high`` (> 5% of draws within 1% of the box edge, stellar labels and RV only);
global ``divergences`` (any divergent transition), ``chi2`` (reduced χ² of the best fit far from 1),
``hessian`` (Laplace: curvature not positive definite), ``one_chain`` (only one chain: no R-hat),
``pareto_k`` (laplace-is: the importance weights' tail is too heavy to trust; use an MCMC sampler).
For laplace-is the ESS columns are capped at the importance sampling ESS (resampled draws repeat).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import arviz as az
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from astropy.table import Table

from ..emulator_fidelity import fit_fidelity_flags
from ..errors import StellarinfError
from ..io.atomic import atomic_path
from ..labels import NUISANCE_UNITS, STELLAR_UNITS, element_of
from .arm_combination import fit_terms, physics_error_on
from .density import Problem
from .lanes import lane_batch_size
from .samplers import Posterior

RHAT_MAX = 1.01
ESS_MIN = 100
EDGE_FRACTION = 0.05  # flag when more than this fraction of draws ...
EDGE_WIDTH = 0.01  # ... lies within this fraction of the box span from an edge
_EDGE_EXEMPT = ("vsini", "vmacro", "ln_jitter")
# v sin i and v macro are judged for information like the labels: where the resolution cannot split them, each alone
# spreads over its box (the observed Sun at R 28,000 came out v sin i 21.8 ± 14.7 km/s unflagged); the jitter's
# log-scale prior is not a width to compare against
_NO_INFORMATION_EXEMPT = ("ln_jitter",)
NO_INFORMATION = 0.8  # flag a label whose posterior sd is at least this fraction of its prior sd

# What each flag means and what to do about it, in the words the summary prints (global and per-label flags)
FLAG_ADVICE = {
    "chi2": "the reduced chi2 is far from 1: the model does not describe the data within the stated errors "
    "(errors mis-scaled, wrong resolution, a star outside the emulator's physics, or data problems); "
    "do not trust the sd until that is understood: check the fit plot (--plots), the errors (--snr), --resolution",
    "edge_low": "the posterior piles up at the lower edge of the training box: the star may lie outside it, "
    "or the data cannot constrain the label; the true value may be below the box",
    "edge_high": "the posterior piles up at the upper edge of the training box: the star may lie outside it, "
    "or the data cannot constrain the label; the true value may be above the box",
    "no_information": "the posterior is about as wide as the prior: the spectrum carries almost no information "
    "on this label; the number is the prior, not a measurement",
    "traded": "the spectrum trades v sin i for v macro (at its resolution both broaden a line alike): each alone is "
    "loosely measured, their combination well (the line on it above; `vbroad` in a catalogue); a laplace or map fit "
    "draws the two round their ring where it is longer than the Gaussian at its mode (the line above says where each may "
    "lie), calibrated as laplace-is on slow-rotator mocks",
    "rhat": "the chains disagree (R-hat > 1.01): run longer (--draws) or check for several modes; on v sin i and v "
    "macro flagged traded alone, while their combination converged, it is their split, which the spectrum does not "
    "measure: not a reason to distrust the rest",
    "vbroad_rhat": "the chains disagree on the combined broadening √(v sin i² + v macro²) (R-hat > 1.01): run longer "
    "(--draws)",
    "ess": "too few effective draws for stable quantiles: run longer (--draws)",
    "divergences": "the sampler hit divergences: the posterior has regions it cannot explore; the result may be biased",
    "hessian": "the curvature at the best fit is not positive definite (a direction the data leave flat, regularised): "
    "the Laplace widths are unreliable, of that direction and of the labels correlated with it; fit with --sampler "
    "nuts, or hold the loosely constrained labels fixed (--fix NAME=VALUE) or give them a prior (--prior NAME=MEAN+-SD)",
    "pareto_k": "the importance weights are unreliable (the posterior is far from its Laplace approximation); "
    "do not use these numbers: fit with --sampler nuts",
    "one_chain": "one chain cannot show convergence: use --chains 4",
    "fidelity": "the emulator over-claims on this label near this star: its Cramér–Rao bound is below 0.8× the "
    "synthesizer's (stored by `stellarinf fidelity`), i.e. its spectrum reacts more to the label than the physics does; "
    "the sd may be too small and the value biased: check with --emulator default-payne or a prior",
    "air_vacuum": "the fitted RV sits at the shift an air spectrum read as vacuum (or the reverse) produces, about "
    "-83 km/s in the optical: the wavelength medium is probably wrong (the labels may be fine, the RV is not); "
    "check the medium recorded in the outputs and rerun with --medium air or --medium vacuum",
    "conservative": "the reduced chi2 is well below 1 while the residuals against the data's own errors are at least "
    "as large as its noise (plain reduced chi2 near 1, or above it on a real star): the model's error terms in the "
    "likelihood (the emulator's error table, the physics error) are larger than this star needs, so its sd are wider "
    "than the data allow (conservative, not wrong); expected for warm stars through the broad-domain models, whose "
    "error table is their box's average",
    "no_tio": "the star is cool enough for TiO bands to shape its spectrum (Teff below about 4780 K for a dwarf, "
    "4540 K for a giant of solar composition; warmer for metal- and oxygen-rich stars, cooler for metal-poor or "
    "carbon-rich ones) and the model's physics has no TiO: Teff, log g and abundances can be biased beyond the "
    "error bars; treat them as provisional",
}  # zero rotation/no jitter at the edge is physical


def unit_for(name: str) -> str:
    if name in STELLAR_UNITS:
        return STELLAR_UNITS[name]
    if name in NUISANCE_UNITS:
        return NUISANCE_UNITS[name]
    if element_of(name) is not None:
        return "dex"
    return ""


def is_continuum(name: str) -> bool:
    return name.startswith("cont")


# ---------------------------------------------------------------------------------------------
# access to the observation model (kept in one place: adapt here if its API changes)
# ---------------------------------------------------------------------------------------------
def predict(obs_model, params):
    """Model flux at the observed pixels."""
    fn = getattr(obs_model, "model_flux", None) or getattr(obs_model, "predict")
    return fn(params)


def observed_arrays(obs_model) -> dict[str, np.ndarray]:
    """wavelength, flux, flux_error, mask (True = used) of the observed spectrum."""
    wl = np.asarray(obs_model.wavelength, dtype=np.float64)
    weight = getattr(obs_model, "weight", None)
    mask = np.ones(wl.shape, dtype=bool) if weight is None else np.asarray(weight) > 0
    flux = np.where(mask, np.asarray(obs_model.flux, dtype=np.float64), np.nan)
    sigma = np.where(mask, np.asarray(obs_model.sigma, dtype=np.float64), np.nan)
    return {"wavelength": wl, "flux": flux, "flux_error": sigma, "mask": mask}


def _variance_of(obs_model):
    """The observation model's per-pixel variance function (noise, jitter and emulator error), or None."""
    return getattr(obs_model, "total_variance", None) or getattr(obs_model, "variance", None)


def total_sigma(obs_model, params) -> np.ndarray:
    """Per-pixel σ the likelihood uses (noise, jitter and emulator error in quadrature)."""
    var = _variance_of(obs_model)
    if var is not None:
        return np.sqrt(np.asarray(var(params)))
    return observed_arrays(obs_model)["flux_error"]


def label_systematics_of(model, at: Mapping[str, float] | None = None) -> dict[str, float]:
    """The emulator's label-space systematics stored with it, sd per parameter (``{}`` when it has none): the rms
    over the box, or, with ``at`` (a star's parameters) and a stored label-dependent model, its value there
    (:mod:`.label_systematics`). Measured by :func:`stellarinf.validation.systematics.measure_label_systematics`
    (``stellarinf systematics MODEL``); reporting only reads the stored numbers."""
    from .label_systematics import sd_at, systematics_document

    return sd_at(systematics_document(model), at)


def label_floor(
    obs_model, emulator_sd: Mapping[str, float] | None = None, physics_sd: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Label-space systematic sd per parameter: the emulator's (vs its synthesizer; ``emulator_sd`` when given,
    e.g. the combination of several arms' emulators, :mod:`.arm_combination`) and, when the fit carries the
    physics error, the physics' (the observed Sun's offsets, :mod:`stellarinf.observe.physics_error`: the
    measured window the spectrum overlaps most, or ``physics_sd`` when given, e.g. the arms' combination), in
    quadrature."""
    if emulator_sd is None:
        emulator_sd = label_systematics_of(getattr(obs_model, "emulator", None))
    out = dict(emulator_sd)
    if physics_error_on(obs_model):
        if physics_sd is None:
            from ..observe.physics_error import physics_error_for

            wl = np.asarray(obs_model.wavelength)
            physics_sd = physics_error_for(
                float(wl.min()), float(wl.max()), model=getattr(obs_model, "emulator", None)
            )[1]
        for n, v in physics_sd.items():
            out[n] = math.hypot(out.get(n, 0.0), v)
    return out


def model_at(obs_model, params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, tuple | None]:
    """(model flux, per-pixel total σ as :func:`total_sigma`, likelihood terms ``(ρ, norm)`` or None) at ``params``,
    from one compiled program (:func:`_model_at`). Called eagerly, the observation model runs op by op, each op
    compiled on its first call: the outlier test of a four-arm TransformerPayne fit took 15 s so, under 5 s compiled."""
    full = {k: jnp.asarray(v) for k, v in params.items()}
    model, variance, terms = _model_at(obs_model, full)
    sigma = observed_arrays(obs_model)["flux_error"] if variance is None else np.sqrt(np.asarray(variance))
    return np.asarray(model), sigma, terms


@eqx.filter_jit
def _model_at(obs_model, params):
    var = _variance_of(obs_model)
    terms = getattr(obs_model, "likelihood_terms", None)
    return predict(obs_model, params), None if var is None else var(params), None if terms is None else terms(params)


def fit_statistics(problem: Problem, params: Mapping[str, float]) -> dict[str, float]:
    """What the fit optimises beside the plain χ², at ``params``.

    - ``chi2_noise``: Σ ((flux − model)/σ)² with the data's own σ only (the plain χ²; continuum at its
      conditional best);
    - ``chi2_whitened``: |ρ|², the residual part of −2 ln L that the fit minimises (emulator and physics
      error, jitter, and the integrated-out continuum and error modes included);
    - ``neg2_log_likelihood``: −2 ln L, the whitened χ² plus the log-determinant terms.
    """
    om = problem.obs_model
    obs = observed_arrays(om)
    model, _, terms = model_at(om, {**problem.fixed, **params})
    m = obs["mask"] & np.isfinite(obs["flux"]) & (obs["flux_error"] > 0)
    out = {"chi2_noise": float(np.sum(((obs["flux"][m] - model[m]) / obs["flux_error"][m]) ** 2))}
    if terms is not None:
        rho, norm = terms
        out["chi2_whitened"] = float(jnp.sum(rho**2))
        out["neg2_log_likelihood"] = float(jnp.sum(rho**2) - 2.0 * norm)
    return out


def chi2_of(problem: Problem, params: Mapping[str, float]) -> tuple[float, int]:
    """χ² of a parameter set against the data (masked pixels excluded) and its degrees of freedom."""
    obs = observed_arrays(problem.obs_model)
    model, sig, _ = model_at(problem.obs_model, {**problem.fixed, **params})
    m = obs["mask"] & np.isfinite(obs["flux"]) & np.isfinite(sig) & (sig > 0)
    chi2 = float(np.sum(((obs["flux"][m] - model[m]) / sig[m]) ** 2))
    return chi2, int(m.sum()) - problem.n_free


# ---------------------------------------------------------------------------------------------
# InferenceData
# ---------------------------------------------------------------------------------------------
# the posterior predictive keeps at most about this many values per array (draws × pixels, all chains): the fit plot's
# median and 68 % band need ~100 draws, and a four-arm star's 10,853 pixels × 400 draws made a 63 MB file
PREDICTIVE_VALUES = 1_200_000


def predictive_draws(n_predictive: int, draws: int, chains: int, n_pix: int) -> int:
    """Posterior-predictive draws per chain: ``n_predictive``, at most the chain's draws, and fewer where
    ``chains × draws × n_pix`` would pass :data:`PREDICTIVE_VALUES` (never below 10, or the draws there are)."""
    budget = max(10, PREDICTIVE_VALUES // max(1, chains * n_pix))
    return max(1, min(n_predictive, draws, budget))


def to_inference_data(
    posterior: Posterior,
    problem: Problem,
    *,
    n_predictive: int = 100,
    seed: int = 0,
    attrs: Mapping | None = None,
) -> az.InferenceData:
    """Build the InferenceData of a :class:`Posterior` (see module doc for the groups)."""
    chains, draws = posterior.n_chains, posterior.n_draws
    obs = observed_arrays(problem.obs_model)
    n_pix = obs["wavelength"].size

    # best fit: the MAP if there is one, else the highest-posterior draw
    if posterior.init is not None:
        best = dict(posterior.init.map.params)
    else:
        lp = posterior.stats["lp"]
        c, d = np.unravel_index(int(np.nanargmax(lp)), lp.shape)
        best = {n: float(posterior.samples[n][c, d]) for n in posterior.names}
    chi2, dof = chi2_of(problem, best)
    terms = fit_terms(problem, posterior.init, best)  # emulator systematics, physics floor, fidelity (per arm)

    # posterior predictive on a thinned set of draws
    n_pp = predictive_draws(n_predictive, draws, chains, n_pix)
    idx = np.linspace(0, draws - 1, n_pp).round().astype(int)
    stack = {n: jnp.asarray(posterior.samples[n][:, idx].reshape(-1)) for n in posterior.names}
    model_flux = np.asarray(_predict_draws(problem.obs_model, problem.fixed, stack, min(16, chains * n_pp))).reshape(
        chains, n_pp, n_pix
    )
    rng = np.random.default_rng(seed)
    noisy = model_flux + rng.standard_normal(model_flux.shape) * obs["flux_error"]

    meta = {
        "method": posterior.method,
        "parameters": json.dumps(list(problem.names)),
        "units": json.dumps({n: unit_for(n) for n in problem.names}),
        "bounds": json.dumps(problem.bounds()),
        "priors": json.dumps({n: p.to_json() for n, p in zip(problem.names, problem.prior_specs)}, default=_json_float),
        "fixed": json.dumps({k: float(v) for k, v in problem.fixed.items()}),
        "best_fit": json.dumps(best),
        "chi2": chi2,
        "dof": dof,
        "chi2_reduced": chi2 / max(dof, 1),
        **fit_statistics(problem, best),
        "n_divergent": posterior.n_divergent,
        "n_gradient_evals": posterior.n_gradient_evals,
        "timings": json.dumps(posterior.timings),
        "hessian_ok": int(bool(posterior.init.hessian_ok)) if posterior.init is not None else -1,
        "map_starts_agreeing": posterior.init.map.n_starts_agreeing if posterior.init is not None else -1,
        # the emulator's label-space systematics (sd per parameter; {} when it has none): see label_systematics_of
        **{k: float(posterior.tuning[k]) for k in _IMPORTANCE_KEYS + RING_KEYS if k in posterior.tuning},
        "label_systematics": json.dumps(
            {
                n: v
                for n, v in label_floor(problem.obs_model, terms.emulator_sd, terms.physics_sd).items()
                if n in problem.names
            }
        ),
        "physics_error": json.dumps(getattr(problem.obs_model, "physics_error_settings", (0.0, 0.0))),
        # the emulator's stored Cramér–Rao fidelity per reference star (the summary's per-label `fidelity` flag);
        # arms with different emulators: their information-weighted combination (arm_combination)
        "emulator_fidelity": json.dumps(terms.fidelity),
    }
    meta.update(
        {
            k: (v if isinstance(v, (int, float, str)) else json.dumps(v, default=_json_float))
            for k, v in (attrs or {}).items()
        }
    )
    with warnings.catch_warnings():  # thinned predictive draws may be fewer than chains: fine
        warnings.simplefilter("ignore", UserWarning)
        idata = az.from_dict(
            posterior={n: posterior.samples[n] for n in posterior.names},
            sample_stats={k: v for k, v in posterior.stats.items()},
            posterior_predictive={"model_flux": model_flux, "flux": noisy},
            observed_data={"flux": obs["flux"]},
            constant_data={
                "wavelength": obs["wavelength"],
                "flux_error": obs["flux_error"],
                "mask": obs["mask"].astype(np.int8),
            },
            dims={
                "model_flux": ["pixel"],
                "flux": ["pixel"],
                "wavelength": ["pixel"],
                "flux_error": ["pixel"],
                "mask": ["pixel"],
            },
        )
    idata.posterior.attrs.update(meta)  # (az.from_dict does not keep attrs on every version)
    return idata


_IMPORTANCE_KEYS = ("pareto_k", "pareto_k_threshold", "importance_ess")
# what the Laplace draws' scan along the v sin i–v macro ring found (inference.ring.ring_draws): its idata attrs ->
# table meta keys (FITS cards of at most 8 characters)
_RING_META = {
    "ring_v": "RINGV",
    "ring_sd_deg": "RINGSD",
    "ring_laplace_sd_deg": "RINGLSD",
    "ring_replaced": "RINGREPL",
    "ring_vsini_lo": "RINGVSLO",
    "ring_vsini_hi": "RINGVSHI",
    "ring_vmacro_lo": "RINGVMLO",
    "ring_vmacro_hi": "RINGVMHI",
}
RING_KEYS = tuple(_RING_META)


@eqx.filter_jit
def _predict_draws(obs_model, fixed, stack, batch_size: int):
    """Model flux for a stack of parameter draws (compiled once per observation-model shape, not per call)."""
    return jax.lax.map(lambda p: predict(obs_model, {**fixed, **p}), stack, batch_size=lane_batch_size(batch_size))


def _json_float(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def write_inference_data(idata: az.InferenceData, path) -> None:
    """Write netCDF atomically (temporary file + rename)."""
    with atomic_path(path, suffix=".nc") as tmp:
        write_inference_data_to(idata, tmp)


def write_inference_data_to(idata: az.InferenceData, path) -> None:
    """Write netCDF to ``path`` as it is (the caller makes it atomic: a temporary of :func:`atomic_path` or
    :func:`~stellarinf.io.atomic.atomic_file_set`)."""
    idata.to_netcdf(str(path), engine="h5netcdf")


def read_inference_data(path) -> az.InferenceData:
    return az.from_netcdf(str(path), engine="h5netcdf")


# ---------------------------------------------------------------------------------------------
# summary table
# ---------------------------------------------------------------------------------------------
def _attr(idata, key, default=None):
    return idata.posterior.attrs.get(key, default)


def edge_fraction(draws: np.ndarray, lower: float, upper: float) -> tuple[float, float]:
    """Fractions of draws within EDGE_WIDTH of the span from the lower and the upper edge."""
    if not (math.isfinite(lower) and math.isfinite(upper)):
        return 0.0, 0.0
    w = EDGE_WIDTH * (upper - lower)
    d = np.asarray(draws).ravel()
    return float(np.mean(d <= lower + w)), float(np.mean(d >= upper - w))


def _prior_sd(prior: Mapping | None, lower: float, upper: float) -> float:
    """sd of a parameter's prior: the Gaussian's sigma, or a uniform box's width/√12 (nan if unbounded)."""
    if prior and prior.get("kind") == "gaussian":
        return float(prior.get("sigma", math.nan))
    lo = float(prior.get("lower", lower)) if prior else lower
    hi = float(prior.get("upper", upper)) if prior else upper
    return (hi - lo) / math.sqrt(12.0) if math.isfinite(lo) and math.isfinite(hi) else math.nan


def flag_advice(table: Table) -> list[str]:
    """One line per flag raised anywhere in ``table`` (global FLAGS or a label's flags): what it means and what to do."""
    raised: dict[str, list[str]] = {}
    for flag in filter(None, str(table.meta.get("FLAGS", "")).split(",")):
        raised.setdefault(flag, [])
    for row in table:
        for flag in filter(None, str(row["flags"]).split(",")):
            raised.setdefault(flag, []).append(str(row["name"]))
    return [
        f"{flag}{' (' + ', '.join(names) + ')' if names else ''}: {FLAG_ADVICE.get(flag, 'see the documentation')}"
        for flag, names in raised.items()
    ]


def summary_table(
    idata: az.InferenceData, truth: Mapping[str, float] | None = None, *, include_continuum: bool = False
) -> Table:
    """One row per parameter: mean, sd, p16, p50, p84, r_hat, ess_bulk, ess_tail, box, flags.

    When the emulator carries label-space systematics (:func:`label_systematics_of`) the table adds ``sd_sys``
    (0 where none was measured) and ``sd_total = √(sd² + sd_sys²)``. ``truth`` adds ``truth``,
    ``pull = (p50 − truth)/sd`` and, with systematics, ``pull_total`` (over ``sd_total``). Table ``meta``
    holds the method, χ², reduced χ², number of divergences and the global ``FLAGS``.
    """
    systematics = json.loads(_attr(idata, "label_systematics", "{}") or "{}")
    post = idata.posterior
    names = json.loads(_attr(idata, "parameters", "null") or "null") or list(post.data_vars)
    if not include_continuum:
        names = [n for n in names if not is_continuum(n)]
    bounds = json.loads(_attr(idata, "bounds", "{}"))
    priors = json.loads(_attr(idata, "priors", "{}") or "{}")
    n_chains = post.sizes["chain"]
    rhat = az.rhat(post, var_names=names) if n_chains > 1 else None
    ess_b = az.ess(post, var_names=names, method="bulk")
    ess_t = az.ess(post, var_names=names, method="tail")
    ess_cap = float(_attr(idata, "importance_ess", math.inf))
    p50s = {n: float(np.median(np.asarray(post[n]))) for n in names}
    over_claimed = fit_fidelity_flags(json.loads(_attr(idata, "emulator_fidelity", "null") or "null"), p50s, bounds)
    rows = []
    for n in names:
        x = np.asarray(post[n]).reshape(-1)
        p16, p50, p84 = np.percentile(x, [15.865, 50, 84.135])
        lo, hi = bounds.get(n, (-math.inf, math.inf))
        r = float(rhat[n]) if rhat is not None else math.nan
        flags = []
        if np.isfinite(r) and r > RHAT_MAX:
            flags.append("rhat")
        ess_bulk, ess_tail = min(float(ess_b[n]), ess_cap), min(float(ess_t[n]), ess_cap)
        if ess_bulk < ESS_MIN:
            flags.append("ess")
        prior_sd = _prior_sd(priors.get(n), lo, hi)
        if (
            n not in _NO_INFORMATION_EXEMPT
            and not is_continuum(n)
            and x.size > 1
            and math.isfinite(prior_sd)
            and x.std(ddof=1) >= NO_INFORMATION * prior_sd
        ):
            flags.append("no_information")
        if n not in _EDGE_EXEMPT and not is_continuum(n):
            f_lo, f_hi = edge_fraction(x, lo, hi)
            if f_lo > EDGE_FRACTION:
                flags.append("edge_low")
            if f_hi > EDGE_FRACTION:
                flags.append("edge_high")
        if n in over_claimed:
            flags.append("fidelity")
        row = {
            "name": n,
            "unit": unit_for(n),
            "mean": float(x.mean()),
            "sd": float(x.std(ddof=1)) if x.size > 1 else math.nan,
            "p16": p16,
            "p50": p50,
            "p84": p84,
            "r_hat": r,
            "ess_bulk": ess_bulk,
            "ess_tail": ess_tail,
            "lower": float(lo),
            "upper": float(hi),
            "flags": ",".join(flags),
        }
        if systematics:
            row["sd_sys"] = float(systematics.get(n, 0.0))
            row["sd_total"] = math.hypot(row["sd"], row["sd_sys"])
        if truth is not None:
            t = float(truth[n]) if n in truth else math.nan
            row["truth"] = t
            row["pull"] = (p50 - t) / row["sd"] if row["sd"] > 0 else math.nan
            if systematics:
                row["pull_total"] = (p50 - t) / row["sd_total"] if row["sd_total"] > 0 else math.nan
        rows.append(row)
    vbroad = combined_broadening(post, {r["name"]: r["flags"] for r in rows}, ring_scan_meta(idata))
    for row in rows:
        if vbroad and row["name"] in ("vsini", "vmacro"):
            row["flags"] = ",".join(filter(None, [row["flags"], "traded"]))
    table = Table(rows=rows, names=list(rows[0].keys()) if rows else None)
    for col in ("mean", "sd", "p16", "p50", "p84", "sd_sys", "sd_total"):
        if col in table.colnames:
            table[col].info.format = ".5g"
    for col in ("r_hat",):
        table[col].info.format = ".4f"
    for col in ("ess_bulk", "ess_tail"):
        table[col].info.format = ".0f"
    for col in ("pull", "pull_total"):
        if col in table.colnames:
            table[col].info.format = ".2f"
    table.meta.update(global_flags_meta(idata))
    table.meta.update(vbroad)
    if vbroad.get("VBROADRH", 0.0) > RHAT_MAX:  # the chains disagree on what the spectrum does measure
        table.meta["FLAGS"] = ",".join(filter(None, [str(table.meta.get("FLAGS", "")), "vbroad_rhat"]))
    return table


# v sin i and v macro correlated at least this strongly (negatively) in the draws: the spectrum measures their sum in
# quadrature and trades one for the other (the demo star: −0.91, each 3 ± 1.5 km/s, the combination 4.8 ± 0.3)
BROADENING_CORRELATION = -0.7


def combined_broadening(post, flags: Mapping[str, str], ring: Mapping[str, float] | None = None) -> dict:
    """Table meta ``VBROAD``, ``VBROADSD``, ``VBROAD16``, ``VBROAD84`` (km/s): the lines' combined rotational and
    macroturbulent broadening √(v sin i² + v macro²) from the draws, when both are fitted and the spectrum does not
    tell them apart: either flagged ``no_information``, or the two correlated below ``BROADENING_CORRELATION``
    (each alone lies along a ridge, a quarter ring in the two, and their combination is what the spectrum
    measures), or a Laplace fit's scan along that ring found it longer than the Gaussian (``ring``: the table meta
    of :func:`ring_scan_meta`, whose ``RINGVSLO``...``RINGVMHI`` ranges are added). Empty otherwise."""
    if not {"vsini", "vmacro"} <= set(post.data_vars):
        return {}
    vsini, vmacro = (np.asarray(post[n], float).reshape(-1) for n in ("vsini", "vmacro"))
    uninformative = any("no_information" in flags.get(n, "").split(",") for n in ("vsini", "vmacro"))
    traded = (
        vsini.size > 2
        and min(vsini.std(), vmacro.std()) > 0
        and np.corrcoef(vsini, vmacro)[0, 1] <= BROADENING_CORRELATION
    )
    on_ring = bool((ring or {}).get("RINGREPL", 0))
    if not (uninformative or traded or on_ring):
        return {}
    chains = np.hypot(np.asarray(post["vsini"], float), np.asarray(post["vmacro"], float))  # (chain, draw)
    v = chains.reshape(-1)
    p16, p50, p84 = np.percentile(v, [15.865, 50, 84.135])
    return {
        "VBROAD": float(p50),
        "VBROADSD": float(v.std(ddof=1)) if v.size > 1 else math.nan,
        "VBROAD16": float(p16),
        "VBROAD84": float(p84),
        "VBROADRH": float(az.rhat(chains)) if chains.ndim == 2 and chains.shape[0] > 1 else math.nan,
        **(dict(ring) if on_ring else {}),
    }


def ring_scan_meta(idata) -> dict:
    """What a Laplace fit's scan along the v sin i–v macro ring found (:func:`.ring.ring_draws`), as table meta:
    the combination ``RINGV`` (km/s) at the mode, the angle's sd along the ring ``RINGSD`` and in the Gaussian's
    draws ``RINGLSD`` (degrees), ``RINGREPL`` (1: the draws were moved onto the ring) and each parameter's range
    where the log density is within 2 of its best on the ring; empty when no scan was made."""
    return {key: float(_attr(idata, name)) for name, key in _RING_META.items() if _attr(idata, name) is not None}


def unconverged_labels(label_flags: Mapping[str, str], global_flags: Iterable[str]) -> list[str]:
    """The quantities whose R-hat makes a fit unreliable: every label flagged ``rhat`` but a ``traded`` one (v sin i,
    v macro) while their combination converged, and ``"vbroad"`` (that combination) when it did not (global
    ``vbroad_rhat``). Why: on a ring NUTS creeps along the split between the two (the demo star: ESS ~300, R-hat
    1.01–1.02 for each, 2,400+ and 1.002 for the combination), and the split is what ``traded`` already says the
    spectrum does not measure; the combination, which it does, and every other label must converge."""
    ring_converged = "vbroad_rhat" not in set(global_flags)
    out = []
    for name, text in label_flags.items():
        words = str(text).split(",")
        if "rhat" in words and not ("traded" in words and ring_converged):
            out.append(str(name))
    return out + ([] if ring_converged else ["vbroad"])


def global_flags_meta(idata) -> dict:
    """Table meta: method, chi2, reduced chi2, number of divergences and the global FLAGS string."""
    n_div = int(_attr(idata, "n_divergent", 0))
    if "sample_stats" in idata.groups() and "diverging" in idata.sample_stats:
        n_div = int(np.asarray(idata.sample_stats["diverging"]).sum())
    chi2 = float(_attr(idata, "chi2", math.nan))
    dof = int(_attr(idata, "dof", 0))
    chi2r = chi2 / max(dof, 1)
    flags = []
    if n_div > 0:
        flags.append("divergences")
    tolerance = max(0.1, 5.0 * math.sqrt(2.0 / max(dof, 1)))
    if dof > 0 and abs(chi2r - 1.0) > tolerance:
        # too low, while the residuals against the data's own σ are at least as large as its noise (a real star's
        # physics mismatch makes them larger: the observed Sun's four arms, 1.8): the model's error terms (emulator,
        # physics) overstate this star's error, so its sd are wide, not wrong. Too low with the plain χ² low as well:
        # the data's own errors are overstated, which is worth the alarm
        noise_r = float(_attr(idata, "chi2_noise", math.nan)) / dof
        flags.append("conservative" if chi2r < 1.0 and noise_r >= 1.0 - tolerance else "chi2")
    if int(_attr(idata, "hessian_ok", -1)) == 0:
        flags.append("hessian")
    if idata.posterior.sizes["chain"] < 2 and _compares_chains(str(_attr(idata, "method", ""))):
        flags.append("one_chain")
    if float(_attr(idata, "pareto_k", -math.inf)) > float(_attr(idata, "pareto_k_threshold", 0.7)):
        flags.append("pareto_k")
    if _attr(idata, "medium_warning", ""):  # set by the fit pipeline (stellarinf.wavelength.rv_medium_warning)
        flags.append("air_vacuum")
    return {
        "METHOD": str(_attr(idata, "method", "")),
        "CHI2NOIS": float(_attr(idata, "chi2_noise", math.nan)),
        "CHI2WHIT": float(_attr(idata, "chi2_whitened", math.nan)),
        "CHI2": chi2,
        "DOF": dof,
        "CHI2RED": chi2r,
        "NDIVERG": n_div,
        "NCHAINS": int(idata.posterior.sizes["chain"]),
        "NDRAWS": int(idata.posterior.sizes["draw"]),
        "FLAGS": ",".join(flags),
    }


def _compares_chains(method: str) -> bool:
    """Whether ``method``'s chains are independent estimates (so one chain leaves R-hat undefined): read from
    the sampler registry; an unknown name (a file from another version) counts as chains."""
    from .samplers import SAMPLER_SPECS

    spec = SAMPLER_SPECS.get(method)
    return True if spec is None else spec.independent_chains


SD_SYS_EXPLAINED = (
    "sd_sys: the systematic error per label that the posterior sd does not contain: the emulator's error against "
    "its synthesizer (best fit − truth on noiseless synthesizer stars: at this star's labels where the emulator "
    "stores how it varies across the box, else one rms) and, for real spectra, the label floor of fits of the "
    "observed Sun through this model (the part of their offsets their sd does not explain), in quadrature; "
    "sd_total = √(sd² + sd_sys²) is the uncertainty to quote"
)


def footer_flags(table: Table) -> str:
    """Every flag raised, global (``meta["FLAGS"]``) and per label (as ``flag(label, ...)``), or ``none``: the
    footer agrees with the table's flags column."""
    out = [f for f in str(table.meta.get("FLAGS", "")).split(",") if f]
    per_label: dict[str, list[str]] = {}
    for row in table:
        for flag in filter(None, str(row["flags"]).split(",")):
            per_label.setdefault(flag, []).append(str(row["name"]))
    out += [f"{flag}({','.join(names)})" for flag, names in per_label.items()]
    return ",".join(out) or "none"


def format_summary(table: Table) -> str:
    """Printable summary: the table plus a line with χ², divergences and every flag (global and per label), what
    ``sd_sys`` is when the table has it, and what each raised flag means."""
    cols = [c for c in table.colnames if c not in ("lower", "upper")]
    lines = table[cols].pformat(max_lines=-1, max_width=-1)
    m = table.meta
    lines.append(
        f"method={m.get('METHOD')}  chains={m.get('NCHAINS')}  draws={m.get('NDRAWS')}  "
        f"chi2={m.get('CHI2', math.nan):.1f} (dof {m.get('DOF')}, reduced {m.get('CHI2RED', math.nan):.3f})  "
        f"divergences={m.get('NDIVERG')}  flags={footer_flags(table)}"
    )
    if "sd_sys" in table.colnames:
        lines.append(SD_SYS_EXPLAINED)
    if math.isfinite(m.get("CHI2WHIT", math.nan)):
        lines.append(
            f"best fit: chi2 against the data's sigma alone {m.get('CHI2NOIS', math.nan):.1f}; whitened chi2 the fit minimises "
            f"(model errors and the marginalised continuum and error modes included) {m.get('CHI2WHIT', math.nan):.1f}"
        )
    if "VBROAD" in m:
        lines.append(
            "v sin i and v macro: this spectrum does not tell them apart; the broadening they make together, "
            f"√(v sin i² + v macro²), is measured: {m['VBROAD']:.2f} ± {m['VBROADSD']:.2f} km/s (median ± sd). Quote "
            "it, or fix one of them (--fix vmacro=VALUE) to measure the other"
        )
        if m.get("RINGREPL"):
            lines.append(
                f"  along √(v sin i² + v macro²) = {m['RINGV']:.2f} km/s the log density stays within 2 of its best "
                f"for v sin i {m['RINGVSLO']:.1f}–{m['RINGVSHI']:.1f} and v macro {m['RINGVMLO']:.1f}–"
                f"{m['RINGVMHI']:.1f} km/s: their draws follow that ring, not the Gaussian at its mode (which "
                f"spread {m['RINGLSD']:.0f}° along it; the ring {m['RINGSD']:.0f}°)"
            )
    lines.extend(flag_advice(table))
    return "\n".join(lines)


def write_table(table: Table, path, format: str | None = None) -> None:
    """Write a summary table atomically (format from the extension: .fits, .csv, .ecsv)."""
    from pathlib import Path

    path = Path(path)
    fmt = format or {".fits": "fits", ".csv": "ascii.csv", ".ecsv": "ascii.ecsv"}.get(path.suffix.lower())
    if fmt is None:
        raise StellarinfError(f"cannot tell the table format of {path}; use a .fits, .csv or .ecsv name")
    with atomic_path(path, suffix=path.suffix) as tmp:
        write_table_to(table, tmp, fmt)


def write_table_to(table: Table, path, fmt: str) -> None:
    """Write ``table`` to ``path`` in astropy format ``fmt`` as it is (the caller makes it atomic). FITS keeps
    the scalar ``meta`` entries as header cards (keys cut to 8 characters; long strings continue)."""
    out = table.copy(copy_data=False)
    if fmt == "fits":
        out.meta = {
            k[:8].upper(): (
                _ascii(v) if isinstance(v, str) else v if not isinstance(v, float) or math.isfinite(v) else str(v)
            )
            for k, v in table.meta.items()
            if isinstance(v, (int, float, str))
        }
        for name in out.colnames:  # FITS text is ASCII (messages carry en dashes and Å)
            if out[name].dtype.kind == "U":
                out[name] = [_ascii(str(v)) for v in out[name]]
    out.write(str(path), format=fmt, overwrite=True)


_ASCII = str.maketrans(
    {"–": "-", "—": "-", "−": "-", "Å": "A", "×": "x", "≈": "~", "≤": "<=", "≥": ">=", "σ": "sigma", "…": "..."}
)


def _ascii(text: str) -> str:
    return text.translate(_ASCII).encode("ascii", "replace").decode("ascii")
