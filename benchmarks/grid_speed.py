#!/usr/bin/env python
"""`stellarinf grid` speed with the line selection per batch of similar stars against one selection for the whole box.

For each arm and each ``--line-selection`` (``box``: one line selection for the whole label box, how grids were made
up to the twenty-third session; ``batch``: the rows computed in batches of similar Teff, [Fe/H] and log g, each with
the lines that matter for its tier), two real ``stellarinf grid`` runs of the same rows into two files: the first
compiles every program it needs (its time, compiles included, is recorded), the second is the steady state (nothing
left to compile: what a long grid runs at). The batch runs make ``--n-batch`` rows (a grid of many rows has many per
tier; a short one mixes tiers in a batch, which then takes its coolest, densest, most metal-rich star's lines), the
box runs the design's first ``--n`` of them, so the benchmark also gives the two selections' difference on those
(rms and largest |Δ flux| per arm, on the arm's pixels at R 28,000, and the star and wavelength of the largest).
Both are also compared with a slow reference on the same ``--n-reference`` rows: one ``stellarinf grid --settings
reference --line-selection box`` run (R 600,000, every depth, 8 angles, line windows to 1e-4 of the continuum
instead of 1e-3), so the batch selection's error is measured against converged numerics and wide windows, not only
against the box's windows. Four arms together: 1 / Σ (1 / rate).

Usage::

    python benchmarks/grid_speed.py --molecules on                # the four GALAH arms
    taskset -c 1 python benchmarks/grid_speed.py --molecules on --out benchmarks/results/grid_speed_1core.json

Writes ``benchmarks/results/grid_speed.json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", default="galah", help="a window set (galah) or model windows, comma-separated")
    ap.add_argument("--n", type=int, default=96, help="timed rows per arm with the box selection")
    ap.add_argument(
        "--n-batch",
        type=int,
        default=512,
        help="timed rows per arm with the batch selection (≥ --n; the design's first --n rows are the box run's): a "
        "large grid has many rows per tier, a short run mixes tiers in its batches and uses the coolest one's lines",
    )
    ap.add_argument(
        "--n-reference", type=int, default=96, help="rows per arm of the slow reference run (≤ --n; 0: none)"
    )
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--molecules", choices=("off", "on"), default="on")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", default=str(HERE / "results" / "grid_speed.json"))
    args = ap.parse_args(argv)

    from stellarinf.commands.grid import generate_grid
    from stellarinf.instruments import window_set
    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.io.grid import read_grid
    from stellarinf.machine import machine_info

    arms = [w.name for name in args.window.split(",") for w in window_set(name)]  # a set or a model window
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arm in arms:
            row, flux = {"arm": arm}, {}
            for selection in ("box", "batch"):
                n = args.n if selection == "box" else max(args.n, args.n_batch)
                opts = dict(
                    n=n,
                    window=arm,
                    seed=args.seed,
                    batch_size=args.batch_size,
                    molecules=args.molecules,
                    line_selection=selection,
                    progress=False,
                )
                t0 = time.perf_counter()
                generate_grid(Path(tmp) / f"{arm}_{selection}_first.h5", **opts)
                first = time.perf_counter() - t0
                t0 = time.perf_counter()
                path = generate_grid(Path(tmp) / f"{arm}_{selection}.h5", **opts)
                seconds = time.perf_counter() - t0
                grid = read_grid(path)
                flux[selection] = grid.flux[: args.n]
                if selection == "box":  # the compared rows (the batch run's first args.n are the same)
                    names, labels, wavelength = grid.label_space.names, grid.labels, grid.wavelength
                row[selection] = {
                    "rows": n,
                    "spectra_per_second": n / seconds,
                    "seconds": seconds,
                    "first_run_seconds_with_compiles": first,
                }
                print(f"{arm} {selection}: {n / seconds:.2f} spectra/s (first run {first:.0f} s)", flush=True)

            def compare(a, b_name, b):
                """rms and largest |a − b| (percent of the continuum) and where the largest is."""
                d = flux[a][: b.shape[0]].astype(np.float64) - b
                star, pixel = np.unravel_index(np.argmax(np.abs(d)), d.shape)
                worst = {"labels": dict(zip(names, map(float, labels[star]))), "wavelength": float(wavelength[pixel])}
                out = {
                    "rms_percent": float(100 * np.sqrt(np.mean(d**2))),
                    "max_percent": float(100 * np.max(np.abs(d))),
                    "stars": int(d.shape[0]),
                    "worst": worst,
                }
                print(
                    f"{arm}: {a} vs {b_name}: rms {out['rms_percent']:.4f} %, "
                    f"max {out['max_percent']:.4f} % at {worst['wavelength']:.2f} Å",
                    flush=True,
                )
                return out

            row["batch_vs_box"] = compare("batch", "box", flux["box"])
            row["speed_ratio"] = row["batch"]["spectra_per_second"] / row["box"]["spectra_per_second"]
            print(f"{arm}: batch / box speed {row['speed_ratio']:.2f}", flush=True)
            n_ref = min(args.n_reference, args.n)
            if n_ref > 0:
                t0 = time.perf_counter()
                ref_opts = dict(opts, n=n_ref, line_selection="box", settings="reference")
                reference = read_grid(generate_grid(Path(tmp) / f"{arm}_reference.h5", **ref_opts)).flux.astype(
                    np.float64
                )
                row["reference"] = {"rows": n_ref, "seconds_with_compiles": time.perf_counter() - t0}
                row["box_vs_reference"] = compare("box", "reference", reference)
                row["batch_vs_reference"] = compare("batch", "reference", reference)
            rows.append(row)

    galah = [r for r in rows if r["arm"].startswith("galah-")]

    def together(sel):
        return 1.0 / sum(1.0 / r[sel]["spectra_per_second"] for r in galah) if galah else None

    doc = {
        "benchmark": "grid_speed",
        "arms": arms,
        "molecules": args.molecules,
        "timed_rows_per_arm": {"box": args.n, "batch": max(args.n, args.n_batch)},
        "batch_size": args.batch_size,
        "targets": {"four_arm_spectra_per_second_on_2_cores": 2.0, "rms_percent": 0.1, "max_percent": 0.5},
        "reference": "stellarinf grid --settings reference --line-selection box (synth.settings.REFERENCE_SETTINGS)",
        "galah_four_arms_spectra_per_second": {s: together(s) for s in ("box", "batch")},
        "per_arm": rows,
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "load_average_1_5_15min": os.getloadavg(),
        "machine": machine_info(),
        "note": "stellarinf grid's own pipeline (two batches in flight); cpu_affinity says which cores it could use",
    }
    write_json_atomic(args.out, doc)
    print(f"four GALAH arms, spectra/s: {doc['galah_four_arms_spectra_per_second']}; load {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
