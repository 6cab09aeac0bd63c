"""The label floor out of sample: measured on one observed solar atlas, judged on the other.

A model's label floor (``data/measure_physics_error.py --label-floor``) is the part of the observed Sun's fit offsets
that the fits' own sd does not explain, and it is judged on the fits it was measured from: in sample. The Sun is the
only standard star so far, but the red arm has two independent observations of it, the Kurucz (2005) FTS atlas and
SOLAR-HRS (Meftah et al. 2023). Here each red model's floor is measured on the fits of one atlas and used on the fits
of the other (both directions), and the count of fits with Teff, log g and [Fe/H] all within 2 sd_total is set beside
the in-sample count. What this can show: whether a floor survives another instrument, another normalisation and other
noise on the same star. What it cannot: anything about a star unlike the Sun.

No fitting: the offsets and sds come from the results files of ``benchmarks/sun_fit.py`` (``RESULTS``); a fit's
sd_total with another floor is √(sd_total² − its floor² + the other floor²), as ``measure_physics_error`` takes it.

    python benchmarks/floor_cross_atlas.py      # a second; writes results/floor_cross_atlas.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
# model -> (fits of the SOLAR-HRS atlas, fits of the Kurucz atlas): the same pipeline, red arm, S/N 50 / 100 / 200
PAIRS = {
    "default-payne-abo": ("sun_fit_solarhrs_abo.json", "sun_fit_red_payne_abo_left_out.json"),
    "default-payne": ("sun_fit_solarhrs.json", "sun_fit_red_payne_left_out.json"),
    "default (TransformerPayne)": ("sun_fit_tp_solarhrs.json", "sun_fit_red_tp_left_out.json"),
}
JUDGED = ("teff", "logg", "feh")


def _measure_module():
    path = HERE.parent / "data" / "measure_physics_error.py"
    spec = importlib.util.spec_from_file_location("measure_physics_error", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def judged(rows: list[dict], floor: dict[str, float], mpe) -> dict:
    """How ``rows`` (fits of the Sun) fare with ``floor`` in their sd_total: per label the mean |offset| / sd_total
    and the count within 2, and the count with every label of :data:`JUDGED` within 2."""
    z = {n: [] for n in JUDGED}
    for row in rows:
        for n in JUDGED:
            sd_total = math.hypot(mpe._other_sd(row, n), floor.get(n, 0.0))
            z[n].append(abs(row["labels"][n]["p50"] - mpe._sun_value(n)) / sd_total)
    return {
        "n_fits": len(rows),
        "all_within_2": sum(all(z[n][i] < 2.0 for n in JUDGED) for i in range(len(rows))),
        "within_2": {n: sum(v < 2.0 for v in z[n]) for n in JUDGED},
        "mean_offset_over_sd_total": {n: round(sum(z[n]) / len(z[n]), 3) for n in JUDGED},
        "max_offset_over_sd_total": round(max(max(v) for v in z.values()), 3),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default=str(RESULTS / "floor_cross_atlas.json"))
    args = ap.parse_args(argv)
    mpe = _measure_module()
    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.machine import machine_info

    out = {}
    for model, files in PAIRS.items():
        fits = {
            atlas: json.loads((RESULTS / name).read_text())["fits"]
            for atlas, name in zip(("solarhrs", "kurucz"), files)
        }
        floors = {atlas: mpe.label_floors(rows, "systematic")[0] for atlas, rows in fits.items()}
        entry = {"files": dict(zip(("solarhrs", "kurucz"), files)), "floors": {}}
        for atlas, floor in floors.items():
            entry["floors"][atlas] = {n: floor.get(n, 0.0) for n in JUDGED}
        for judged_on, other in (("kurucz", "solarhrs"), ("solarhrs", "kurucz")):
            entry[f"judged_on_{judged_on}"] = {
                "in_sample": judged(fits[judged_on], floors[judged_on], mpe),
                f"floor_from_{other}": judged(fits[judged_on], floors[other], mpe),
            }
        out[model] = entry
        for judged_on, other in (("kurucz", "solarhrs"), ("solarhrs", "kurucz")):
            e = entry[f"judged_on_{judged_on}"]
            print(
                f"{model}, fits of {judged_on} ({e['in_sample']['n_fits']}): all three within 2 sd_total "
                f"{e['in_sample']['all_within_2']} with its own floor, {e[f'floor_from_{other}']['all_within_2']} with "
                f"{other}'s; floors Teff/log g/[Fe/H] {judged_on} "
                + " / ".join(f"{floors[judged_on].get(n, 0.0):.3g}" for n in JUDGED)
                + f", {other} "
                + " / ".join(f"{floors[other].get(n, 0.0):.3g}" for n in JUDGED)
            )
    write_json_atomic(
        args.output, {"benchmark": "floor_cross_atlas", "models": out, "machine": machine_info()}, indent=2
    )
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
