"""Summarise a joint-fit NUTS run from the draws ``joint_fit.py --chunk`` checkpoints (``<output>.draws.npz``).

For a run that did not reach its own summary (the eleventh session's was killed, out of memory on the shared
machine, after its 400-draw chunk): regenerates the stars' truths from the seed exactly as ``joint_fit.py`` does
(same random stream, no spectra needed), computes R-hat (rank-normalised split, ArviZ) and bulk/tail ESS over every
parameter, the shared R and its pull, every star's label pulls, and writes the benchmark's JSON format. The
single-star Laplace widths of R come from a laplace run on the same stars (``--alone-from``).

    python benchmarks/joint_fit_from_draws.py benchmarks/results/joint_fit.draws.npz --log run.log \
        --alone-from benchmarks/results/joint_fit_laplace_vsini12.json -o benchmarks/results/joint_fit.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("draws")
    ap.add_argument("--n-stars", type=int, default=20)
    ap.add_argument("--r-true", type=float, default=22_000.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--free", default="teff,logg,feh,vmic")
    ap.add_argument("--alone-from", default=None, help="a joint_fit JSON of the same stars with the Laplace widths")
    ap.add_argument("--log", default=None, help="the run's log (progress lines and stage times are copied)")
    ap.add_argument("--settings", default="{}", help="JSON of the run's settings to record")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args(argv)

    import arviz as az

    from stellarinf.emulators.registry import load_emulator
    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.machine import machine_info
    from stellarinf.validation.mocks import random_truth

    fit_model = load_emulator("default-payne")
    rng = np.random.default_rng(args.seed)
    names = list(fit_model.label_space.names)
    free = [n.strip() for n in args.free.split(",") if n.strip()]
    truths = [
        random_truth(fit_model.label_space, rng, inset=0.15, rv_max=50.0, vsini_range=(2.0, 10.0))
        for _ in range(args.n_stars)
    ]
    held = [n for n in names if n not in free]
    common = {n: float(np.median([t[n] for t in truths])) for n in held}
    for t in truths:
        t.update(common)

    d = np.load(args.draws)
    sites = [k for k in d.files if not k.startswith("stat_")]
    star_names = [k for k in sites if k != "resolution"]
    ids = [f"star{i:02d}" for i in range(args.n_stars)]
    rhat, ess_bulk, ess_tail, summary = {}, {}, {}, {}
    for k in sites:
        ds = az.convert_to_dataset({"x": d[k]})
        rhat[k] = np.asarray(az.rhat(ds)["x"])
        ess_bulk[k] = np.asarray(az.ess(ds, method="bulk")["x"])
        ess_tail[k] = np.asarray(az.ess(ds, method="tail")["x"])
        flat = d[k].reshape(-1, d[k].shape[-1])
        summary[k] = (np.median(flat, axis=0), flat.std(axis=0, ddof=1))
    r = d["resolution"].reshape(-1)
    r_p50, r_sd = float(np.median(r)), float(r.std(ddof=1))
    r_pull = (r_p50 - args.r_true) / r_sd
    pulls = {
        n: [float((summary[n][0][i] - truths[i][n]) / summary[n][1][i]) for i in range(args.n_stars)]
        for n in star_names
    }
    flat_pulls = np.concatenate([np.asarray(v) for v in pulls.values()])
    all_r = np.concatenate([rhat[k].ravel() for k in sites])
    all_e = np.concatenate([ess_bulk[k].ravel() for k in sites])
    worst = sorted(((float(rhat[k][i]), k, i) for k in sites for i in range(rhat[k].size)), reverse=True)[:8]
    alone_r, narrowest = [], None
    if args.alone_from:
        prev = json.loads(Path(args.alone_from).read_text())
        alone_r = prev.get("single_star_resolution_laplace", [])
        narrowest = min(a["sd"] for a in alone_r) if alone_r else None
    stats = {k[5:]: d[k] for k in d.files if k.startswith("stat_")}
    log = Path(args.log).read_text() if args.log else ""
    progress = [ln for ln in log.splitlines() if ln.startswith(("draws ", "pilot", "time budget"))]
    stage_times = {
        m.group(1): float(m.group(2)) for m in re.finditer(r"\n\[\d/6\] (\w[^\n]*?) …\n[^\n]*\[([\d.]+) s\]", log)
    }
    out = {
        "benchmark": "joint_fit",
        "description": {
            "fit_model": "default-payne",
            "truth_model": "SynthesizerModel(realistic), galah-red",
            "note": (
                "summarised from the NUTS draws checkpointed after each 50-draw chunk "
                "(benchmarks/joint_fit_from_draws.py): the run was killed (out of memory on the shared machine, "
                "LLVM 'Cannot allocate memory') after its 400-draw chunk, before joint_fit.py wrote its own summary"
            ),
        },
        "settings": {
            "n_stars": args.n_stars,
            "r_true": args.r_true,
            "free_per_star": star_names,
            "held_at_truth": common,
            "chains": int(d["teff"].shape[0]),
            "draws": int(d["teff"].shape[1]),
            "n_free_joint": int(sum(d[k].shape[-1] for k in sites)),
            **json.loads(args.settings),
        },
        "shared_resolution": {
            "p50": r_p50,
            "sd": r_sd,
            "pull": float(r_pull),
            "within_1_sd": bool(abs(r_pull) <= 1.0),
            "within_2_sd": bool(abs(r_pull) <= 2.0),
            "r_hat": float(rhat["resolution"][0]),
            "ess_bulk": float(ess_bulk["resolution"][0]),
            "ess_tail": float(ess_tail["resolution"][0]),
            "narrower_than_every_single_star": None if narrowest is None else bool(r_sd < narrowest),
            "single_star_sd_min": narrowest,
            "single_star_sd_median_laplace": float(np.median([a["sd"] for a in alone_r])) if alone_r else None,
            "sd_ratio_joint_over_best_single": None if narrowest is None else float(r_sd / narrowest),
            "single_star_widths_from": args.alone_from,
        },
        "single_star_resolution_laplace": alone_r,
        "label_pulls": {
            "per_label_rms": {n: float(np.sqrt(np.mean(np.square(v)))) for n, v in pulls.items()},
            "per_label_median": {n: float(np.median(v)) for n, v in pulls.items()},
            "fraction_within_3sd": float(np.mean(np.abs(flat_pulls) < 3)),
            "fraction_within_2sd": float(np.mean(np.abs(flat_pulls) < 2)),
            "max_abs": float(np.max(np.abs(flat_pulls))),
            "per_star": [{"star": s, **{n: pulls[n][i] for n in pulls}} for i, s in enumerate(ids)],
        },
        "diagnostics": {
            "r_hat_max_all_parameters": float(all_r.max()),
            "r_hat_below_1.01": bool(all_r.max() < 1.01),
            "n_parameters": int(all_r.size),
            "n_parameters_r_hat_below_1.01": int(np.sum(all_r < 1.01)),
            "worst_r_hat": [
                {
                    "parameter": f"{k}[{ids[i] if k != 'resolution' else 'all'}]",
                    "r_hat": v,
                    "ess_bulk": float(ess_bulk[k][i]),
                }
                for v, k, i in worst
            ],
            "ess_bulk_min": float(all_e.min()),
            "ess_bulk_median": float(np.median(all_e)),
            "ess_tail_min": float(min(ess_tail[k].min() for k in sites)),
            "n_divergent": int(stats["diverging"].sum()),
            "n_gradient_evals_sampling": int(stats["n_steps"].sum()),
            "mean_tree_steps": float(stats["n_steps"].mean()),
            "vsini_truth_per_star": [float(t["vsini"]) for t in truths],
        },
        "progress_log": progress,
        "stage_times_s": stage_times,
        "machine": machine_info(),
        "load_average_1_5_15min_at_summary": list(os.getloadavg()),
    }
    write_json_atomic(args.output, out)
    print(json.dumps({k: out[k] for k in ("shared_resolution", "diagnostics")}, indent=1)[:4000])


if __name__ == "__main__":
    main()
