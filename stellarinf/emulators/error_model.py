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

__all__ = ["fit_error_modes", "explained_fraction", "residual_matrix", "label_direction_basis", "label_span_fraction"]


def fit_error_modes(
    residuals: Float[np.ndarray, "n_spectra n_pix"], n_modes: int, exclude: Float[np.ndarray, "n_pix r"] | None = None
) -> tuple[Float[np.ndarray, "n_modes n_pix"], Float[np.ndarray, "n_pix"]]:
    """Top ``n_modes`` scaled principal components of ``residuals`` and the per-pixel total rms.

    Returns ``(modes, rms)`` with ``modes[k] = s_k v_k / √n`` (so ``Σ_k modes[k]²`` is the variance the
    modes explain per pixel) and ``rms`` the per-pixel root-mean-square residual. Residuals are *not*
    mean-subtracted: a mean offset is part of the error too.

    ``exclude`` (orthonormal columns, e.g. :func:`label_direction_basis`): directions the modes must not
    contain. The residuals are projected off them before the decomposition; what they held stays in
    ``rms`` (so in the white remainder). Why: modes learned across the box span the directions in which
    the labels move the spectrum (90 % of the Teff and [Fe/H] derivatives of the first shipped Payne lay
    in its 28 modes); integrated out with free amplitudes they can then absorb a real line-strength signal,
    and the fit of a real star trades label signal for mode amplitude.
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
    if exclude is not None:
        q = np.asarray(exclude, dtype=np.float64)
        if q.ndim != 2 or q.shape[0] != r.shape[1]:
            raise ShapeError(f"exclude must be (n_pix={r.shape[1]}, r) orthonormal columns, got shape {q.shape}")
        r = r - (r @ q) @ q.T
    _, s, vt = np.linalg.svd(r, full_matrices=False)
    modes = vt[:n_modes] * (s[:n_modes, None] / np.sqrt(n))
    # sign convention (for reproducible files): the largest |component| of each mode is positive
    sign = np.sign(modes[np.arange(n_modes), np.argmax(np.abs(modes), axis=1)])
    return modes * sign[:, None], rms


def label_direction_basis(
    emulator, wavelength, *, n_points: int = 64, energy: float = 0.999, seed: int = 0, max_rank: int | None = None
) -> Float[np.ndarray, "n_pix r"]:
    """Orthonormal basis of the directions in which the labels move the emulator's spectrum.

    Jacobians ∂flux/∂label at ``n_points`` Sobol points of the label box (each column scaled by the label's
    box width, so a label's weight is what a full-box change does), stacked and decomposed; the leading
    singular vectors holding ``energy`` of the total are returned (at most ``max_rank``, default n_pix/4).
    """
    import jax
    import jax.numpy as jnp

    from ..design import sample_labels

    space = emulator.label_space
    pts = sample_labels(space, n_points, "sobol", seed)
    wl = jnp.asarray(wavelength, dtype=jnp.float64)
    jac = jax.jit(jax.jacfwd(lambda x: emulator.flux(x, wl)))
    width = np.asarray(space.upper) - np.asarray(space.lower)
    cols = [np.asarray(jac(jnp.asarray(p, dtype=jnp.float64)), dtype=np.float64) * width[None, :] for p in pts]
    big = np.concatenate(cols, axis=1)
    u, s, _ = np.linalg.svd(big, full_matrices=False)
    cum = np.cumsum(s**2) / np.sum(s**2)
    rank = int(np.searchsorted(cum, energy) + 1)
    rank = min(rank, max_rank if max_rank is not None else max(1, wl.shape[0] // 4))
    return u[:, :rank]


def label_span_fraction(modes: Float[np.ndarray, "k n_pix"], directions: Float[np.ndarray, "n_pix m"]) -> np.ndarray:
    """For each column of ``directions`` (e.g. a label Jacobian), the fraction of its squared norm that lies
    in the span of ``modes``: 0 = the modes cannot imitate that label change, 1 = they can entirely."""
    d = np.asarray(directions, dtype=np.float64)
    if len(modes) == 0:
        return np.zeros(d.shape[1])
    q, _ = np.linalg.qr(np.asarray(modes, dtype=np.float64).T)
    return np.sum((q.T @ d) ** 2, axis=0) / np.maximum(np.sum(d**2, axis=0), 1e-300)


def explained_fraction(modes: Float[np.ndarray, "k n_pix"], residuals: Float[np.ndarray, "m n_pix"]) -> float:
    """Fraction of the squared residual of *other* spectra that lies in the span of ``modes``."""
    r = np.asarray(residuals, dtype=np.float64)
    if len(modes) == 0:
        return 0.0
    q, _ = np.linalg.qr(np.asarray(modes, dtype=np.float64).T)
    return float(np.sum((r @ q) ** 2) / np.sum(r**2))


def residual_matrix(
    emulator, grid, rows=None, *, batch_size: int = 32, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
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
                out[start : start + sel.size] = np.asarray(flux, np.float64) - emulator.predict(
                    labels, wl, batch_size=batch_size
                )
                bar.update(sel.size)
        return wl, out

    if isinstance(grid, SpectralGrid):
        return run(grid.wavelength, len(grid), lambda r: (grid.labels[r], grid.flux[r]))
    with GridFile(grid) as gf:
        return run(gf.wavelength, len(gf), lambda r: gf.read_rows(r)[:2])
