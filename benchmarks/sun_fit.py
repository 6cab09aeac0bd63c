#!/usr/bin/env python
"""Fit the observed Sun as a user would, and compare with the Sun's known labels.

The observed Sun is the Kurucz (2005) solar flux atlas (``sun_kurucz2005_<lo>_<hi>_vac.csv.gz``; absolute
flux, vacuum Å, R ≈ 400,000). For each window, resolving power, S/N and noise seed it is

1. degraded to the instrument's R (Gaussian LSF) and sampled at the instrument's pixels (the demo star's
   galah-red pixels; for gaia-rvs 3 pixels per resolution element),
2. continuum-normalised by a procedure that is not the fitter's (:func:`upper_envelope_normalise`: the
   97th percentile per 5 Å, one polynomial through those points with iterative clipping),
3. given Gaussian noise at the S/N,

then fitted by the library pipeline (``stellarinf.fit_spectrum``, its defaults: physics error on, its ranges where
the 1D LTE physics is wrong in shape left out (the Balmer wings, the Ca II triplet cores), telluric mask, outlier
clipping, continuum degree auto) with MAP + Laplace (``--sampler laplace``) or any sampler.
Reports per fit the labels, their sd (posterior and total with the emulator's and the physics' label-space
systematics where known), χ², and the offsets from the Sun (Teff 5772 K, log g 4.438, [Fe/H] 0).

Usage::

    python benchmarks/sun_fit.py --atlas-dir ../shared/data --emulators default-payne --snr 50,100,200 --seeds 0,1,2

    python benchmarks/sun_fit.py --emulators auto --together --snr 50,100,200 --seeds 0,1,2 \
        --windows galah-blue,galah-green,galah-red,galah-ir,gaia-rvs   # every arm in one fit, as `stellarinf fit` picks

    python benchmarks/sun_fit.py --emulators synth --together --snr 100 --seeds 0 \
        --windows galah-blue,galah-green,galah-red,galah-ir,gaia-rvs   # every arm in one fit, the synthesizer

    python benchmarks/sun_fit.py --emulators broad --together --snr 50,100,200 --seeds 0 \
        --windows galah-blue,galah-green,galah-red,galah-ir   # the broad-domain Paynes, one per GALAH arm

    python benchmarks/sun_fit.py --emulators default-payne-rvs-abo --windows gaia-rvs --fix vmic=1.0   # vmic held

Writes ``benchmarks/results/sun_fit.json`` (and ``.png``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from stellarinf.solar_atlas import SOLAR_ATLAS
from stellarinf.synth.calibration import SUN_LABELS

HERE = Path(__file__).resolve().parent
C_KMS = 299792.458
SUN = {k: SUN_LABELS[k] for k in ("teff", "logg", "feh")}  # the labels the fits are judged on
# window → (atlas file, resolving power, pixels per resolution element or None = the demo star's pixels);
# the atlas files are stellarinf.solar_atlas's
_OBSERVED_AS = {"galah-red": (28000.0, None), "gaia-rvs": (11500.0, 3.0)}
WINDOWS = {name: (SOLAR_ATLAS[name].atlas, *_OBSERVED_AS.get(name, (28000.0, 2.5))) for name in SOLAR_ATLAS}
TARGETS = {"teff": 50.0, "logg": 0.10, "feh": 0.05}


def upper_envelope_normalise(wavelength, flux, chunk=5.0, quantile=0.97, degree=5, n_iter=5, clip=2.5):
    """Divide by one polynomial through the ``quantile`` of each ``chunk`` Å, clipping low points."""
    edges = np.arange(wavelength[0], wavelength[-1] + chunk, chunk)
    xs, ys = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (wavelength >= lo) & (wavelength < hi)
        if m.sum() > 5:
            xs.append(wavelength[m].mean())
            ys.append(np.quantile(flux[m], quantile))
    xs, ys = np.asarray(xs), np.asarray(ys)
    x0, half = wavelength.mean(), 0.5 * (wavelength[-1] - wavelength[0])
    keep = np.ones(xs.size, bool)
    for _ in range(n_iter):
        coef = np.polyfit((xs[keep] - x0) / half, ys[keep], degree)
        resid = ys - np.polyval(coef, (xs - x0) / half)
        keep = resid > -clip * np.std(resid[keep])
    return flux / np.polyval(coef, (wavelength - x0) / half)


def observe_sun(atlas_wl, atlas_flux, pixels, resolution, snr, seed, step_kms=0.5, noiseless=False):
    """The atlas as an instrument at ``resolution`` would record it on ``pixels``, normalised, with noise (or, with
    ``noiseless``, only its errors)."""
    from stellarinf.observe.broadening import degrade_to_resolution

    lo, hi = pixels[0] - 5.0, pixels[-1] + 5.0
    m = (atlas_wl > lo) & (atlas_wl < hi)
    grid, smooth = degrade_to_resolution(atlas_wl[m], atlas_flux[m], resolution, step_kms)
    normalised = upper_envelope_normalise(pixels, np.interp(pixels, grid, smooth))
    return with_noise(pixels, normalised, resolution, snr, seed, "Kurucz 2005 solar flux atlas", noiseless)


def with_noise(pixels, normalised, resolution, snr, seed, source, noiseless=False):
    """The normalised flux with Gaussian noise at ``snr`` (σ = 1/snr per pixel, from ``seed``) as a Spectrum;
    ``noiseless``: the errors alone, no noise drawn (what the likelihood's weighting does at that S/N by itself)."""
    from stellarinf.io.spectrum import Spectrum

    rng = np.random.default_rng(seed)
    sigma = np.full(pixels.size, 1.0 / snr)
    return Spectrum(
        pixels,
        normalised + (0.0 if noiseless else rng.normal(0.0, 1.0, pixels.size) * sigma),
        sigma,
        resolution=resolution,
        meta={"source": source, "snr": snr, "seed": seed},
    )


# the Sun's labels and broadening for the ``--source model`` control (solar abundances, vmic 1.0 km/s; v sin i and
# v macro as the Sun's disk-integrated flux shows them)
SUN_MODEL = {**SUN, "vmic": 1.0, "rv": 0.0, "vsini": 1.9, "vmacro": 3.5}


def model_sun(model, pixels, resolution, snr, seed, noiseless=False):
    """The fitted model's *own* Sun (``SUN_MODEL``; every [X/Fe] 0) on ``pixels`` at ``resolution``, then the same
    external normalisation and noise as :func:`observe_sun`. Fitting it measures what the inference and the
    normalisation alone do to the Sun's labels at each S/N: no physics error, no emulator error."""
    from stellarinf.validation.mocks import noiseless_flux

    names = set(model.label_space.names)
    params = {**{k: 0.0 for k in names if k.endswith("_fe")}, **SUN_MODEL}
    flux = noiseless_flux(model, pixels, params, resolution)
    normalised = upper_envelope_normalise(pixels, flux)
    return with_noise(pixels, normalised, resolution, snr, seed, "the fitted model's own Sun", noiseless)


def pixels_for(window: str, resolution: float, per_element: float | None):
    from stellarinf.io.spectrum import read_spectrum
    from stellarinf.paths import data_file
    from stellarinf.wavelength import get_window, log_uniform_grid

    if per_element is None:
        return read_spectrum(data_file("demo", "demo_star.fits")).wavelength
    w = get_window(window)
    return log_uniform_grid(w.wmin, w.wmax, resolution, per_element)


def arm_observation(window: str, atlas_name: str | None, atlas_dir: str):
    """(atlas array, the instrument's pixels it covers, resolving power) of one window."""
    atlas_file, resolution, per_element = WINDOWS[window]
    atlas = np.loadtxt(Path(atlas_dir) / (atlas_name or atlas_file), delimiter=",", skiprows=1)
    pixels = pixels_for(window, resolution, per_element)
    # an atlas narrower than the window (SOLAR-HRS starts at 6500 Å): only the pixels it covers
    return atlas, pixels[(pixels > atlas[0, 0] + 5.0) & (pixels < atlas[-1, 0] - 5.0)], resolution


def model_name(name: str, window: str) -> str:
    """The model ``name`` stands for on ``window``: a set's name (``broad``, ``broad-tp``:
    :data:`stellarinf.shipped_models.MODEL_SETS`) its model for ``window``; ``auto`` the model ``stellarinf fit``
    picks for it on this machine (:data:`stellarinf.shipped_models.AUTO_MODELS`); anything else itself."""
    from stellarinf.shipped_models import MODEL_SETS, SHIPPED_MODELS, set_members

    if name == "auto":
        from stellarinf.forecast import auto_model_names

        return next(m for m in auto_model_names() if SHIPPED_MODELS[m].window == window)
    if name in MODEL_SETS:
        members = set_members(name)
        if window not in members:
            raise SystemExit(f"the set has no model for {window}: its members are {', '.join(members.values())}")
        return members[window]
    return name


def names_per_window(emulators: str, windows: list[str]) -> list[str]:
    """The model name for each of ``windows``: ``emulators`` is one name for all, or one per window joined by '+'
    (in order); a ValueError otherwise."""
    names = emulators.split("+")
    if len(names) not in (1, len(windows)):
        raise ValueError(f"--emulators {emulators!r}: give one model, or one per window joined by '+'")
    return names * len(windows) if len(names) == 1 else names


def model_for(name: str, window: str):
    """A shipped emulator by name (or as :func:`model_name` resolves it), or ``synth`` / ``synth-abo``: the
    synthesizer itself (realistic fidelity, unbroadened; Unsöld × 2 or ABO damping) on the window, which separates
    what the physics gets wrong from what the emulator adds."""
    name = model_name(name, window)
    if name in ("synth", "synth-abo"):
        from stellarinf.labels import default_label_space
        from stellarinf.synth import SynthesizerModel

        damping = "abo" if name == "synth-abo" else "unsold"
        return SynthesizerModel(default_label_space(), window, "realistic", damping=damping)
    from stellarinf.emulators.registry import load_emulator

    return load_emulator(name)


def sun_spectrum(models, observed, snr: float, seed: int, source: str = "atlas", noiseless: bool = False):
    """The Sun as the arms of ``observed`` (:func:`arm_observation` per window, one model of ``models`` each) record
    it at ``snr``: the observed atlas (``source="atlas"``) or each model's own Sun (``"model"``), with independent
    noise per arm (arm ``k`` draws from ``seed + 1000 k``); one arm's Spectrum, or several arms' in one."""
    from stellarinf.io.spectrum import Spectrum

    arms = []
    for k, (m, (atlas, pixels, res)) in enumerate(zip(models, observed)):
        arm_seed = seed + 1000 * k
        if source == "model":
            arms.append(model_sun(m, pixels, res, snr, arm_seed, noiseless=noiseless))
        else:
            arms.append(observe_sun(atlas[:, 0], atlas[:, 1], pixels, res, snr, arm_seed, noiseless=noiseless))
    return arms[0] if len(arms) == 1 else Spectrum.from_arms(arms)


def fit(
    model,
    spectrum,
    sampler: str,
    seed: int,
    physics_error: bool = True,
    mask=(),
    continuum_degree="auto",
    fixed=None,
    clip_outliers: bool = True,
):
    """The library pipeline (:func:`stellarinf.fit_spectrum`) with the given settings; returns the summary table.
    ``physics_error``: the measured synthesizer-vs-reality error in the likelihood; ``mask``: vacuum Å ranges
    left out; ``fixed``: parameters held (``stellarinf fit --fix``); ``clip_outliers``: the pipeline's > 5σ pixel
    clipping."""
    import dataclasses

    from stellarinf import fit_spectrum

    keep = np.ones(spectrum.wavelength.size, bool)
    for lo, hi in mask:
        keep &= ~((spectrum.wavelength >= lo) & (spectrum.wavelength <= hi))
    spectrum = dataclasses.replace(spectrum, mask=np.asarray(spectrum.mask, bool) & keep)
    result = fit_spectrum(
        spectrum,
        emulator=model,
        sampler=sampler,
        chains=4,
        draws=500,
        warmup=300,
        seed=seed,
        physics_error="auto" if physics_error else "off",
        continuum_degree=continuum_degree,
        fixed=fixed or None,
        clip_outliers=clip_outliers,
    )
    return result.summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--atlas-dir", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--emulators", default="default-payne")
    ap.add_argument("--windows", default="galah-red")
    ap.add_argument(
        "--atlas",
        default=None,
        help="another observed solar atlas in --atlas-dir (e.g. sun_solarhrs_6500_7000_vac.csv.gz, independent of "
        "the Kurucz atlas the log gf were calibrated on); default: the window's Kurucz atlas",
    )
    ap.add_argument(
        "--source",
        choices=["atlas", "model"],
        default="atlas",
        help="atlas: the observed Sun; model: the fitted model's own Sun (SUN_MODEL) through the same normalisation "
        "and noise, a control that isolates the inference's own offsets from physics and emulator error",
    )
    ap.add_argument(
        "--together",
        action="store_true",
        help="fit the --windows as the arms of one spectrum, each served by its own model (--emulators A+B: one per "
        "window, in order; e.g. --emulators default-payne+default-payne-rvs --windows galah-red,gaia-rvs; or --emulators synth "
        "--windows galah-blue,galah-green,galah-red,galah-ir,gaia-rvs)",
    )
    ap.add_argument("--snr", default="50,100,200")
    ap.add_argument(
        "--noiseless",
        action="store_true",
        help="errors of the S/N but no noise drawn: what the likelihood's weighting at each S/N does by itself",
    )
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--sampler", default="laplace")
    ap.add_argument(
        "--physics-error",
        choices=["on", "off"],
        default="on",
        help="include the measured synthesizer-vs-reality error in the likelihood",
    )
    ap.add_argument(
        "--continuum-degree", default="auto", help="Chebyshev degree per segment, or auto (the pipeline's default)"
    )
    ap.add_argument("--mask", default="", help="vacuum Å ranges left out of the fit, e.g. 6561.5:6567.5 (the Hα core)")
    ap.add_argument(
        "--clip-outliers",
        choices=["on", "off"],
        default="on",
        help="the pipeline's clipping of pixels > 5σ from the best fit (on, as `stellarinf fit` does)",
    )
    ap.add_argument(
        "--fix",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="hold a parameter fixed, as `stellarinf fit --fix` (e.g. vmic=1.0: the Sun's, which the log gf "
        "calibration assumed); repeatable",
    )
    ap.add_argument("--label", default="", help="a tag stored with the results (e.g. 'laboratory log gf')")
    ap.add_argument("-o", "--output", default=str(HERE / "results" / "sun_fit.json"))
    args = ap.parse_args(argv)
    from stellarinf.commands.fit import _parse_fixed

    fixed = _parse_fixed(args.fix)

    import jax

    jax.config.update("jax_enable_x64", True)
    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.machine import machine_info

    rows = []
    t_all = time.time()
    windows = args.windows.split(",")
    for emu_name in args.emulators.split(","):
        for group in [windows] if args.together else [[w] for w in windows]:
            window = "+".join(group)
            try:
                per_window = names_per_window(emu_name, group)
            except ValueError as exc:
                ap.error(str(exc))
            models = [model_for(n, w) for n, w in zip(per_window, group)]
            model = models[0] if len(models) == 1 else models
            resolution = WINDOWS[group[0]][1] if len(group) == 1 else [WINDOWS[w][1] for w in group]
            observed = [arm_observation(w, args.atlas, args.atlas_dir) for w in group]
            for snr in [float(s) for s in args.snr.split(",")]:
                for seed in [int(s) for s in args.seeds.split(",")]:
                    t0 = time.time()
                    spec = sun_spectrum(models, observed, snr, seed, args.source, args.noiseless)
                    mask = [tuple(float(v) for v in part.split(":")) for part in args.mask.split(",") if part]
                    table = fit(
                        model,
                        spec,
                        args.sampler,
                        seed,
                        physics_error=args.physics_error == "on",
                        mask=mask,
                        continuum_degree="auto" if args.continuum_degree == "auto" else int(args.continuum_degree),
                        fixed=fixed,
                        clip_outliers=args.clip_outliers == "on",
                    )
                    row = {
                        "emulator": emu_name,
                        "models": [model_name(n, w) for n, w in zip(per_window, group)],
                        "window": window,
                        "resolution": resolution,
                        "snr": snr,
                        "seed": seed,
                        "chi2r": float(table.meta.get("CHI2RED", math.nan)),
                        "seconds": time.time() - t0,
                        "labels": {},
                    }
                    for r in table:
                        sd_total = float(r["sd_total"]) if "sd_total" in table.colnames else float(r["sd"])
                        row["labels"][str(r["name"])] = {
                            "p50": float(r["p50"]),
                            "sd": float(r["sd"]),
                            "sd_total": sd_total,
                            "flags": str(r["flags"]),
                        }
                    # the physics label floor inside sd_total (per label; per arm for several arms):
                    # data/measure_physics_error.py --label-floor takes it out again to measure a new one
                    row["physics_label_floor"] = json.loads(table.meta.get("SETTINGS", "{}")).get("physics_label_floor")
                    row["offsets"] = {k: row["labels"][k]["p50"] - v for k, v in SUN.items() if k in row["labels"]}
                    row["within_target"] = {k: abs(row["offsets"][k]) <= TARGETS[k] for k in row["offsets"]}
                    row["within_2_sd_total"] = {
                        k: abs(row["offsets"][k]) <= 2 * row["labels"][k]["sd_total"] for k in row["offsets"]
                    }
                    rows.append(row)
                    lab = row["labels"]
                    print(
                        f"{emu_name} {window} S/N {snr:.0f} seed {seed}: Teff {lab['teff']['p50']:.0f}±{lab['teff']['sd_total']:.0f} "
                        f"logg {lab['logg']['p50']:.2f}±{lab['logg']['sd_total']:.2f} [Fe/H] {lab['feh']['p50']:+.2f}±{lab['feh']['sd_total']:.2f} "
                        f"chi2r {row['chi2r']:.2f} ({row['seconds']:.0f} s)",
                        flush=True,
                    )
    result = {
        "benchmark": "sun_fit",
        "label": args.label,
        "settings": vars(args),
        "sun": SUN,
        "targets": TARGETS,
        "fits": rows,
        "wall_time_s": time.time() - t_all,
        "machine": machine_info(),
    }
    out = Path(args.output)
    write_json_atomic(out, result)
    _plot(rows, out.with_suffix(".png"))
    return 0


def _plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, k in zip(axes, ("teff", "logg", "feh")):
        for i, r in enumerate(rows):
            lab = r["labels"][k]
            ax.errorbar(
                i, lab["p50"], yerr=lab["sd_total"], fmt="o", ms=3, color="C0" if r["window"] == "galah-red" else "C1"
            )
        ax.axhline(SUN[k], color="k", lw=1)
        ax.axhspan(SUN[k] - TARGETS[k], SUN[k] + TARGETS[k], color="g", alpha=0.15, label="target")
        ax.set_title(k)
        ax.set_xlabel("fit (emulator × window × S/N × seed)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    raise SystemExit(main())
