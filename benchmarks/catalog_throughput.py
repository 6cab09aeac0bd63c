"""fit-catalog end to end on a synthetic survey: N mock stars fitted by ``stellarinf.fit_catalog`` on a local Dask
cluster, several runs side by side (workers × sampler × stars), with stars/s, the scaling ratio, recovery and coverage
against the known truths, and the client's memory on a large manifest.

The mocks are made by the **synthesizer** (``--truth synth``, the default: realistic fidelity with the physics the
fitted emulator's training grid used, so the fit sees emulator error as it would on a real survey) or by the fitted
emulator itself (``--truth emulator``), at mixed S/N, RV and v sin i on the emulator's range, plus bad files on
purpose (unreadable, missing, NaN flux, no overlap with the model); ``--quick`` uses the analytic test model. The
mocks are made once per work folder (``truths.json``) and reused by later invocations with the same settings.

Each run (``--runs WORKERS:SAMPLER:N,...``) fits the first N stars (and the bad files) into its own output folder on
a fresh cluster: the wall time includes the cluster's start and each worker's compilation; ``steady stars/s`` is
measured from the result files' times between the first and the last star (compilation excluded). An interrupted run
resumes where it stopped when the command is repeated (``fit_catalog`` is restartable); a run whose folder already
holds its stars keeps the timings of the run that fitted them and recomputes only the recovery. Recovery: per label, the
share of stars whose median is within 1, 2, 3 reported total sd of the truth (68.3 / 95.4 / 99.7 % if calibrated),
and per star, all labels within 3 total sd. ``--manifest-rows`` also measures the client's peak RSS while it reads and
checks a manifest of that many rows and plans its chunks (no fitting).

Usage::

    python benchmarks/catalog_throughput.py --n 2000 --runs 2:laplace:2000,1:laplace:400,2:laplace-is:400 \
        -o benchmarks/results/catalog_survey.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import stellarinf
from stellarinf.io.atomic import write_json_atomic
from stellarinf.io.spectrum import Spectrum, write_spectrum_fits
from stellarinf.machine import machine_info
from stellarinf.validation.mocks import noiseless_fluxes, random_truth, with_noise

SNRS = (25.0, 50.0, 100.0, 200.0)
BAD = ("bad_unreadable", "bad_missing", "bad_nan_flux", "bad_no_overlap")
TIMED = ("wall_s", "stars_per_s_with_startup", "stars_per_s_steady", "median_seconds_per_star")


def arm_models(emulator: str, windows: str | None = None) -> list[str]:
    """The models a mock star is made for: ``[emulator]``, or for a set (``broad``: MODEL_SETS) its members, one per
    arm, restricted to ``windows`` (comma-separated window names) if given."""
    from stellarinf.shipped_models import MODEL_SETS, set_members

    if emulator not in MODEL_SETS:
        return [emulator]
    by_window = set_members(emulator)
    if not windows:
        return list(by_window.values())
    wanted = [w.strip() for w in windows.split(",") if w.strip()]
    members = [m for w, m in by_window.items() if w in wanted]
    if not members:
        raise SystemExit(f"no member of {emulator!r} covers {windows}: its members are {MODEL_SETS[emulator]}")
    return members


def make_catalogue(
    folder: Path, n: int, emulator: str, truth: str, quick: bool, seed: int = 0, members: list[str] | None = None
) -> dict:
    """N mock stars (+ the bad files) in ``folder/spectra`` and their truths in ``folder/truths.json`` (returned).
    For a set of models (``emulator="broad"``) each star is a multi-arm spectrum: one file per member's window
    (``starNNNNN_<window>.fits``), the same labels, rv, v sin i and S/N in every arm, each arm at its model's R.

    ``members``: the models a star's arms are made for (:func:`arm_models`; default ``[emulator]``).
    Made once: a folder whose ``truths.json`` has the same settings is reused as it is."""
    from stellarinf.validation.setups import analytic_setup, benchmark_setup

    members = members or [emulator]
    key = {"n": n, "emulator": emulator, "truth": truth, "quick": quick, "seed": seed, "snrs": list(SNRS)}
    if len(members) > 1:
        key["arms"] = members
    record = folder / "truths.json"
    if record.exists():
        old = json.loads(record.read_text())
        if old.get("settings") == key:
            return old["stars"]
    if quick:
        truth_model, wl = analytic_setup()
        arms = [(truth_model, wl, 20000.0, "")]
        space = truth_model.label_space
    else:
        arms = []
        for m in members:
            fit_model, truth_model, wl, resolution, _ = benchmark_setup(m, quick=False, truth=truth)
            suffix = "" if len(members) == 1 else f"_{fit_model.wavelength_range[0]:.0f}"
            arms.append((truth_model, wl, resolution, suffix))
            space = fit_model.label_space
    rng = np.random.default_rng(seed)
    params = [random_truth(space, rng, rv_max=50.0) for _ in range(n)]
    snrs = rng.choice(SNRS, n)
    t0 = time.perf_counter()
    spectra = folder / "spectra"
    spectra.mkdir(parents=True, exist_ok=True)
    truths = {f"star{i:05d}": {**p, "snr": float(snr)} for i, (p, snr) in enumerate(zip(params, snrs))}
    first = None  # the first arm's first star: the flux of the file with no overlap
    for k, (truth_model, wl, resolution, suffix) in enumerate(arms):
        fluxes = noiseless_fluxes(truth_model, wl, params, resolution)
        first = fluxes[0] if first is None else first
        print(f"made {n} noiseless mocks ({truth}{suffix}) in {time.perf_counter() - t0:.0f} s", flush=True)
        for i, (p, flux, snr) in enumerate(zip(params, fluxes, snrs)):
            noisy = with_noise(wl, flux, p, snr=float(snr), resolution=resolution, seed=i + 100_000 * k)
            write_spectrum_fits(spectra / f"star{i:05d}{suffix}.fits", noisy)
    truth_model, wl, resolution, _ = arms[0]
    (spectra / "bad_unreadable.fits").write_bytes(b"not fits\n" * 10)
    from astropy.io import fits

    cols = [  # a table a pipeline wrote with its flux all NaN
        fits.Column(name="wavelength", format="D", array=wl),
        fits.Column(name="flux", format="D", array=np.full_like(wl, np.nan)),
        fits.Column(name="sigma", format="D", array=np.full_like(wl, 0.01)),
    ]
    fits.BinTableHDU.from_columns(cols).writeto(spectra / "bad_nan_flux.fits", overwrite=True)
    far = wl * 1.5  # 50 % redder: no pixel inside the model's range
    write_spectrum_fits(
        spectra / "bad_no_overlap.fits", Spectrum(far, first, np.full_like(wl, 0.01), resolution=resolution)
    )
    write_json_atomic(record, {"settings": key, "stars": truths, "mock_seconds": time.perf_counter() - t0})
    return truths


def star_paths(folder: Path, sid: str) -> str:
    """A star's manifest path: its one file, or its arms' files joined by ``;`` (a multi-arm star)."""
    one = folder / "spectra" / f"{sid}.fits"
    if one.exists():
        return f"spectra/{sid}.fits"
    return ";".join(f"spectra/{p.name}" for p in sorted((folder / "spectra").glob(f"{sid}_*.fits")))


def write_manifest(folder: Path, ids: list[str]) -> Path:
    """A manifest of these stars and every bad file (paths relative to ``folder``)."""
    path = folder / f"manifest_{len(ids)}.csv"
    rows = ["path,id", *(f"{star_paths(folder, i)},{i}" for i in ids), *(f"spectra/{b}.fits,{b}" for b in BAD)]
    path.write_text("\n".join(rows) + "\n")
    return path


def steady_rate(out: Path) -> float:
    times = sorted(p.stat().st_mtime for p in (out / "stars").glob("star*.json"))
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 2 and times[-1] > times[0] else float("nan")


def pulls(table, truths: dict):
    """(fitted rows, {label: (median − truth) / total sd}, {label: (median − truth) / posterior sd}) for every label
    with a truth; the total sd is the posterior sd where the emulator has no systematics for the label."""
    ok = table[table["status"] == "ok"]
    labels = [c[: -len("_p50")] for c in ok.colnames if c.endswith("_p50") and c[: -len("_p50")] in truths[ok["id"][0]]]
    z_total, z_sd = {}, {}
    for label in labels:
        err = np.asarray(ok[f"{label}_p50"], float) - np.array([truths[i][label] for i in ok["id"]])
        sd_total = ok[f"{label}_sd_total"] if f"{label}_sd_total" in ok.colnames else ok[f"{label}_sd"]
        z_total[label] = err / np.asarray(sd_total, float)
        z_sd[label] = err / np.asarray(ok[f"{label}_sd"], float)
    return ok, z_total, z_sd


def shares(z) -> dict:
    """The share of |pulls| ``z`` within 1, 2 and 3."""
    return {f"within_{k}": float(np.mean(z <= k)) for k in (1, 2, 3)}


def recovery(table, truths: dict) -> dict:
    """Per label: the share of stars within 1/2/3 total sd (and posterior sd) of the truth; per S/N for the stellar
    labels; per star, all labels within 3 total sd."""
    ok, z_total, z_sd = pulls(table, truths)
    z_total = {label: np.abs(z) for label, z in z_total.items()}
    z_sd = {label: np.abs(z) for label, z in z_sd.items()}
    labels = list(z_total)
    snr = np.array([truths[i]["snr"] for i in ok["id"]])

    return {
        "stars": len(ok),
        "per_label_sd_total": {label: shares(z) for label, z in z_total.items()},
        "per_label_sd": {label: shares(z) for label, z in z_sd.items()},
        "per_snr_sd_total": {
            str(s): {label: shares(z_total[label][snr == s]) for label in ("teff", "logg", "feh") if label in z_total}
            for s in sorted(set(snr))
        },
        "median_abs_pull": {label: float(np.median(z)) for label, z in z_sd.items()},
        "star_all_within_3_sd_total": float(np.mean(np.all(np.stack(list(z_total.values())) <= 3, axis=0))),
        "labels": labels,
    }


def sd_sys_variants(table, truths: dict, doc: dict) -> dict:
    """Coverage of the same fits with the emulator's systematic sd as one rms over the box (``constant``) and at
    each star's fitted labels (``label_dependent``, inference.label_systematics): the posterior sd is the fit's,
    the total sd √(sd² + sd_sys²) is recomputed for each; per label, per S/N and for the stars the rms underserves
    (v sin i < 5 km/s, [Fe/H] < −1.5), the share within 1/2/3 total sd and of stars with every label within 3; per
    label, the shares and the Gaussian log score (mean of ln sd_total + z²/2: lower is better). ``doc``: the
    emulator's ``label_systematics`` document."""
    from stellarinf.inference.label_systematics import sd_at

    if not doc.get("model"):
        return {}
    ok = table[table["status"] == "ok"]
    ids = list(ok["id"])
    labels = [c[: -len("_p50")] for c in ok.colnames if c.endswith("_p50") and c[: -len("_p50")] in truths[ids[0]]]
    p50 = {label: np.asarray(ok[f"{label}_p50"], float) for label in labels}
    sd = {label: np.asarray(ok[f"{label}_sd"], float) for label in labels}
    err = {label: p50[label] - np.array([truths[i][label] for i in ids]) for label in labels}
    snr = np.array([truths[i]["snr"] for i in ids])
    groups = {
        "all": np.ones(len(ids), bool),
        **{f"snr_{s:g}": snr == s for s in sorted(set(snr))},
        "vsini_below_5": np.array([truths[i]["vsini"] < 5 for i in ids]),
        "feh_below_-1.5": np.array([truths[i]["feh"] < -1.5 for i in ids]),
    }
    at = [{label: p50[label][k] for label in labels} for k in range(len(ids))]
    sys_sd = {
        "constant": [sd_at(doc)] * len(at),
        "label_dependent": [sd_at(doc, a) for a in at],
    }
    out = {}
    for variant, per_star in sys_sd.items():
        total = {label: np.hypot(sd[label], [s.get(label, 0.0) for s in per_star]) for label in labels}
        z = {label: np.abs(err[label]) / total[label] for label in labels}
        every = np.all(np.stack(list(z.values())) <= 3, axis=0)
        # the Gaussian log score per star (lower is better): rewards sd_total that is right, not merely wide
        scores = {label: float(np.mean(np.log(total[label]) + 0.5 * z[label] ** 2)) for label in labels}
        out[f"{variant}_per_label"] = {label: {"neg_log_score": scores[label], **shares(z[label])} for label in labels}
        out[variant] = {
            name: {
                "stars": int(g.sum()),
                "star_all_within_3": float(np.mean(every[g])),
                **{label: shares(z[label][g]) for label in ("teff", "logg", "feh") if label in z},
            }
            for name, g in groups.items()
        }
    if "teff_sd_total" in ok.colnames:  # the catalogue's own: sd_sys at the best fit (here at the median)
        mine = np.hypot(sd["teff"], [s.get("teff", 0.0) for s in sys_sd["label_dependent"]])
        out["teff_sd_total_max_rel_diff_from_catalogue"] = float(
            np.max(np.abs(mine / np.asarray(ok["teff_sd_total"], float) - 1))
        )
    return out


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


def plot_recovery(table, truths: dict, path: Path, title: str) -> None:
    """Pulls (median − truth) / total sd per label against N(0, 1), and the 1/2/3-sd coverage per label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rec = recovery(table, truths)
    z_total = pulls(table, truths)[1]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.2))
    grid = np.linspace(-4, 4, 161)
    for label in [n for n in ("teff", "logg", "feh", "vmic") if n in z_total]:  # the --quick model has no vmic
        ax.hist(np.clip(z_total[label], -4, 4), bins=grid[::4], density=True, histtype="step", label=label)
    ax.plot(grid, np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi), "k--", label="N(0, 1)")
    ax.set(xlabel="(median − truth) / total sd", ylabel="density", title=title)
    ax.legend(fontsize=8)
    labels = rec["labels"]
    x = np.arange(len(labels))
    for k, (level, colour) in enumerate(((1, "C0"), (2, "C1"), (3, "C2"))):
        bx.bar(
            x + (k - 1) * 0.27, [rec["per_label_sd_total"][n][f"within_{level}"] for n in labels], 0.27, color=colour
        )
        expected = {1: 0.6827, 2: 0.9545, 3: 0.9973}[level]
        bx.axhline(expected, color=colour, ls="--", lw=1, label=f"within {level} sd: {expected:.1%} if calibrated")
    bx.set_xticks(x, labels, rotation=60, fontsize=8)
    bx.set(ylim=(0.5, 1.02), ylabel="share of stars", title=f"coverage, {rec['stars']} stars")
    bx.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50, help="mock stars (plus the bad files)")
    ap.add_argument(
        "--runs",
        default="1:laplace:50,2:laplace:50",
        help="comma-separated WORKERS:SAMPLER:N[:CHAINSxDRAWS] (N: the first N stars; draws 2x500 unless given); "
        "'' : no fits (with --manifest-rows)",
    )
    ap.add_argument("--emulator", default="default-payne", help="a model, or a set (broad): multi-arm mock stars")
    ap.add_argument("--windows", default=None, help="for a set: the windows of its members to make arms for")
    ap.add_argument("--truth", choices=["synth", "emulator"], default="synth", help="what makes the mocks")
    ap.add_argument("--chunk-size", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="the analytic test model (plumbing only)")
    ap.add_argument("--manifest-rows", type=int, default=0, help="also measure the client's memory on this many rows")
    ap.add_argument("--work", default="benchmarks/work/catalog_throughput")
    ap.add_argument("-o", "--output", default="benchmarks/results/catalog_throughput.json")
    args = ap.parse_args(argv)
    t_all = time.perf_counter()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    runs_spec = [r.split(":") for r in args.runs.split(",") if r.strip()]
    members = arm_models(args.emulator, args.windows)
    truths = make_catalogue(work, args.n, args.emulator, args.truth, args.quick, members=members)
    emulator = args.emulator
    if args.quick:
        from stellarinf.validation.setups import analytic_setup

        emulator = analytic_setup()[0]
    settings = dict(
        physics_error="off",  # mocks from the synthesizer the emulator learned: no physics mismatch to admit
        rv_max=100.0,
        vsini_max=30.0,
        fixed={"vmacro": 0.0},
        chunk_size=args.chunk_size,
    )
    previous = json.loads(Path(args.output).read_text()) if Path(args.output).exists() else {}
    runs = {r["name"]: r for r in previous.get("runs", [])} if previous.get("n") == args.n else {}
    previous_runs = dict(runs)
    systematics = {}
    if not args.quick and len(members) == 1:  # the emulator's label_systematics document, for sd_sys_variants
        from stellarinf.emulators.registry import load_emulator
        from stellarinf.inference.label_systematics import systematics_document

        systematics = systematics_document(load_emulator(args.emulator))
    for workers, sampler, n_stars, *draws_spec in runs_spec:
        n_workers, n_stars = int(workers), min(int(n_stars), args.n)
        chains, draws = (int(v) for v in draws_spec[0].split("x")) if draws_spec else (2, 500)
        name = f"{n_workers}w_{sampler}_{n_stars}" + (f"_{chains}x{draws}" if draws_spec else "")
        out = work / f"out_{name}"
        manifest = write_manifest(work, sorted(truths)[:n_stars])
        done_before = len(list((out / "stars").glob("*.json"))) if (out / "stars").is_dir() else 0
        t0 = time.perf_counter()
        kw = {"emulator_name": "analytic"} if args.quick else {}
        cat = stellarinf.fit_catalog(
            manifest,
            out,
            workers=n_workers,
            emulator=emulator,
            sampler=sampler,
            progress=False,
            **kw,
            chains=chains,
            draws=draws,
            **settings,
        )
        wall = time.perf_counter() - t0
        ok = cat.table[cat.table["status"] == "ok"]
        runs[name] = {
            "name": name,
            "workers": n_workers,
            "sampler": sampler,
            "chains_x_draws": f"{chains}x{draws}",
            "n_stars": n_stars,
            "stars": len(cat.table),
            "ok": int(len(ok)),
            "failed": int(cat.counts["failed"]),
            "failed_why": dict(cat.failed),
            "wall_s": wall,
            "stars_per_s_with_startup": len(cat.table) / wall,
            "stars_per_s_steady": steady_rate(out),
            "median_seconds_per_star": float(np.nanmedian(np.asarray(ok["seconds"], float))),
            "flag_counts": cat.flag_counts,
            "recovery": recovery(cat.table, truths),
        }
        if done_before and name in previous_runs:  # a resumed run: its fitting was timed by the run that did it
            runs[name].update({k: previous_runs[name][k] for k in TIMED if k in previous_runs[name]})
            runs[name]["resumed_with_results"] = done_before
        if not args.quick:
            runs[name]["sd_sys_variants"] = sd_sys_variants(cat.table, truths, systematics)
        print(json.dumps({k: v for k, v in runs[name].items() if k != "recovery"}), flush=True)
        write_json_atomic(args.output, {**previous, "runs": list(runs.values()), "n": args.n})
    result = {
        **previous,
        "benchmark": "catalog_throughput",
        "quick": args.quick,
        "truth": args.truth,
        "emulator": args.emulator,
        "n": args.n,
        "snrs": list(SNRS),
        "settings": settings,
        "machine": machine_info(),
        "load_average_at_end": os.getloadavg(),
        "runs": list(runs.values()),
    }
    largest = {}  # (workers, sampler) -> the run with the most stars: its steady rate is the least noisy
    for r in result["runs"]:
        if r["n_stars"] >= largest.get((r["workers"], r["sampler"]), {"n_stars": -1})["n_stars"]:
            largest[(r["workers"], r["sampler"])] = r
    result["scaling_steady"] = {
        sampler: {
            "ratio": largest[(2, sampler)]["stars_per_s_steady"] / r["stars_per_s_steady"],
            "runs": [r["name"], largest[(2, sampler)]["name"]],
        }
        for (w, sampler), r in largest.items()
        if w == 1 and (2, sampler) in largest
    }
    result["wall_time_s"] = previous.get("wall_time_s", 0.0) + time.perf_counter() - t_all
    write_json_atomic(args.output, result)  # the fits' numbers are safe before the manifest step
    if result["runs"]:
        best = max(result["runs"], key=lambda r: (r["sampler"] == "laplace", r["n_stars"]))
        from astropy.table import Table

        table = Table.read(work / f"out_{best['name']}" / "catalog.fits")
        title = f"{best['n_stars']} {args.truth} mocks, {args.emulator}, {best['sampler']}"
        plot_recovery(table, truths, Path(args.output).with_suffix(".png"), title)
    if args.manifest_rows:
        t_manifest = time.perf_counter()
        result["manifest_memory"] = manifest_memory(work, args.manifest_rows)
        result["wall_time_s"] += time.perf_counter() - t_manifest
        print(json.dumps(result["manifest_memory"]), flush=True)
    write_json_atomic(args.output, result)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
