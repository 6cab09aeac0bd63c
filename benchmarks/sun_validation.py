#!/usr/bin/env python
"""Validate the realistic synthesizer against the observed Sun (SOLAR-HRS disk-integrated irradiance).

Synthesises the Sun (Teff 5772 K, log g 4.438, [Fe/H] 0, vmic 1.0, vsini 1.8, vmacro 3.5 km/s),
normalises the observed and the model flux with the *same* continuum procedure (upper-envelope
points per 5 Å chunk, a smooth fit through them), and reports the rms of (model − observed) over
6480–6740 Å (the observed file starts at 6500 Å, so effectively 6500–6740) and per 10 Å bin.

Usage::

    python benchmarks/sun_validation.py ../shared/data/sun_solarhrs_6500_7000_vac.csv.gz
    python benchmarks/sun_validation.py --window galah-blue --loggf laboratory   # one GALAH arm, Kurucz atlas

Writes ``benchmarks/results/sun_validation.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from stellarinf.physics_options import DEFAULT_LOGGF, LOGGF_CHOICES

HERE = Path(__file__).resolve().parent
SUN = {"teff": 5772.0, "logg": 4.438, "feh": 0.0, "vmic": 1.0}


def continuum_normalise(wavelength, flux, chunk=5.0, quantile=0.97, degree=3, span=40.0):
    """Divide by a smooth upper envelope: the ``quantile`` of each ``chunk`` Å, then a polynomial of
    ``degree`` fitted to those points in overlapping ``span``-Å pieces, blended linearly."""
    edges = np.arange(wavelength[0], wavelength[-1] + chunk, chunk)
    xs, ys = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (wavelength >= lo) & (wavelength < hi)
        if m.sum() > 10:
            xs.append(np.median(wavelength[m]))
            ys.append(np.quantile(flux[m], quantile))
    xs, ys = np.array(xs), np.array(ys)
    cont = np.zeros_like(flux)
    weight = np.zeros_like(flux)
    starts = np.arange(wavelength[0] - span / 2, wavelength[-1], span / 2)
    for s in starts:
        m = (xs >= s) & (xs <= s + span)
        if m.sum() < degree + 2:
            continue
        c = np.polyfit(xs[m] - s, ys[m], degree)
        sel = (wavelength >= s) & (wavelength <= s + span)
        tri = 1.0 - np.abs((wavelength[sel] - (s + span / 2)) / (span / 2))
        cont[sel] += np.polyval(c, wavelength[sel] - s) * tri
        weight[sel] += tri
    cont = np.where(weight > 0, cont / np.maximum(weight, 1e-12), np.interp(wavelength, xs, ys))
    return flux / cont


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "solar_csv",
        nargs="?",
        help="path of an observed solar spectrum (columns wavelength [vacuum Å], flux), e.g. "
        "sun_solarhrs_6500_7000_vac.csv.gz; or give --window to use that window's Kurucz atlas extract",
    )
    ap.add_argument(
        "--window",
        default=None,
        help="a model window with an observed-Sun atlas (stellarinf.solar_atlas: galah-blue, galah-green, galah-red, "
        "galah-ir, gaia-rvs): its Kurucz extract from --atlas-dir, its range and its masked ranges",
    )
    ap.add_argument("--atlas-dir", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--wmin", type=float, default=6480.0)
    ap.add_argument("--wmax", type=float, default=6740.0)
    ap.add_argument("--vsini", type=float, default=1.8)
    ap.add_argument("--vmacro", type=float, default=3.5)
    ap.add_argument(
        "--loggf",
        choices=LOGGF_CHOICES,
        default=DEFAULT_LOGGF,
        help="log gf calibrated on the observed Sun (Kurucz atlas) or linemake's laboratory values",
    )
    ap.add_argument(
        "--settings",
        default=None,
        help="the synthesizer's numerical preset (stellarinf.synth.settings: extended (default), standard, reference)",
    )
    ap.add_argument(
        "--molecules",
        choices=("off", "on"),
        default="off",
        help="molecular equilibrium and the CH, MgH, C2, CN lines (stellarinf.synth.make_synthesizer)",
    )
    ap.add_argument(
        "--mask", default="6561.5:6567.5", help="ranges left out of the 'excluding' rms (the chromospheric Hα core)"
    )
    ap.add_argument(
        "--out",
        default=None,
        help="default results/sun_validation.json (results/sun_validation_<window>_<loggf>.json with --window)",
    )
    args = ap.parse_args(argv)
    if args.window:
        from stellarinf.solar_atlas import solar_atlas_window
        from stellarinf.wavelength import get_window

        entry, win = solar_atlas_window(args.window), get_window(args.window)
        args.solar_csv = str(Path(args.atlas_dir) / entry.atlas)
        args.wmin, args.wmax = win.wmin, win.wmax
        args.mask = ",".join(f"{lo}:{hi}" for lo, hi in entry.masked)
        suffix = "_molecules" if args.molecules == "on" else ""
        args.out = args.out or str(HERE / "results" / f"sun_validation_{args.window}_{args.loggf}{suffix}.json")
    elif not args.solar_csv:
        ap.error("give an observed solar spectrum (solar_csv) or --window")
    args.out = args.out or str(HERE / "results" / "sun_validation.json")

    import stellarinf

    stellarinf.enable_float64()  # atmospheres, likelihoods, Fisher matrices
    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.machine import machine_info
    from stellarinf.observe.broadening import broaden, velocity_step
    from stellarinf.synth import fine_grid, synthesize

    obs = np.loadtxt(args.solar_csv, delimiter=",", skiprows=1)
    wmin = max(args.wmin, obs[0, 0])
    args.wmax = min(args.wmax, obs[-1, 0])
    m = (obs[:, 0] >= wmin) & (obs[:, 0] <= args.wmax)
    wl_obs, f_obs = obs[m, 0], obs[m, 1]

    t0 = time.time()
    fine = fine_grid(wmin - 3.0, args.wmax + 3.0)
    from stellarinf.synth.settings import DEFAULT_PRESET, settings_preset

    args.settings = args.settings or DEFAULT_PRESET
    flux, _ = synthesize(SUN, fine, loggf=args.loggf, settings=settings_preset(args.settings), molecules=args.molecules)
    # SOLAR-HRS resolution in the red is far above the line widths; only stellar broadening is applied.
    flux = np.asarray(broaden(flux, velocity_step(fine), vsini=args.vsini, vmacro=args.vmacro))
    t_synth = time.time() - t0
    obs_n = continuum_normalise(wl_obs, f_obs)
    keep = np.ones(wl_obs.size, bool)
    for part in filter(None, args.mask.split(",")):
        a, b = (float(v) for v in part.split(":"))
        keep &= ~((wl_obs >= a) & (wl_obs <= b))
    # the atlas's lines sit at λ(1 + rv/c) (gravitational redshift − convective blueshift): align by a scan
    best = None
    for rv in np.arange(-1.5, 1.51, 0.05):
        mod = continuum_normalise(wl_obs, np.interp(wl_obs / (1.0 + rv / 299792.458), fine, flux))
        r = float(np.sqrt(np.mean((mod - obs_n)[keep] ** 2)))
        if best is None or r < best[0]:
            best = (r, rv, mod)
    rms_excl, rv_atlas, mod_n = best
    # the same at R = 28,000 (what a GALAH-like fit sees)
    from stellarinf.observe.broadening import degrade_to_resolution

    grid, o28 = degrade_to_resolution(wl_obs, obs_n, 28000.0)
    _, m28 = degrade_to_resolution(wl_obs, mod_n, 28000.0)
    k28 = np.interp(grid, wl_obs, keep.astype(float)) > 0.5
    edge = (grid > grid[0] + 2.0) & (grid < grid[-1] - 2.0)
    rms_28 = float(np.sqrt(np.mean((m28 - o28)[k28 & edge] ** 2)))
    resid = mod_n - obs_n
    rms = float(np.sqrt(np.mean(resid**2)))
    bins = []
    for lo in np.arange(np.floor(wmin / 10) * 10, args.wmax, 10.0):
        b = (wl_obs >= lo) & (wl_obs < lo + 10)
        if b.sum() > 100:
            bins.append(
                {
                    "wmin": float(lo),
                    "wmax": float(lo + 10),
                    "rms": float(np.sqrt(np.mean(resid[b] ** 2))),
                    "bias": float(np.mean(resid[b])),
                }
            )
    worst = sorted(bins, key=lambda d: -d["rms"])[:5]
    result = {
        "benchmark": "sun_validation",
        "stellarinf": stellarinf.__version__,
        "labels": SUN,
        "vsini": args.vsini,
        "vmacro": args.vmacro,
        "range": [float(wl_obs[0]), float(wl_obs[-1])],
        "rms_overall": rms,
        "rms_excluding_mask": rms_excl,
        "rms_r28000_excluding_mask": rms_28,
        "mask": args.mask,
        "rv_atlas_kms": float(rv_atlas),
        "loggf": args.loggf,
        "synth_settings": args.settings,
        "molecules": args.molecules,
        "mean_residual": float(np.mean(resid)),
        "target_rms": 0.03,
        "passes_target": rms <= 0.03,
        "rms_per_10A": bins,
        "worst_bins": worst,
        "synthesis_seconds": t_synth,
        "observed": str(args.solar_csv),
        "machine": machine_info(),
        "continuum_procedure": "97th percentile per 5 Å chunk, cubic fits in 40 Å pieces blended (same for model and observation)",
    }
    out = Path(args.out)
    write_json_atomic(out, result)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(14, 9), gridspec_kw={"height_ratios": [3, 1, 1.4]})
    axes[0].plot(wl_obs, obs_n, "k-", lw=0.5, label=f"observed Sun ({Path(args.solar_csv).name})")
    axes[0].plot(wl_obs, mod_n, "r-", lw=0.5, label="stellarinf realistic")
    axes[0].set_ylabel("normalised flux")
    axes[0].legend(loc="lower left")
    axes[1].plot(wl_obs, resid, "b-", lw=0.4)
    axes[1].set_ylabel("model − obs")
    axes[1].set_ylim(-0.3, 0.3)
    centres = [0.5 * (b["wmin"] + b["wmax"]) for b in bins]
    axes[2].bar(centres, [b["rms"] for b in bins], width=9)
    axes[2].axhline(0.03, color="r", ls="--", label="target 3 %")
    axes[2].set_ylabel("rms per 10 Å")
    axes[2].set_xlabel("vacuum wavelength (Å)")
    axes[2].legend()
    fig.suptitle(f"Sun: rms(model − observed) = {100 * rms:.2f} % over {wl_obs[0]:.0f}–{wl_obs[-1]:.0f} Å")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)
    print(
        f"rms overall {100 * rms:.2f} %, without {args.mask} {100 * rms_excl:.2f} % (at R 28,000: {100 * rms_28:.2f} %), "
        f"atlas shift {rv_atlas:+.2f} km/s; worst 10 Å bins: "
        + ", ".join(f"{b['wmin']:.0f}: {100 * b['rms']:.1f} %" for b in worst)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
