"""Joint fit of many stars sharing one unknown resolving power (issue #17 item 3, "must show").

Stars are made by the synthesizer (``SynthesizerModel``, realistic fidelity, galah-red) with random labels, RV and
v sin i, observed at one resolving power ``--r-true`` (below the emulator's R 28,000) on one pixel grid, with
Gaussian noise at S/N drawn uniformly in ``--snr-min``–``--snr-max``. They are fitted jointly with the shipped
Payne (``default-payne``) and NumPyro NUTS by :func:`stellarinf.fit_joint`, ``share=("resolution",)``, starting
from a nominal R (``--r-start``). Reported: the shared R against the truth (pull), every star's label pulls, the
maximum R-hat and minimum ESS over all parameters, and the shared-R posterior sd against the single-star ones:
every star's own Laplace sd of R (``fit_joint``'s "stars alone" stage) and ``--n-alone`` stars fitted alone with
NUTS and ``fit_resolution``.

    python benchmarks/joint_fit.py                      # 20 stars, the settings of benchmarks/results/joint_fit.json
    python benchmarks/joint_fit.py --quick              # analytic model, 4 stars, a minute or two

Writes benchmarks/results/joint_fit.json (with machine info).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np

import stellarinf

stellarinf.enable_float64()
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from stellarinf.io.atomic import write_json_atomic  # noqa: E402
from stellarinf.io.spectrum import Spectrum  # noqa: E402
from stellarinf.machine import machine_info  # noqa: E402
from stellarinf.observe.model import ObservationModel  # noqa: E402
from stellarinf.validation.mocks import random_truth  # noqa: E402
from stellarinf.validation.setups import analytic_setup  # noqa: E402
from stellarinf.wavelength import (
    SPEED_OF_LIGHT_KMS,  # noqa: E402
    log_uniform_grid,  # noqa: E402
)

RESULTS = Path(__file__).parent / "results"


def make_stars(truth_model, wl, truths, snrs, r_true, seed):
    """Noisy mocks of ``truth_model`` at ``r_true`` on ``wl`` (one compiled forward model for all stars)."""
    dummy = Spectrum(wl, np.ones_like(wl), np.ones_like(wl), resolution=r_true)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        om = ObservationModel(truth_model, dummy, continuum_degree=-1, rv_max=100.0, vsini_max=30.0)
    predict = jax.jit(lambda p: om.predict(p))
    rng = np.random.default_rng(seed)
    specs = []
    for t, snr in zip(truths, snrs):
        flux = np.asarray(predict({k: jnp.asarray(float(t[k])) for k in om.param_names}))
        sigma = np.full_like(flux, 1.0 / snr)
        specs.append(
            Spectrum(
                wl,
                flux + sigma * rng.standard_normal(flux.shape),
                sigma,
                meta={"source": "mock", "snr": float(snr)},
                resolution=None,
            )
        )
    return specs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-stars", type=int, default=20)
    ap.add_argument("--r-true", type=float, default=22_000.0)
    ap.add_argument("--r-start", type=float, default=25_000.0, help="nominal R the fit starts from")
    ap.add_argument("--snr-min", type=float, default=50.0)
    ap.add_argument("--snr-max", type=float, default=100.0)
    ap.add_argument("--free", default="teff,logg,feh,vmic", help="labels left free per star (others at the truth)")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--sampler", default="nuts", choices=["nuts", "laplace"], help="laplace: the joint Laplace draws")
    ap.add_argument("--n-alone", type=int, default=3, help="stars also fitted alone with NUTS and fit_resolution")
    ap.add_argument("--emulator-error", default="modes", choices=["modes", "white"])
    ap.add_argument("--continuum-degree", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vsini-max", type=float, default=30.0, help="box of the v sin i prior (truths: 2-10 km/s)")
    ap.add_argument(
        "--truth",
        default="synth",
        choices=["synth", "emulator"],
        help="emulator: the Payne makes the mocks (a control)",
    )
    ap.add_argument("--target-accept", type=float, default=0.8, help="NUTS target acceptance")
    ap.add_argument("--max-tree-depth", type=int, default=10)
    ap.add_argument("--init-scale", type=float, default=1.0, help="chain starts: mode + this × a Laplace draw")
    ap.add_argument("--pilot", type=int, default=0, help="pilot draws per chain to rescale the Laplace metric")
    ap.add_argument("--chunk", type=int, default=None, help="draw in chunks (progress lines, checkpoints)")
    ap.add_argument("--time-budget", type=float, default=None, help="seconds of NUTS before it stops after a chunk")
    ap.add_argument("--star-map", default=None, choices=["map", "vmap", "unroll"], help="default: map on a CPU")
    ap.add_argument("--quick", action="store_true", help="analytic model (truth = fit model), 4 stars")
    ap.add_argument("-o", "--output", default=str(RESULTS / "joint_fit.json"))
    args = ap.parse_args(argv)
    t_all = time.perf_counter()
    load_at_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None

    if args.quick:
        fit_model, wl = analytic_setup(resolution=args.r_start)
        truth_model, desc = fit_model, {"fit_model": "AnalyticLineModel (quick)", "truth_model": "same"}
        args.n_stars = min(args.n_stars, 4)
        args.free = "teff,logg,feh"
    else:
        from stellarinf.emulators.registry import load_emulator
        from stellarinf.synth import SynthesizerModel
        from stellarinf.wavelength import Window

        fit_model = load_emulator("default-payne")
        wmin, wmax = fit_model.wavelength_range
        window = Window("emulator-range", float(wmin), float(wmax), args.r_true, 2.5, "the Payne's range")
        truth_model = SynthesizerModel(fit_model.label_space, window, "realistic")
        if args.truth == "emulator":
            truth_model = fit_model
        margin = 1 + 120.0 / SPEED_OF_LIGHT_KMS
        wl = log_uniform_grid(wmin * margin, wmax / margin, args.r_true)
        desc = {
            "fit_model": "default-payne",
            "truth_model": "SynthesizerModel(realistic), galah-red" if args.truth == "synth" else "default-payne",
        }
    if args.r_true >= (fit_model.resolution or np.inf):
        raise SystemExit(f"--r-true must be below the emulator's R {fit_model.resolution}")

    rng = np.random.default_rng(args.seed)
    names = list(fit_model.label_space.names)
    free = [n.strip() for n in args.free.split(",") if n.strip()]
    truths = []
    for _ in range(args.n_stars):
        t = random_truth(fit_model.label_space, rng, inset=0.15, rv_max=50.0, vsini_range=(2.0, 10.0))
        truths.append(t)
    snrs = rng.uniform(args.snr_min, args.snr_max, args.n_stars)
    # labels not left free are held fixed in the fit; `fixed` holds one value for all stars, so the mocks get
    # those labels at one common value (the median of the drawn ones) and fixing them is exact
    held = [n for n in names if n not in free]
    common = {n: float(np.median([t[n] for t in truths])) for n in held}
    for t in truths:
        t.update(common)
    fixed = {"vmacro": 0.0, **common}
    t0 = time.perf_counter()
    specs = make_stars(truth_model, wl, truths, snrs, args.r_true, args.seed + 1)
    t_mocks = time.perf_counter() - t0
    print(f"{args.n_stars} mocks ({len(wl)} pixels) in {t_mocks:.0f} s", flush=True)
    ids = [f"star{i:02d}" for i in range(args.n_stars)]

    common_kw = dict(
        emulator=fit_model,
        resolution=args.r_start,
        continuum_degree=args.continuum_degree,
        rv_max=100.0,
        vsini_max=args.vsini_max,
        emulator_error=args.emulator_error,
        physics_error="off",
        mask_tellurics=False,
        fixed=fixed,
        n_starts=4,
        seed=args.seed,
        log=print,
    )
    ckpt = Path(args.output).with_suffix(".draws.npz")
    ckpt.parent.mkdir(parents=True, exist_ok=True)

    def checkpoint(post):
        np.savez(ckpt, **{k: v for k, v in post.samples.items()}, **{f"stat_{k}": v for k, v in post.stats.items()})

    nuts_options = dict(
        target_accept=args.target_accept,
        max_tree_depth=args.max_tree_depth,
        init_scale=args.init_scale,
        pilot=args.pilot,
        chunk=args.chunk,
        time_budget_s=args.time_budget,
        checkpoint=checkpoint if args.chunk else None,
    )
    res = stellarinf.fit_joint(
        specs,
        ids=ids,
        share=("resolution",),
        sampler=args.sampler,
        chains=args.chains,
        warmup=args.warmup,
        draws=args.draws,
        progress=False,
        nuts_options=nuts_options if args.sampler == "nuts" else None,
        star_map=args.star_map,
        **common_kw,
    )
    shared = res.shared[0]
    r_pull = (shared["p50"] - args.r_true) / shared["sd"]
    pulls = {n: [] for n in res.problem.star_names}
    for row, t in zip(res.stars, truths):
        for n in res.problem.star_names:
            pulls[n].append(float((row[n] - t[n]) / row[f"{n}_err"]))
    alone_r = [{"star": sid, "p50": a["resolution"][0], "sd": a["resolution"][1]} for sid, a in zip(ids, res.alone)]

    # a few stars fitted alone with NUTS, resolution free (what one star says about R by itself)
    alone_nuts = []
    for i in range(min(args.n_alone, args.n_stars)):
        t1 = time.perf_counter()
        fr = stellarinf.fit_spectrum(
            specs[i],
            sampler="nuts",
            fit_resolution=True,
            chains=args.chains,
            warmup=args.warmup,
            draws=args.draws,
            clip_outliers=False,
            **{k: v for k, v in common_kw.items() if k not in ("log",)},
        )
        row = fr.summary[list(fr.summary["name"]).index("resolution")]
        alone_nuts.append(
            {
                "star": ids[i],
                "p50": float(row["p50"]),
                "sd": float(row["sd"]),
                "r_hat": float(row["r_hat"]),
                "seconds": time.perf_counter() - t1,
            }
        )
        print(f"{ids[i]} alone (NUTS): R = {row['p50']:.0f} ± {row['sd']:.0f}", flush=True)

    all_rhat = res.diagnostics["r_hat_max"]
    narrowest_alone = min([a["sd"] for a in alone_r] + [a["sd"] for a in alone_nuts])
    flat_pulls = np.concatenate([np.asarray(v) for v in pulls.values()])
    out = {
        "benchmark": "joint_fit",
        "description": desc,
        "settings": {
            "n_stars": args.n_stars,
            "r_true": args.r_true,
            "r_start": args.r_start,
            "resolution_bounds": res.settings["resolution_bounds"],
            "snr_range": [args.snr_min, args.snr_max],
            "n_pixels": int(len(wl)),
            "free_per_star": list(res.problem.star_names),
            "held_at_truth": common,
            "sampler": args.sampler,
            "chains": args.chains,
            "warmup": args.warmup,
            "draws": res.settings["draws"],
            "draws_requested": args.draws,
            "nuts_options": res.settings.get("nuts_options"),
            "stopped_early": bool(res.posterior.timings.get("stopped_early", False)),
            "n_free_joint": res.problem.n_free,
            "continuum_degree": args.continuum_degree,
            "emulator_error": args.emulator_error,
            "vsini_prior_box": [0.0, args.vsini_max],
            "truth_model": args.truth,
            "stacked": res.problem.is_stacked,
            "star_map": res.problem.star_map,
        },
        "shared_resolution": {
            "p50": float(shared["p50"]),
            "sd": float(shared["sd"]),
            "pull": float(r_pull),
            "within_1_sd": bool(abs(r_pull) <= 1.0),
            "within_2_sd": bool(abs(r_pull) <= 2.0),
            "r_hat": float(shared["r_hat"]),
            "ess_bulk": float(shared["ess_bulk"]),
            "narrower_than_every_single_star": bool(shared["sd"] < narrowest_alone),
            "single_star_sd_min": narrowest_alone,
            "single_star_sd_median_laplace": float(np.median([a["sd"] for a in alone_r])),
            "sd_ratio_joint_over_best_single": float(shared["sd"] / narrowest_alone),
        },
        "single_star_resolution_laplace": alone_r,
        "single_star_resolution_nuts": alone_nuts,
        "label_pulls": {
            "per_label_rms": {n: float(np.sqrt(np.mean(np.square(v)))) for n, v in pulls.items()},
            "per_label_median": {n: float(np.median(v)) for n, v in pulls.items()},
            "fraction_within_3sd": float(np.mean(np.abs(flat_pulls) < 3)),
            "fraction_within_2sd": float(np.mean(np.abs(flat_pulls) < 2)),
            "max_abs": float(np.max(np.abs(flat_pulls))),
            "per_star": [{"star": s, **{n: pulls[n][i] for n in pulls}} for i, s in enumerate(ids)],
        },
        "diagnostics": {
            "r_hat_max_all_parameters": all_rhat,
            "r_hat_below_1.01": bool(all_rhat < 1.01),
            "ess_bulk_min": res.diagnostics["ess_bulk_min"],
            "n_divergent": res.diagnostics["n_divergent"],
            "n_gradient_evals_sampling": res.posterior.n_gradient_evals,
            "n_gradient_evals_pilot": res.posterior.timings.get("pilot_gradients"),
            "metric_variance_ratio_min_median_max": res.posterior.timings.get("metric_variance_ratio"),
            "mean_tree_steps": float(np.mean(res.posterior.stats["n_steps"])) if res.posterior.stats else None,
        },
        "timings_s": {"mocks": t_mocks, **res.timings, "benchmark_total": time.perf_counter() - t_all},
        "machine": machine_info(),
    }
    try:
        out["load_average_1_5_15min"] = list(os.getloadavg())
        out["load_average_at_start"] = load_at_start
    except OSError:
        pass
    write_json_atomic(args.output, out)
    print(
        f"shared R = {shared['p50']:.0f} ± {shared['sd']:.0f} (truth {args.r_true:.0f}, pull {r_pull:+.2f}); best single "
        f"star sd {narrowest_alone:.0f}; max R-hat {all_rhat:.4f}; label pulls within 3 sd: "
        f"{out['label_pulls']['fraction_within_3sd']:.2%}; wrote {args.output}",
        flush=True,
    )


if __name__ == "__main__":
    main()
