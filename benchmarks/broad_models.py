"""The broad-domain emulators (the sets ``broad``, the Paynes, and ``broad-tp``, TransformerPayne) on their held-out
test grids, side by side: MAE overall and where it lives in the box (Teff and [Fe/H] bins), with each model's
training record and its measured error scale; then TransformerPayne / Payne per arm on the same spectra.

The models and grids come from ``data/models/make_broad_grids.sh`` and ``data/models/make_broad_models.sh``
(data/models/RECIPE.md); the test grids are not in git, so this needs them made first.

    python benchmarks/broad_models.py --grids benchmarks/work/broad [--sets broad,broad-tp]

Writes ``benchmarks/results/broad_models.json`` (with the machine).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import stellarinf

stellarinf.enable_float64()
from stellarinf.emulators.registry import load_emulator  # noqa: E402
from stellarinf.io.atomic import write_json_atomic  # noqa: E402
from stellarinf.io.grid import read_grid  # noqa: E402
from stellarinf.machine import machine_info  # noqa: E402
from stellarinf.shipped_models import MODEL_SETS, SHIPPED_MODELS  # noqa: E402

RESULTS = Path(__file__).parent / "results"
TEFF_BINS = [(4000, 4500), (4500, 5000), (5000, 5500), (5500, 6000), (6000, 6500), (6500, 7000)]
FEH_BINS = [(-2.5, -1.5), (-1.5, -0.5), (-0.5, 0.5)]


def binned(err, values, bins) -> dict:
    out = {}
    for lo, hi in bins:
        sel = (values >= lo) & (values < hi)
        out[f"{lo:g}..{hi:g}"] = {
            "n": int(sel.sum()),
            "mae": float(err[sel].mean()),
            "median": float(np.median(err[sel])),
        }
    return out


def evaluate(name: str, grid_path: Path, max_spectra: int) -> dict:
    """MAE of model ``name`` at its instrument's pixels (the even columns of an oversampled grid) per test star."""
    model = load_emulator(name)
    grid = read_grid(grid_path)
    n = min(max_spectra, len(grid.labels))
    step = int(grid.metadata.get("oversample", 1) or 1)
    wl, flux, labels = grid.wavelength[::step], grid.flux[:n, ::step], grid.labels[:n]
    pred = model.predict(labels, wl, batch_size=64)
    err = np.mean(np.abs(pred - flux), axis=1)
    names = list(grid.label_space.names)
    teff, feh, logg = (labels[:, names.index(k)] for k in ("teff", "feh", "logg"))
    solar = (teff > 5300) & (teff < 6300) & (logg > 3.8) & (feh > -0.5)
    doc = model.metadata
    return {
        "model": name,
        "kind": SHIPPED_MODELS[name].kind,
        "window": SHIPPED_MODELS[name].window,
        "test_grid": str(grid_path),
        "n_test": int(n),
        "mae": float(err.mean()),
        "median_star_mae": float(np.median(err)),
        "mae_solar_like": float(err[solar].mean()),
        "n_solar_like": int(solar.sum()),
        "by_teff": binned(err, teff, TEFF_BINS),
        "by_feh": binned(err, feh, FEH_BINS),
        "training": {k: doc.get("metrics", {}).get(k) for k in ("best_step", "best_val_mae", "elapsed_s")},
        "n_train": (doc.get("training_grid") or {}).get("n_train"),
        "error_scale": (doc.get("error_model") or {}).get("scale_report"),
        "label_systematics_sd": {
            k: (doc.get("label_systematics") or {}).get("sd", {}).get(k) for k in ("teff", "logg", "feh", "alpha_fe")
        },
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grids", default="benchmarks/work/broad", help="folder with broad_<window>_test.h5")
    ap.add_argument("--max-spectra", type=int, default=512)
    ap.add_argument("--sets", default="broad,broad-tp", help="comma-separated model sets (MODEL_SETS)")
    ap.add_argument("-o", "--output", default=str(RESULTS / "broad_models.json"))
    args = ap.parse_args(argv)
    rows = []
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [s for s in sets if s not in MODEL_SETS]
    if unknown:
        ap.error(f"unknown set(s) {unknown}: choose from {sorted(MODEL_SETS)}")
    for name in [m for s in sets for m in MODEL_SETS[s]]:
        grid = Path(args.grids) / f"broad_{SHIPPED_MODELS[name].window}_test.h5"
        if not grid.exists():
            ap.error(f"{grid} is missing: make it with data/models/make_broad_grids.sh")
        row = evaluate(name, grid, args.max_spectra)
        rows.append(row)
        teff = " ".join(f"{v['mae']:.1e}" for v in row["by_teff"].values())
        print(f"{name}: MAE {row['mae']:.2e} (solar-like {row['mae_solar_like']:.2e}); by Teff bin {teff}", flush=True)
    by_window = {}
    for row in rows:
        by_window.setdefault(row["window"], {})[row["kind"]] = row["mae"]
    ratios = {w: v["transformer-payne"] / v["payne"] for w, v in by_window.items() if len(v) == 2}
    for w, r in ratios.items():
        print(f"{w}: TransformerPayne / Payne MAE {r:.2f}")
    doc = {"benchmark": "broad_models", "machine": machine_info(), "models": rows, "tp_over_payne_mae": ratios}
    write_json_atomic(args.output, doc)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
