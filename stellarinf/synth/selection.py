"""Which lines matter for a window, and how wide their windows must be (eager, cached per window).

Each line's peak line-to-continuum opacity ratio and its damping reach are evaluated in a set of
reference atmospheres spanning the default label box, at its most favourable corner for lines
([Fe/H] = +0.5, every [X/Fe] = +0.5, vmic = 0.5 km/s); lines whose ratio never exceeds
:data:`STRENGTH_CUT` in the line-forming layers are dropped.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .. import __version__
from ..io.atomic import atomic_path
from ..paths import data_file
from .abundances import log_abundances
from .atmosphere import interpolate_atmosphere
from .chemistry import populations
from .continuum import continuum_opacity
from .data import DEFAULT_DAMPING, linelist, loggf_offsets, molecular_linelist
from .lines import EDGE_TOLERANCE, UNSOLD_ENHANCEMENT, LineData, line_data, line_params, molecular_line_data

STRENGTH_CUT = 3e-4
REFERENCE_TEFF = (4000.0, 4750.0, 5500.0, 6250.0, 7000.0)
REFERENCE_LOGG = (1.0, 3.0, 5.0)
LINE_MARGIN = 3.0  # Å: lines this far outside the grid still contribute wings


def _cache_path(wmin: float, wmax: float, strength_cut: float, extra: list, table: str) -> Path:
    """The disk cache of a selection from line list ``table``; ``extra``: what else it depends on (data files' names
    and modification times beyond the settings, the line list and the atmospheres)."""
    key = json.dumps(
        extra
        + [
            wmin,
            wmax,
            strength_cut,
            STRENGTH_CUT,
            REFERENCE_TEFF,
            REFERENCE_LOGG,
            LINE_MARGIN,
            EDGE_TOLERANCE,
            UNSOLD_ENHANCEMENT,
            __version__,
            os.path.getmtime(data_file(table)),
            os.path.getmtime(data_file("atmospheres_atlas9.h5")),
        ]
    )
    root = Path(os.environ.get("STELLARINF_CACHE", Path.home() / ".cache" / "stellarinf"))
    return root / f"line_selection_{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


@functools.lru_cache(maxsize=8)
def select_lines(
    wmin: float, wmax: float, strength_cut: float = STRENGTH_CUT, damping: str = DEFAULT_DAMPING
) -> tuple[np.ndarray, np.ndarray]:
    """(indices into the line list, required window half-width in km/s) for lines in [wmin, wmax], with the
    damping constants of ``damping`` (they set how far the wings reach).

    The result is cached on disk (``$STELLARINF_CACHE`` or ``~/.cache/stellarinf``), keyed by the
    settings and the data files' modification times; a cache that cannot be written is skipped.
    """
    extra = [] if damping == "unsold" else [damping, os.path.getmtime(data_file("damping.ecsv"))]
    path = _cache_path(wmin, wmax, strength_cut, extra, "linelist.ecsv")
    return _cached_on_disk(path, lambda: _select(wmin, wmax, strength_cut, damping))


def _cached_on_disk(path: Path, compute) -> tuple[np.ndarray, np.ndarray]:
    """``compute()``'s (index, half_width), read from ``path`` if it is there, else computed and written (atomically;
    a cache that cannot be written is skipped)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["index"], z["half_width"]
    except (OSError, KeyError, ValueError):
        pass
    idx, hw = compute()
    try:
        with atomic_path(path, ".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, index=idx, half_width=hw)
    except OSError:
        pass
    return idx, hw


def _select(wmin: float, wmax: float, strength_cut: float, damping: str) -> tuple[np.ndarray, np.ndarray]:
    ll = linelist()
    idx = np.flatnonzero((ll.wavelength >= wmin - LINE_MARGIN) & (ll.wavelength <= wmax + LINE_MARGIN))
    if idx.size == 0:
        return idx, np.zeros(0)
    if damping == "unsold":
        lines = line_data(idx, damping=damping)
    else:
        # This selection also serves the calibration that makes damping's own gf table: rate lines at the
        # larger of the laboratory and the (Unsöld-)calibrated gf, an upper bound on either.
        lines = line_data(idx, "laboratory", damping)
        lines = lines._replace(log_gf=lines.log_gf + np.maximum(loggf_offsets("solar", "unsold")[idx], 0.0))
    return _keep_strong(idx, lines, jnp.full(93, 0.5), False, strength_cut)


@functools.lru_cache(maxsize=8)
def select_molecular_lines(
    wmin: float, wmax: float, strength_cut: float = STRENGTH_CUT
) -> tuple[np.ndarray, np.ndarray]:
    """As :func:`select_lines` for the molecular list (rows of ``data/linelist_molecules.ecsv``), rated with the
    molecular equilibrium at the box's most favourable corner for molecules: [Fe/H] = +0.5, [C/Fe] = [N/Fe] =
    [Mg/Fe] = +0.5 and oxygen solar-scaled (oxygen binds carbon in CO). Cached on disk like :func:`select_lines`."""
    extra = ["molecules", os.path.getmtime(data_file("molecules.ecsv"))]
    path = _cache_path(wmin, wmax, strength_cut, extra, "linelist_molecules.ecsv")
    return _cached_on_disk(path, lambda: _select_molecular(wmin, wmax, strength_cut))


def _select_molecular(wmin: float, wmax: float, strength_cut: float) -> tuple[np.ndarray, np.ndarray]:
    ml = molecular_linelist()
    idx = np.flatnonzero((ml.wavelength >= wmin - LINE_MARGIN) & (ml.wavelength <= wmax + LINE_MARGIN))
    if idx.size == 0:
        return idx, np.zeros(0)
    xfe = jnp.zeros(93).at[jnp.asarray([6, 7, 12])].set(0.5)
    return _keep_strong(idx, molecular_line_data(idx), xfe, True, strength_cut)


def _keep_strong(idx: np.ndarray, lines: LineData, xfe, molecules: bool, strength_cut: float):
    """(the rows ``idx`` of ``lines`` whose ratio exceeds ``strength_cut``, their window half-widths ≥ 3 km/s)."""
    ratio_max, width_max = _strength(lines, xfe, molecules)
    keep = ratio_max > strength_cut
    return idx[keep], np.maximum(width_max[keep], 3.0)


def _strength(lines: LineData, xfe, molecules: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each line's largest line-to-continuum opacity ratio in the line-forming layers of the reference
    atmospheres at [Fe/H] = +0.5 and ``xfe``, and the half-width (km/s) its profile needs there."""
    wl = jnp.asarray(lines.wavelength)
    logeps = log_abundances(0.5, xfe)

    def measure(teff, logg):
        atm = interpolate_atmosphere(teff, logg, 0.5, 0.0)
        pops = populations(atm.temperature, atm.gas_pressure, atm.electron_density, logeps, molecules)
        a, s = continuum_opacity(wl, atm.temperature, atm.electron_density, pops)
        p = line_params(lines, atm.temperature, atm.electron_density, pops, 0.5)
        ratio = p.amplitude / (a + s).T  # (n_lines, n_depth) per unit H(a, v)
        # Half-width where the profile drops to EDGE_TOLERANCE: Gaussian core or Lorentzian wing.
        core = jnp.sqrt(jnp.log(jnp.maximum(ratio / EDGE_TOLERANCE, 1.0)))
        wing = jnp.sqrt(ratio * p.damping / (1.7725 * EDGE_TOLERANCE))
        return ratio, jnp.maximum(core, wing) * p.doppler_kms

    forming = np.asarray(
        (interpolate_atmosphere(5000.0, 3.0, 0.0).log_tau_ross >= -4.0)
        & (interpolate_atmosphere(5000.0, 3.0, 0.0).log_tau_ross <= 0.5)
    )
    tt, gg = np.meshgrid(REFERENCE_TEFF, REFERENCE_LOGG)
    r, w = jax.jit(jax.vmap(measure))(jnp.asarray(tt.ravel()), jnp.asarray(gg.ravel()))  # one compiled call
    return np.asarray(r)[:, :, forming].max(axis=(0, 2)), np.asarray(w)[:, :, forming].max(axis=(0, 2))
