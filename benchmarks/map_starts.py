"""MAP strategies side by side (issue #5, "MAP time per spectrum"): data-driven starts + Gauss–Newton vs
prior-draw starts + L-BFGS, on synthesizer mocks fitted with the shipped Payne.

Every strategy fits the same spectra in one run; each is scored against a thorough reference (16 starts
— the 4 data-driven ones and 12 prior draws — × 100 L-BFGS iterations + Gauss–Newton): the fraction of
spectra where it reaches the reference's log posterior (within 0.5), and its steady-state time per spectrum
(the first spectrum compiles and is not timed).

    python benchmarks/map_starts.py                 # 20 synthesizer mocks at S/N 100
    python benchmarks/map_starts.py --quick         # analytic model, 4 mocks

Writes benchmarks/results/map_starts[_quick].json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import stellarinf

stellarinf.enable_float64()  # atmospheres, likelihoods, Fisher matrices
from inference_speed import build

from stellarinf.inference.map import find_map, prior_draw_starts, start_points
from stellarinf.io.atomic import write_json_atomic
from stellarinf.machine import machine_info
from stellarinf.validation.mocks import make_mock, random_truth
from stellarinf.validation.setups import benchmark_setup

RESULTS = Path(__file__).parent / "results"


def strategies(problem, seed):
    """name → zero-argument callable returning a MAPResult (start-finding included in its time)."""

    def prior_draws(n, max_iter):
        def run():
            z_rv = start_points(problem, 1, seed)[0]  # RV from the template scan; labels at the box centre
            return find_map(problem, starts=prior_draw_starts(problem, n, seed, z0=z_rv), max_iter=max_iter)

        return run

    return {
        "data-driven 1 start, Gauss-Newton": lambda: find_map(problem, n_starts=1, seed=seed),
        "data-driven 2 starts, Gauss-Newton": lambda: find_map(problem, n_starts=2, seed=seed),
        "data-driven 4 starts, Gauss-Newton, screened after 3 steps (default)": lambda: find_map(
            problem, n_starts=4, seed=seed
        ),
        "data-driven 4 starts, Gauss-Newton, all to convergence": lambda: find_map(
            problem, n_starts=4, seed=seed, screen=False
        ),
        "data-driven 6 starts, Gauss-Newton, screened after 3 steps": lambda: find_map(problem, n_starts=6, seed=seed),
        "data-driven 4 starts, 30 L-BFGS + Gauss-Newton": lambda: find_map(problem, n_starts=4, seed=seed, max_iter=30),
        "prior-draw 4 starts, 30 L-BFGS + Gauss-Newton (fifth session's default)": prior_draws(4, 30),
    }


def reference(problem, seed):
    zs = np.concatenate(
        [
            start_points(problem, 4, seed),
            prior_draw_starts(problem, 13, seed + 1, z0=start_points(problem, 1, seed)[0])[1:],
        ]
    )
    return find_map(problem, starts=zs, max_iter=100, screen=False)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emulator", default="default-payne")
    ap.add_argument("--n-spectra", type=int, default=20)
    ap.add_argument("--snr", type=float, default=100.0)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--output", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.n_spectra = 4
    output = args.output or str(RESULTS / ("map_starts_quick.json" if args.quick else "map_starts.json"))
    fit_model, truth_model, wl, resolution, desc = benchmark_setup(args.emulator, quick=args.quick, truth="synth")
    rng = np.random.default_rng(args.seed)
    rows = []
    for i in range(args.n_spectra):
        truth = random_truth(fit_model.label_space, rng, rv_max=60.0)
        problem = build(
            fit_model, make_mock(truth_model, wl, truth, snr=args.snr, resolution=resolution, seed=1000 + i)
        )
        ref = reference(problem, args.seed + i)
        row = {"spectrum": i, "reference_log_posterior": ref.log_posterior, "strategies": {}}
        for name, run in strategies(problem, args.seed + i).items():
            if i == 0:
                run()  # compile
            t0 = time.perf_counter()
            m = run()
            row["strategies"][name] = {
                "seconds": time.perf_counter() - t0,
                "delta_log_posterior": m.log_posterior - ref.log_posterior,
            }
        rows.append(row)
        print(
            f"spectrum {i}: "
            + ", ".join(f"{v['delta_log_posterior']:+.2f} ({v['seconds']:.2f} s)" for v in row["strategies"].values()),
            flush=True,
        )
    summary = {}
    for name in rows[0]["strategies"]:
        d = np.array([r["strategies"][name]["delta_log_posterior"] for r in rows])
        t = np.array([r["strategies"][name]["seconds"] for r in rows[1:] or rows])
        summary[name] = {
            "fraction_reaching_reference": float(np.mean(d > -0.5)),
            "worst_delta_log_posterior": float(d.min()),
            "seconds_per_spectrum_median": float(np.median(t)),
        }
        print(
            f"{name}: reaches the reference on {np.mean(d > -0.5):.0%}, worst {d.min():+.2f}, {np.median(t):.3f} s per spectrum"
        )
    write_json_atomic(
        output,
        {
            "benchmark": "map_starts",
            "machine": machine_info(),
            "args": vars(args),
            **desc,
            "n_pixels": int(wl.size),
            "summary": summary,
            "spectra": rows,
        },
    )
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
