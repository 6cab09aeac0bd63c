"""What a fit of several arms inherits from each arm: emulator systematics, physics label floor, fidelity.

A fit through one emulator over one window reads that emulator's label-space systematics
(``metadata["label_systematics"]``), its stored Cramér–Rao fidelity (``metadata["fidelity"]``) and the physics
label floor measured on the observed Sun in that window (``data/physics_error.json``) as they are. A spectrum of
several arms (GALAH green by ``default-payne-green``, red by ``default-payne``, ...) has each of these per arm,
measured with that arm alone, and the fit's estimate is an information-weighted mix of what each arm says. This
module carries them to the combination with each arm's Gauss–Newton information ``F_k = J_kᵀJ_k`` (``J_k`` =
∂ρ_k/∂z, the arm's whitened residuals, its continuum integrated out) at the Laplace mode:

- **emulator systematics**: separately trained networks on different pixels err independently; a shift
  ``e_k`` of arm ``k``'s own estimate moves the combined one by ``Σ Σ_k F_k e_k``, so the combined systematic
  covariance is ``C = Σ (Σ_k F_k S_k F_k) Σ`` with ``S_k = diag(sd_k²)`` the arm's stored systematics (nuisances
  0) and ``Σ = (Σ_k F_k + P)⁻¹`` built from the same information (``P`` the prior's curvature in z): the weights
  ``Σ F_k`` then sum to at most the identity. One arm and a flat prior give ``C = S``: the single-emulator value.
  (Not the Laplace covariance: its curvature adds the likelihood's log-determinant terms, whose negative curvature
  can nearly cancel the information in a direction, along vmacro–vsini of a five-arm Sun at S/N 200 precision
  0.019 where the arms' information is 13; ``Σ`` enters twice, so that noise seed reported a Teff floor of 111 K
  where the others had 12 K.)
- **physics label floor**: the arms share the atmosphere, the line-formation approximations and the abundance
  scale, so their offsets on the observed Sun are not assumed to cancel: per label the information-weighted
  mean of the arms' floors (``Σ_k F_k,ii floor_k,i / Σ_k F_k,ii``), between the smallest and largest arm's.
- **fidelity**: ``stellarinf fidelity`` stores, per reference star, the emulator's and the synthesizer's Fisher
  matrices of the arm alone (continuum marginalised). The combination's ratio is the marginal bounds of the
  summed pairs (each arm's pair scaled to that arm's information in this fit) at the reference star nearest the
  best fit: the arms' near-degeneracies are broken in the sum as they are in the fit (GALAH green alone
  over-claims Teff 0.59×; with red's Hα it does not). Emulators stored before the matrices were: the
  information-weighted mean of the arms' r² (cautious). ``benchmarks/arm_fidelity.py`` measures both against the
  synthesizer's combined bounds away from the reference stars.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..emulator_fidelity import OVER_CLAIM, nearest_reference_star
from ..emulator_fidelity import fit_fidelity_document as fidelity_document
from .density import Problem

__all__ = [
    "ArmTerms",
    "arm_information",
    "combined_fidelity",
    "combined_floor",
    "combined_systematics",
    "distinct_emulators",
    "fit_terms",
    "information_covariance",
]


def distinct_emulators(obs_model) -> tuple:
    """The different emulators of a multi-arm model, in arm order (one entry for a single-emulator model)."""
    models = getattr(obs_model, "emulators", None)
    if models is None:
        return (getattr(obs_model, "emulator", None),)
    out: list = []
    for m in models:
        if not any(m is o for o in out):
            out.append(m)
    return tuple(out)


@eqx.filter_jit
def arm_information(problem: Problem, z: jax.Array) -> jax.Array:
    """(n_arms, n_free, n_free): each arm's Gauss–Newton information ``J_kᵀJ_k`` in unconstrained ``z``."""
    om = problem.obs_model
    eye = jnp.eye(z.shape[-1], dtype=z.dtype)

    def info(i):
        def rho(v):
            return om.arms[i].likelihood_terms(om.arm_params(problem.constrain(v), i))[0]

        j = jax.vmap(lambda t: jax.jvp(rho, (z,), (t,))[1], out_axes=1)(eye)
        return j.T @ j

    return jnp.stack([info(i) for i in range(om.n_arms)])


def _dx_dz(problem: Problem, z: jax.Array) -> np.ndarray:
    """∂x_i/∂z_i at ``z`` (the transforms act per parameter)."""
    jac = jax.jacfwd(lambda v: problem.to_vector(problem.constrain(v)))(z)
    return np.abs(np.diag(np.asarray(jac, dtype=np.float64)))


def combined_systematics(
    information: np.ndarray, cov_z: np.ndarray, dx_dz: np.ndarray, names, arm_sd: list[dict[str, float]]
) -> dict[str, float]:
    """Combined label systematics (sd per parameter in physical units) from each arm's information ``F_k``
    (in z), the covariance ``cov_z`` they give (:func:`information_covariance`) and each arm's stored sd (see the
    module doc)."""
    mix = np.zeros_like(cov_z)
    for f, sd in zip(information, arm_sd):
        s_z = np.array([sd.get(n, 0.0) for n in names], dtype=np.float64) / np.maximum(dx_dz, 1e-300)
        mix += (f * s_z**2) @ f
    cov = cov_z @ mix @ cov_z
    measured = {n for sd in arm_sd for n in sd}
    return {n: float(np.sqrt(max(cov[i, i], 0.0)) * dx_dz[i]) for i, n in enumerate(names) if n in measured}


def information_covariance(problem: Problem, z: jax.Array, information: np.ndarray) -> np.ndarray:
    """``(Σ_k F_k + P)⁻¹`` in z: the covariance the arms' information ``F_k`` (n_arms, n_free, n_free) and the
    prior give at ``z``, ``P`` the curvature of the log prior and the transforms' Jacobian there (floored at 0).
    A direction neither the data nor the prior constrain gets 0 (pseudo-inverse): no systematic reaches it."""
    prior = jax.hessian(lambda v: problem.log_prior(v) + problem.log_jacobian(v))(z)
    p = -np.asarray(prior, dtype=np.float64)
    w, v = np.linalg.eigh(0.5 * (p + p.T))
    precision = np.sum(information, axis=0) + (v * np.maximum(w, 0.0)) @ v.T
    return np.linalg.pinv(0.5 * (precision + precision.T), hermitian=True)


def _inverse(f: np.ndarray) -> np.ndarray:
    """F⁻¹ of a Fisher matrix whose parameters differ in scale by many orders (K, dex, km/s): inverted scaled."""
    d = np.sqrt(np.maximum(np.diag(f), 1e-300))
    return np.linalg.inv(f / np.outer(d, d)) / np.outer(d, d)


def combined_fidelity(
    information: np.ndarray, names, arm_stars: list[dict | None], *, threshold: float = OVER_CLAIM
) -> dict[str, float]:
    """Per label, the combination's marginal Cramér–Rao ratio emulator/synthesizer.

    ``information``: each arm's information in this fit in *physical* units (n_arms, n_free, n_free);
    ``arm_stars``: per arm the stored reference star nearest the fit (its ``ratio`` and, measured since the
    twenty-first session, ``fisher``: the emulator's and synthesizer's matrices there), None for an arm whose
    emulator stores none (taken as exact). With every arm's matrices: each arm's pair scaled to that arm's
    information in this fit (S/N, pixels), summed over the arms, and the marginal bounds compared, on the
    parameters both the fit and the stored matrices have. Without: the information-weighted mean of the arms'
    r² (``Σ_k F_k,ii r_k,i² / Σ_k F_k,ii``), cautious since single-arm ratios carry that arm's degeneracies."""
    names = list(names)
    known = {n for st in arm_stars if st for n, v in st.get("ratio", {}).items() if v is not None}
    if all(st is None or st.get("fisher") for st in arm_stars) and any(arm_stars):
        return _matrix_fidelity(information, names, arm_stars, known)
    out = {}
    for i, n in enumerate(names):
        if n not in known:
            continue
        w = np.array([float(f[i, i]) for f in information])
        stored = [(st or {}).get("ratio", {}).get(n) for st in arm_stars]
        r = np.array([1.0 if v is None else float(v) for v in stored])
        if w.sum() > 0:
            out[n] = round(float(np.sqrt(np.sum(w * r**2) / np.sum(w))), 4)
    return out


def _matrix_fidelity(information: np.ndarray, names: list[str], arm_stars: list[dict | None], known) -> dict:
    shared = [n for n in names if all(st is None or n in st["fisher"]["names"] for st in arm_stars)]
    idx = [names.index(n) for n in shared]
    emu = np.zeros((len(shared), len(shared)))
    syn = np.zeros_like(emu)
    for f, st in zip(information, arm_stars):
        fit = f[np.ix_(idx, idx)]
        if st is None:
            emu, syn = emu + fit, syn + fit
            continue
        pos = [st["fisher"]["names"].index(n) for n in shared]
        e = np.asarray(st["fisher"]["emulator"], dtype=np.float64)[np.ix_(pos, pos)]
        sy = np.asarray(st["fisher"]["synthesizer"], dtype=np.float64)[np.ix_(pos, pos)]
        # the stored pair was made at S/N 100 on the emulator's whole window: bring it to this fit's information
        both = (np.diag(fit) > 0) & (np.diag(e) > 0)
        scale = float(np.median(np.diag(fit)[both] / np.diag(e)[both])) if both.any() else 0.0
        emu, syn = emu + scale * e, syn + scale * sy
    var_e, var_s = np.diag(_inverse(emu)), np.diag(_inverse(syn))
    return {
        n: round(float(np.sqrt(var_e[j] / var_s[j])), 4)
        for j, n in enumerate(shared)
        if n in known and var_s[j] > 0 and var_e[j] > 0
    }


def combined_floor(information: np.ndarray, names, arm_floors: list[dict[str, float]]) -> dict[str, float]:
    """Per label, the information-weighted mean of the arms' physics label floors (weights ``F_k,ii``).

    Not averaged down as independent errors: the arms share the atmosphere, the line-formation approximations
    and the abundance scale, so their physics offsets on the observed Sun need not cancel."""
    out = {}
    for i, n in enumerate(names):
        pairs = [(float(f[i, i]), fl[n]) for f, fl in zip(information, arm_floors) if n in fl]
        w = sum(p[0] for p in pairs)
        if pairs and w > 0:
            out[n] = float(sum(p[0] * p[1] for p in pairs) / w)
    return out


@dataclasses.dataclass(frozen=True)
class ArmTerms:
    """What a fit records from its emulators and the physics: label systematics (sd per parameter) of the
    emulator(s), the physics label floor (``None``: the whole spectrum's, as one window) and the fidelity
    document (``None``: nothing stored)."""

    emulator_sd: dict[str, float]
    physics_sd: dict[str, float] | None
    fidelity: dict | None


def physics_error_on(om) -> bool:
    """Whether an observation model's likelihood carries the physics error (so its label floor is reported)."""
    settings = getattr(om, "physics_error_settings", (0.0, 0.0))
    return any(v > 0 for v in settings[:2]) or (len(settings) > 2 and bool(settings[2]))


def star_parameters(problem: Problem, best: Mapping[str, float]) -> dict[str, float]:
    """The star's parameters: the held (scalar) ones of ``problem`` and the fitted ``best``."""
    out = {}
    for k, v in problem.fixed.items():
        a = np.asarray(v)
        if a.ndim == 0:
            out[k] = float(a)
    out.update({k: float(v) for k, v in best.items()})
    return out


def fit_terms(problem: Problem, laplace, best: dict[str, float]) -> ArmTerms:
    """The emulator systematics, physics label floor and fidelity document a fit records: one emulator's stored
    values, or, for a spectrum of several arms, each arm's combined (module doc) at the Laplace mode.
    ``best``: the best-fit parameters (the reference star nearest them is used)."""
    from ..observe.physics_error import physics_error_for
    from .results import label_systematics_of

    om = problem.obs_model
    models = distinct_emulators(om)
    arms = getattr(om, "arms", None)
    at = star_parameters(problem, best)  # label-dependent systematics are read at the star's parameters
    single = (
        ArmTerms(label_systematics_of(models[0], at), None, fidelity_document(models[0])) if len(models) == 1 else None
    )
    if arms is None or len(arms) < 2 or laplace is None:
        return single or ArmTerms({}, None, None)
    arm_models = list(om.emulators)
    arm_sd = [label_systematics_of(m, at) for m in arm_models]
    bounds = problem.bounds()
    arm_stars = [nearest_reference_star(fidelity_document(m), best, bounds) for m in arm_models]
    physics = physics_error_on(om)
    if not physics and (single is not None or (not any(arm_sd) and not any(arm_stars))):
        return single or ArmTerms({}, None, None)  # nothing to combine
    z = jnp.asarray(laplace.mean_z)
    info = np.asarray(arm_information(problem, z), dtype=np.float64)
    names = list(problem.names)
    physics_sd = None
    if physics:
        floors = [
            physics_error_for(float(np.min(a.wavelength)), float(np.max(a.wavelength)), model=m)[1]
            for a, m in zip(arms, arm_models)
        ]
        physics_sd = combined_floor(info, names, floors)
    if single is not None:
        return dataclasses.replace(single, physics_sd=physics_sd)
    dx_dz = _dx_dz(problem, z)
    sd = combined_systematics(info, information_covariance(problem, z, info), dx_dz, names, arm_sd)
    ratios = combined_fidelity(info / np.outer(dx_dz, dx_dz), names, arm_stars)
    doc = None
    if ratios:
        doc = {
            "threshold": OVER_CLAIM,
            "stars": [
                {
                    "name": "arms combined (information-weighted; inference.arm_combination)",
                    "labels": {k: float(best[k]) for k in ("teff", "logg", "feh") if k in best},
                    "ratio": ratios,
                }
            ],
        }
    return ArmTerms(sd, physics_sd, doc)
