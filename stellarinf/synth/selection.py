"""Which lines matter for a window, and how wide their windows must be (eager, cached per window).

Each line's peak line-to-continuum opacity ratio and its damping reach are evaluated in a set of
reference atmospheres spanning the default label box, at its most favourable corner for lines
([Fe/H] = +0.5, every [X/Fe] = +0.5, vmic = 0.5 km/s); lines whose ratio never exceeds
:data:`STRENGTH_CUT` in the line-forming layers are dropped. A window reaches as far as the line's profile stays
above the edge tolerance (1e-3 of the continuum opacity; :class:`~stellarinf.synth.settings.SynthSettings`), at
vmic 0.5 or 2.5 km/s, whichever reaches further (the box's top vmic widens the Doppler cores).

A selection can also serve only stars with Teff ≥ ``teff_min``, [Fe/H] ≤ ``feh_max`` and log g ≤ ``logg_max`` (a
:class:`Tier`, :func:`selection_tier`): it keeps every line of the box's selection, with the window each needs in
the tier's reference atmospheres only (the Teff tier's edge and the box's reference Teffs above it, the reference
log g at or below the log g tier, at the [Fe/H] tier), never wider than the box's. Cool, metal-rich, high-pressure
atmospheres are where molecular bands and the damping wings reach furthest, so the other tiers need far fewer
(line, pixel) pairs (the four GALAH arms with molecules, km/s of window summed over 30,049 lines, sized at vmic 0.5
km/s only as before the twenty-sixth session: 866k for the whole
box, 640k from 4375 K, 444k from 4750 K, 292k from 5500 K, 254k from 6250 K; giants, log g ≤ 3: 688k, 491k, 314k,
193k, 162k), and a grid computed in batches of similar stars costs much less. TiO's lines (:data:`DROP_IN_TIERS`)
are the exception: a tier keeps only those above the cut in its own atmospheres (galah-red's TiO band 6640–6700 Å:
all 26,501 below 5500 K, 19,330 from 5500 K, 158 from 6250 K, none from 7000 K; the spectra of stars at each tier's
coolest, most metal-rich corner are unchanged to the last bit).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import __version__
from ..io.atomic import atomic_path
from ..labels import DEFAULT_STELLAR_BOUNDS
from ..paths import cache_dir, data_dir, data_file
from .abundances import log_abundances
from .atmosphere import interpolate_atmosphere
from .chemistry import populations
from .continuum import continuum_opacity
from .data import (
    DEFAULT_DAMPING,
    LOGGF_TABLES,
    MOLECULAR_TABLE,
    TIO_TABLE,
    empirical_lines,
    linelist,
    loggf_offsets,
    molecular_linelist,
)
from .lines import (
    EDGE_TOLERANCE,
    UNSOLD_ENHANCEMENT,
    LineData,
    empirical_line_data,
    line_data,
    line_params,
    molecular_line_data,
)

STRENGTH_CUT = 3e-4
REFERENCE_TEFF = (4000.0, 4750.0, 5500.0, 6250.0, 7000.0)
REFERENCE_LOGG = (1.0, 3.0, 5.0)

# Tier edges. A Teff tier adds its edge to the reference atmospheres above it (4375 K is not a reference of the box);
# the coolest stars (below the first edge) are served by the whole box.
TEFF_TIERS = (4375.0, 4750.0, 5500.0, 6250.0, 7000.0)
FEH_TIERS = (-1.5, -0.5)  # [Fe/H] at which the metal-poor tiers are rated (the box's own corner is +0.5)
LOGG_TIERS = (3.0,)  # giants: the reference atmospheres with log g ≤ 3 only (narrower damping wings)
BOX_FEH = 0.5
# Windows are sized for the Doppler cores at the label box's largest vmic too: at 0.5 km/s only, as lines are rated,
# a star at 2.5 km/s lost up to 0.8 % of the continuum to its cut cores (twenty-sixth session).
RATING_VMIC, WINDOW_VMIC = DEFAULT_STELLAR_BOUNDS["vmic"]  # rated where lines are strongest: the narrowest cores


class Tier(NamedTuple):
    """Which stars a selection serves: Teff ≥ ``teff_min`` (a value of :data:`TEFF_TIERS`), [Fe/H] ≤ ``feh_max`` (a
    value of :data:`FEH_TIERS`) and log g ≤ ``logg_max`` (a value of :data:`LOGG_TIERS`); None: the whole box on that
    axis."""

    teff_min: float | None = None
    feh_max: float | None = None
    logg_max: float | None = None


def selection_tier(teff_min: float | None = None, feh_max: float | None = None, logg_max: float | None = None) -> Tier:
    """The tier that serves every star with Teff ≥ ``teff_min``, [Fe/H] ≤ ``feh_max`` and log g ≤ ``logg_max``: the
    Teff tier at or below ``teff_min`` (below the first: the whole box), the [Fe/H] tier and the log g tier at or
    above ``feh_max`` and ``logg_max``."""
    below = [t for t in TEFF_TIERS if teff_min is not None and t <= teff_min]
    above = [f for f in FEH_TIERS if feh_max is not None and f >= feh_max]
    above_g = [g for g in LOGG_TIERS if logg_max is not None and g >= logg_max]
    return Tier(below[-1] if below else None, above[0] if above else None, above_g[0] if above_g else None)


def tier_scheme(molecules: str | None = None) -> str:
    """The tier edges, as a grid made in tier batches with ``molecules`` records them (another scheme gives other
    windows; with TiO, other lines too)."""
    edges = (("Teff", TEFF_TIERS), ("[Fe/H]", FEH_TIERS), ("log g", LOGG_TIERS))
    scheme = "box lines, windows per tier: " + "; ".join(
        f"{name} {'/'.join(f'{v:g}' for v in values)}" for name, values in edges
    )
    return scheme + ("; TiO lines below the cut in a tier dropped" if molecules == "on+tio" else "")


def window_scheme() -> str:
    """How line windows are sized, as a realistic grid records it (another rule gives other spectra)."""
    return f"to the edge tolerance at vmic {RATING_VMIC:g} and {WINDOW_VMIC:g} km/s"


def _reference_teffs(tier: Tier) -> tuple[float, ...]:
    if tier.teff_min is None:
        return REFERENCE_TEFF
    return (tier.teff_min,) + tuple(t for t in REFERENCE_TEFF if t > tier.teff_min)


def _reference_loggs(tier: Tier) -> tuple[float, ...]:
    return REFERENCE_LOGG if tier.logg_max is None else tuple(g for g in REFERENCE_LOGG if g <= tier.logg_max)


def _tier_key(tier: Tier) -> list:
    # the whole box keeps the key selections had before tiers existed, so their disk caches stay valid
    if tier == Tier():
        return [_reference_teffs(tier)]
    key = [_reference_teffs(tier), "box lines, tier windows"] + ([] if tier.feh_max is None else [tier.feh_max])
    return key + ([] if tier.logg_max is None else [["logg", _reference_loggs(tier)]])


LINE_MARGIN = 3.0  # Å: lines this far outside the grid still contribute wings


def _cache_path(
    wmin: float,
    wmax: float,
    strength_cut: float,
    extra: list,
    table: str,
    tier: Tier = Tier(),
    edge_tolerance: float = EDGE_TOLERANCE,
) -> Path:
    """The disk cache of a selection from line list ``table``; ``extra``: what else it depends on (data files' names
    and modification times beyond the settings, the line list and the atmospheres)."""
    key = json.dumps(
        extra
        + [
            wmin,
            wmax,
            strength_cut,
            STRENGTH_CUT,
            *_tier_key(tier),
            REFERENCE_LOGG,
            LINE_MARGIN,
            edge_tolerance,
            ["window vmic", WINDOW_VMIC],
            UNSOLD_ENHANCEMENT,
            __version__,
            os.path.getmtime(data_file(table)),
            os.path.getmtime(data_file("atmospheres_atlas9.h5")),
        ]
    )
    return cache_dir() / f"line_selection_{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


@functools.lru_cache(maxsize=8)
def select_lines(
    wmin: float,
    wmax: float,
    strength_cut: float = STRENGTH_CUT,
    damping: str = DEFAULT_DAMPING,
    teff_min: float | None = None,
    feh_max: float | None = None,
    logg_max: float | None = None,
    edge_tolerance: float = EDGE_TOLERANCE,
) -> tuple[np.ndarray, np.ndarray]:
    """(indices into the line list, required window half-width in km/s) for lines in [wmin, wmax], with the
    damping constants of ``damping`` (they set how far the wings reach); ``teff_min``, ``feh_max``, ``logg_max``: for
    stars at least that hot and at most that metal-rich and that dense only (:func:`selection_tier`).

    The result is cached on disk (``$STELLARINF_CACHE`` or ``~/.cache/stellarinf``), keyed by the
    settings and the data files' modification times; a cache that cannot be written is skipped.
    """
    extra = [] if damping == "unsold" else [damping, os.path.getmtime(data_file("damping.ecsv"))]
    # lines are rated with the Unsöld-calibrated gf (see _select), so the selection depends on that table too
    calibration = data_dir() / LOGGF_TABLES["unsold"]
    if calibration.exists():
        extra = extra + [os.path.getmtime(calibration)]
    tier = selection_tier(teff_min, feh_max, logg_max)
    path = _cache_path(wmin, wmax, strength_cut, extra, "linelist.ecsv", tier, edge_tolerance)
    if tier == Tier():
        return _cached_on_disk(path, lambda: _select(wmin, wmax, strength_cut, damping, edge_tolerance))
    box = select_lines(wmin, wmax, strength_cut, damping, edge_tolerance=edge_tolerance)
    lines = _rating_lines(box[0], damping)
    return _cached_on_disk(path, lambda: _narrowed(box, lines, _ATOM_XFE, False, tier, edge_tolerance))


def _narrowed(
    box, lines: LineData, xfe, molecules: bool | str, tier: Tier, edge_tolerance: float, drop_below: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A tier's selection: every line of the box's selection ``box`` (``lines``: their data), with the window its
    profile needs in the tier's reference atmospheres, never wider than the box's nor narrower than 3 km/s.

    Atomic lines are not dropped: dropping the ones below the cut in the tier saved under 1 % of the pairs; the saving
    is in the damping wings' windows. ``drop_below`` (a strength cut; :data:`DROP_IN_TIERS`) drops the lines whose
    ratio stays below it in the tier's atmospheres: TiO's ~10⁵ lines a window are there for the coolest stars only."""
    idx, box_hw = box
    if idx.size == 0:
        return box
    feh = BOX_FEH if tier.feh_max is None else tier.feh_max
    refs = (_reference_teffs(tier), feh, _reference_loggs(tier))
    ratio, width = _strength(lines, jnp.asarray(xfe), molecules, *refs, tolerance=edge_tolerance)
    keep = np.ones(idx.size, bool) if drop_below is None else np.asarray(ratio) > drop_below
    return idx[keep], np.maximum(np.minimum(width, box_hw), 3.0)[keep]


# One reader at a time: np.load parses each array's header with ast.literal_eval, which on CPython 3.11 can fail
# with "SystemError: AST constructor recursion depth mismatch" when two threads parse at once (cpython gh-106905);
# the grid command synthesises its tiers in threads, and each reads its selection here.
_READ_LOCK = threading.Lock()


def _cached_on_disk(path: Path, compute) -> tuple[np.ndarray, np.ndarray]:
    """``compute()``'s (index, half_width), read from ``path`` if it is there, else computed and written (atomically;
    a cache that cannot be written is skipped)."""
    try:
        with _READ_LOCK, np.load(path, allow_pickle=False) as z:
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


_ATOM_XFE = np.full(93, 0.5)  # every [X/Fe] at the box's top: lines as strong as the box allows
_MOLECULE_XFE = np.zeros(93)
_MOLECULE_XFE[[6, 7, 12]] = 0.5  # C, N, Mg at the top; oxygen solar-scaled (it binds carbon in CO)
_TIO_XFE = np.zeros(93)
_TIO_XFE[[8, 22]] = 0.5  # Ti and O at the top
# per molecular table: the abundances it is rated at and the molecule set whose equilibrium gives its absorbers
_MOLECULE_RATING = {MOLECULAR_TABLE: (_MOLECULE_XFE, True), TIO_TABLE: (_TIO_XFE, "on+tio")}
RATING_CHUNK = 20_000  # lines rated per compiled call
# molecular tables whose lines a tier drops where they stay below the strength cut in its atmospheres: every TiO line
# is above it at 4000 K, a few hundred from 6250 K and none from 7000 K, where the ~10⁵ lines a window add nothing
DROP_IN_TIERS = frozenset({TIO_TABLE})


def _select(
    wmin: float, wmax: float, strength_cut: float, damping: str, edge_tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    ll = linelist()
    idx = np.flatnonzero((ll.wavelength >= wmin - LINE_MARGIN) & (ll.wavelength <= wmax + LINE_MARGIN))
    if idx.size == 0:
        return idx, np.zeros(0)
    return _keep_strong(idx, _rating_lines(idx, damping), _ATOM_XFE, False, strength_cut, edge_tolerance)


def _rating_lines(idx: np.ndarray, damping: str) -> LineData:
    """The line data the selection rates rows ``idx`` of the line list with."""
    if damping == "unsold":
        return line_data(idx, damping=damping)
    # This selection also serves the calibration that makes damping's own gf table: rate lines at the
    # larger of the laboratory and the (Unsöld-)calibrated gf, an upper bound on either.
    lines = line_data(idx, "laboratory", damping)
    return lines._replace(log_gf=lines.log_gf + np.maximum(loggf_offsets("solar", "unsold")[idx], 0.0))


@functools.lru_cache(maxsize=8)
def select_empirical_lines(wmin: float, wmax: float, damping: str = DEFAULT_DAMPING) -> tuple[LineData, np.ndarray]:
    """(line data, window half-widths in km/s) of the solar calibration's empirical lines within
    [wmin − LINE_MARGIN, wmax + LINE_MARGIN] that belong to ``damping``'s log gf table; every one is kept (each is
    a feature the observed Sun shows)."""
    e = empirical_lines()
    keep = _empirical_in(wmin, wmax, damping)
    lines = empirical_line_data(e.wavelength[keep], e.Z[keep], e.ion[keep], e.elow[keep], e.loggf[keep])
    return lines, line_half_widths(lines)


def _empirical_in(wmin: float, wmax: float, damping: str) -> np.ndarray:
    """Mask of the empirical lines within [wmin − LINE_MARGIN, wmax + LINE_MARGIN] that belong to ``damping``."""
    e = empirical_lines()
    return (e.wavelength >= wmin - LINE_MARGIN) & (e.wavelength <= wmax + LINE_MARGIN) & (e.damping == damping)


def calibration_fingerprint(wmin: float, wmax: float, damping: str = DEFAULT_DAMPING) -> str:
    """A short hash of the solar calibration as it bears on [wmin, wmax] (the log gf offsets of the lines there and
    the empirical lines there): grids record it, so a grid is never resumed with another calibration of its window
    while recalibrating other windows leaves it valid."""
    ll = linelist()
    near = (ll.wavelength >= wmin - LINE_MARGIN) & (ll.wavelength <= wmax + LINE_MARGIN)
    e, keep = empirical_lines(), _empirical_in(wmin, wmax, damping)
    h = hashlib.sha256(np.ascontiguousarray(loggf_offsets("solar", damping)[near]).tobytes())
    h.update(np.ascontiguousarray(np.stack([e.wavelength[keep], e.loggf[keep], e.elow[keep]])).tobytes())
    return h.hexdigest()[:16]


def line_half_widths(lines: LineData) -> np.ndarray:
    """Window half-widths (km/s, ≥ 3) that ``lines`` need anywhere in the reference atmospheres."""
    if lines.wavelength.size == 0:
        return np.zeros(0)
    return np.maximum(_strength(lines, jnp.asarray(_ATOM_XFE), False)[1], 3.0)


@functools.lru_cache(maxsize=8)
def select_molecular_lines(
    wmin: float,
    wmax: float,
    strength_cut: float = STRENGTH_CUT,
    teff_min: float | None = None,
    feh_max: float | None = None,
    logg_max: float | None = None,
    edge_tolerance: float = EDGE_TOLERANCE,
    table: str = MOLECULAR_TABLE,
) -> tuple[np.ndarray, np.ndarray]:
    """As :func:`select_lines` for a molecular list (rows of ``data/linelist_molecules.ecsv``, or of
    ``data/linelist_tio.h5`` with ``table=TIO_TABLE``), rated with the molecular equilibrium at the box's most
    favourable corner for molecules: [Fe/H] = +0.5, [C/Fe] = [N/Fe] = [Mg/Fe] = +0.5 and oxygen solar-scaled (oxygen
    binds carbon in CO); for TiO [Ti/Fe] = [O/Fe] = +0.5. Cached on disk like :func:`select_lines`."""
    xfe, molecules = _MOLECULE_RATING[table]
    drop = table in DROP_IN_TIERS
    extra = ["molecules", os.path.getmtime(data_file("molecules.ecsv"))] + ([] if table == MOLECULAR_TABLE else [table])
    extra += ["dropped below the cut in tiers"] if drop else []
    tier = selection_tier(teff_min, feh_max, logg_max)
    path = _cache_path(wmin, wmax, strength_cut, extra, table, tier, edge_tolerance)
    if tier == Tier():
        return _cached_on_disk(path, lambda: _select_molecular(wmin, wmax, strength_cut, edge_tolerance, table))
    box = select_molecular_lines(wmin, wmax, strength_cut, edge_tolerance=edge_tolerance, table=table)
    lines = molecular_line_data(box[0], table)
    cut = strength_cut if drop else None
    return _cached_on_disk(path, lambda: _narrowed(box, lines, xfe, molecules, tier, edge_tolerance, cut))


def _select_molecular(
    wmin: float, wmax: float, strength_cut: float, edge_tolerance: float, table: str = MOLECULAR_TABLE
) -> tuple[np.ndarray, np.ndarray]:
    ml = molecular_linelist(table)
    idx = np.flatnonzero((ml.wavelength >= wmin - LINE_MARGIN) & (ml.wavelength <= wmax + LINE_MARGIN))
    if idx.size == 0:
        return idx, np.zeros(0)
    xfe, molecules = _MOLECULE_RATING[table]
    parts = [  # in chunks: the strengths of every line in 15 atmospheres at once (a TiO band: ~10⁵ lines)
        _keep_strong(c, molecular_line_data(c, table), xfe, molecules, strength_cut, edge_tolerance)
        for c in np.array_split(idx, -(-idx.size // RATING_CHUNK))
    ]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _keep_strong(
    idx: np.ndarray, lines: LineData, xfe, molecules: bool | str, strength_cut: float, edge_tolerance: float
):
    """(the rows ``idx`` of ``lines`` whose ratio exceeds ``strength_cut`` anywhere in the box, their window
    half-widths ≥ 3 km/s)."""
    ratio_max, width_max = _strength(lines, jnp.asarray(xfe), molecules, tolerance=edge_tolerance)
    keep = ratio_max > strength_cut
    return idx[keep], np.maximum(width_max[keep], 3.0)


def _strength(
    lines: LineData,
    xfe,
    molecules: bool | str,
    teffs: tuple[float, ...] = REFERENCE_TEFF,
    feh: float = BOX_FEH,
    loggs: tuple[float, ...] = REFERENCE_LOGG,
    tolerance: float = EDGE_TOLERANCE,
) -> tuple[np.ndarray, np.ndarray]:
    """Each line's largest line-to-continuum opacity ratio in the line-forming layers of the reference
    atmospheres (``teffs`` × ``loggs``) at [Fe/H] = ``feh`` and ``xfe``, and the half-width (km/s) its profile needs
    there."""
    wl = jnp.asarray(lines.wavelength)
    logeps = log_abundances(feh, xfe)

    def measure(teff, logg):
        atm = interpolate_atmosphere(teff, logg, feh, 0.0)
        pops = populations(atm.temperature, atm.gas_pressure, atm.electron_density, logeps, molecules)
        a, s = continuum_opacity(wl, atm.temperature, atm.electron_density, pops)

        def reach(vmic):
            p = line_params(lines, atm.temperature, atm.electron_density, pops, vmic)
            ratio = p.amplitude / (a + s).T  # (n_lines, n_depth) per unit H(a, v)
            # Half-width where the profile drops to ``tolerance``: Gaussian core or Lorentzian wing.
            core = jnp.sqrt(jnp.log(jnp.maximum(ratio / tolerance, 1.0)))
            wing = jnp.sqrt(ratio * p.damping / (1.7725 * tolerance))
            return ratio, jnp.maximum(core, wing) * p.doppler_kms

        ratio, width = reach(RATING_VMIC)
        # a wider Doppler core reaches further at the same tolerance (the Lorentzian wing does not depend on it)
        return ratio, jnp.maximum(width, reach(WINDOW_VMIC)[1])

    forming = np.asarray(
        (interpolate_atmosphere(5000.0, 3.0, 0.0).log_tau_ross >= -4.0)
        & (interpolate_atmosphere(5000.0, 3.0, 0.0).log_tau_ross <= 0.5)
    )
    tt, gg = np.meshgrid(teffs, loggs)
    r, w = jax.jit(jax.vmap(measure))(jnp.asarray(tt.ravel()), jnp.asarray(gg.ravel()))  # one compiled call
    return np.asarray(r)[:, :, forming].max(axis=(0, 2)), np.asarray(w)[:, :, forming].max(axis=(0, 2))
