"""Precision forecasts for every instrument preset: one table, its wall time, and the forecast/scan speed.

For each preset of ``data/instruments.ecsv`` (cut to what the model covers) and each reference star, the
marginal Cramér–Rao bounds at S/N 100 per pixel for Teff, log g, [Fe/H], vmic and every element of the model,
with rv, v sin i, v macro and each arm's continuum marginalised. Presets the model cannot serve (no overlap,
or a resolving power above the model's) are listed with the reason. Then, in the same run: the time of one
forecast after compilation (same set-up, another star), of another S/N (a rescaling), and of a 10 × 10
S/N × R scan.

    python benchmarks/crb_presets.py                              # default-payne, three stars
    python benchmarks/crb_presets.py --emulator default --stars solar-twin,red-clump
    python benchmarks/crb_presets.py --emulator auto              # each arm through its window's shipped Payne
    python benchmarks/crb_presets.py --error-models               # one preset and star: the emulator's error models

Writes ``benchmarks/results/crb_presets_<emulator>.json`` and a Markdown table beside it. ``--error-models``
instead forecasts one star on one preset (``--preset``, default galah-red; the first of ``--stars``) at S/N
50/100/200/400 with photon noise only, with the emulator's error added per pixel ("white", the old
``--emulator-error``), and with its correlated modes + white remainder as a fit's likelihood has them ("modes"),
with each label's floor (S/N → ∞) and the S/N above which it dominates, into
``benchmarks/results/crb_error_models_<emulator>.json``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

import stellarinf

stellarinf.enable_float64()
from stellarinf import forecast as F  # noqa: E402
from stellarinf.instruments import instruments  # noqa: E402
from stellarinf.io.atomic import write_bytes_atomic, write_json_atomic  # noqa: E402
from stellarinf.machine import machine_info  # noqa: E402
from stellarinf.reference_stars import reference_star  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
STARS = ("solar-twin", "metal-poor-turn-off", "red-clump")
SNR = 100.0
ERROR_SNRS = (50.0, 100.0, 200.0, 400.0)
ERROR_MODELS = (False, "white", "modes")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emulator", default="default-payne")
    ap.add_argument("--stars", default=",".join(STARS))
    ap.add_argument("--out", default=None)
    ap.add_argument("--error-models", action="store_true", help="the emulator's error models on one preset instead")
    ap.add_argument("--preset", default="galah-red", help="with --error-models: the preset")
    ap.add_argument(
        "--box-prior",
        action="store_true",
        help="every label's box as a Gaussian prior (σ = width/√12), as a fit's box prior acts; writes "
        "crb_presets_<emulator>_box.json",
    )
    args = ap.parse_args(argv)
    stars = [s.strip() for s in args.stars.split(",") if s.strip()]
    if args.error_models:
        return error_models(args.emulator, args.preset, stars[0], args.out)
    t_start = time.perf_counter()
    model = F.resolve_models(args.emulator)  # "auto": each arm through its window's shipped emulator
    t_load = time.perf_counter() - t_start
    names = list((model[0] if isinstance(model, list) else model).label_space.names)  # the auto set shares them
    rows, skipped, per_preset = [], [], {}
    for name, inst in instruments().items():
        t0 = time.perf_counter()
        try:
            covered = F.instrument_for(model, inst)
        except F.ForecastError as exc:
            top = max(a.resolution for a in inst.arms)
            reason = f"R {top:,.0f} > the model's" if "sharper" in str(exc) else "outside the model's range"
            skipped.append({"preset": name, "reason": reason, "message": str(exc)})
            continue
        for star in stars:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")  # recorded: the table says which rows carry (almost) no information
                fc = F.forecast(
                    model,
                    reference_star(star),
                    window=covered,
                    snr=SNR,
                    model_name=args.emulator,
                    box_prior=args.box_prior,
                )
            weak = [w for w in caught if issubclass(w.category, F.WeakConstraintWarning)]
            marg = fc.result.marginal()
            rows.append(
                {
                    "preset": name,
                    "arms": "; ".join(f"{a.wmin:.0f}–{a.wmax:.0f} R {a.resolution:,.0f}" for a in covered.arms),
                    "left_out": "; ".join(F.arms_not_covered(inst, covered)),
                    "n_pixels": int(fc.wavelength.size),
                    "star": star,
                    "weak": str(weak[0].message).split(":")[0] if weak else "",
                    **{n: float(marg[n]) for n in names},
                }
            )
        per_preset[name] = time.perf_counter() - t0
        print(f"{name:<16} {per_preset[name]:6.1f} s  {covered.describe()}", flush=True)
    t_table = time.perf_counter() - t_start

    # speed: one forecast after compilation, another S/N, and a 10 x 10 S/N x R scan
    galah = F.instrument_for(model, "galah-red")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        F.forecast(model, reference_star("solar-twin"), window=galah, snr=SNR)  # compiled (already, by the table)
        t0 = time.perf_counter()
        fc = F.forecast(model, reference_star("k-dwarf"), window=galah, snr=SNR)
        t_one = time.perf_counter() - t0
        t0 = time.perf_counter()
        fc.at_snr(50.0).marginal()
        t_rescale = time.perf_counter() - t0
        snrs = np.geomspace(10, 1000, 10)
        resolutions = np.linspace(5_000, 28_000, 10)
        t0 = time.perf_counter()
        for r in resolutions:
            f_r = F.forecast(model, reference_star("solar-twin"), window=galah, resolution=float(r), snr=SNR)
            F.bounds_vs_snr(f_r, snrs)
        t_scan = time.perf_counter() - t0
        t0 = time.perf_counter()
        for r in resolutions:
            f_r = F.forecast(model, reference_star("solar-twin"), window=galah, resolution=float(r), snr=SNR)
            F.bounds_vs_snr(f_r, snrs)
        t_scan_again = time.perf_counter() - t0
    doc = {
        "benchmark": "crb_presets",
        "emulator": args.emulator,
        "box_prior": args.box_prior,
        "snr": SNR,
        "stars": {s: reference_star(s) for s in stars},
        "labels": names,
        "marginalised": list(F.DEFAULT_MARGINALIZE),
        "rows": rows,
        "skipped": skipped,
        "timing_s": {
            "load_model": t_load,
            "whole_table": t_table,
            "per_preset": per_preset,
            "one_forecast_after_compilation": t_one,
            "another_snr": t_rescale,
            "scan_10_snr_x_10_R_first": t_scan,
            "scan_10_snr_x_10_R_again": t_scan_again,
        },
        "machine": machine_info(),
    }
    out = (
        Path(args.out) if args.out else RESULTS / f"crb_presets_{args.emulator}{'_box' if args.box_prior else ''}.json"
    )
    write_json_atomic(out, doc)
    write_bytes_atomic(out.with_suffix(".md"), markdown(doc).encode())
    from stellarinf.fisher_plots import plot_bounds_by_label

    for star in stars:
        # rows with no information on Teff (a sliver of an arm) would only stretch the axes
        per = {r["preset"]: {n: r[n] for n in names} for r in rows if r["star"] == star and "teff" not in r["weak"]}
        plot_bounds_by_label(
            per, names, path=out.with_name(f"{out.stem}_{star}.png"), title=f"{args.emulator}, {star}, S/N {SNR:g}"
        )
    print(
        f"table {t_table:.1f} s ({len(per_preset)} presets x {len(stars)} stars); one forecast {t_one:.2f} s; "
        f"another S/N {t_rescale * 1e3:.1f} ms; 10x10 scan {t_scan:.1f} s first, {t_scan_again:.1f} s again; wrote {out}"
    )
    return 0


def error_models(emulator: str, preset: str, star: str, out: str | None) -> int:
    """Bounds at :data:`ERROR_SNRS` under each of :data:`ERROR_MODELS` (one Jacobian each; other S/N by
    ``at_snr``), the emulator floor of the modes' forecast, and the time of a forecast and of another S/N."""
    t_start = time.perf_counter()
    model = F.resolve_models(emulator)
    labels = reference_star(star)
    table, timing, floors = {}, {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        F.forecast(model, labels, window=preset, snr=SNR)  # compiles the Jacobian: not part of the timings
        for kind in ERROR_MODELS:
            name = kind or "none"
            t0 = time.perf_counter()
            fc = F.forecast(model, labels, window=preset, snr=ERROR_SNRS[0], emulator_error=kind, model_name=emulator)
            t_fc = time.perf_counter() - t0
            t0 = time.perf_counter()  # again: the first also builds the error model's eager programs once per process
            fc = F.forecast(model, labels, window=preset, snr=ERROR_SNRS[0], emulator_error=kind, model_name=emulator)
            t_again = time.perf_counter() - t0
            rows = {f"{s:g}": fc.at_snr(s).marginal() for s in ERROR_SNRS}
            t_snr = []
            for s in np.geomspace(20.0, 2000.0, 21):  # median: the shared machine's load makes single calls noisy
                t0 = time.perf_counter()
                fc.at_snr(float(s)).marginal()
                t_snr.append(time.perf_counter() - t0)
            names = [n for n in fc.result.names if not n.startswith("cont_")]
            table[name] = {s: {n: float(m[n]) for n in names} for s, m in rows.items()}
            timing[name] = {"forecast_s": t_fc, "forecast_again_s": t_again, "another_snr_s": float(np.median(t_snr))}
            if kind:
                floors[name] = F.emulator_floor(fc)
            if kind == "modes":
                n_modes = int(fc.error_modes.shape[1]) if fc.error_modes is not None else 0
                sd_sys = F.systematic_floor(fc)
    doc = {
        "benchmark": "crb_error_models",
        "emulator": emulator,
        "preset": preset,
        "star": {star: labels},
        "snr": list(ERROR_SNRS),
        "snr_mode": "constant",
        "marginalised": list(F.DEFAULT_MARGINALIZE),
        "n_error_modes": n_modes,
        "marginal": table,
        "emulator_floor": floors,
        "systematic_floor": sd_sys,
        "timing_s": {**timing, "total": time.perf_counter() - t_start},
        "machine": machine_info(),
    }
    path = Path(out) if out else RESULTS / f"crb_error_models_{emulator}.json"
    write_json_atomic(path, doc)
    for n in ("teff", "logg", "feh"):
        cells = "; ".join(f"{k}: " + " / ".join(f"{table[k][f'{s:g}'][n]:.4g}" for s in ERROR_SNRS) for k in table)
        fl = floors.get("modes", {}).get(n)
        tail = f"; floor {fl['floor']:.3g} (dominates above S/N {fl['snr_floor_dominates']:.0f})" if fl else ""
        print(f"{n} at S/N {'/'.join(f'{s:g}' for s in ERROR_SNRS)}: {cells}{tail}")
    print(f"timing {timing}; wrote {path}")
    return 0


def markdown(doc: dict) -> str:
    names = doc["labels"]
    head = "| preset | arms covered | px | star | " + " | ".join(names) + " | bound wider than the box | left out |"
    lines = [head, "|" + "---|" * (6 + len(names))]
    for r in doc["rows"]:
        vals = [f"{r[n]:.0f}" if n == "teff" else f"{r[n]:.3f}" for n in names]
        lines.append(
            f"| {r['preset']} | {r['arms']} | {r['n_pixels']} | {r['star']} | "
            + " | ".join(vals)
            + f" | {r['weak']} | {r.get('left_out', '')} |"
        )
    lines.append("")
    lines.append("Not served by this model: " + "; ".join(f"{s['preset']} ({s['reason']})" for s in doc["skipped"]))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
