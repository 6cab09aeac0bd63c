"""Line opacity of atoms and molecules: Voigt profiles evaluated only in a fixed-size window around each line.

Setup (eager, numpy) turns the line list into static arrays: which lines matter for a wavelength
grid and how wide each line's window must be (:mod:`stellarinf.synth.selection`, at the most
favourable conditions of the label box), the pixel indices of each window and a smooth taper at its
edges. Windows are flattened into (line, pixel) pairs, so the cost scales with the total window
size, not lines × wavelengths. The opacity itself (JAX) is a scatter-add of ``n_pairs × n_depth``
Voigt values: Weideman's accurate form in the line core, Humlíček's cheap rational form in the wings.

Broadening: thermal + microturbulent Doppler width; radiative damping (classical,
γ = 2.223e15/λ² s⁻¹ with λ in Å); van der Waals by H I in the Unsöld (1955) approximation,
enhanced by :data:`UNSOLD_ENHANCEMENT` (the usual correction for Unsöld's underestimate), or with
``damping="abo"`` the tabulated data of the Gaia-ESO list where it has them (ABO cross-sections, γ6 at
10⁴ K, radiative widths; :func:`~stellarinf.synth.data.damping_constants`); quadratic
Stark by electrons after Cowley (1971), γ₄ = 5.42e-7 n*⁴ / (z+1)² · n_e (z = 0 for neutrals).
Every van der Waals recipe is γ6 = N_H · 10^log_vdw · (T / 10⁴ K)^vdw_exponent, so one formula serves all.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from scipy.special import gamma as gamma_fn

from .constants import AMU, ATOMIC_MASS, BOHR, C_KMS, CHI_H, HC_EV_ANGSTROM, K_B, K_B_EV, N_ELEMENTS, PI_E2_MC
from .data import (
    DEFAULT_DAMPING,
    DEFAULT_LOGGF,
    damping_constants,
    ionization_energies,
    linelist,
    loggf_offsets,
    molecular_linelist,
)
from .voigt import SQRT_PI, WING_V, voigt_core, voigt_wing

UNSOLD_ENHANCEMENT = 2.0
MAX_HALF_WIDTH_KMS = 1000.0  # about 22 Å: the widest wings kept (strong Ca I, Fe I lines)
EDGE_TOLERANCE = 1e-3  # line/continuum opacity allowed at a window edge before tapering


class LinePoints(NamedTuple):
    """Flattened (line, pixel) pairs of all line windows; one set for cores, one for wings."""

    line: np.ndarray  # (n_pts,) index into the LineData arrays
    pixel: np.ndarray  # (n_pts,) fine-grid index
    dv: np.ndarray  # (n_pts,) velocity offset from line centre, km/s
    taper: np.ndarray  # (n_pts,) smooth edge taper


class LineData(NamedTuple):
    """Static per-line quantities (numpy, shape (n_lines,))."""

    wavelength: np.ndarray
    Z: np.ndarray
    ion: np.ndarray
    elow: np.ndarray
    log_gf: np.ndarray
    mass: np.ndarray  # amu
    gamma_rad: np.ndarray  # s^-1
    log_c6: np.ndarray  # log10 C6 (cm^6 s^-1), Unsöld
    stark: np.ndarray  # γ4 / n_e (cm^3 s^-1)
    log_vdw: np.ndarray  # log10 γ6 / N_H (s^-1 cm^3) at 10,000 K
    vdw_exponent: np.ndarray  # γ6 ∝ T^vdw_exponent
    absorber: np.ndarray  # row of :func:`absorbers`: 3 Z + ion for atoms, then the molecules


def absorbers(pops) -> tuple[Float[Array, "n_abs n_depth"], Float[Array, "n_abs n_depth"]]:
    """(number density, ln partition function) of every absorber: each element's stages I–III (row 3 Z + ion),
    then the molecules of :data:`.molecules.MOLECULES` when the populations have them."""
    n_depth = pops.species.shape[-1]
    dens, log_u = pops.species.reshape(-1, n_depth), pops.log_u.reshape(-1, n_depth)
    if pops.molecules is not None:
        dens = jnp.concatenate([dens, pops.molecules])
        log_u = jnp.concatenate([log_u, pops.log_u_molecules])
    return dens, log_u


def molecule_absorber(name: str) -> int:
    """The :func:`absorbers` row of molecule ``name`` (TiO is the last of its set, so every other molecule has the
    same row with or without it)."""
    from .molecules import TIO_MOLECULES

    return 3 * (N_ELEMENTS + 1) + TIO_MOLECULES.index(name)


def molecular_line_data(index: np.ndarray | None = None, table: str | None = None) -> LineData:
    """Static data for lines of a molecular list (``table``: ``data.MOLECULAR_TABLE``, the default, or
    ``data.TIO_TABLE``; all lines, or rows ``index``).

    Molecular lines are weak and Doppler-dominated: classical radiative damping, no van der Waals or Stark
    broadening (their collision data are not in the source)."""
    ml = molecular_linelist() if table is None else molecular_linelist(table)
    sel = slice(None) if index is None else np.asarray(index)
    lam = ml.wavelength[sel]
    n = lam.size
    absorber = np.array([molecule_absorber(m) for m in ml.molecule[sel]], dtype=np.int64)
    zeros = np.zeros(n)
    return LineData(
        lam,
        np.zeros(n, np.int64),
        np.zeros(n, np.int64),
        ml.elow[sel],
        ml.loggf[sel],
        ml.mass[sel],
        2.223e15 / lam**2,
        np.full(n, -40.0),
        zeros,
        np.full(n, -40.0),
        np.full(n, 0.3),
        absorber,
    )


def concat_lines(*parts: LineData) -> LineData:
    """One :class:`LineData` holding the lines of ``parts`` in order."""
    return LineData(*(np.concatenate(cols) for cols in zip(*parts)))


def line_data(index: np.ndarray | None = None, loggf: str = DEFAULT_LOGGF, damping: str = DEFAULT_DAMPING) -> LineData:
    """Static broadening data for lines of the shipped list (all, or rows ``index``).

    ``loggf`` chooses the oscillator strengths: ``"solar"`` (laboratory values corrected by the
    astrophysical offsets fitted to the observed Sun, :func:`~stellarinf.synth.data.loggf_offsets`;
    the default) or ``"laboratory"`` (linemake's values as shipped). ``damping``: ``"unsold"`` (Unsöld × 2
    for every line) or ``"abo"`` (tabulated where available, :func:`~stellarinf.synth.data.damping_constants`).
    """
    ll = linelist()
    sel = slice(None) if index is None else np.asarray(index)
    gf = ll.loggf + loggf_offsets(loggf, damping)
    lam, Z, ion, elow = ll.wavelength[sel], ll.Z[sel], ll.ion[sel], ll.elow[sel]
    iso = ll.isotope[sel]
    mass = np.where(iso > 0, iso.astype(float), ATOMIC_MASS[Z - 1])
    c6, stark = _unsold_c6_and_stark(lam, Z, ion, elow)
    log_vdw, vdw_exponent, gamma_rad = _van_der_waals(damping_constants(damping), sel, c6, mass)
    gamma_rad = np.where(gamma_rad > 0.0, gamma_rad, 2.223e15 / lam**2)
    absorber = 3 * Z + ion
    return LineData(lam, Z, ion, elow, gf[sel], mass, gamma_rad, np.log10(c6), stark, log_vdw, vdw_exponent, absorber)


def empirical_line_data(
    wavelength: np.ndarray, Z: np.ndarray, ion: np.ndarray, elow: np.ndarray, log_gf: np.ndarray
) -> LineData:
    """Static data for lines given by their parameters alone (the empirical lines of the solar calibration, or
    its candidates): Unsöld × :data:`UNSOLD_ENHANCEMENT` van der Waals, Cowley Stark, classical radiative damping."""
    lam, Z, ion = np.asarray(wavelength, np.float64), np.asarray(Z, np.int64), np.asarray(ion, np.int64)
    elow = np.asarray(elow, np.float64)
    mass = ATOMIC_MASS[Z - 1].astype(np.float64)
    c6, stark = _unsold_c6_and_stark(lam, Z, ion, elow)
    return LineData(
        lam,
        Z,
        ion,
        elow,
        np.asarray(log_gf, np.float64),
        mass,
        2.223e15 / lam**2,
        np.log10(c6),
        stark,
        unsold_log_vdw(c6, mass),
        np.full(lam.size, 0.3),
        3 * Z + ion,
    )


def _unsold_c6_and_stark(lam, Z, ion, elow):
    """(C6 in Unsöld's approximation (cm⁶ s⁻¹), quadratic Stark γ4 / n_e (cm³ s⁻¹)) of atomic lines."""
    chi = ionization_energies()[Z, ion]
    eup = elow + HC_EV_ANGSTROM / lam
    # Effective binding energies; lines near or above the limit get a floor of 0.5 eV (their
    # upper levels are very extended and Unsöld/Cowley are only indicative there).
    bind_up = np.maximum(chi - eup, 0.5)
    bind_lo = np.maximum(chi - elow, bind_up + 0.1)
    zeff = ion + 1.0
    # ⟨r²⟩ ≈ 2.5 n*⁴ a0² / z², n*² = z² χ_H / E_bind → C6 = 6.5e-34 · Δ(2.5 n*⁴/z²) cm⁶ s⁻¹.
    c6 = 6.46e-34 * 2.5 * zeff**2 * CHI_H**2 * (1.0 / bind_up**2 - 1.0 / bind_lo**2)
    neff2 = zeff**2 * CHI_H / bind_up
    return c6, 5.42e-7 * neff2**2 / zeff**2


def _mean_speed_1e4(mass):
    """Mean relative speed √(8kT/πμ) of an atom of ``mass`` (amu) and H at 10⁴ K, cm/s."""
    return np.sqrt(8.0 * K_B * 1e4 / np.pi * (1.0 / (1.008 * AMU) + 1.0 / (mass * AMU)))


def unsold_log_vdw(c6, mass, factor=UNSOLD_ENHANCEMENT):
    """log10 γ6/N_H (s⁻¹ cm³) at 10⁴ K in Unsöld's approximation × ``factor``, from C6 (cm⁶ s⁻¹) and the
    atom's mass (amu); scales as T^0.3."""
    return np.log10(factor * 17.0 * _mean_speed_1e4(mass) ** 0.6 * np.asarray(c6) ** 0.4)


def _van_der_waals(dc, sel, c6, mass):
    """(log10 γ6/N_H at 10⁴ K, temperature exponent, tabulated γ_rad or 0) per line.

    Unsöld: γ6/N_H = f · 17 v̄^0.6 C6^0.4; ABO: 2 (4/π)^{α/2} Γ((4−α)/2) v̄ σ(v̄), σ(v̄) = σ0 (v̄/10 km/s)^−α
    (Anstee & O'Mara 1995); v̄ = √(8kT/πμ) the mean relative speed of the atom and H, so each is ∝ T^e.
    """
    kind, sigma, alpha = dc.kind[sel], dc.abo_sigma[sel], dc.abo_alpha[sel]
    factor, lg6 = np.where(dc.unsold_factor[sel] > 0.0, dc.unsold_factor[sel], UNSOLD_ENHANCEMENT), dc.log_gamma6[sel]
    vbar = _mean_speed_1e4(mass)
    unsold = unsold_log_vdw(c6, mass, factor)
    abo = np.log10(
        2.0
        * (4.0 / np.pi) ** (alpha / 2.0)
        * gamma_fn((4.0 - alpha) / 2.0)
        * vbar
        * np.maximum(sigma, 1e-30)
        * BOHR**2
        * (vbar / 1e6) ** (-alpha)
    )
    log_vdw = np.select([kind == 1, kind == 2], [abo, lg6], unsold)
    exponent = np.select([kind == 1, kind == 2], [(1.0 - alpha) / 2.0, np.full_like(alpha, 0.3)], 0.3)
    return log_vdw, exponent, dc.gamma_rad[sel]


class LineParams(NamedTuple):
    """Per (line, depth) profile parameters."""

    amplitude: Float[Array, "n_lines n_depth"]  # α at line centre per unit H(a, v) (cm^-1)
    doppler_kms: Float[Array, "n_lines n_depth"]  # Doppler width ξ (km/s)
    damping: Float[Array, "n_lines n_depth"]  # Voigt a


def line_params(lines: LineData, temperature, electron_density, pops, vmic, log_gf=None) -> LineParams:
    """Voigt amplitude, Doppler width and damping of every line in every layer (pure JAX).

    ``log_gf`` (n_lines,) overrides ``lines.log_gf`` (a traced array: the solar calibration
    differentiates the spectrum with respect to it)."""
    T = temperature[None, :]
    dens, log_u_all = absorbers(pops)
    absorber = jnp.asarray(lines.absorber)
    n_species = dens[absorber]  # (n_lines, n_depth)
    log_u = log_u_all[absorber]
    lam = jnp.asarray(lines.wavelength)[:, None]
    mass = jnp.asarray(lines.mass)[:, None] * AMU
    xi = jnp.sqrt(2.0 * K_B * T / mass * 1e-10 + vmic**2)  # km/s
    nu0 = C_KMS * 1e13 / lam  # Hz (c in Å/s / λ)
    dnu_d = nu0 * xi / C_KMS
    stim = -jnp.expm1(-HC_EV_ANGSTROM / (lam * K_B_EV * T))
    log_pop = jnp.log(n_species) - log_u - jnp.asarray(lines.elow)[:, None] / (K_B_EV * T)
    log_gf = jnp.asarray(lines.log_gf if log_gf is None else log_gf)
    amp = PI_E2_MC * 10.0 ** log_gf[:, None] * jnp.exp(log_pop) * stim / (SQRT_PI * dnu_d)
    # van der Waals by H I: γ6 = N_H · 10^log_vdw · (T/10⁴)^e (Unsöld, ABO or tabulated; see line_data).
    gamma6 = (
        10.0 ** jnp.asarray(lines.log_vdw)[:, None]
        * (T / 1e4) ** jnp.asarray(lines.vdw_exponent)[:, None]
        * pops.n_hi[None, :]
    )
    gamma4 = jnp.asarray(lines.stark)[:, None] * electron_density[None, :]
    gamma = jnp.asarray(lines.gamma_rad)[:, None] + gamma6 + gamma4
    return LineParams(amp, xi, gamma / (4.0 * jnp.pi * dnu_d))


def line_opacity(points: tuple[LinePoints, LinePoints], params: LineParams, n_wavelength: int, voigt_terms: int = 16):
    """Σ over lines of α_line on the fine grid, shape (n_depth, n_wavelength), by scatter-add.

    ``points`` = (core, wing): core pixels use the accurate Weideman form (``voigt_terms`` terms), wing pixels
    (|v| ≥ 5 in every layer of the default label box) the cheap Humlíček region-II form.
    """
    n_depth = params.amplitude.shape[1]
    total = jnp.zeros((n_wavelength, n_depth))

    def core(a, v):
        return voigt_core(a, v, n_terms=voigt_terms)

    for pts, profile in zip(points, (core, _wing_profile)):
        if pts.line.size == 0:
            continue
        li = jnp.asarray(pts.line)
        amp, xi, a = params.amplitude[li], params.doppler_kms[li], params.damping[li]  # (n_pts, n_depth)
        v = jnp.asarray(pts.dv)[:, None] / xi
        vals = amp * profile(a, v) * jnp.asarray(pts.taper)[:, None]
        total = total.at[jnp.asarray(pts.pixel)].add(vals, mode="drop")
    return total.T


def block_points(
    points: tuple[LinePoints, LinePoints], n_blocks: int, block: int, rows: np.ndarray | None = None
) -> tuple[LinePoints, LinePoints]:
    """``points`` regrouped by wavelength block of ``block`` fine pixels: every field (n_rows, n_max), ``pixel``
    counted from the block's first pixel, the rows padded with zero-taper points (they add exactly 0). Row ``r``
    is a :class:`LinePoints` for :func:`line_opacity` on block ``rows[r]`` alone (every block in order by default);
    within a block the points keep their order, so each pixel's opacity is summed in the same order as on the
    whole grid."""
    rows = np.arange(n_blocks) if rows is None else np.asarray(rows)

    def one(pts: LinePoints) -> LinePoints:
        blk = pts.pixel // block
        counts = np.bincount(blk, minlength=n_blocks)
        width = int(counts[rows].max()) if counts.size and rows.size else 0
        out = LinePoints(
            np.zeros((rows.size, width), np.int32),
            np.zeros((rows.size, width), np.int32),
            np.zeros((rows.size, width)),
            np.zeros((rows.size, width)),
        )
        order = np.argsort(blk, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)])
        for r, b in enumerate(rows):
            sel = order[starts[b] : starts[b + 1]]
            k = sel.size
            out.line[r, :k], out.pixel[r, :k] = pts.line[sel], pts.pixel[sel] - b * block
            out.dv[r, :k], out.taper[r, :k] = pts.dv[sel], pts.taper[sel]
        return out

    return one(points[0]), one(points[1])


# a core point costs about this many wing points (Weideman's 16-term form against Humlíček's rational one)
CORE_COST = 3.0


def block_groups(
    points: tuple[LinePoints, LinePoints], n_blocks: int, block: int, max_groups: int = 3, min_gain: float = 0.25
) -> list[np.ndarray]:
    """The blocks split into groups that each get their own padded width (one ``lax.map`` per group).

    Every block of one ``lax.map`` is padded to the busiest block's number of points, so a dense band (the C2
    Swan head: five times the median block's points) makes every block pay for it. Blocks sorted by cost are cut
    into contiguous groups, each new cut the one that lowers the padded total most; a group is added only while it
    cuts the padded cost by at least ``min_gain``, so an even arm keeps one group, i.e. one compiled loop."""
    counts = [np.bincount(p.pixel // block, minlength=n_blocks) for p in points]
    cost = CORE_COST * counts[0] + counts[1]
    order = np.argsort(-cost, kind="stable")
    core, wing = counts[0][order], counts[1][order]

    def padded(a: int, b: int) -> float:  # blocks order[a:b] padded to their busiest
        return (b - a) * (CORE_COST * core[a:b].max() + wing[a:b].max())

    n = n_blocks
    best = {1: (padded(0, n), [0, n])}
    for g in range(2, max_groups + 1):
        # the g-group split: the (g-1)-group one plus the single further cut that lowers the padded total most
        cands = []
        prev = best[g - 1][1]
        for cut in range(1, n):
            if cut in prev:
                continue
            bounds = sorted(set(prev) | {cut})
            cands.append((sum(padded(a, b) for a, b in zip(bounds[:-1], bounds[1:])), bounds))
        if not cands:
            break
        best[g] = min(cands)
    groups = 1
    while groups + 1 in best and best[groups + 1][0] < (1.0 - min_gain) * best[groups][0]:
        groups += 1
    bounds = best[groups][1]
    return [np.sort(order[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def _wing_profile(a, v):
    # Wing pixels lie beyond 5 Doppler widths at 10,000 K and vmic = 2.5 km/s; clamp for safety.
    return voigt_wing(a, jnp.maximum(jnp.abs(v), WING_V))


def _taper(x):
    # 1 inside 60 % of the half-width, then a cos² ramp to 0 at the edge: no opacity step at the edge.
    r = np.clip((np.abs(x) - 0.6) / 0.4, 0.0, 1.0)
    return np.cos(0.5 * np.pi * r) ** 2


def core_half_width(lines: LineData, t_ref: float = 10_000.0, vmic_ref: float = 2.5) -> np.ndarray:
    """Half-width (km/s) of 5 Doppler widths at ``t_ref`` and ``vmic_ref``: the core region."""
    xi = np.sqrt(2.0 * K_B * t_ref / (lines.mass * AMU) * 1e-10 + vmic_ref**2)
    return WING_V * xi


def build_points(wavelength: np.ndarray, lines: LineData, half_width_kms: np.ndarray) -> tuple[LinePoints, LinePoints]:
    """Pixels of every line's window (its own half-width, capped at :data:`MAX_HALF_WIDTH_KMS`),
    split into core (|Δv| < :func:`core_half_width`) and wing sets. ``wavelength`` must be
    log-uniform or close to it."""
    ln_wl = np.log(wavelength)
    step_kms = float(np.median(np.diff(ln_wl))) * C_KMS
    core = core_half_width(lines)
    hw = np.clip(half_width_kms, 3.0 * step_kms, MAX_HALF_WIDTH_KMS)
    out = {True: [], False: []}
    lam0 = lines.wavelength
    for i in range(len(lam0)):
        n_half = int(np.ceil(hw[i] / step_kms))
        centre = int(np.searchsorted(ln_wl, np.log(lam0[i])))
        pix = np.arange(centre - n_half, centre + n_half + 1)
        pix = pix[(pix >= 0) & (pix < len(wavelength))]
        if pix.size == 0:
            continue
        dv = (ln_wl[pix] - np.log(lam0[i])) * C_KMS
        taper = _taper(dv / hw[i])
        is_core = np.abs(dv) < core[i]
        for flag in (True, False):
            m = is_core == flag
            out[flag].append((np.full(m.sum(), i), pix[m], dv[m], taper[m]))

    def pack(items):
        if not items:
            return LinePoints(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0), np.zeros(0))
        cols = [np.concatenate(c) for c in zip(*items)]
        return LinePoints(cols[0].astype(np.int32), cols[1].astype(np.int32), cols[2], cols[3])

    return pack(out[True]), pack(out[False])
