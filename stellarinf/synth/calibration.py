"""Astrophysical log gf: line strengths fitted to the observed Sun through the differentiable synthesizer.

Laboratory (linemake) oscillator strengths leave the synthesized Sun 2–2.5 % rms off the observed solar
flux atlas in the red: lines that the atlas shows far weaker or absent, lines too weak, blends missing.
A fit of stellar labels buys those residuals down by moving log g and [Fe/H] (the observed Sun came out
at log g 2.7, [Fe/H] −0.47). Surveys (GALAH, APOGEE) correct this by fitting *astrophysical* log gf to
the solar spectrum; this module does the same, with every line's offset a parameter:

    loss(Δ) = ½ Σ_pix ((obs − s · model(Δ)) / σ)² + ½ Σ_lines (Δ / σ_prior)²

``model(Δ)`` is the realistic synthesizer at the Sun's labels with log gf = laboratory + Δ, broadened by the
solar rotation and macroturbulence; ``s`` is a linear continuum scale per chunk of the window, solved in
closed form at every evaluation (so the continuum placement of the atlas does not leak into the log gf);
σ_prior keeps each line near its laboratory value unless the atlas says otherwise. The gradient comes from
JAX reverse mode through the synthesis; L-BFGS-B (scipy) with bounds does the rest.

Functions here are pure (arrays in, arrays out); ``data/calibrate_loggf.py`` runs them on the atlas and
writes ``data/loggf_solar.ecsv``.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..physics_options import DEFAULT_DAMPING
from ..wavelength import SPEED_OF_LIGHT_KMS as C_KMS

SUN_LABELS = {"teff": 5772.0, "logg": 4.438, "feh": 0.0, "vmic": 1.0}
SUN_VSINI = 1.8  # km/s, the Sun's equatorial rotation projected for the disk-integrated flux
SUN_VMACRO = 3.5  # km/s, radial–tangential; fitted alongside the log gf
DLOGGF_BOUNDS = (-4.0, 1.5)  # −4 dex: the line is effectively removed
# Lines whose laboratory log gf are exact (Li I: hydrogen-like resonance doublet, computed to < 0.01 dex) are held:
# in the Sun the Li doublet is a weak feature in a blend, and a free fit moved its components by −0.1..−0.6 dex to
# absorb the blend's mismatch, which would bias every star's [Li/Fe] by about +0.4 dex.
HOLD_LABORATORY = ("Li I",)
# Empirical lines: a feature the atlas shows and no line of the list explains becomes a placeholder line whose log gf
# is fitted (as APOGEE's line list does for unidentified solar lines, Shetrone et al. 2015). Its species and
# excitation are assumptions: most unidentified solar lines are high-excitation Fe I transitions (Peterson & Kurucz
# 2015), so a placeholder scales with [Fe/H] and temperature as a typical Fe I line does.
EMPIRICAL_Z, EMPIRICAL_ION, EMPIRICAL_ELOW = 26, 0, 3.5
EMPIRICAL_START_LOGGF = -2.5
EMPIRICAL_LOGGF_BOUNDS = (-6.5, 0.5)
EMPIRICAL_PRIOR_SD = 3.0  # dex, around the start: nothing is known in advance of its strength
EMPIRICAL_MIN_SEPARATION = 0.08  # Å: residual dips closer than this are one feature


class CalibrationResult(NamedTuple):
    """Outcome of :func:`fit_loggf` (numpy arrays; ``rows`` index the shipped line list)."""

    rows: np.ndarray  # (n_lines,) line-list rows of the fitted lines
    dloggf: np.ndarray  # (n_lines,) fitted offsets (dex)
    vmacro: float  # fitted macroturbulence (km/s)
    rv: float  # fitted shift of the atlas relative to the model (km/s; gravitational redshift − convective blueshift)
    rms_before: float  # rms of (obs − model) over the unmasked pixels with laboratory log gf
    rms_after: float
    n_evaluations: int
    seconds: float
    wavelength: np.ndarray  # (n_fine,) the fine grid
    observed: np.ndarray  # (n_fine,) the atlas on it
    model_before: np.ndarray  # (n_fine,) continuum-scaled model, laboratory log gf
    model_after: np.ndarray
    mask: np.ndarray  # (n_fine,) bool, pixels used
    empirical_wavelength: np.ndarray  # (n_emp,) empirical lines kept (vacuum Å, the model's rest frame)
    empirical_loggf: np.ndarray  # (n_emp,) their fitted log gf (species and excitation: EMPIRICAL_*)


def chunk_scale(
    model: Float[Array, "n"],
    observed: Float[Array, "n"],
    weight: Float[Array, "n"],
    chunk: np.ndarray,
    x: np.ndarray,
    n_chunks: int,
) -> Float[Array, "n"]:
    """Per-chunk linear continuum scale ``a_c + b_c x`` that best maps ``model`` onto ``observed``.

    Weighted least squares in each chunk (``chunk`` (n,) int ids, ``x`` (n,) position within the chunk in
    [−1, 1]); returns the scale at every pixel. Closed form, so differentiable in ``model``.
    """

    def sums(v):
        return jax.ops.segment_sum(weight * v, chunk, num_segments=n_chunks)

    mm, mmx, mmxx = sums(model * model), sums(model * model * x), sums(model * model * x * x)
    om, omx = sums(observed * model), sums(observed * model * x)
    det = mm * mmxx - mmx**2
    det = jnp.where(jnp.abs(det) > 1e-12, det, 1e-12)
    a = (om * mmxx - omx * mmx) / det
    b = (omx * mm - om * mmx) / det
    return a[chunk] + b[chunk] * x


def chunks_of(wavelength: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Chunk ids, within-chunk positions in [−1, 1], and the number of chunks of ``width`` Å."""
    edges = np.arange(wavelength[0], wavelength[-1] + width, width)
    ids = np.clip(np.searchsorted(edges, wavelength, side="right") - 1, 0, len(edges) - 2)
    lo, hi = edges[ids], edges[ids] + width
    return ids.astype(np.int32), 2.0 * (wavelength - lo) / (hi - lo) - 1.0, int(ids.max()) + 1


def missing_features(wavelength: np.ndarray, residual: np.ndarray, usable: np.ndarray, threshold: float) -> np.ndarray:
    """Wavelengths of the features the model lacks: local minima of ``residual`` (observed − model, continuum
    units) deeper than ``−threshold`` on ``usable`` pixels, the deepest of any closer than
    :data:`EMPIRICAL_MIN_SEPARATION`; each refined by a parabola through its three pixels."""
    r = np.where(usable, residual, 0.0)
    i = np.flatnonzero((r[1:-1] < -threshold) & (r[1:-1] <= r[:-2]) & (r[1:-1] <= r[2:])) + 1
    picked: list[int] = []
    for j in i[np.argsort(r[i])]:  # deepest first
        if all(abs(wavelength[j] - wavelength[k]) >= EMPIRICAL_MIN_SEPARATION for k in picked):
            picked.append(j)
    picked.sort()
    out = []
    for j in picked:
        a, b, c = r[j - 1], r[j], r[j + 1]
        den = a - 2.0 * b + c
        shift = 0.5 * (a - c) / den if den > 0 else 0.0
        out.append(wavelength[j] + np.clip(shift, -0.5, 0.5) * (wavelength[j + 1] - wavelength[j - 1]) / 2.0)
    return np.asarray(out, dtype=np.float64)


def fit_loggf(
    observed_wavelength: np.ndarray,
    observed_flux: np.ndarray,
    wmin: float,
    wmax: float,
    *,
    margin: float = 3.0,
    offsets: np.ndarray | None = None,
    mask_ranges: tuple[tuple[float, float], ...] = (),
    sigma: float = 0.005,
    prior_sd: float = 0.5,
    chunk_width: float = 5.0,
    maxiter: int = 300,
    labels: dict | None = None,
    vsini: float = SUN_VSINI,
    vmacro: float = SUN_VMACRO,
    progress: bool = True,
    damping: str = DEFAULT_DAMPING,
    molecules: str = "off",
    missing_threshold: float | None = None,
) -> CalibrationResult:
    """Fit per-line log gf offsets (and v macro) so the synthesized Sun matches an observed solar atlas.

    Args:
        observed_wavelength, observed_flux: the atlas (vacuum Å; any flux unit: a continuum scale per
            ``chunk_width`` Å is fitted), covering ``wmin``–``wmax`` with some margin.
        wmin, wmax: the range (vacuum Å) whose lines are calibrated and whose pixels enter the loss.
        margin: Å synthesized beyond each end, so lines just outside contribute their wings; their
            log gf are held at laboratory + ``offsets``.
        offsets: (len(linelist()),) offsets already fitted (e.g. by the neighbouring range), or None.
        mask_ranges: vacuum Å ranges left out of the loss (e.g. the Hα core, which is chromospheric and
            non-LTE: no log gf can fix it and nearby lines must not try).
        sigma: per-pixel misfit scale (fraction of the continuum) that the data are weighted with.
        prior_sd: Gaussian prior width (dex) around the laboratory value.
        maxiter: L-BFGS-B iterations.
        labels: the Sun's labels (default :data:`SUN_LABELS`).
        damping: the synthesizer's damping constants ("unsold" or "abo"); the fitted gf belong to it.
        molecules: "on" fits with the molecular equilibrium and lines (CH, C2, CN, MgH) present, so atomic lines
            do not absorb molecular features.
        missing_threshold: when given, features of the atlas deeper than this (continuum units) below the model at
            the starting log gf (:func:`missing_features`) get an empirical line each, fitted with the rest; those
            the fit does not remove are returned (``empirical_*``).

    Starts from the laboratory log gf (``loggf="laboratory"``), so the fit is reproducible whatever
    table is shipped.
    """
    from scipy.optimize import minimize
    from tqdm.auto import tqdm

    from ..observe.broadening import broaden
    from .selection import select_lines
    from .synthesize import fine_grid, line_synthesizer

    labels = dict(SUN_LABELS if labels is None else labels)
    names = tuple(labels)
    label_vec = jnp.asarray([float(labels[n]) for n in names])
    fine = fine_grid(wmin - margin, wmax + margin)
    dv = float(np.log(fine[1] / fine[0])) * C_KMS
    from .data import linelist
    from .lines import empirical_line_data

    idx, _ = select_lines(round(float(fine[0]), 3), round(float(fine[-1]), 3), damping=damping)
    n_list = idx.size
    use = (fine >= wmin) & (fine < wmax)
    for lo, hi in mask_ranges:
        use &= ~((fine >= lo) & (fine <= hi))
    chunk, x, n_chunks = chunks_of(fine, chunk_width)
    weight = jnp.asarray(use / sigma**2)
    atlas_wl = jnp.asarray(observed_wavelength, dtype=jnp.float64)
    atlas_f = jnp.asarray(observed_flux, dtype=jnp.float64)
    fine_j = jnp.asarray(fine)
    start_list = np.zeros(n_list) if offsets is None else np.asarray(offsets, dtype=np.float64)[idx]
    fn, lines = line_synthesizer(fine, names, "laboratory", damping, molecules=molecules)
    candidates = np.zeros(0)
    if missing_threshold is not None:
        # the model at the starting log gf, scaled onto the atlas as the loss does: where is it too shallow?
        flux, _ = fn(label_vec, jnp.asarray(lines.log_gf + start_list))
        m = broaden(flux, dv, vsini=vsini, vmacro=vmacro)
        obs = jnp.interp(fine_j, atlas_wl, atlas_f)
        s = chunk_scale(m, obs, weight, chunk, x, n_chunks)
        candidates = missing_features(fine, np.asarray(obs / s - m), use, missing_threshold)
        if candidates.size:
            n = candidates.size
            extra = empirical_line_data(
                candidates,
                np.full(n, EMPIRICAL_Z),
                np.full(n, EMPIRICAL_ION),
                np.full(n, EMPIRICAL_ELOW),
                np.full(n, EMPIRICAL_START_LOGGF),
            )
            fn, lines = line_synthesizer(fine, names, "laboratory", damping, molecules=molecules, extra_lines=extra)
    n_cand = candidates.size
    lab = np.asarray(lines.log_gf, dtype=np.float64)
    start = np.concatenate([start_list, np.zeros(n_cand)])
    held = np.concatenate([np.isin(linelist().species[idx], HOLD_LABORATORY), np.zeros(n_cand, bool)])
    free = (lines.wavelength >= wmin) & (lines.wavelength < wmax) & ~held
    free[n_list:] = True
    base = jnp.asarray(lab + start)
    free_j = jnp.asarray(np.flatnonzero(free))
    n_free = int(free.sum())
    is_cand = np.flatnonzero(free) >= n_list
    prior_sd_free = jnp.asarray(np.where(is_cand, EMPIRICAL_PRIOR_SD, prior_sd))

    def observed_at(rv):
        # the atlas seen in the model's rest frame: its lines sit at λ (1 + rv/c)
        return jnp.interp(fine_j * (1.0 + rv / C_KMS), atlas_wl, atlas_f)

    def model_of(theta):
        d, vmac = theta[:n_free], theta[n_free]
        flux, _ = fn(label_vec, base.at[free_j].add(d))
        return broaden(flux, dv, vsini=vsini, vmacro=vmac)

    def loss(theta):
        m = model_of(theta)
        obs = observed_at(theta[n_free + 1])
        s = chunk_scale(m, obs, weight, chunk, x, n_chunks)
        r = obs - s * m
        return 0.5 * jnp.sum(weight * r**2) + 0.5 * jnp.sum(
            ((theta[:n_free] + base[free_j] - lab_j[free_j]) / prior_sd_free) ** 2
        )

    lab_j = jnp.asarray(lab)
    value_and_grad = jax.jit(jax.value_and_grad(loss))

    def scaled(theta):
        theta = jnp.asarray(theta)
        m = model_of(theta)
        obs = observed_at(theta[n_free + 1])
        return np.asarray(obs), np.asarray(chunk_scale(m, obs, weight, chunk, x, n_chunks) * m)

    theta0 = np.concatenate([np.zeros(n_free), [vmacro, 0.0]])
    # before: laboratory log gf and no empirical lines (gf 10⁻²⁰)
    before_theta = np.where(is_cand, -20.0 - EMPIRICAL_START_LOGGF, -start[free])
    obs_before, before = scaled(np.concatenate([before_theta, [vmacro, 0.0]]))
    t0 = time.perf_counter()
    count = [0]
    bar = tqdm(total=maxiter, desc=f"log gf {wmin:.0f}-{wmax:.0f} Å", unit="it", disable=not progress)

    def fg(theta):
        v, g = value_and_grad(jnp.asarray(theta))
        count[0] += 1
        return float(v), np.asarray(g, dtype=np.float64)

    lo, hi = DLOGGF_BOUNDS
    e_lo, e_hi = (b - EMPIRICAL_START_LOGGF for b in EMPIRICAL_LOGGF_BOUNDS)
    bounds = [(e_lo, e_hi) if c else (lo - s0, hi - s0) for s0, c in zip(start[free], is_cand)]
    bounds += [(0.0, 8.0), (-3.0, 3.0)]
    res = minimize(
        fg,
        theta0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": maxiter, "maxcor": 30},
        callback=lambda *_: bar.update(1),
    )
    bar.close()
    obs_after, after = scaled(res.x)

    def rms(o, m):
        return float(np.sqrt(np.mean((o - m)[use] ** 2) / np.mean(m[use]) ** 2))

    fitted = start[free] + np.asarray(res.x[:n_free])
    cand_gf = EMPIRICAL_START_LOGGF + fitted[is_cand]
    # a candidate pushed to its lower bound was not a missing line after all (the others' fit explained it)
    kept = cand_gf > EMPIRICAL_LOGGF_BOUNDS[0] + 0.5
    return CalibrationResult(
        rows=np.asarray(idx)[np.flatnonzero(free)[~is_cand]],
        dloggf=fitted[~is_cand],
        vmacro=float(res.x[n_free]),
        rv=float(res.x[n_free + 1]),
        rms_before=rms(obs_before, before),
        rms_after=rms(obs_after, after),
        n_evaluations=count[0],
        seconds=time.perf_counter() - t0,
        wavelength=fine,
        observed=obs_after,
        model_before=before,
        model_after=after,
        mask=use,
        empirical_wavelength=candidates[kept],
        empirical_loggf=cand_gf[kept],
    )
