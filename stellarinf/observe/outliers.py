"""Outlier pixels (cosmic rays, residual tellurics, emission, bad columns): found against the best fit.

A Gaussian likelihood lets one cosmic ray 50σ high pull every label; a Student-t or mixture likelihood
would not integrate out the continuum and error modes in closed form. So the fit pipeline clips instead:
after a first MAP, pixels whose residual exceeds ``threshold`` total σ (at most ``max_fraction`` of the
pixels, the worst first, each with its neighbours) are masked and the best start is polished to the new optimum; the mask is
reported with the result.
"""

from __future__ import annotations

import numpy as np


def outlier_mask(
    flux: np.ndarray,
    model: np.ndarray,
    sigma: np.ndarray,
    mask: np.ndarray,
    *,
    threshold: float = 5.0,
    max_fraction: float = 0.02,
    grow: int = 1,
) -> np.ndarray:
    """Boolean array, True for pixels to drop: |flux − model| > threshold · sigma among the used ``mask``
    pixels, the worst ``max_fraction`` of them at most, each grown by ``grow`` pixels on either side."""
    flux, model, sigma = (np.asarray(a, dtype=np.float64) for a in (flux, model, sigma))
    used = np.asarray(mask, bool) & np.isfinite(flux) & (sigma > 0)
    z = np.zeros(flux.shape)
    z[used] = np.abs(flux[used] - model[used]) / sigma[used]
    bad = z > threshold
    cap = int(max_fraction * used.sum())
    if bad.sum() > cap:
        worst = np.argsort(z)[::-1][:cap]
        bad = np.zeros_like(bad)
        bad[worst] = True
    out = bad.copy()
    for k in range(1, grow + 1):
        out[k:] |= bad[:-k]
        out[:-k] |= bad[k:]
    return out & used
