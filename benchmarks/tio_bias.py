#!/usr/bin/env python
"""What TiO does to a fit through an emulator without it: labels of cool stars whose spectra have TiO (and, through
an emulator trained with TiO, whether that bias is gone).

Each star is synthesised twice by the realistic synthesizer with the emulator's own training physics: without TiO
(``molecules="on"``, what the shipped broad models learned before the fiftieth session) and with TiO (``"on+tio"``: Ti in the equilibrium and every TiO line
of ``data/linelist_tio.h5``, 48TiO derived from the other isotopologues). Both go through the arm's LSF onto the
mock pixels with the same noise (S/N 100, one seed) and are fitted by :func:`stellarinf.fit_spectrum` (MAP +
Laplace, the pipeline's defaults, no solar physics error: these are synthesizer stars). The difference of the two
fits is TiO's bias alone; each fit's offset from the truth is reported too (the no-TiO fit's is the emulator's own).

Usage::

    python benchmarks/tio_bias.py                      # broad-payne-red, 6 stars, ~10 min on one core
    python benchmarks/tio_bias.py --emulator broad-payne-blue --stars 4250/4.6/0.0/0.9

Writes ``benchmarks/results/tio_bias.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# (Teff, log g, [Fe/H], vmic): dwarfs and giants across the no_tio limit (physics_options.TIO_TEFF_LIMIT)
STARS = (
    "4000/4.6/0.0/0.9",
    "4250/4.6/0.0/0.9",
    "4500/4.6/0.0/0.9",
    "4750/4.6/0.0/0.9",
    "4000/1.5/0.0/1.5",
    "4250/2.5/0.0/1.3",
)
REPORTED = ("teff", "logg", "feh", "vmic", "alpha_fe", "ti_fe", "o_fe")


def truth_of(star: str, names) -> dict[str, float]:
    teff, logg, feh, vmic = (float(x) for x in star.split("/"))
    truth = {n: 0.0 for n in names}  # every [X/Fe] and [alpha/Fe] solar-scaled
    truth.update(teff=teff, logg=logg, feh=feh, vmic=vmic, rv=0.0, vsini=3.0, vmacro=0.0)
    return truth


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--emulator", default="broad-payne-red")
    ap.add_argument("--stars", default=",".join(STARS), help="Teff/logg/feh/vmic, comma-separated")
    ap.add_argument("--snr", type=float, default=100.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "tio_bias.json")
    args = ap.parse_args(argv)

    import stellarinf
    from stellarinf.emulators.registry import load_emulator
    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.machine import machine_info
    from stellarinf.physics_options import tio_matters, training_physics
    from stellarinf.synth import SynthesizerModel
    from stellarinf.validation.mocks import make_mock
    from stellarinf.validation.setups import observed_wavelength
    from stellarinf.wavelength import Window

    stellarinf.enable_float64()
    model = load_emulator(args.emulator)
    resolution = float(getattr(model, "resolution", None) or 28000.0)
    physics = training_physics(model)
    wmin, wmax = model.wavelength_range
    window = Window("emulator-range", float(wmin), float(wmax), resolution, 2.5, "the fitted emulator's range")
    wl = observed_wavelength(model, resolution)
    truths = {
        "no_tio": SynthesizerModel(model.label_space, window, "realistic", **{**physics, "molecules": "on"}),
        "tio": SynthesizerModel(model.label_space, window, "realistic", **{**physics, "molecules": "on+tio"}),
    }
    reported = [n for n in REPORTED if n in model.label_space.names]
    out = {
        "what": "labels of a fit without TiO (the emulator) of stars synthesised with and without TiO, same noise",
        "emulator": args.emulator,
        "training_physics": physics,
        "snr": args.snr,
        "seed": args.seed,
        "machine": machine_info(),
        "stars": {},
    }
    t_start = time.perf_counter()
    for star in args.stars.split(","):
        truth = truth_of(star, model.label_space.names)
        row = {"tio_matters": tio_matters(truth["teff"], truth["logg"], truth)}
        for name, synth in truths.items():
            t0 = time.perf_counter()
            spec = make_mock(synth, wl, truth, snr=args.snr, resolution=resolution, seed=args.seed)
            summary = stellarinf.fit_spectrum(
                spec, emulator=model, emulator_name=args.emulator, sampler="laplace", physics_error="off", seed=0
            ).summary
            rows = {r["name"]: r for r in summary}
            total = "sd_total" if "sd_total" in summary.colnames else "sd"  # a model without label systematics
            row[name] = {
                "p50": {n: float(rows[n]["p50"]) for n in reported},
                "sd_total": {n: float(rows[n][total]) for n in reported},
                "offset": {n: float(rows[n]["p50"]) - truth[n] for n in reported},
                "chi2_red": float(summary.meta.get("CHI2RED", np.nan)),
                "flags": str(summary.meta.get("FLAGS", "")),
                "seconds": time.perf_counter() - t0,
            }
        row["tio_minus_no_tio"] = {n: row["tio"]["p50"][n] - row["no_tio"]["p50"][n] for n in reported}
        row["in_sd_total"] = {
            n: row["tio_minus_no_tio"][n] / row["tio"]["sd_total"][n] for n in reported
        }  # TiO's shift over the fit's own total sd
        out["stars"][star] = row
        d, z = row["tio_minus_no_tio"], row["in_sd_total"]
        print(
            f"{star:>18}: TiO shifts Teff {d['teff']:+.0f} K, log g {d['logg']:+.3f}, [Fe/H] {d['feh']:+.3f} "
            f"({', '.join(f'{n} {z[n]:+.1f} sd' for n in ('teff', 'logg', 'feh'))}); "
            f"chi2_red {row['no_tio']['chi2_red']:.2f} -> {row['tio']['chi2_red']:.2f}",
            flush=True,
        )
        out["total_seconds"] = time.perf_counter() - t_start
        write_json_atomic(args.out, out)  # after every star: an interrupted run keeps what it measured
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
