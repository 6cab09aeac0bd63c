"""Recovery of known truth on mock spectra (issue #5 "must show").

Mocks are made by the synthesizer (not the emulator), pushed through the observation pipeline with random
RV and vsini, noise at S/N 50 and 200; each is fitted with the emulator. Pass criterion: for every S/N the
posterior median is within 3σ of the truth for ≥ 95% of stars (all labels), and R-hat < 1.01.

Pulls are reported twice when the emulator carries label-space systematics (``stellarinf error-model
--systematics``): over the posterior sd alone (``<method>``) and over sd_total = √(sd² + sd_sys²)
(``<method>+systematics``). Every star's truth, median and sds are kept in the JSON (``stars``).

    python benchmarks/inference_recovery.py --emulator default --n-stars 50 --sampler nuts
    python benchmarks/inference_recovery.py --quick          # analytic model, seconds-to-minutes

Writes benchmarks/results/inference_recovery.json (with machine info).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

import stellarinf

stellarinf.enable_float64()  # atmospheres, likelihoods, Fisher matrices
from stellarinf.inference.density import Problem
from stellarinf.inference.laplace import laplace
from stellarinf.inference.map import find_map, refine_map
from stellarinf.inference.results import summary_table, to_inference_data
from stellarinf.inference.samplers import laplace_posterior, sample
from stellarinf.io.atomic import write_json_atomic
from stellarinf.machine import machine_info
from stellarinf.observe.error_scale import star_error_scales, with_error_scales
from stellarinf.observe.model import ObservationModel
from stellarinf.validation.mocks import make_mock, random_truth
from stellarinf.validation.setups import benchmark_setup

RESULTS = Path(__file__).parent / "results"


def fit_one(fit_model, spec, sampler, chains, warmup, draws, seed, error_modes=True, error_scale="star"):
    """Laplace summary always (cheap); the sampler's summary too unless ``sampler`` is None or "laplace".
    ``error_scale``: "star" scales the emulator's error to the star at the first MAP and polishes that MAP again
    (as ``fit_spectrum`` does, :mod:`stellarinf.observe.error_scale`); "box": the error table as measured."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        om = ObservationModel(
            fit_model,
            spec,
            rv_max=100,
            vsini_max=30,
            vmacro_max=10,
            fixed={"vmacro": 0.0},
            continuum_degree=1,
            continuum="marginalise",
            error_modes=error_modes,
        )
    problem = Problem.build(om)
    m = find_map(problem, n_starts=4, seed=seed)
    scales = star_error_scales(om, m.params) if error_scale == "star" else ()
    if any(s is not None for s in scales):
        om = with_error_scales(om, scales)
        problem = problem.with_obs_model(om)
        m = refine_map(problem, m)
    lap = laplace(problem, m)
    post = laplace_posterior(problem, chains=chains, draws=draws, seed=seed, init=lap)
    tables = {"laplace": summary_table(to_inference_data(post, problem, n_predictive=5))}
    if sampler not in (None, "laplace"):
        post = sample(problem, sampler, chains=chains, warmup=warmup, draws=draws, seed=seed, init=lap)
        tables[sampler] = summary_table(to_inference_data(post, problem, n_predictive=5))
    return tables


def summarise(pulls, rhats, times, names, n_stars, check_rhat: bool) -> dict:
    pulls, rhats = np.array(pulls), np.array(rhats)
    within = np.abs(pulls) < 3
    return {
        "n_stars": n_stars,
        "fraction_within_3sigma_per_label": dict(zip(names, within.mean(0).round(4).tolist())),
        "fraction_stars_all_labels_within_3sigma": float(within.all(1).mean()),
        "rms_pull_per_label": dict(zip(names, np.sqrt((pulls**2).mean(0)).round(3).tolist())),
        "median_pull_per_label": dict(zip(names, np.median(pulls, 0).round(3).tolist())),
        "max_r_hat": float(np.nanmax(rhats)) if np.any(np.isfinite(rhats)) else None,
        "fraction_stars_r_hat_below_1.01": float(np.mean(np.nanmax(rhats, 1) < 1.01)) if check_rhat else None,
        "fit_seconds_median": float(np.median(times)),
        "pass": bool(within.mean(0).min() >= 0.95 and (not check_rhat or np.nanmax(rhats) < 1.01)),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emulator", default="default")
    ap.add_argument("--truth", choices=["synth", "emulator"], default="synth")
    ap.add_argument("--n-stars", type=int, default=50)
    ap.add_argument("--snr", type=float, nargs="+", default=[50.0, 200.0])
    ap.add_argument("--sampler", default="nuts", help="nuts | blackjax-nuts | mclmc | laplace-is | laplace")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--n-sampled",
        type=int,
        default=None,
        help="run the sampler on the first N stars per S/N only (all get Laplace)",
    )
    ap.add_argument(
        "--error-modes",
        type=int,
        default=None,
        help="correlated emulator-error modes to integrate out (default: all the emulator has; 0 = white error only)",
    )
    ap.add_argument(
        "--error-scale",
        choices=["star", "box"],
        default="star",
        help="star (as fit_spectrum): the emulator's error scaled to each star at its first MAP, where the emulator "
        "measured its error scale; box: the error table as measured",
    )
    ap.add_argument(
        "--stars",
        default=None,
        metavar="FIRST:STOP",
        help="fit only stars FIRST…STOP−1 of the n-stars sequence (same truths and noise as a full run): split a run "
        "over cores or sessions, then combine the outputs with --merge",
    )
    ap.add_argument(
        "--merge", nargs="+", default=None, metavar="JSON", help="combine partial outputs (from --stars) into --output"
    )
    ap.add_argument("--quick", action="store_true", help="analytic model, 4 stars, Laplace")
    ap.add_argument("--output", default=str(RESULTS / "inference_recovery.json"))
    args = ap.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.output)
    if args.quick:
        args.n_stars, args.sampler, args.draws = min(args.n_stars, 4), "laplace", 500
    fit_model, truth_model, wl, resolution, desc = benchmark_setup(args.emulator, quick=args.quick, truth=args.truth)
    rng = np.random.default_rng(args.seed)
    names = list(fit_model.label_space.names) + ["rv", "vsini"]
    out = {
        "benchmark": "inference_recovery",
        "machine": machine_info(),
        "args": vars(args),
        **desc,
        "per_snr": {},
        "error_modes_used": int(
            min(getattr(fit_model, "n_error_modes", 0), 10**9 if args.error_modes is None else args.error_modes)
        ),
    }
    t_start = time.perf_counter()
    n_sampled = args.n_stars if args.n_sampled is None else min(args.n_sampled, args.n_stars)
    first, stop = (int(x) for x in args.stars.split(":")) if args.stars else (0, args.n_stars)
    for snr in args.snr:
        acc = {}  # method -> (pulls, rhats, times)
        for k in range(args.n_stars):
            truth = random_truth(fit_model.label_space, rng, rv_max=60.0)
            noise_seed = int(rng.integers(2**31))
            if not first <= k < stop:
                continue
            spec = make_mock(truth_model, wl, truth, snr=snr, resolution=resolution, seed=noise_seed)
            t0 = time.perf_counter()
            tables = fit_one(
                fit_model,
                spec,
                args.sampler if k < n_sampled else None,
                args.chains,
                args.warmup,
                args.draws,
                seed=k,
                error_modes=True if args.error_modes is None else args.error_modes,
                error_scale=args.error_scale,
            )
            dt = time.perf_counter() - t0
            msg = []
            for method, table in tables.items():
                rows = {r["name"]: r for r in table}
                sd_total = {
                    n: float(rows[n]["sd_total"]) if "sd_total" in table.colnames else float(rows[n]["sd"])
                    for n in names
                }
                for key, sd in (
                    (method, {n: float(rows[n]["sd"]) for n in names}),
                    (method + "+systematics", sd_total),
                ):
                    if key.endswith("+systematics") and "sd_total" not in table.colnames:
                        continue
                    pulls, rhats, times = acc.setdefault(key, ([], [], []))
                    pulls.append([(rows[n]["p50"] - truth[n]) / sd[n] for n in names])
                    rhats.append([rows[n]["r_hat"] for n in names])
                    times.append(dt)
                    msg.append(f"{key} max |pull| {np.max(np.abs(pulls[-1])):.2f}")
                out.setdefault("stars", {}).setdefault(f"{snr:g}", []).append(
                    {
                        "star": k,
                        "method": method,
                        "seconds": dt,
                        "truth": {n: truth[n] for n in names},
                        "p50": {n: float(rows[n]["p50"]) for n in names},
                        "sd": {n: float(rows[n]["sd"]) for n in names},
                        "sd_total": sd_total,
                        "r_hat": {n: float(rows[n]["r_hat"]) for n in names},
                        "flags": str(table.meta.get("FLAGS", "")),
                    }
                )
            print(f"S/N {snr:g} star {k + 1}/{args.n_stars}: " + ", ".join(msg) + f"  ({dt:.1f} s)", flush=True)
            # rewritten after every star: an interrupted run keeps what it measured (n_stars says how many)
            out["per_snr"][f"{snr:g}"] = {
                m: summarise(*acc[m], names, len(acc[m][0]), check_rhat=not m.startswith("laplace")) for m in acc
            }
            out["total_seconds"] = time.perf_counter() - t_start
            write_json_atomic(args.output, out)
    out["total_seconds"] = time.perf_counter() - t_start
    write_json_atomic(args.output, out)
    print(f"wrote {args.output}")
    return out


def merge(paths, output):
    """Combine partial runs (``--stars``) of one configuration: star records concatenated (each star once),
    summaries recomputed from them."""
    import json

    parts = [json.loads(Path(p).read_text()) for p in paths]
    out = {k: v for k, v in parts[0].items() if k not in ("stars", "per_snr", "total_seconds")}
    out["args"] = {**out["args"], "stars": ",".join(str(p["args"].get("stars")) for p in parts), "output": str(output)}
    out["merged_from"] = [str(p) for p in paths]
    out["total_seconds"] = sum(p.get("total_seconds", 0.0) for p in parts)
    out["stars"], out["per_snr"] = {}, {}
    for snr in sorted({s for p in parts for s in p.get("stars", {})}, key=float):
        records = sorted((r for p in parts for r in p["stars"].get(snr, [])), key=lambda r: (r["star"], r["method"]))
        out["stars"][snr] = records
        by_method = {}
        for r in records:
            names = list(r["truth"])
            for key, sd in ((r["method"], r["sd"]), (r["method"] + "+systematics", r["sd_total"])):
                pulls, rhats, times = by_method.setdefault(key, ([], [], []))
                pulls.append([(r["p50"][n] - r["truth"][n]) / sd[n] for n in names])
                rhats.append([r["r_hat"][n] for n in names])
                times.append(r["seconds"])
        out["per_snr"][snr] = {
            m: summarise(*v, names, len(v[0]), check_rhat=not m.startswith("laplace")) for m, v in by_method.items()
        }
    write_json_atomic(output, out)
    counts = {snr: len({r["star"] for r in records}) for snr, records in out["stars"].items()}
    print(f"wrote {output}: stars per S/N {counts}")
    return out


if __name__ == "__main__":
    main()
