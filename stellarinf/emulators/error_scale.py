"""How an emulator's error grows and shrinks across its label box: one scale factor per star.

An emulator's held-out error is far from uniform over a broad box: the broad-domain Payne's rms residual is
4.4e-2 for stars of 4000–4500 K and 2.1e-3 for stars of 6000–6500 K (galah-red, thirty-fifth session). Its error
table (:mod:`stellarinf.emulators.error_model`) is the rms over the held-out spectra, so one table overstates the
error of a warm star several-fold and understates a cool one's. ``stellarinf error-model`` measures the scale below
and stores it in ``model.json`` (``error_model.scale``, with its held-out skill in ``scale_report``).

**Fits hold it fixed** (:mod:`stellarinf.observe.error_scale`: evaluated once, at a first MAP's labels). Applied at
the labels being evaluated instead (error table and modes × s(θ)), the likelihood's log-determinant, summed over
~2,700 pixels, becomes a force towards the labels where the emulator is more accurate: on 30 synthesizer mocks of
the broad red box at S/N 100 (``benchmarks/inference_recovery.py``, thirty-fifth session) the Teff error grew from
13 to 30 K rms and [Fe/H]'s from 0.033 to 0.053 dex, and the observed Sun's [Fe/H] moved from −0.02 to −0.06. Held
fixed, the errors are the table's (13 K, 0.033 dex) and the total sd is calibrated alike at every Teff
(benchmarks/README.md, section 1).

The scale, for a star with labels θ:

    s(θ) = exp(c · φ(z)),   z = the labels scaled to [−1, 1] over the box (clipped),
                            φ = (1, z_i, z_i z_j for i ≤ j)       (a quadratic in z)

fitted by least squares to ln rms_n of the held-out spectra, then shifted so that mean_n s(θ_n)² = 1 over those
spectra: the table is their rms, and the scale says how a given star departs from it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..errors import ShapeError

# the labels the scale depends on: where an emulator's error changes most across a box (line strengths)
SCALE_LABELS = ("teff", "logg", "feh")
# scales outside this range would mean a fit the data cannot support; the quadratic is clipped to it
SCALE_LIMITS = (0.05, 20.0)


@dataclasses.dataclass(frozen=True)
class ErrorScale:
    """``s(θ) = exp(coef · φ(z))`` (module docstring).

    Fields (tuples: hashable and JSON-friendly):
        labels: the label names z is made of (k of them);
        lower, upper: their box (z = 2 (θ − lower)/(upper − lower) − 1, clipped to [−1, 1]);
        coef: the 1 + k + k(k+1)/2 coefficients of φ = (1, z_i, z_i z_j for i ≤ j).
    """

    labels: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    coef: tuple[float, ...]

    def __post_init__(self):
        k = len(self.labels)
        if len(self.lower) != k or len(self.upper) != k or len(self.coef) != n_features(k):
            raise ShapeError(
                f"error scale: {k} labels need {k} bounds each and {n_features(k)} coefficients, got "
                f"{len(self.lower)}, {len(self.upper)}, {len(self.coef)}"
            )

    def __call__(self, values: Float[Array, "*n k"]) -> Float[Array, "*n"]:
        """s at label values (in :attr:`labels` order; one star or a stack along the leading axes); JAX-traceable."""
        z = box_coordinates(jnp.asarray(values), self.lower, self.upper)
        return jnp.clip(jnp.exp(features(z) @ jnp.asarray(self.coef)), *SCALE_LIMITS)

    def to_json(self) -> dict:
        return {
            "labels": list(self.labels),
            "lower": list(self.lower),
            "upper": list(self.upper),
            "coef": list(self.coef),
        }

    @classmethod
    def from_json(cls, doc: dict) -> "ErrorScale":
        return cls(
            tuple(str(n) for n in doc["labels"]),
            tuple(float(v) for v in doc["lower"]),
            tuple(float(v) for v in doc["upper"]),
            tuple(float(v) for v in doc["coef"]),
        )


def n_features(k: int) -> int:
    """Length of φ for k labels: 1 + k + k(k+1)/2."""
    return 1 + k + k * (k + 1) // 2


def box_coordinates(values, lower, upper):
    """z = 2 (values − lower)/(upper − lower) − 1, clipped to [−1, 1] (NumPy or JAX arrays, labels on the last axis)."""
    xp = jnp if isinstance(values, jnp.ndarray) else np
    lo, hi = xp.asarray(lower), xp.asarray(upper)
    return xp.clip(2.0 * (values - lo) / (hi - lo) - 1.0, -1.0, 1.0)


def features(z):
    """φ(z) = (1, z_i, z_i z_j for i ≤ j) along the last axis (NumPy or JAX arrays)."""
    xp = jnp if isinstance(z, jnp.ndarray) else np
    k = z.shape[-1]
    cross = [z[..., i] * z[..., j] for i in range(k) for j in range(i, k)]
    return xp.stack([xp.ones_like(z[..., 0]), *[z[..., i] for i in range(k)], *cross], axis=-1)


def fit_error_scale(
    values: Float[np.ndarray, "n k"],
    rms: Float[np.ndarray, "n"],
    labels: Sequence[str],
    lower: Sequence[float],
    upper: Sequence[float],
) -> tuple[ErrorScale, dict]:
    """``(scale, report)``: the least-squares quadratic in z of ln ``rms`` (each held-out spectrum's rms residual),
    shifted so mean s² = 1 over these spectra. ``report``: the fraction of the variance of ln rms the scale
    explains, and its smallest and largest value over the spectra."""
    values = np.asarray(values, dtype=np.float64)
    y = np.log(np.maximum(np.asarray(rms, dtype=np.float64), 1e-8))
    k = len(labels)
    if values.ndim != 2 or values.shape[1] != k or values.shape[0] != y.size:
        raise ShapeError(f"error scale: need (n, {k}) label values and n rms values, got {values.shape}, {y.shape}")
    if y.size < 3 * n_features(k):
        raise ShapeError(f"error scale: {y.size} spectra are too few for {n_features(k)} coefficients")
    phi = features(box_coordinates(values, lower, upper))
    coef, *_ = np.linalg.lstsq(phi, y, rcond=None)
    fitted = phi @ coef
    coef[0] -= 0.5 * math.log(float(np.mean(np.exp(2.0 * fitted))))  # mean s² = 1 over the held-out spectra
    scale = ErrorScale(tuple(labels), tuple(map(float, lower)), tuple(map(float, upper)), tuple(coef.tolist()))
    s = np.asarray(scale(values))
    report = {
        "ln_rms_variance_explained": round(float(1.0 - np.var(y - fitted) / np.var(y)), 4),
        "scale_min": round(float(s.min()), 4),
        "scale_max": round(float(s.max()), 4),
    }
    return scale, report


def scale_labels(label_space) -> tuple[str, ...]:
    """The labels of :data:`SCALE_LABELS` that ``label_space`` has (in that order)."""
    return tuple(n for n in SCALE_LABELS if n in label_space.names)


__all__ = [
    "ErrorScale",
    "fit_error_scale",
    "box_coordinates",
    "features",
    "n_features",
    "scale_labels",
    "SCALE_LABELS",
    "SCALE_LIMITS",
]
