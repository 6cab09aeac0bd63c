"""The emulator's error as a Gaussian process in wavelength: low-rank correlated part + white remainder.

An emulator's residual against the synthesizer, ``r(λ) = f_synth(λ) − f_emu(λ)``, is not white noise: a
line predicted slightly too deep is wrong in every pixel of that line, and the same few patterns (line
depths and widths of the strong lines, wings, blends) recur across the label box. A white per-pixel error
term cannot absorb such a pattern, so at high S/N it pulls the labels (and v sin i) away from the truth
while the posterior stays narrow.

Model used here, fitted on held-out residuals ``R`` (n_spectra × n_pix, never trained on):

    r ~ N(0, Φ Φᵀ + diag(d²)),   Φ = V_K S_K / √n   (the top-K principal components of R, scaled),
                                  d² = max(rms² − Σ_k Φ_k², 0)   (what the modes leave, per pixel)

so the total per-pixel variance is unchanged (it is still the held-out rms²) and the K modes carry the
correlated part. The observation model shifts and broadens the modes with the spectrum and integrates out
their amplitudes (a ~ N(0, I)) exactly, together with the continuum
(:mod:`stellarinf.observe.model`).

Global modes capture the residual patterns common to the whole box, not a particular star's; what they
leave is reported by :func:`explained_fraction` on a held-out split.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float

from ..errors import ShapeError

__all__ = ["fit_error_modes", "explained_fraction", "residual_matrix"]


def fit_error_modes(
    residuals: Float[np.ndarray, "n_spectra n_pix"], n_modes: int
) -> tuple[Float[np.ndarray, "n_modes n_pix"], Float[np.ndarray, "n_pix"]]:
    """Top ``n_modes`` scaled principal components of ``residuals`` and the per-pixel total rms.

    Returns ``(modes, rms)`` with ``modes[k] = s_k v_k / √n`` (so ``Σ_k modes[k]²`` is the variance the
    modes explain per pixel) and ``rms`` the per-pixel root-mean-square residual. Residuals are *not*
    mean-subtracted: a mean offset is part of the error too.
    """
    r = np.asarray(residuals, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] < 2:
        raise ShapeError(f"residuals must be (n_spectra ≥ 2, n_pix), got shape {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ShapeError("residuals contain NaN/inf; evaluate the emulator on a clean held-out grid")
    n = r.shape[0]
    if not 0 <= n_modes <= min(r.shape) - 1:
        raise ShapeError(
            f"n_modes={n_modes} needs at least n_modes + 1 held-out spectra (have {n}) and pixels (have {r.shape[1]}); "
            "use fewer modes or a larger held-out grid"
        )
    rms = np.sqrt(np.mean(r**2, axis=0))
    if n_modes == 0:
        return np.zeros((0, r.shape[1])), rms
    _, s, vt = np.linalg.svd(r, full_matrices=False)
    modes = vt[:n_modes] * (s[:n_modes, None] / np.sqrt(n))
    # sign convention (for reproducible files): the largest |component| of each mode is positive
    sign = np.sign(modes[np.arange(n_modes), np.argmax(np.abs(modes), axis=1)])
    return modes * sign[:, None], rms


def explained_fraction(modes: Float[np.ndarray, "k n_pix"], residuals: Float[np.ndarray, "m n_pix"]) -> float:
    """Fraction of the squared residual of *other* spectra that lies in the span of ``modes``."""
    r = np.asarray(residuals, dtype=np.float64)
    if len(modes) == 0:
        return 0.0
    q, _ = np.linalg.qr(np.asarray(modes, dtype=np.float64).T)
    return float(np.sum((r @ q) ** 2) / np.sum(r**2))


def residual_matrix(emulator, grid, rows=None, *, batch_size: int = 32, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(grid wavelength, residuals true − emulator) for ``rows`` of ``grid`` (a SpectralGrid or file path)."""
    from tqdm.auto import tqdm

    from ..io.grid import GridFile, SpectralGrid

    def run(wl, n, read):
        idx = np.arange(n) if rows is None else np.sort(np.asarray(rows))
        out = np.empty((idx.size, wl.size), dtype=np.float64)
        with tqdm(total=idx.size, desc="residuals", unit="spec", disable=not progress, leave=False) as bar:
            for start in range(0, idx.size, batch_size):
                sel = idx[start : start + batch_size]
                labels, flux = read(sel)
                out[start : start + sel.size] = np.asarray(flux, np.float64) - emulator.predict(labels, wl, batch_size=batch_size)
                bar.update(sel.size)
        return wl, out

    if isinstance(grid, SpectralGrid):
        return run(grid.wavelength, len(grid), lambda r: (grid.labels[r], grid.flux[r]))
    with GridFile(grid) as gf:
        return run(gf.wavelength, len(gf), lambda r: gf.read_rows(r)[:2])
