"""fit-catalog throughput: N mock stars fitted by ``stellarinf.fit_catalog`` on a local Dask cluster of 1 and of 2
workers (stars/s, the scaling ratio), and the client's memory on a large manifest.

The mocks are made by the fitted emulator itself (``--emulator default-payne``, the default) at mixed S/N, RV and
v sin i on its own wavelength range, plus a few bad files on purpose (unreadable, NaN flux); ``--quick`` uses the
analytic test model instead. Per worker count, a fresh output folder and a fresh cluster: the wall time includes the
cluster's start and each worker's compilation; ``steady stars/s`` is measured from the result files' times between
the first and the last star (compilation excluded). ``--manifest-rows`` also measures the client's peak RSS while it
reads and checks a manifest of that many rows and plans its chunks (no fitting).

Usage::

    python benchmarks/catalog_throughput.py --n 50 --workers 1,2 -o benchmarks/results/catalog_throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import stellarinf
from stellarinf.io.atomic import write_json_atomic
from stellarinf.io.spectrum import write_spectrum_fits
from stellarinf.machine import machine_info
from stellarinf.validation.mocks import make_mock


def make_catalogue(folder: Path, n: int, emulator: str, quick: bool, seed: int = 0) -> tuple[Path, dict, object]:
    """N mock stars (+ 2 bad files) and a manifest; returns (manifest, truths, model or name)."""
    from stellarinf.validation.setups import analytic_setup, observed_wavelength

    rng = np.random.default_rng(seed)
    if quick:
        model, wl = analytic_setup()
        resolution = 20000.0
    else:
        model = stellarinf.load_emulator(emulator)
        resolution = float(getattr(model, "resolution", None) or 28000.0)
        wl = observed_wavelength(model, resolution)
    lo, hi = np.asarray(model.label_space.lower), np.asarray(model.label_space.upper)
    spectra = folder / "spectra"
    spectra.mkdir(parents=True, exist_ok=True)
    truths, rows = {}, ["path,id"]
    for i in range(n):
        x = lo + (hi - lo) * rng.uniform(0.15, 0.85, len(lo))
        truth = dict(zip(model.label_space.names, map(float, x)))
        truth.update(rv=float(rng.uniform(-50, 50)), vsini=float(rng.uniform(2, 15)), vmacro=0.0)
        snr = float(rng.choice([30.0, 60.0, 120.0]))
        sid = f"star{i:05d}"
        write_spectrum_fits(
            spectra / f"{sid}.fits", make_mock(model, wl, truth, snr=snr, resolution=resolution, seed=i)
        )
        truths[sid] = {**truth, "snr": snr}
        rows.append(f"spectra/{sid}.fits,{sid}")
    (spectra / "bad_unreadable.fits").write_bytes(b"not fits\n" * 10)
    rows.append("spectra/bad_unreadable.fits,bad_unreadable")
    rows.append("spectra/bad_missing.fits,bad_missing")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest, truths, (model if quick else emulator)


def steady_rate(out: Path) -> float:
    times = sorted(p.stat().st_mtime for p in (out / "stars").glob("star*.json"))
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 2 and times[-1] > times[0] else float("nan")


def manifest_memory(folder: Path, rows: int) -> dict:
    """Peak RSS of the client reading, checking and chunking a manifest of ``rows`` rows (paths to one real file)."""
    from stellarinf.catalog.manifest import chunks_by_size, read_catalogue

    spectrum = next((folder / "spectra").glob("star*.fits")).resolve()
    path = folder / "big_manifest.csv"
    with open(path, "w") as fh:
        fh.write("path,id,prior_logg\n")
        for i in range(rows):
            fh.write(f"{spectrum},s{i:07d},{'4.4+-0.1' if i % 10 == 0 else ''}\n")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    cat = read_catalogue(path)
    chunks = chunks_by_size(cat.stars, 16)
    return {
        "rows": rows,
        "seconds": time.perf_counter() - t0,
        "peak_rss_mib_before": before,
        "peak_rss_mib_after": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "chunks": len(chunks),
        "manifest_mib": path.stat().st_size / 2**20,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50, help="mock stars (plus 2 bad files)")
    ap.add_argument(
        "--workers", default="1,2", help="comma-separated worker counts ('' : no fits; with --manifest-rows)"
    )
    ap.add_argument("--emulator", default="default-payne")
    ap.add_argument("--sampler", default="laplace")
    ap.add_argument("--chunk-size", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="the analytic test model (plumbing only)")
    ap.add_argument("--manifest-rows", type=int, default=0, help="also measure the client's memory on this many rows")
    ap.add_argument("--work", default="benchmarks/work/catalog_throughput")
    ap.add_argument("-o", "--output", default="benchmarks/results/catalog_throughput.json")
    args = ap.parse_args(argv)
    t_all = time.perf_counter()
    work = Path(args.work)
    worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    if worker_counts or not (work / "spectra").is_dir():
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        manifest, truths, emulator = make_catalogue(work, args.n, args.emulator, args.quick)
    settings = dict(
        sampler=args.sampler,
        chains=2,
        draws=500,
        physics_error="off",
        rv_max=100.0,
        vsini_max=30.0,
        fixed={"vmacro": 0.0},
        chunk_size=args.chunk_size,
    )
    runs = []
    for n_workers in worker_counts:
        out = work / f"out_{n_workers}"
        t0 = time.perf_counter()
        kw = {"emulator_name": "analytic"} if args.quick else {}
        cat = stellarinf.fit_catalog(
            manifest, out, workers=n_workers, emulator=emulator, progress=False, **kw, **settings
        )
        wall = time.perf_counter() - t0
        ok = cat.table[cat.table["status"] == "ok"]
        pulls = {
            label: float(
                np.median(np.abs([(r[f"{label}_p50"] - truths[r["id"]][label]) / r[f"{label}_sd"] for r in ok]))
            )
            for label in ("teff", "logg", "feh")
        }
        runs.append(
            {
                "workers": n_workers,
                "stars": len(cat.table),
                "ok": int(len(ok)),
                "failed": int(cat.counts["failed"]),
                "wall_s": wall,
                "stars_per_s_with_startup": len(cat.table) / wall,
                "stars_per_s_steady": steady_rate(out),
                "median_seconds_per_star": float(np.nanmedian(np.asarray(ok["seconds"], float))),
                "median_abs_pull": pulls,
                "flag_counts": cat.flag_counts,
            }
        )
        print(json.dumps(runs[-1]), flush=True)
    previous = json.loads(Path(args.output).read_text()) if not worker_counts and Path(args.output).exists() else {}
    result = {
        **previous,
        "benchmark": "catalog_throughput",
        "quick": args.quick,
        "machine": machine_info(),
        "load_average_at_end": os.getloadavg(),
    }
    if worker_counts:
        result["settings"] = {**settings, "n": args.n, "emulator": args.emulator}
        result["runs"] = runs
    runs = result.get("runs", [])
    if len(runs) >= 2 and runs[0]["workers"] == 1:
        result["scaling_steady"] = runs[1]["stars_per_s_steady"] / runs[0]["stars_per_s_steady"]
        result["scaling_with_startup"] = runs[1]["stars_per_s_with_startup"] / runs[0]["stars_per_s_with_startup"]
    result["wall_time_s"] = result.get("wall_time_s", 0.0) + time.perf_counter() - t_all
    write_json_atomic(args.output, result)  # the fits' numbers are safe before the manifest step
    if args.manifest_rows:
        t_manifest = time.perf_counter()
        result["manifest_memory"] = manifest_memory(work, args.manifest_rows)
        result["wall_time_s"] += time.perf_counter() - t_manifest
        print(json.dumps(result["manifest_memory"]), flush=True)
    write_json_atomic(args.output, result)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
