"""ATLAS9 model atmospheres interpolated in (Teff, log g, [M/H], [α/M]).

The Castelli–Kurucz models all sit on the same nominal Rosseland optical-depth scale
(log τ_Ross = −6.875 + 0.125 k), so interpolating each quantity *at fixed depth index* is
interpolation at fixed τ_Ross. We interpolate log T, log P, log n_e and log ρx multilinearly
between the 16 surrounding models: piecewise linear in the labels, finite gradients everywhere.

[α/M] has two grid planes, the solar-scaled (0) and the α-enhanced (+0.4, ODFNEW/AODFNEW) models; between
them the interpolation is linear, and up to :data:`ALPHA_EXTRAPOLATION` beyond either plane it extrapolates
linearly along the same line (stars of the thin disc sit at −0.1, some halo stars at +0.5: a box that ends
at a plane would put them on its edge). At fixed τ_Ross the planes differ by a median 0.001 dex in log T
and 0.12 dex in log P at [M/H] = 0 (0.03 dex at [M/H] = −1.5), so half a step beyond moves log P by some
0.06 dex on the straight line through the two models; no third model checks the curvature.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .data import atmosphere_grid
from .errors import AtmosphereCoverageError
from .settings import DEFAULT_DEPTH_INDEX

# Depth points used for synthesis by default (see :mod:`.settings`).
DEPTH_INDEX = np.asarray(DEFAULT_DEPTH_INDEX)


# How far beyond the grid's [α/M] planes (0, +0.4) the interpolation may extrapolate (dex).
ALPHA_EXTRAPOLATION = 0.2


def alpha_range() -> tuple[float, float]:
    """The [α/M] (= [α/Fe] here) interval the realistic synthesizer accepts: the grid planes ± the extrapolation."""
    g = atmosphere_grid()
    return float(g.alpha[0]) - ALPHA_EXTRAPOLATION, float(g.alpha[-1]) + ALPHA_EXTRAPOLATION


class Atmosphere(NamedTuple):
    """A 1-D plane-parallel atmosphere; every field has shape (n_depth,), top first."""

    temperature: Float[Array, "n_depth"]  # K
    gas_pressure: Float[Array, "n_depth"]  # dyn cm^-2
    electron_density: Float[Array, "n_depth"]  # cm^-3
    rhox: Float[Array, "n_depth"]  # column mass, g cm^-2
    log_tau_ross: Float[Array, "n_depth"]  # nominal log10 τ_Ross


def _cell(axis: np.ndarray, x):
    """Lower index and fractional position of ``x`` in the (sorted) grid axis: the end cells extend beyond the
    axis (fraction < 0 or > 1, linear extrapolation); :func:`check_coverage` says how far that is allowed."""
    axis = jnp.asarray(axis)
    i = jnp.clip(jnp.searchsorted(axis, x, side="right") - 1, 0, axis.shape[0] - 2)
    w = (x - axis[i]) / (axis[i + 1] - axis[i])
    return i, w


def interpolate_atmosphere(teff, logg, mh, alpha=0.0, depth_index: np.ndarray | None = None) -> Atmosphere:
    """Interpolated ATLAS9 atmosphere (pure JAX; validate labels first with :func:`check_coverage`).

    Args:
        teff, logg, mh, alpha: scalars (K, dex cgs, [M/H], [α/M]); ``alpha`` may lie up to
            :data:`ALPHA_EXTRAPOLATION` outside the grid's planes (linear extrapolation).
        depth_index: ATLAS depth indices to return (default :data:`DEPTH_INDEX`).

    Returns:
        :class:`Atmosphere` with arrays of shape (n_depth,).
    """
    g = atmosphere_grid()
    k = DEPTH_INDEX if depth_index is None else np.asarray(depth_index)
    cells = [_cell(ax, x) for ax, x in ((g.mh, mh), (g.alpha, alpha), (g.teff, teff), (g.logg, logg))]
    fields = [jnp.asarray(f[..., k]) for f in (g.log_temperature, g.log_pressure, g.log_ne, g.log_rhox)]
    out = [0.0, 0.0, 0.0, 0.0]
    for corner in range(16):
        bits = [(corner >> b) & 1 for b in range(4)]
        weight = 1.0
        idx = []
        for (i, w), bit in zip(cells, bits):
            weight = weight * (w if bit else 1.0 - w)
            idx.append(i + bit)
        for n, f in enumerate(fields):
            out[n] = out[n] + weight * f[idx[0], idx[1], idx[2], idx[3]]
    log_t, log_p, log_ne, log_rhox = out
    return Atmosphere(10.0**log_t, 10.0**log_p, 10.0**log_ne, 10.0**log_rhox, jnp.asarray(g.log_tau_ross[k]))


def check_coverage(teff, logg, mh, alpha=0.0) -> None:
    """Raise :class:`AtmosphereCoverageError` unless every model around the point exists (eager)."""
    g = atmosphere_grid()
    vals = {
        "teff": np.atleast_1d(np.asarray(teff, float)),
        "logg": np.atleast_1d(np.asarray(logg, float)),
        "feh": np.atleast_1d(np.asarray(mh, float)),
        "alpha": np.atleast_1d(np.asarray(alpha, float)),
    }
    vals = dict(zip(vals, np.broadcast_arrays(*vals.values())))
    for name, v in vals.items():
        if not np.all(np.isfinite(v)):
            what = "alpha_fe" if name == "alpha" else name
            raise AtmosphereCoverageError(f"label {what!r} is NaN or infinite; give finite numbers")
    axes = {"feh": g.mh, "alpha": g.alpha, "teff": g.teff, "logg": g.logg}
    for name, ax in axes.items():
        v = vals[name]
        lo, hi = alpha_range() if name == "alpha" else (ax[0], ax[-1])
        bad = (v < lo - 1e-9) | (v > hi + 1e-9)
        if np.any(bad):
            what = "alpha_fe" if name == "alpha" else name
            raise AtmosphereCoverageError(
                f"{what}={v[bad][0]:g} is outside the ATLAS9 model-atmosphere grid ({lo:g} to {hi:g}); "
                "choose a value inside it"
            )
    for p in range(vals["teff"].size):
        idx = []
        for name in ("feh", "alpha", "teff", "logg"):
            ax = axes[name]
            x = vals[name][p]
            i = int(np.clip(np.searchsorted(ax, x, side="right") - 1, 0, len(ax) - 2))
            w = (x - ax[i]) / (ax[i + 1] - ax[i])  # outside [0, 1]: extrapolation, from both ends of the cell
            idx.append([i] if abs(w) <= 1e-12 else ([i + 1] if abs(w - 1) <= 1e-12 else [i, i + 1]))
        sub = g.valid[np.ix_(*idx)]
        if not sub.all():
            raise AtmosphereCoverageError(
                f"no ATLAS9 models around Teff={vals['teff'][p]:g} K, log g={vals['logg'][p]:g}, "
                f"[M/H]={vals['feh'][p]:g}, [α/M]={vals['alpha'][p]:g}: the grid has no models there "
                "(hot stars lack low log g). Raise log g or lower Teff, or use fidelity='simple'"
            )
