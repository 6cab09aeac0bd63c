"""Fisher-matrix Cramér–Rao bounds for any differentiable forward model.

For Gaussian pixel noise with covariance C and a model m(θ) the Fisher matrix is

    F = Jᵀ C⁻¹ J + P,    J_ki = ∂m_k/∂θ_i  (``jax.jacfwd``, float64),

where P is the precision of independent Gaussian priors (diag 1/σ²). C is diagonal (``weights`` = 1/σ²), or
diagonal plus a low-rank correlated part, C = diag(σ²) + U Uᵀ with U (n_pix, k) e.g. an emulator's error modes
(``noise_modes``; :func:`correlated_information` evaluates it through the k × k matrix only). Bounds on θ_i:

- marginal (all other free parameters unknown):   sqrt((F⁻¹)_ii)
- conditional (all others known exactly):          1/sqrt(F_ii)

Nuisance parameters (rv, vsini, vmacro, resolution, continuum coefficients, ...) are *marginalised* by
keeping them in the ``free`` set and *held fixed* by leaving them out of it (equivalently
:meth:`FisherResult.fix`). A marginal bound can only grow when a nuisance is added.

Numerics: the matrix is analysed in its unit-free form S = D^-1/2 F D^-1/2 (D = diag F), whose condition
number is reported; exactly or numerically singular directions raise a
:class:`DegenerateFisherWarning` naming the labels involved, and the affected marginal bounds are
``inf`` — never NaN.

This module is pure math: no CLI, no plotting, no file system.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .errors import StellarinfError

ForwardFn = Callable[[dict[str, Any]], Float[Array, "n_pix"]]

# Relative eigenvalue of the unit-free Fisher matrix below which a direction counts as unconstrained.
DEFAULT_RCOND = 1e-12
# Condition number (unit-free) above which bounds are reported but flagged as ill-conditioned.
ILL_CONDITIONED = 1e8


def _float64() -> None:
    from . import enable_float64

    enable_float64()  # Fisher matrices need float64 (jacfwd through the forward model)


class FisherError(StellarinfError, ValueError):
    """Inputs to a Fisher-matrix computation are unusable (names, noise, non-finite derivatives)."""


class DegenerateFisherWarning(UserWarning):
    """Some combination of free parameters is not constrained by the data (and priors)."""


class IllConditionedFisherWarning(UserWarning):
    """The Fisher matrix is invertible but badly conditioned; bounds on the weak direction are fragile."""


# --------------------------------------------------------------------------------------------------
# noise model
# --------------------------------------------------------------------------------------------------
def noise_sigma(
    flux: Float[Any, "n_pix"],
    snr: float,
    mode: str = "constant",
    *,
    continuum: float | Float[Any, "n_pix"] = 1.0,
    emulator_error: Float[Any, "n_pix"] | None = None,
    min_flux_fraction: float = 1e-3,
) -> Float[np.ndarray, "n_pix"]:
    """Per-pixel 1σ noise for a spectrum observed at signal-to-noise ``snr`` (per pixel, at the continuum).

    - ``mode="constant"``: σ = continuum / snr (flat noise, the S/N quoted at the continuum);
    - ``mode="photon"``: σ = sqrt(flux · continuum) / snr, i.e. Poisson scaling normalised so that a pixel at
      the continuum level has S/N = snr exactly; flux below ``min_flux_fraction · continuum`` is floored
      there so saturated line cores do not get infinite weight.

    ``emulator_error`` (per-pixel 1σ model error, e.g. ``SpectrumModel.error``) is added in quadrature.
    Both modes scale exactly as 1/snr when no emulator error is given.
    """
    snr = float(snr)
    if not (math.isfinite(snr) and snr > 0):
        raise FisherError(f"S/N must be a positive finite number, got {snr}")
    f = np.asarray(flux, dtype=np.float64)
    c = np.broadcast_to(np.asarray(continuum, dtype=np.float64), f.shape)
    if f.ndim != 1 or not np.all(np.isfinite(f)):
        raise FisherError("flux must be a 1-D array of finite values to derive a noise model from it")
    if np.any(c <= 0) or not np.all(np.isfinite(c)):
        raise FisherError("the continuum level must be positive and finite")
    if mode == "constant":
        sigma = c / snr
    elif mode == "photon":
        sigma = np.sqrt(np.maximum(f, min_flux_fraction * c) * c) / snr
    else:
        raise FisherError(f"unknown noise mode {mode!r}; use 'constant' or 'photon'")
    if emulator_error is not None:
        sigma = add_in_quadrature(sigma, emulator_error)
    return sigma


def add_in_quadrature(sigma: Float[Any, "n_pix"], extra: Float[Any, "n_pix"]) -> Float[np.ndarray, "n_pix"]:
    """sqrt(σ² + ε²), e.g. observational noise and emulator error."""
    s = np.asarray(sigma, dtype=np.float64)
    e = np.broadcast_to(np.asarray(extra, dtype=np.float64), s.shape)
    if not np.all(np.isfinite(e)) or np.any(e < 0):
        raise FisherError("the extra error term (e.g. emulator error) must be finite and non-negative")
    return np.sqrt(s**2 + e**2)


def pixel_weights(
    sigma: Float[Any, "n_pix"] | float, n_pix: int, mask: Sequence[bool] | np.ndarray | None = None
) -> Float[np.ndarray, "n_pix"]:
    """Inverse variances 1/σ² (zero where ``mask`` is False or σ is +inf); validates σ."""
    s = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (n_pix,)).copy()
    good = np.ones(n_pix, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if good.shape != (n_pix,):
        raise FisherError(f"mask has shape {good.shape} but the model predicts {n_pix} pixels")
    good = good & ~np.isposinf(s)
    bad = good & ~(np.isfinite(s) & (s > 0))
    if np.any(bad):
        k = int(np.flatnonzero(bad)[0])
        raise FisherError(
            f"noise sigma must be positive and finite on every used pixel; pixel {k} has sigma={s[k]!r} "
            f"({int(bad.sum())} such pixels); mask them out or fix the noise model"
        )
    if not np.any(good):
        raise FisherError("no usable pixels: every pixel is masked (or has infinite sigma)")
    w = np.zeros(n_pix)
    w[good] = 1.0 / s[good] ** 2
    return w


def correlated_information(
    J: Float[np.ndarray, "n_pix n"], weights: Float[np.ndarray, "n_pix"], modes: Float[np.ndarray, "n_pix k"]
) -> Float[np.ndarray, "n n"]:
    """Jᵀ C⁻¹ J for the pixel covariance C = diag(1/weights) + U Uᵀ (``modes`` = U; weight 0 = masked pixel,
    whose rows of U then do not matter), in O(n_pix k²) without forming C. Modes confined to separate pixel ranges
    (each arm's emulator its own, :func:`mode_blocks`) are taken block by block: C is block-diagonal then, and the
    cost Σ n_b k_b² instead of n_pix (Σ k_b)²."""
    J = np.asarray(J, dtype=np.float64)
    U = np.asarray(modes, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if U.ndim != 2 or U.shape[0] != J.shape[0]:
        raise FisherError(f"noise modes of shape {U.shape} do not have one row per pixel ({J.shape[0]})")
    if not np.all(np.isfinite(U)):
        raise FisherError("the correlated noise modes have non-finite entries")
    rest = np.ones(J.shape[0], bool)
    F = np.zeros((J.shape[1], J.shape[1]))
    for rows, cols in mode_blocks(U):
        F += _block_information(J[rows], w[rows], U[rows, cols])
        rest[rows] = False
    F += (J[rest].T * w[rest]) @ J[rest]  # pixels no mode reaches: diagonal
    return 0.5 * (F + F.T)


def mode_blocks(U: Float[np.ndarray, "n_pix k"]) -> list[tuple[slice, np.ndarray]]:
    """The independent blocks of U Uᵀ: ``(rows, columns)`` pairs, each a contiguous pixel range and the modes that
    are non-zero only inside it (the ranges of modes whose non-zero rows overlap are merged)."""
    nz = U != 0.0
    used = np.flatnonzero(nz.any(axis=0))
    if used.size == 0:
        return []
    first = nz[:, used].argmax(axis=0)
    last = U.shape[0] - 1 - nz[::-1, used].argmax(axis=0)
    order = np.argsort(first, kind="stable")
    blocks: list[list] = []
    for i in order:
        if blocks and first[i] <= blocks[-1][1]:
            blocks[-1][1] = max(blocks[-1][1], last[i])
            blocks[-1][2].append(used[i])
        else:
            blocks.append([first[i], last[i], [used[i]]])
    return [(slice(int(lo), int(hi) + 1), np.asarray(sorted(cols))) for lo, hi, cols in blocks]


def _block_information(J: np.ndarray, w: np.ndarray, U: np.ndarray) -> np.ndarray:
    """Jᵀ (diag(1/w) + U Uᵀ)⁻¹ J of one block. Whitened by the diagonal (J̃ = W^½ J, Ũ = W^½ U = Q R),
    C̃⁻¹ = (I − Q Qᵀ) + Q (I + R Rᵀ)⁻¹ Qᵀ, so F = |J̃ − Q Qᵀ J̃|² + (Qᵀ J̃)ᵀ (I + R Rᵀ)⁻¹ (Qᵀ J̃). This is
    Woodbury's identity written as a projection: the textbook form Jᵀ W J − Jᵀ W U (I + Uᵀ W U)⁻¹ Uᵀ W J
    subtracts two terms that grow as (S/N)² while their difference saturates at the modes' floor, and loses that
    floor to rounding at high S/N; here both terms stay of the size of the result."""
    s = np.sqrt(w)
    Jt, Ut = J * s[:, None], U * s[:, None]
    Q, R = np.linalg.qr(Ut)  # reduced: Q (n_pix, k) orthonormal columns, also when a mode is zero here
    P = Q.T @ Jt
    resid = Jt - Q @ P
    return resid.T @ resid + P.T @ np.linalg.solve(np.eye(R.shape[0]) + R @ R.T, P)


def apply_inverse_covariance(
    X: Float[np.ndarray, "n_pix m"], weights: Float[np.ndarray, "n_pix"], modes: Float[np.ndarray, "n_pix k"] | None
) -> Float[np.ndarray, "n_pix m"]:
    """C⁻¹ X for C = diag(1/weights) + U Uᵀ (Woodbury; masked pixels, weight 0, give rows of 0)."""
    WX = X * weights[:, None]
    if modes is None or modes.shape[1] == 0:
        return WX
    WU = modes * weights[:, None]
    small = np.eye(modes.shape[1]) + modes.T @ WU
    return WX - WU @ np.linalg.solve(small, modes.T @ WX)


# --------------------------------------------------------------------------------------------------
# Jacobian
# --------------------------------------------------------------------------------------------------
def _check_names(params: Mapping[str, Any], free: Sequence[str]) -> tuple[str, ...]:
    free = tuple(free)
    if not free:
        raise FisherError("no free parameters: give at least one name in `free`")
    dup = sorted({n for n in free if free.count(n) > 1})
    if dup:
        raise FisherError(f"free parameters listed twice: {dup}")
    missing = [n for n in free if n not in params]
    if missing:
        raise FisherError(f"free parameter(s) {missing} have no fiducial value; params has {sorted(params)}")
    for n in free:
        v = np.asarray(params[n], dtype=np.float64)
        if v.shape != () or not np.isfinite(v):
            raise FisherError(f"fiducial value of {n!r} must be a finite scalar, got {params[n]!r}")
    return free


def jacobian(
    forward_fn: ForwardFn, params: Mapping[str, Any], free: Sequence[str]
) -> Float[np.ndarray, "n_pix n_free"]:
    """∂model/∂θ for the ``free`` parameters at ``params`` by forward-mode autodiff in float64.

    ``forward_fn(params_dict) -> flux[n_pix]`` must be a pure JAX function; parameters not in ``free`` are
    passed through unchanged (held fixed). Raises :class:`FisherError` if a derivative is not finite.
    """
    return jacobian_and_value(forward_fn, params, free)[0]


def jacobian_and_value(
    forward_fn: ForwardFn, params: Mapping[str, Any], free: Sequence[str]
) -> tuple[Float[np.ndarray, "n_pix n_free"], Float[np.ndarray, "n_pix"]]:
    """(:func:`jacobian`, the model itself at ``params``) from one compiled forward-mode pass."""
    free = _check_names(params, free)
    # Fixed values become traced arrays and free names a static tuple, so with a pytree forward function
    # (e.g. the bound method ``ObservationModel.predict`` of an Equinox module) the compiled Jacobian is
    # reused for every star and every model instance of the same shapes.
    fixed = {k: jnp.asarray(v, dtype=jnp.float64) if _is_number(v) else v for k, v in params.items() if k not in free}
    x0 = jnp.asarray([float(params[n]) for n in free], dtype=jnp.float64)
    J, value = _jacobian_impl(forward_fn, fixed, x0, free)
    J, value = np.asarray(J, dtype=np.float64), np.asarray(value, dtype=np.float64)
    if J.ndim != 2 or J.shape[1] != len(free):
        raise FisherError(f"forward model output has unexpected shape; Jacobian shape {J.shape}")
    bad_cols = [n for i, n in enumerate(free) if not np.all(np.isfinite(J[:, i]))]
    if bad_cols:
        raise FisherError(
            f"the model's derivative with respect to {bad_cols} is not finite at {dict(params)}; "
            "move the fiducial point inside the model's domain or hold those parameters fixed"
        )
    if not np.all(np.isfinite(value)):
        raise FisherError(
            f"the model predicts non-finite flux at {dict(params)}; check the parameters are inside its domain"
        )
    return J, value


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.number)) or (hasattr(v, "shape") and np.shape(v) == ())


@eqx.filter_jit
def _jacobian_impl(forward_fn, fixed, x0, free: tuple[str, ...]):
    def f(x):
        p = dict(fixed)
        p.update({n: x[i] for i, n in enumerate(free)})
        y = jnp.ravel(jnp.asarray(forward_fn(p))).astype(jnp.float64)
        return y, y

    return jax.jacfwd(f, has_aux=True)(x0)


def finite_difference_jacobian(
    forward_fn: ForwardFn, params: Mapping[str, Any], free: Sequence[str], steps: Mapping[str, float]
) -> Float[np.ndarray, "n_pix n_free"]:
    """Central finite-difference Jacobian (for validating :func:`jacobian`); ``steps`` per free name.

    All 2·n_free model evaluations run in one compiled, vmapped call."""
    free = _check_names(params, free)
    fixed = {k: jnp.asarray(v, dtype=jnp.float64) if _is_number(v) else v for k, v in params.items() if k not in free}
    x0 = np.array([float(params[n]) for n in free])
    h = np.array([float(steps[n]) for n in free])
    if not np.all(np.isfinite(h) & (h > 0)):
        raise FisherError(f"finite-difference steps must be positive, got {dict(steps)}")
    eye = np.eye(len(free)) * h
    xs = jnp.asarray(np.concatenate([x0 + eye, x0 - eye]), dtype=jnp.float64)
    ys = np.asarray(_values_impl(forward_fn, fixed, xs, free), dtype=np.float64)
    n = len(free)
    return ((ys[:n] - ys[n:]) / (2 * h[:, None])).T


@eqx.filter_jit
def _values_impl(forward_fn, fixed, xs, free: tuple[str, ...]):
    def f(x):
        p = dict(fixed)
        p.update({n: x[i] for i, n in enumerate(free)})
        return jnp.ravel(jnp.asarray(forward_fn(p))).astype(jnp.float64)

    return jax.vmap(f)(xs)


# --------------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------------
def _unit(name: str) -> str:
    from .labels import unit_of

    try:
        return unit_of(name)
    except StellarinfError:
        return ""  # continuum coefficients, resolution, jitter: dimensionless


@dataclasses.dataclass(frozen=True)
class _Analysis:
    covariance: np.ndarray  # pseudo-inverse where singular; inf on the diagonal of unconstrained labels
    unconstrained: np.ndarray  # bool per label: marginal bound is infinite
    condition_number: float  # of the unit-free matrix S = D^-1/2 F D^-1/2
    degenerate_directions: tuple[dict[str, float], ...]
    null_projector: np.ndarray  # projector onto the null space in unit-free coordinates (n, n)
    weakest_direction: dict[str, float]


@dataclasses.dataclass(frozen=True, eq=False)
class FisherResult:
    """A Fisher matrix with everything needed to re-weight, subset and report it.

    Attributes: ``names`` (free parameters, in order), ``values`` (fiducial values), ``jacobian``
    (n_pix, n_free), ``weights`` (1/σ² per pixel, 0 = masked), ``prior_sigma`` ({name: σ}),
    ``meta`` (free-form provenance: S/N, resolution, window, model), ``rcond``, ``noise_modes`` (n_pix, k) or None:
    a correlated part of the noise, C = diag(1/weights) + U Uᵀ (kept by :meth:`with_noise`, so another S/N is
    exact: the bound then no longer scales as 1/(S/N) but tends to the modes' floor).
    """

    names: tuple[str, ...]
    values: tuple[float, ...]
    jacobian: np.ndarray
    weights: np.ndarray
    prior_sigma: Mapping[str, float] = dataclasses.field(default_factory=dict)
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    rcond: float = DEFAULT_RCOND
    wavelength: np.ndarray | None = None
    noise_modes: np.ndarray | None = None

    def __post_init__(self):
        n = len(self.names)
        if self.jacobian.shape != (self.weights.shape[0], n):
            raise FisherError(
                f"Jacobian shape {self.jacobian.shape} does not match {self.weights.shape[0]} pixels × {n} parameters"
            )
        if self.noise_modes is not None and (
            self.noise_modes.ndim != 2 or self.noise_modes.shape[0] != self.weights.shape[0]
        ):
            raise FisherError(
                f"noise modes of shape {self.noise_modes.shape} do not have one row per pixel ({self.weights.shape[0]})"
            )
        unknown = sorted(set(self.prior_sigma) - set(self.names))
        if unknown:
            raise FisherError(
                f"prior(s) on {unknown} but those parameters are not free ({', '.join(self.names)}); "
                "a prior on a fixed parameter has no effect — free it or drop the prior"
            )
        for k, s in self.prior_sigma.items():
            if not (math.isfinite(float(s)) and float(s) > 0):
                raise FisherError(f"prior width for {k!r} must be positive and finite, got {s!r}")

    # --- matrices ---------------------------------------------------------------------------
    @functools.cached_property
    def data_fisher(self) -> Float[np.ndarray, "n n"]:
        """Jᵀ C⁻¹ J (no priors), float64."""
        if self.noise_modes is not None:
            return correlated_information(self.jacobian, self.weights, self.noise_modes)
        Jw = self.jacobian * self.weights[:, None]
        F = self.jacobian.T @ Jw
        return 0.5 * (F + F.T)

    @functools.cached_property
    def prior_precision(self) -> Float[np.ndarray, "n n"]:
        return np.diag([1.0 / float(self.prior_sigma[n]) ** 2 if n in self.prior_sigma else 0.0 for n in self.names])

    @functools.cached_property
    def fisher(self) -> Float[np.ndarray, "n n"]:
        """The full Fisher matrix: data plus prior precision."""
        return self.data_fisher + self.prior_precision

    # --- analysis (runs once; warns once) ---------------------------------------------------
    @functools.cached_property
    def _analysis(self) -> _Analysis:
        return _analyse(self.fisher, self.names, self.rcond)

    def check(self) -> "FisherResult":
        """Run the numerical analysis now (emitting any warnings) and return self."""
        self._analysis  # noqa: B018
        return self

    @property
    def covariance(self) -> Float[np.ndarray, "n n"]:
        """F⁻¹ (the Cramér–Rao covariance); ``inf`` on the diagonal of unconstrained parameters."""
        return self._analysis.covariance.copy()

    @property
    def condition_number(self) -> float:
        """Condition number of the unit-free Fisher matrix D^-1/2 F D^-1/2 (inf if singular)."""
        return self._analysis.condition_number

    @property
    def condition_number_raw(self) -> float:
        """Condition number of F in its native units (depends on the units of the labels)."""
        w = np.linalg.eigvalsh(self.fisher)
        return float(w.max() / w.min()) if w.min() > 0 else math.inf

    @property
    def degenerate_directions(self) -> tuple[dict[str, float], ...]:
        """Unconstrained combinations, as {label: component} in units of each label's conditional bound."""
        return self._analysis.degenerate_directions

    @property
    def is_degenerate(self) -> bool:
        return bool(self._analysis.degenerate_directions)

    def marginal(self) -> dict[str, float]:
        """sqrt((F⁻¹)_ii): bound with every other free parameter unknown (inf if unconstrained)."""
        c = np.diag(self._analysis.covariance)
        return {n: float(math.sqrt(v)) if math.isfinite(v) else math.inf for n, v in zip(self.names, c)}

    def conditional(self) -> dict[str, float]:
        """1/sqrt(F_ii): bound with every other free parameter known exactly (inf without information)."""
        d = np.diag(self.fisher)
        return {n: float(1.0 / math.sqrt(v)) if v > 0 else math.inf for n, v in zip(self.names, d)}

    def correlation(self) -> Float[np.ndarray, "n n"]:
        """Correlation matrix of the Cramér–Rao covariance.

        For unconstrained parameters this is the limit of a vanishing regulariser: labels sharing a
        degenerate direction are correlated by ±(its components), and they are uncorrelated with the
        constrained ones. Always finite.
        """
        a = self._analysis
        n = len(self.names)
        R = np.eye(n)
        free_ok = ~a.unconstrained
        cov = a.covariance
        idx = np.flatnonzero(free_ok)
        if idx.size:
            sd = np.sqrt(np.diag(cov)[idx])
            R[np.ix_(idx, idx)] = cov[np.ix_(idx, idx)] / np.outer(sd, sd)
        bad = np.flatnonzero(a.unconstrained)
        if bad.size:
            P = a.null_projector
            d = np.sqrt(np.clip(np.diag(P)[bad], 1e-300, None))
            R[np.ix_(bad, bad)] = P[np.ix_(bad, bad)] / np.outer(d, d)
        np.fill_diagonal(R, 1.0)
        return np.clip(R, -1.0, 1.0)

    # --- information content per pixel -----------------------------------------------------
    def per_pixel_information(self, kind: str = "diagonal") -> Float[np.ndarray, "n_pix n"]:
        """Information on each free parameter carried by each pixel (column order = ``names``).

        - ``"diagonal"``: J_ki² / σ_k²; sums over pixels to F_ii (data part) = 1/conditional².
        - ``"marginal"``: (J_ki − Σ_o J_ko b_oi)² / σ_k², the part of pixel k's signal for θ_i that cannot be
          mimicked by the other free parameters (b = F_oo⁻¹ F_oi, data only); sums over pixels to the
          marginal information 1/(F_data⁻¹)_ii. Pixels are ~0 where θ_i's signature is degenerate with others.

        With ``noise_modes`` the pixels are correlated and a pixel's share is J_ki (C⁻¹ J)_ki instead of J_ki² / σ_k²
        (the same sums; a pixel can then carry a negative share, where the modes make its signal redundant).
        """
        J, w = self.jacobian, self.weights
        if kind == "diagonal":
            if self.noise_modes is not None:
                return J * apply_inverse_covariance(J, w, self.noise_modes)
            return J**2 * w[:, None]
        if kind != "marginal":
            raise FisherError(f"unknown information kind {kind!r}; use 'diagonal' or 'marginal'")
        F = self.data_fisher
        n = len(self.names)
        out = np.empty_like(J)
        for i in range(n):
            others = [j for j in range(n) if j != i]
            if others:
                b = np.linalg.lstsq(F[np.ix_(others, others)], F[others, i], rcond=None)[0]
                resid = J[:, i] - J[:, others] @ b
            else:
                resid = J[:, i]
            if self.noise_modes is not None:
                out[:, i] = resid * apply_inverse_covariance(resid[:, None], w, self.noise_modes)[:, 0]
            else:
                out[:, i] = resid**2 * w
        return out

    # --- derived results --------------------------------------------------------------------
    def fix(self, names: Sequence[str]) -> "FisherResult":
        """Hold ``names`` fixed at their fiducial values (drop their rows/columns)."""
        unknown = sorted(set(names) - set(self.names))
        if unknown:
            raise FisherError(f"cannot fix {unknown}: not free parameters ({', '.join(self.names)})")
        keep = [n for n in self.names if n not in set(names)]
        return self.subset(keep)

    def subset(self, names: Sequence[str]) -> "FisherResult":
        """Keep only ``names`` free (the others held fixed)."""
        names = tuple(names)
        missing = sorted(set(names) - set(self.names))
        if missing or not names:
            raise FisherError(f"cannot keep {missing or 'nothing'}: free parameters are {', '.join(self.names)}")
        idx = [self.names.index(n) for n in names]
        return dataclasses.replace(
            self,
            names=names,
            values=tuple(self.values[i] for i in idx),
            jacobian=self.jacobian[:, idx],
            prior_sigma={k: v for k, v in self.prior_sigma.items() if k in names},
        )

    def with_priors(self, priors: Mapping[str, float] | None) -> "FisherResult":
        """Same data, different Gaussian prior widths ({name: σ})."""
        return dataclasses.replace(self, prior_sigma=dict(priors or {}))

    def with_noise(self, sigma, mask=None, **meta) -> "FisherResult":
        """Same Jacobian, new per-pixel noise (e.g. another S/N); extra keywords update ``meta``. The correlated
        part (``noise_modes``) is kept: σ is the diagonal part only."""
        w = pixel_weights(sigma, self.weights.shape[0], mask)
        return dataclasses.replace(self, weights=w, meta={**self.meta, **meta})

    # --- output -----------------------------------------------------------------------------
    def to_table(self):
        """astropy Table: label, unit, value, marginal, conditional, ratio, prior_sigma (meta: condition number...)."""
        from astropy.table import Table

        marg, cond = self.marginal(), self.conditional()
        t = Table()
        t["label"] = list(self.names)
        t["unit"] = [_unit(n) for n in self.names]
        t["value"] = np.array(self.values, dtype=np.float64)
        t["marginal"] = [marg[n] for n in self.names]
        t["conditional"] = [cond[n] for n in self.names]
        t["marginal_over_conditional"] = [
            marg[n] / cond[n] if math.isfinite(marg[n]) and math.isfinite(cond[n]) else math.inf for n in self.names
        ]
        t["prior_sigma"] = [float(self.prior_sigma.get(n, math.inf)) for n in self.names]
        t.meta.update({k: v for k, v in self.meta.items() if isinstance(v, (int, float, str, bool))})
        t.meta["condition_number"] = self.condition_number
        t.meta["degenerate"] = self.is_degenerate
        return t

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable document; infinite bounds are written as ``null`` with ``"constrained": false``."""
        marg, cond = self.marginal(), self.conditional()
        labels = {}
        for n, v in zip(self.names, self.values):
            labels[n] = {
                "value": float(v),
                "unit": _unit(n),
                "marginal": _finite_or_none(marg[n]),
                "conditional": _finite_or_none(cond[n]),
                "constrained": math.isfinite(marg[n]),
                "prior_sigma": _finite_or_none(self.prior_sigma.get(n, math.inf)),
            }
        return {
            **{k: _jsonable(v) for k, v in self.meta.items()},
            "free": list(self.names),
            "labels": labels,
            "condition_number": _finite_or_none(self.condition_number),
            "degenerate_directions": [dict(d) for d in self.degenerate_directions],
            "correlation": self.correlation().tolist(),
            "fisher": self.fisher.tolist(),
            "n_pixels_used": int(np.count_nonzero(self.weights)),
            **({} if self.noise_modes is None else {"n_noise_modes": int(self.noise_modes.shape[1])}),
        }


def _finite_or_none(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _jsonable(v):
    if isinstance(v, float):
        return _finite_or_none(v)
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _describe_direction(direction: Mapping[str, float], max_terms: int = 4) -> str:
    terms = sorted(direction.items(), key=lambda kv: -abs(kv[1]))[:max_terms]
    out = []
    for i, (name, c) in enumerate(terms):
        sign = "−" if c < 0 else ("+" if i else "")
        out.append(f"{sign}{abs(c):.2f}·{name}")
    return " ".join(out)


def _direction(vec: np.ndarray, names: Sequence[str], threshold: float = 0.05) -> dict[str, float]:
    """Eigenvector as {label: component}, largest first; sign fixed so the largest is positive."""
    v = vec / np.linalg.norm(vec)
    v = v * np.sign(v[np.argmax(np.abs(v))])
    order = np.argsort(-np.abs(v))
    return {names[i]: round(float(v[i]), 4) for i in order if abs(v[i]) >= threshold}


def _analyse(F: np.ndarray, names: Sequence[str], rcond: float) -> _Analysis:
    n = len(names)
    d = np.diag(F).copy()
    if not np.all(np.isfinite(F)):
        raise FisherError("the Fisher matrix has non-finite entries; check the noise model and the forward model")
    active = d > 0
    cov = np.full((n, n), 0.0)
    unconstrained = ~active
    directions: list[dict[str, float]] = []
    P_null = np.zeros((n, n))
    for i in np.flatnonzero(~active):
        directions.append({names[i]: 1.0})
        P_null[i, i] = 1.0
    cond = math.inf if np.any(~active) else 1.0
    weakest: dict[str, float] = {}
    idx = np.flatnonzero(active)
    if idx.size:
        s = np.sqrt(d[idx])
        S = F[np.ix_(idx, idx)] / np.outer(s, s)
        w, V = np.linalg.eigh(0.5 * (S + S.T))
        wmax = float(w.max())
        null = w <= rcond * wmax
        weakest = _direction(V[:, 0], [names[i] for i in idx])
        if np.any(null):
            cond = math.inf
        elif np.all(active):
            cond = wmax / float(w.min())
        keep = ~null
        Sinv = (V[:, keep] / w[keep]) @ V[:, keep].T
        cov_a = Sinv / np.outer(s, s)
        cov[np.ix_(idx, idx)] = cov_a
        if np.any(null):
            Vn = V[:, null]
            Pn = Vn @ Vn.T
            P_null[np.ix_(idx, idx)] = Pn
            in_null = np.diag(Pn) > 1e-6
            unconstrained[idx[in_null]] = True
            for k in range(Vn.shape[1]):
                directions.append(_direction(Vn[:, k], [names[i] for i in idx]))
    # unconstrained parameters: infinite variance, no covariance with the constrained ones
    for i in np.flatnonzero(unconstrained):
        cov[i, :] = 0.0
        cov[:, i] = 0.0
        cov[i, i] = math.inf
    if directions:
        bad = [names[i] for i in np.flatnonzero(unconstrained)]
        desc = "; ".join(_describe_direction(dv) for dv in directions)
        warnings.warn(
            f"Fisher matrix is singular: the data (and priors) do not constrain {desc} "
            f"(components in units of each parameter's conditional bound). Marginal bounds of "
            f"{', '.join(bad)} are reported as inf. Hold one of them fixed, add a prior, or use a wider window.",
            DegenerateFisherWarning,
            stacklevel=3,
        )
    elif cond > ILL_CONDITIONED:
        warnings.warn(
            f"Fisher matrix is ill-conditioned (unit-free condition number {cond:.3g}); the weakest direction is "
            f"{_describe_direction(weakest)}. Marginal bounds along it are large and sensitive to model errors.",
            IllConditionedFisherWarning,
            stacklevel=3,
        )
    return _Analysis(
        covariance=cov,
        unconstrained=unconstrained,
        condition_number=cond,
        degenerate_directions=tuple(directions),
        null_projector=P_null,
        weakest_direction=weakest,
    )


# --------------------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------------------
def fisher_from_jacobian(
    J: Float[Any, "n_pix n_free"],
    sigma: Float[Any, "n_pix"] | float,
    names: Sequence[str],
    *,
    values: Sequence[float] | None = None,
    priors: Mapping[str, float] | None = None,
    mask: Sequence[bool] | np.ndarray | None = None,
    meta: Mapping[str, Any] | None = None,
    wavelength=None,
    rcond: float = DEFAULT_RCOND,
    noise_modes: Float[Any, "n_pix k"] | None = None,
) -> FisherResult:
    """Build a :class:`FisherResult` from a precomputed Jacobian (columns ordered as ``names``); ``noise_modes``
    (n_pix, k): a correlated part of the noise beside ``sigma`` (C = diag(σ²) + U Uᵀ)."""
    J = np.asarray(J, dtype=np.float64)
    if J.ndim != 2 or J.shape[1] != len(names):
        raise FisherError(f"Jacobian of shape {J.shape} does not have one column per name ({len(names)})")
    if not np.all(np.isfinite(J)):
        raise FisherError("the Jacobian has non-finite entries")
    w = pixel_weights(sigma, J.shape[0], mask)
    vals = tuple(float(v) for v in values) if values is not None else tuple(0.0 for _ in names)
    res = FisherResult(
        names=tuple(names),
        values=vals,
        jacobian=J,
        weights=w,
        prior_sigma=dict(priors or {}),
        meta=dict(meta or {}),
        rcond=rcond,
        wavelength=None if wavelength is None else np.asarray(wavelength, dtype=np.float64),
        noise_modes=None if noise_modes is None else np.asarray(noise_modes, dtype=np.float64),
    )
    return res.check()


def fisher_matrix(
    forward_fn: ForwardFn,
    params: Mapping[str, Any],
    sigma: Float[Any, "n_pix"] | float,
    free: Sequence[str],
    priors: Mapping[str, float] | None = None,
    *,
    mask: Sequence[bool] | np.ndarray | None = None,
    emulator_error: Float[Any, "n_pix"] | None = None,
    meta: Mapping[str, Any] | None = None,
    wavelength=None,
    rcond: float = DEFAULT_RCOND,
) -> FisherResult:
    """Fisher matrix F = Jᵀ C⁻¹ J (+ prior precision) of ``forward_fn`` at ``params``.

    ``forward_fn(params) -> model flux[n_pix]`` (pure JAX); ``sigma`` per-pixel noise (or a scalar);
    ``free`` the parameters that are estimated (nuisances in ``free`` are marginalised, others held
    fixed at their ``params`` value); ``priors`` {name: σ} Gaussian prior widths; ``mask`` True = use the
    pixel; ``emulator_error`` added to ``sigma`` in quadrature.
    """
    _float64()
    free = _check_names(params, free)
    J = jacobian(forward_fn, params, free)
    s = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (J.shape[0],))
    if emulator_error is not None:
        s = add_in_quadrature(s, emulator_error)
    return fisher_from_jacobian(
        J,
        s,
        free,
        values=[float(params[n]) for n in free],
        priors=priors,
        mask=mask,
        meta=meta,
        wavelength=wavelength,
        rcond=rcond,
    )


def likelihood_fisher(
    obs_model,
    params: Mapping[str, Any],
    free: Sequence[str],
    priors: Mapping[str, float] | None = None,
    *,
    meta: Mapping[str, Any] | None = None,
    rcond: float = DEFAULT_RCOND,
) -> FisherResult:
    """Fisher matrix of an observation model's *own* likelihood at ``params``: noiseless data (the
    model's prediction at ``params``), F = J_ρᵀ J_ρ with ρ the likelihood's whitened residuals
    (``obs_model.whitened_residuals``: any :class:`~stellarinf.observe.protocol.ObservationLike`, e.g. an
    :class:`~stellarinf.observe.model.ObservationModel` or, for a spectrum with several arms, a
    :class:`~stellarinf.observe.multi_arm.MultiArmObservationModel`, whose information is the sum over its arms).

    Unlike :func:`fisher_matrix` with a per-pixel σ, everything the likelihood integrates out is
    integrated out here too: the continuum coefficients (a marginalised or profiled continuum) and the
    emulator's correlated error modes (the Woodbury form of the full pixel covariance), so the bounds are
    the ones a sampler of that likelihood should reach. The θ-dependence of the covariance itself (a
    small term, except for a fitted jitter) is left out, as in Gauss–Newton."""
    _float64()
    free = _check_names(params, free)
    full = {k: jnp.asarray(v, dtype=jnp.float64) if _is_number(v) else v for k, v in params.items()}
    data = jnp.asarray(obs_model.predict(full), dtype=jnp.float64)
    with_flux = getattr(obs_model, "with_flux", None)
    noiseless = with_flux(data) if with_flux is not None else eqx.tree_at(lambda o: o.flux, obs_model, data)
    J = jacobian(noiseless.whitened_residuals, params, free)
    return fisher_from_jacobian(
        J, 1.0, free, values=[float(params[n]) for n in free], priors=priors, meta=meta, rcond=rcond
    )


def cramer_rao(
    forward_fn: ForwardFn, params: Mapping[str, Any], sigma, free: Sequence[str], **kwargs
) -> dict[str, float]:
    """Marginal Cramér–Rao bounds {name: σ_min} (shortcut for ``fisher_matrix(...).marginal()``)."""
    _float64()
    return fisher_matrix(forward_fn, params, sigma, free, **kwargs).marginal()
