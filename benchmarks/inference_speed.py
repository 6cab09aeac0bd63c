"""Speed of inference (issue #5): wall-clock time to a converged posterior (4 chains, ESS ≥ 400 for every
label, R-hat < 1.01), MAP time per spectrum, and batch MAP/Laplace throughput.

Times are reported with and without compilation (the first call compiles; a second identical call shows
the steady-state cost that a survey run pays per spectrum).

    python benchmarks/inference_speed.py --emulator default        # TransformerPayne small
    python benchmarks/inference_speed.py --emulator default-payne  # Payne MLP
    python benchmarks/inference_speed.py --quick
    # TransformerPayne's posterior by importance sampling (NUTS would take hours on a CPU):
    python benchmarks/inference_speed.py --emulator default --samplers laplace-is --n-map 3 --batch

Writes benchmarks/results/inference_speed[_<emulator>].json.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import arviz as az
import jax
import numpy as np

import stellarinf

stellarinf.enable_float64()  # atmospheres, likelihoods, Fisher matrices
from stellarinf.inference.batch import map_laplace_batch
from stellarinf.inference.density import Problem
from stellarinf.inference.laplace import laplace
from stellarinf.inference.map import find_map
from stellarinf.inference.samplers import sample
from stellarinf.io.atomic import write_json_atomic
from stellarinf.machine import machine_info
from stellarinf.observe.model import ObservationModel
from stellarinf.validation.mocks import make_mock, random_truth
from stellarinf.validation.setups import benchmark_setup

RESULTS = Path(__file__).parent / "results"


def build(fit_model, spec):
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
        )
    return Problem.build(om)


def min_ess(post):
    """Smallest bulk ESS and largest R-hat over the labels; for importance sampling the ESS is capped at the
    weights' Kish ESS (resampled draws repeat) and counts as 0 when the Pareto k says the weights are unreliable."""
    ds = {n: post.samples[n] for n in post.names}
    ess = az.ess(az.from_dict(posterior=ds).posterior)
    rhat = az.rhat(az.from_dict(posterior=ds).posterior)
    worst = float(min(float(ess[n]) for n in post.names))
    if "importance_ess" in post.tuning:
        reliable = post.tuning["pareto_k"] <= post.tuning["pareto_k_threshold"]
        worst = min(worst, post.tuning["importance_ess"]) if reliable else 0.0
    return worst, float(max(float(rhat[n]) for n in post.names))


def time_to_converged(problem, sampler, lap, warmup, draws0, max_draws):
    """Run with draws0, doubling the draws until min ESS ≥ 400 and R-hat < 1.01."""
    draws, runs = draws0, []
    while True:
        t0 = time.perf_counter()
        post = sample(problem, sampler, chains=4, warmup=warmup, draws=draws, seed=1, init=lap)
        wall = time.perf_counter() - t0
        ess, rhat = min_ess(post)
        runs.append(
            {
                "draws": draws,
                "seconds": wall,
                "min_ess": ess,
                "max_r_hat": rhat,
                "n_gradient_evals": post.n_gradient_evals,
                "n_divergent": post.n_divergent,
                **{k: post.tuning[k] for k in ("pareto_k", "importance_ess") if k in post.tuning},
            }
        )
        print(f"  {sampler}: draws {draws}: {wall:.1f} s, min ESS {ess:.0f}, max R-hat {rhat:.4f}", flush=True)
        if (ess >= 400 and rhat < 1.01) or draws >= max_draws:
            return {"converged": bool(ess >= 400 and rhat < 1.01), "runs": runs, "seconds_last_run": wall}, post
        draws *= 2


def agreement(a, b) -> dict:
    """Per label: |mean_a − mean_b| / sd_a and sd_b / sd_a (issue #5: within 0.1σ and 10%)."""
    rows = {}
    for n in a.names:
        xa, xb = np.asarray(a.samples[n]).ravel(), np.asarray(b.samples[n]).ravel()
        sd = float(np.std(xa))
        rows[n] = {
            "mean_diff_over_sd": float(abs(np.mean(xa) - np.mean(xb)) / sd) if sd > 0 else None,
            "sd_ratio": float(np.std(xb) / sd) if sd > 0 else None,
        }
    worst_mean = max(r["mean_diff_over_sd"] for r in rows.values() if r["mean_diff_over_sd"] is not None)
    worst_sd = max(abs(r["sd_ratio"] - 1.0) for r in rows.values() if r["sd_ratio"] is not None)
    return {
        "per_label": rows,
        "max_mean_diff_over_sd": worst_mean,
        "max_sd_ratio_minus_1": worst_sd,
        "pass": bool(worst_mean <= 0.1 and worst_sd <= 0.1),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emulator", default="default")
    ap.add_argument(
        "--samplers",
        nargs="*",
        default=["nuts", "blackjax-nuts", "mclmc"],
        help="posterior samplers to time (none: skip)",
    )
    ap.add_argument("--snr", type=float, default=100.0)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--draws", type=int, default=250)
    ap.add_argument("--max-draws", type=int, default=4000)
    ap.add_argument("--n-map", type=int, default=8, help="spectra for the per-spectrum MAP timing")
    ap.add_argument("--batch", type=int, nargs="*", default=[16, 64], help="batch sizes to time (none: skip)")
    ap.add_argument(
        "--batch-modes",
        nargs="+",
        choices=["vmap", "loop"],
        default=None,
        help="batch MAP paths to time (default: loop on CPU, both elsewhere; the vmapped path can wedge XLA's "
        "CPU runtime, see benchmarks/README.md)",
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--output", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.samplers, args.warmup, args.draws, args.max_draws, args.n_map, args.batch = (
            ["blackjax-nuts", "mclmc"],
            200,
            250,
            1000,
            3,
            [8],
        )
    name = "quick" if args.quick else str(args.emulator).replace("/", "_")
    output = args.output or str(RESULTS / f"inference_speed_{name}.json")
    fit_model, _, wl, resolution, desc = benchmark_setup(args.emulator, quick=args.quick, truth="emulator")
    rng = np.random.default_rng(0)
    specs = [
        make_mock(
            fit_model,
            wl,
            random_truth(fit_model.label_space, rng, rv_max=60.0),
            snr=args.snr,
            resolution=resolution,
            seed=i,
        )
        for i in range(max(args.n_map, *args.batch, 1))
    ]
    out = {
        "benchmark": "inference_speed",
        "machine": machine_info(),
        "args": vars(args),
        **desc,
        "n_pixels": int(wl.size),
    }

    # MAP per spectrum: first call compiles, later ones are steady state
    problems = [build(fit_model, s) for s in specs]
    times = []
    for p in problems[: args.n_map]:
        t0 = time.perf_counter()
        find_map(p, n_starts=4)
        times.append(time.perf_counter() - t0)
    out["map_seconds_first_call_incl_compile"] = times[0]
    out["map_seconds_per_spectrum_steady"] = float(np.median(times[1:])) if len(times) > 1 else None
    print(f"MAP: first {times[0]:.1f} s, steady {out['map_seconds_per_spectrum_steady']} s per spectrum (4 starts)")

    # batch MAP + Laplace throughput: vmapped across spectra, and a loop over one compiled program
    out["batch"] = {}
    modes = args.batch_modes or (["loop"] if jax.default_backend() == "cpu" else ["vmap", "loop"])
    for n in args.batch:
        for mode, vec in (("vmap", True), ("loop", False)):
            if mode not in modes:
                continue
            map_laplace_batch(problems[:n], n_starts=4, chunk_size=n, progress=False, vectorize=vec)  # compile
            t0 = time.perf_counter()
            map_laplace_batch(problems[:n], n_starts=4, chunk_size=n, progress=False, vectorize=vec)
            wall = time.perf_counter() - t0
            out["batch"][f"{mode}_{n}"] = {"seconds": wall, "spectra_per_second": n / wall}
            print(f"batch MAP+Laplace ({mode}) x{n}: {wall:.1f} s ({n / wall:.2f} spectra/s)", flush=True)
    write_json_atomic(output, out)  # keep what was measured if a sampler run is interrupted

    # time to a converged posterior, 4 chains
    if not args.samplers:
        print(f"wrote {output}")
        return out
    p = problems[0]
    lap = laplace(p, find_map(p, n_starts=4))
    out["posterior"], posts = {}, {}
    for s in args.samplers:
        first, _ = time_to_converged(p, s, lap, args.warmup, args.draws, args.max_draws)
        again, posts[s] = time_to_converged(
            p, s, lap, args.warmup, first["runs"][-1]["draws"], first["runs"][-1]["draws"]
        )
        out["posterior"][s] = {"first_incl_compile": first, "steady_state": again}
    if "laplace-is" in posts and "blackjax-nuts" in posts:
        out["blackjax_nuts_vs_laplace_is"] = agreement(posts["blackjax-nuts"], posts["laplace-is"])
    if "nuts" in posts and "blackjax-nuts" in posts:
        out["nuts_vs_blackjax_nuts"] = agreement(posts["nuts"], posts["blackjax-nuts"])
        print(
            f"NumPyro vs BlackJAX NUTS: max |Δmean|/sd {out['nuts_vs_blackjax_nuts']['max_mean_diff_over_sd']:.3f}, "
            f"max |sd ratio − 1| {out['nuts_vs_blackjax_nuts']['max_sd_ratio_minus_1']:.3f}",
            flush=True,
        )
    write_json_atomic(output, out)
    print(f"wrote {output}")
    return out


if __name__ == "__main__":
    main()
