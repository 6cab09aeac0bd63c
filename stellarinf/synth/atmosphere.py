"""ATLAS9 model atmospheres interpolated in (Teff, log g, [M/H], [α/M]).

The Castelli–Kurucz models all sit on the same nominal Rosseland optical-depth scale
(log τ_Ross = −6.875 + 0.125 k), so interpolating each quantity *at fixed depth index* is
interpolation at fixed τ_Ross. We interpolate log T, log P, log n_e and log ρx multilinearly
between the 16 surrounding models: piecewise linear in the labels, finite gradients everywhere.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .data import atmosphere_grid
from .errors import AtmosphereCoverageError

# Depth points used for synthesis: log τ_Ross from −5.0 to +2.0 (ATLAS indices 15..71): every
# 0.125 dex where lines and continuum form (−3 ≤ log τ ≤ +1), every 0.25 dex above and below (44 points).
DEPTH_INDEX = np.concatenate([np.arange(15, 31, 2), np.arange(31, 63), np.arange(63, 72, 2)])


class Atmosphere(NamedTuple):
    """A 1-D plane-parallel atmosphere; every field has shape (n_depth,), top first."""

    temperature: Float[Array, "n_depth"]  # K
    gas_pressure: Float[Array, "n_depth"]  # dyn cm^-2
    electron_density: Float[Array, "n_depth"]  # cm^-3
    rhox: Float[Array, "n_depth"]  # column mass, g cm^-2
    log_tau_ross: Float[Array, "n_depth"]  # nominal log10 τ_Ross


def _cell(axis: np.ndarray, x):
    """Lower index and fractional position of ``x`` in the (sorted) grid axis; clamps at the ends."""
    axis = jnp.asarray(axis)
    i = jnp.clip(jnp.searchsorted(axis, x, side="right") - 1, 0, axis.shape[0] - 2)
    w = (x - axis[i]) / (axis[i + 1] - axis[i])
    return i, w


def interpolate_atmosphere(teff, logg, mh, alpha=0.0, depth_index: np.ndarray | None = None) -> Atmosphere:
    """Interpolated ATLAS9 atmosphere (pure JAX; validate labels first with :func:`check_coverage`).

    Args:
        teff, logg, mh, alpha: scalars (K, dex cgs, [M/H], [α/M]).
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
            raise AtmosphereCoverageError(f"label {name!r} is NaN or infinite; give finite numbers")
    axes = {"feh": g.mh, "alpha": g.alpha, "teff": g.teff, "logg": g.logg}
    for name, ax in axes.items():
        v = vals[name]
        bad = (v < ax[0] - 1e-9) | (v > ax[-1] + 1e-9)
        if np.any(bad):
            raise AtmosphereCoverageError(
                f"{name}={v[bad][0]:g} is outside the ATLAS9 model-atmosphere grid ({ax[0]:g} to {ax[-1]:g}); "
                "choose a value inside it"
            )
    for p in range(vals["teff"].size):
        idx = []
        for name in ("feh", "alpha", "teff", "logg"):
            ax = axes[name]
            x = vals[name][p]
            i = int(np.clip(np.searchsorted(ax, x, side="right") - 1, 0, len(ax) - 2))
            w = (x - ax[i]) / (ax[i + 1] - ax[i])
            idx.append([i] if w <= 1e-12 else ([i + 1] if w >= 1 - 1e-12 else [i, i + 1]))
        sub = g.valid[np.ix_(*idx)]
        if not sub.all():
            raise AtmosphereCoverageError(
                f"no ATLAS9 models around Teff={vals['teff'][p]:g} K, log g={vals['logg'][p]:g}, "
                f"[M/H]={vals['feh'][p]:g}, [α/M]={vals['alpha'][p]:g}: the grid has no models there "
                "(hot stars lack low log g). Raise log g or lower Teff, or use fidelity='simple'"
            )
