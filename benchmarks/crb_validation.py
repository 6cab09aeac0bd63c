"""Validate Cramér–Rao forecasts against posteriors, and measure emulator fidelity in information terms.

Part 1 — posterior vs CRB: for N mock stars at S/N 200 (noise drawn from the same forward model that is
fitted, so the test is purely statistical), the posterior standard deviation of each label (Laplace or
NUTS from :mod:`stellarinf.inference`) is compared with the marginal CRB at the true labels with the
same free parameters. Pass: the median posterior/CRB ratio lies within 20% of 1 for teff, logg, feh.

Part 2 — emulator fidelity: CRBs from each emulator (TransformerPayne, Payne MLP) divided by the CRBs
from the synthesizer (the truth) on the same stars, per label. A ratio < 1 means the emulator claims
more information than the physics carries (over-confident); > 1 means it washes information out.

    python benchmarks/crb_validation.py --quick                 # AnalyticLineModel, a few minutes on CPU
    python benchmarks/crb_validation.py                         # default emulators + synthesizer

Writes ``benchmarks/results/crb_validation.json`` and plots beside it.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import stellarinf

stellarinf.enable_float64()  # atmospheres, likelihoods, Fisher matrices
from stellarinf import forecast as F
from stellarinf.fisher import DegenerateFisherWarning
from stellarinf.io.atomic import write_json_atomic
from stellarinf.validation.setups import analytic_model

RESULTS = Path(__file__).resolve().parent / "results"
STELLAR_BOX = {"teff": (4800.0, 6400.0), "logg": (2.5, 4.7), "feh": (-1.0, 0.3), "vmic": (0.8, 1.8)}
VALIDATED = ("teff", "logg", "feh")


def sample_stars(space, n: int, seed: int) -> list[dict[str, float]]:
    """Random labels: the stellar box above (clipped to the model's box), abundances within ±0.2."""
    rng = np.random.default_rng(seed)
    stars = []
    for _ in range(n):
        star = {}
        for lab in space.labels:
            lo, hi = STELLAR_BOX.get(lab.name, (-0.2, 0.2))
            pad = 0.15 * (lab.upper - lab.lower)
            lo, hi = max(lo, lab.lower + pad), min(hi, lab.upper - pad)
            if lo >= hi:
                lo, hi = lab.lower + pad, lab.upper - pad
            star[lab.name] = float(rng.uniform(lo, hi))
        stars.append(star)
    return stars


def resolve(name: str, window: str):
    """Model by name; ``analytic`` is the cheap analytic line model around the window and ``analytic-perturbed``
    the same with 0.05 dex line-strength errors and perturbed temperature/gravity sensitivities: a stand-in
    "emulator" for the quick run (test models are built here, not resolved by the library)."""
    if name == "analytic":
        return F.resolve_model(analytic_model(window), window)
    if name == "analytic-perturbed":
        import equinox as eqx
        import jax.numpy as jnp

        base = analytic_model(window)
        rng = np.random.default_rng(11)
        n = base.log_strength.shape[0]
        return eqx.tree_at(
            lambda m: (m.log_strength, m.theta_coef, m.gravity_coef),
            base,
            (
                base.log_strength + jnp.asarray(rng.normal(0, 0.05, n)),
                base.theta_coef * jnp.asarray(rng.normal(1.0, 0.1, n)),
                base.gravity_coef * jnp.asarray(rng.normal(1.0, 0.2, n)),
            ),
        )
    return F.resolve_model(name, window)


def posterior_sd(fc: F.Forecast, seed: int, method: str, draws: int) -> tuple[dict[str, float], dict]:
    """Posterior sd of every free parameter for one noisy realisation of the forecast's mock star.

    The MAP search starts at the true parameters (this validates the posterior width, not the optimiser's
    global search); the Laplace approximation there initialises the sampler."""
    import jax.numpy as jnp

    from stellarinf.inference.density import Problem
    from stellarinf.inference.laplace import laplace
    from stellarinf.inference.map import find_map
    from stellarinf.inference.samplers import sample

    _, obs = F.mock_observation(fc, seed)
    free = list(fc.result.names)
    fixed = {k: v for k, v in fc.params.items() if k not in free and k in obs.param_names}
    problem = Problem.build(obs, free=free, fixed=fixed)
    z_true = problem.unconstrain({n: fc.params[n] for n in free})
    mp = find_map(problem, starts=jnp.asarray(z_true)[None])
    lap = laplace(problem, mp)
    kw = {"chains": 2, "draws": draws, "seed": seed, "init": lap}
    if method != "laplace":
        kw["warmup"] = draws
    post = sample(problem, method, **kw)
    sd = {n: float(np.std(np.asarray(post.samples[n]))) for n in free}
    mean = {n: float(np.mean(np.asarray(post.samples[n]))) for n in free}
    return sd, {"posterior_mean": mean, "hessian_ok": bool(lap.hessian_ok)}


def part_posterior(model, args, stars) -> dict:
    rows = []
    for i, star in enumerate(stars):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DegenerateFisherWarning)
            fc = F.forecast(
                model,
                star,
                window=args.window,
                snr=args.snr,
                marginalize=args.marginalize.split(","),
                fix=args.fix.split(",") if args.fix else (),
                box_prior=args.box_prior,
                model_name=str(args.model),
            )
        crb = fc.result.marginal()
        sd, extra = posterior_sd(fc, seed=1000 + i, method=args.method, draws=args.draws)
        ratio = {n: (sd[n] / crb[n] if math.isfinite(crb[n]) and crb[n] > 0 else None) for n in crb}
        # (posterior mean − truth)/CRB: should scatter as N(0, 1) across stars if the CRB is right
        pull = {
            n: ((extra["posterior_mean"][n] - fc.params[n]) / crb[n] if ratio[n] is not None else None) for n in crb
        }
        rows.append(
            {
                "star": i,
                "labels": star,
                "crb": {n: (v if math.isfinite(v) else None) for n, v in crb.items()},
                "posterior_sd": sd,
                "ratio": ratio,
                "pull": pull,
                "hessian_ok": extra["hessian_ok"],
                "seconds": time.perf_counter() - t0,
            }
        )
        print(
            f"  star {i:2d}: " + "  ".join(f"{n} {ratio[n]:.3f}" for n in VALIDATED if ratio.get(n) is not None),
            flush=True,
        )
    summary = {}
    for n in rows[0]["ratio"]:
        r = np.array([row["ratio"][n] for row in rows if row["ratio"][n] is not None], dtype=float)
        if r.size:
            summary[n] = {
                "median": float(np.median(r)),
                "mean": float(np.mean(r)),
                "p16": float(np.percentile(r, 16)),
                "p84": float(np.percentile(r, 84)),
                "n": int(r.size),
            }
    for n in summary:
        p = np.array([row["pull"][n] for row in rows if row["pull"][n] is not None], dtype=float)
        summary[n]["pull_sd"] = float(np.std(p)) if p.size > 1 else None
    passed = {n: bool(n in summary and abs(summary[n]["median"] - 1.0) <= 0.2) for n in VALIDATED}
    return {
        "snr": args.snr,
        "method": args.method,
        "box_prior": args.box_prior,
        "window": args.window,
        "n_stars": len(stars),
        "ratio_posterior_over_crb": summary,
        "pass_within_20pct": passed,
        "stars": rows,
    }


def part_fidelity(args, stars) -> dict:
    """CRB(emulator)/CRB(synthesizer) per label on the same stars (same window, S/N, free set)."""
    out = {"truth": args.truth, "snr": args.snr, "window": args.window, "emulators": {}}
    kwargs = dict(
        window=args.window,
        snr=args.snr,
        marginalize=args.marginalize.split(","),
        fix=args.fix.split(",") if args.fix else (),
    )
    truth_model = resolve(args.truth, args.window)
    truth = []
    for star in stars:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DegenerateFisherWarning)
            truth.append(F.forecast(truth_model, star, model_name=args.truth, **kwargs).result.marginal())
    for name in args.emulators.split(","):
        try:
            em = resolve(name, args.window)
        except Exception as exc:  # a missing model is reported, not fatal
            out["emulators"][name] = {"error": str(exc)}
            print(f"  {name}: skipped ({exc})")
            continue
        per_star = []
        for star, tr in zip(stars, truth):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DegenerateFisherWarning)
                m = F.forecast(em, star, model_name=name, **kwargs).result.marginal()
            per_star.append(
                {n: (m[n] / tr[n] if n in tr and math.isfinite(m[n]) and math.isfinite(tr[n]) else None) for n in m}
            )
        summary = {}
        for n in per_star[0]:
            r = np.array([p[n] for p in per_star if p[n] is not None], dtype=float)
            if r.size:
                summary[n] = {
                    "median": float(np.median(r)),
                    "p16": float(np.percentile(r, 16)),
                    "p84": float(np.percentile(r, 84)),
                    "n": int(r.size),
                }
        out["emulators"][name] = {"ratio_emulator_over_truth": summary, "per_star": per_star}
        print(f"  {name}/{args.truth}: " + "  ".join(f"{n} {s['median']:.3f}" for n, s in summary.items()))
    return out


def plot(result: dict, folder: Path) -> list[str]:
    from stellarinf.fisher_plots import _plt, save_figure

    plt = _plt()
    paths = []
    rows = result["posterior_vs_crb"]["stars"]
    names = [n for n in rows[0]["ratio"] if not n.startswith("cont_")]
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2, 3.5))
    for j, n in enumerate(names):
        r = [row["ratio"][n] for row in rows if row["ratio"][n] is not None]
        ax.plot(np.full(len(r), j) + np.random.default_rng(j).uniform(-0.15, 0.15, len(r)), r, "o", ms=3, alpha=0.6)
        if r:
            ax.plot([j - 0.3, j + 0.3], [np.median(r)] * 2, "k-", lw=2)
    ax.axhspan(0.8, 1.2, color="green", alpha=0.1)
    ax.axhline(1.0, color="k", lw=0.5)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30)
    ax.set_ylabel("posterior sd / marginal CRB")
    ax.set_title(
        f"S/N {result['posterior_vs_crb']['snr']:g}, {len(rows)} stars ({result['posterior_vs_crb']['method']})"
    )
    fig.tight_layout()
    stem = Path(result.get("output", "crb_validation.json")).stem
    p = folder / f"{stem}_posterior.png"
    save_figure(fig, p)
    paths.append(str(p))
    fid = result.get("emulator_fidelity") or {}
    ems = {k: v for k, v in fid.get("emulators", {}).items() if "ratio_emulator_over_truth" in v}
    if ems:
        fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2, 3.5))
        for k, (name, doc) in enumerate(ems.items()):
            s = doc["ratio_emulator_over_truth"]
            xs = [j + 0.15 * (k - (len(ems) - 1) / 2) for j, n in enumerate(names) if n in s]
            med = [s[n]["median"] for n in names if n in s]
            lo = [s[n]["median"] - s[n]["p16"] for n in names if n in s]
            hi = [s[n]["p84"] - s[n]["median"] for n in names if n in s]
            ax.errorbar(xs, med, yerr=[lo, hi], fmt="o", label=name, capsize=2)
        ax.axhline(1.0, color="k", lw=0.5)
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30)
        ax.set_ylabel(f"CRB(emulator) / CRB({fid['truth']})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        p = folder / f"{stem}_fidelity.png"
        save_figure(fig, p)
        paths.append(str(p))
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="AnalyticLineModel for everything (truth = a perturbed copy)")
    ap.add_argument(
        "--model", default="default", help="forward model fitted in part 1 (emulator name/dir, synth, analytic)"
    )
    ap.add_argument("--truth", default="synth", help="reference model for part 2")
    ap.add_argument("--emulators", default="default,default-payne", help="comma-separated emulators for part 2")
    ap.add_argument("--n-stars", type=int, default=20)
    ap.add_argument("--snr", type=float, default=200.0)
    ap.add_argument("--window", default="galah-red")
    ap.add_argument("--method", default="laplace", help="laplace | nuts | blackjax-nuts | mclmc")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument(
        "--marginalize",
        default="rv,continuum",
        help="nuisances kept free (v sin i and vmacro are held fixed by default: at a few km/s they are "
        "pinned against their lower bound 0, where the posterior is truncated and the CRB does not apply)",
    )
    ap.add_argument("--fix", default="", help="labels held fixed, comma-separated")
    ap.add_argument(
        "--box-prior",
        action="store_true",
        help="the bound with every label's box as a Gaussian prior (σ = width/√12), like the fit's uniform box prior: "
        "with many weakly constrained labels (a broad model on one arm) the bound without it is too wide",
    )
    ap.add_argument("--skip-fidelity", action="store_true")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "-o",
        "--output",
        default=None,
        help="JSON path (default benchmarks/results/crb_validation.json, or crb_validation_quick.json with --quick)",
    )
    args = ap.parse_args(argv)
    if args.output is None:
        args.output = str(RESULTS / ("crb_validation_quick.json" if args.quick else "crb_validation.json"))
    if args.quick:
        args.model = "analytic"
        args.truth = "analytic"
        args.emulators = "analytic-perturbed"
    if args.n_stars < 1:
        ap.error("--n-stars must be positive")

    from stellarinf.machine import machine_info

    t0 = time.perf_counter()
    model = resolve(args.model, args.window)
    stars = sample_stars(model.label_space, args.n_stars, args.seed)
    print(
        f"part 1: posterior ({args.method}) vs marginal CRB, {args.n_stars} stars, S/N {args.snr:g}, model {args.model}"
    )
    result = {
        "benchmark": "crb_validation",
        "quick": args.quick,
        "model": args.model,
        "machine": machine_info(),
        "posterior_vs_crb": part_posterior(model, args, stars),
    }
    if not args.skip_fidelity:
        print(f"part 2: CRB(emulator)/CRB({args.truth})")
        result["emulator_fidelity"] = part_fidelity(args, stars)
    result["wall_time_s"] = time.perf_counter() - t0
    out = Path(args.output)
    result["output"] = str(out)
    result["plots"] = plot(result, out.parent)
    write_json_atomic(out, result)
    s = result["posterior_vs_crb"]["ratio_posterior_over_crb"]
    print("median posterior/CRB: " + ", ".join(f"{n} {s[n]['median']:.3f}" for n in VALIDATED if n in s))
    print(f"pass (within 20%): {result['posterior_vs_crb']['pass_within_20pct']}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
