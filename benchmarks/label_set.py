#!/usr/bin/env python
"""Which elements carry information in the four GALAH arms: the Cramér–Rao table that chooses the label set.

For each candidate element, the marginal Cramér–Rao bound on its [X/Fe] from the realistic synthesizer (ground
truth, solar log gf) over GALAH's four arms (``--preset galah``: the HERMES arms at R 28,000, their pixel sampling),
S/N 100 per pixel, every candidate free at once together with Teff, log g, [Fe/H], vmic, and rv, v sin i, v macro
and a continuum per arm marginalised, for three stars: a solar twin, a metal-poor turn-off star and a K giant.
An element is kept when its bound is below ``--threshold`` (0.15 dex) for at least one of them.

Usage::

    python benchmarks/label_set.py                        # all candidates, three stars, S/N 100
    python benchmarks/label_set.py --preset galah --snr 100 --threshold 0.15

Writes ``benchmarks/results/label_set.json`` and ``label_set.ecsv`` (one row per element, a column per star).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# the candidates plus the rest of what GALAH DR3/DR4 report (Buder et al. 2021, 2025)
CANDIDATES = ("Li C N O Na Mg Al Si K Ca Sc Ti V Cr Mn Co Ni Cu Zn Rb Sr Y Zr Mo Ru Ba La Ce Nd Sm Eu").split()
STARS = ("solar-twin", "metal-poor-turn-off", "cool-giant")


def plot(result: dict, path: Path) -> None:
    """Bounds per element (log scale), one marker per star, the threshold as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stellarinf.labels import abundance_label

    elements = list(result["kept"]) + list(result["dropped"])
    elements.sort(key=lambda el: min(result["bounds"][s][abundance_label(el)] for s in result["bounds"]))
    fig, ax = plt.subplots(figsize=(12, 4.5))
    x = np.arange(len(elements))
    for k, (star, b) in enumerate(result["bounds"].items()):
        ax.plot(x + 0.15 * (k - 1), [b[abundance_label(el)] for el in elements], "o", label=star)
    ax.axhline(result["threshold_dex"], color="k", ls="--", lw=1, label=f"{result['threshold_dex']} dex")
    ax.set_xticks(x, elements)
    ax.set_yscale("log")
    ax.set_ylabel("marginal CRB on [X/Fe] (dex)")
    ax.set_title(f"{result['preset']}: S/N {result['snr']:g}, every candidate free at once (realistic synthesizer)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="galah")
    ap.add_argument("--elements", default=",".join(CANDIDATES))
    ap.add_argument("--stars", default=",".join(STARS))
    ap.add_argument("--snr", type=float, default=100.0)
    ap.add_argument("--threshold", type=float, default=0.15, help="dex: keep an element below this for any star")
    ap.add_argument(
        "--molecules",
        choices=("off", "on"),
        default="off",
        help="the synthesizer's molecular equilibrium and CH, MgH, C2, CN lines (C and N gain their molecular lines)",
    )
    ap.add_argument("--out", default=str(HERE / "results" / "label_set.json"))
    args = ap.parse_args(argv)

    import stellarinf

    stellarinf.enable_float64()
    from astropy.table import Table

    from stellarinf.forecast import forecast
    from stellarinf.io.atomic import atomic_path, write_json_atomic
    from stellarinf.labels import abundance_label
    from stellarinf.machine import machine_info
    from stellarinf.reference_stars import star_labels

    elements = args.elements.split(",")
    stars = args.stars.split(",")
    bounds: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    arms = None
    for star in stars:
        t0 = time.perf_counter()
        labels = star_labels(star)
        labels.update({abundance_label(el): 0.0 for el in elements})
        fc = forecast("synth", labels, window=args.preset, snr=args.snr, elements=elements, molecules=args.molecules)
        seconds[star] = time.perf_counter() - t0
        arms = [f"{a.name} {a.wmin:.0f}-{a.wmax:.0f} R {a.resolution:.0f}" for a in fc.instrument.arms]
        bounds[star] = {k: float(v) for k, v in fc.marginal().items()}
        print(
            f"{star}: {seconds[star]:.0f} s; "
            + ", ".join(f"{el} {bounds[star][abundance_label(el)]:.3f}" for el in elements),
            flush=True,
        )

    table = Table()
    table["element"] = elements
    for star in stars:
        table[star] = [round(bounds[star][abundance_label(el)], 4) for el in elements]
    best = np.min([[bounds[s][abundance_label(el)] for s in stars] for el in elements], axis=1)
    table["kept"] = best < args.threshold
    table.meta.update(
        {
            "what": f"marginal Cramér–Rao bound on [X/Fe] (dex), realistic synthesizer, preset {args.preset}, "
            f"S/N {args.snr:g} per pixel, every candidate free at once with teff, logg, feh, vmic; rv, vsini, vmacro "
            "and a continuum per arm marginalised",
            "kept": f"bound < {args.threshold} dex for at least one star",
        }
    )
    out = Path(args.out)
    with atomic_path(out.with_suffix(".ecsv"), ".ecsv") as tmp:
        table.write(tmp, format="ascii.ecsv", overwrite=True)
    kept = [el for el, k in zip(elements, table["kept"]) if k]
    result = {
        "benchmark": "label_set",
        "stellarinf": stellarinf.__version__,
        "preset": args.preset,
        "molecules": args.molecules,
        "arms": arms,
        "snr": args.snr,
        "threshold_dex": args.threshold,
        "stars": {s: star_labels(s) for s in stars},
        "bounds": bounds,
        "kept": kept,
        "dropped": [el for el in elements if el not in kept],
        "seconds": seconds,
        "machine": machine_info(),
    }
    write_json_atomic(out, result)
    plot(result, out.with_suffix(".png"))
    print(f"kept {len(kept)} of {len(elements)}: {', '.join(kept)}")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
