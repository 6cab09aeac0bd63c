#!/usr/bin/env python
"""What a fit of the four GALAH arms costs on this machine, and where the time goes (issue #19, item 4).

For each model set (``broad``: a Payne per arm; ``broad-tp``: a TransformerPayne per arm) the observed Sun (Kurucz
atlas → R 28,000 on the demo star's pixels per arm, normalised by ``sun_fit.py``'s external procedure, S/N
``--snr``) is fitted as one four-arm spectrum by ``stellarinf.fit_spectrum`` (MAP + ``--sampler``, the defaults
otherwise), and the script records:

- the primitives, each compiled once and then timed (best of 3): the log density, its gradient, and the
  Gauss–Newton curvature (the forward-mode Jacobian of the predicted flux with respect to every free parameter,
  which each optimiser step and the Laplace curvature take), in total and per observed pixel;
- the stage times of one fit in a new process (``cold``: every program compiled on the way) and of a second fit
  of another noise realisation in the same process (``warm``: the programs reused, as for the next star of a
  catalogue or of a ``stellarinf fit`` with the compilation cache), with the labels and the Sun's offsets.

Usage::

    python benchmarks/four_arm_fit.py --atlas-dir ../shared/data --sets broad,broad-tp

Writes ``benchmarks/results/four_arm_fit.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

WINDOWS = ("galah-blue", "galah-green", "galah-red", "galah-ir")


def observed_sun(atlas_dir: str, snr: float, seed: int):
    """The four arms of the observed Sun as one Spectrum (``sun_fit.py``'s recipe; independent noise per arm)."""
    import sun_fit

    from stellarinf.io.spectrum import Spectrum

    arms = []
    for k, w in enumerate(WINDOWS):
        atlas, pixels, resolution = sun_fit.arm_observation(w, None, atlas_dir)
        arms.append(sun_fit.observe_sun(atlas[:, 0], atlas[:, 1], pixels, resolution, snr, seed + 1000 * k))
    return Spectrum.from_arms(arms)


def _best_of(fn, *args, repeats: int = 3) -> tuple[float, float]:
    """(first call incl. compilation, best of ``repeats`` later calls) in seconds."""
    import jax

    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return first, best


def primitives(models, spectrum) -> dict:
    """Compile-and-run and run times of the log density, its gradient and the Gauss–Newton curvature."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from stellarinf.inference.map import _minus_jtj
    from stellarinf.pipeline import build_problem

    _, obs, problem = build_problem(models, spectrum)
    z = jnp.asarray(problem.initial_z())
    n_pix = int(np.sum(np.asarray(jnp.concatenate([a.weight for a in obs.arms])) > 0))
    fns = {
        "log_density": eqx.filter_jit(lambda p, v: p.log_density(v)),
        "gradient": eqx.filter_jit(lambda p, v: jax.grad(p.log_density)(v)),
        "gauss_newton_curvature": eqx.filter_jit(lambda p, v: _minus_jtj(p, v)),
    }
    out = {
        "n_free": int(problem.n_free),
        "n_pixels": n_pix,
        "model_pixels": [int(m.training_wavelength.shape[0]) for m in models],
    }
    for name, fn in fns.items():
        first, best = _best_of(fn, problem, z, repeats=2 if name == "gauss_newton_curvature" else 3)
        out[name] = {"first_s": round(first, 3), "run_s": round(best, 4), "us_per_pixel": round(1e6 * best / n_pix, 2)}
    return out


def fit_once(models, spectrum, sampler: str, seed: int) -> dict:
    from sun_fit import SUN

    import stellarinf

    t0 = time.perf_counter()
    result = stellarinf.fit_spectrum(spectrum, emulator=models, sampler=sampler, seed=seed)
    wall = time.perf_counter() - t0
    table = result.summary
    rows = {str(r["name"]): r for r in table}
    labels = {
        n: {"p50": float(rows[n]["p50"]), "sd_total": float(rows[n]["sd_total"])} for n in ("teff", "logg", "feh")
    }
    return {
        "seconds": round(wall, 1),
        "stages_s": {k.removesuffix("_s"): round(v, 1) for k, v in result.timings.items()},
        "map_starts_agreeing": int(result.map.n_starts_agreeing),
        "outlier_pixels_masked": int(result.settings["outlier_pixels_masked"]),
        "draw_log_density": bool(result.settings["draw_log_density"]),
        "labels": labels,
        "offsets_from_sun": {n: round(labels[n]["p50"] - SUN[n], 4) for n in labels},
        "chi2_reduced": float(table.meta.get("CHI2RED", float("nan"))),
        "flags": str(table.meta.get("FLAGS", "")),
        # laplace-is: is the importance-sampled posterior to be trusted (Pareto k below its threshold)?
        "importance": {
            k: (float(v) if np.isscalar(v) else v)
            for k, v in result.posterior.tuning.items()
            if k in ("pareto_k", "pareto_k_threshold", "importance_ess", "n_proposals", "broad")
        },
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--atlas-dir", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--sets", default="broad,broad-tp", help="model sets (stellarinf.shipped_models.MODEL_SETS)")
    ap.add_argument("--snr", type=float, default=100.0)
    ap.add_argument("--sampler", default="laplace")
    ap.add_argument("--seeds", default="0,1", help="noise seeds: the first fit is cold, the others warm")
    ap.add_argument("-o", "--output", default=str(HERE / "results" / "four_arm_fit.json"))
    args = ap.parse_args(argv)

    import stellarinf

    stellarinf.enable_float64()
    import sun_fit

    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.machine import machine_info

    seeds = [int(s) for s in args.seeds.split(",")]
    out = {"benchmark": "four_arm_fit", "snr": args.snr, "sampler": args.sampler, "sets": {}}
    for name in args.sets.split(","):
        models = [sun_fit.model_for(name, w) for w in WINDOWS]
        record = {"kind": models[0].kind}
        spectra = {s: observed_sun(args.atlas_dir, args.snr, s) for s in seeds}
        for i, s in enumerate(seeds):
            fit = fit_once(models, spectra[s], args.sampler, s)
            record["cold" if i == 0 else f"warm_seed{s}"] = fit
            print(
                f"{name} seed {s}: {fit['seconds']} s {fit['stages_s']} offsets {fit['offsets_from_sun']}", flush=True
            )
        record["primitives"] = primitives(models, spectra[seeds[0]])
        print(f"{name} primitives: {record['primitives']}", flush=True)
        out["sets"][name] = record
        write_json_atomic(args.output, {**out, "machine": machine_info()})
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
