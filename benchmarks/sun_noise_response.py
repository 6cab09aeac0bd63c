#!/usr/bin/env python
"""How far the MAP of an observed-Sun fit should move with the noise, as the fit's own curvature predicts it.

For each noise seed the observed Sun is fitted as ``sun_fit.py`` does (MAP + Laplace, the pipeline's defaults); at the
Laplace mode ``z`` (unconstrained) it computes

- the exact Hessian ``H`` of the log density (the Laplace approximation uses Gauss–Newton, ``G⁻¹``),
- ``M = ∂²log p / ∂z ∂d``, how the gradient moves with the data ``d``, and from it the linear response of the mode to
  white noise of the spectrum's σ: the sandwich ``H⁻¹ M N Mᵀ H⁻¹`` (and ``G M N Mᵀ G``).

If the seed-to-seed scatter of the fits (``sun_fit.py --seeds 0,...,9``) exceeds the Laplace sd while these ratios are
≈ 1, the excess is not local: the mode the noise selects moves by more than its curvature says (fifty-ninth session,
benchmarks/README.md section 6, "The label floor: the part of the Sun's offsets the fits' own sd does not explain").
v sin i's exact Hessian is not finite at small v sin i (a square root); its row and column are taken from
Gauss–Newton.

    python benchmarks/sun_noise_response.py --windows galah-red,gaia-rvs --snr 50 --seeds 0,1,5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def response(result, snr: float) -> dict:
    """Per label, the exact-Hessian, sandwich and Gauss–Newton-sandwich sd over the Laplace (Gauss–Newton) sd."""
    import jax
    import jax.numpy as jnp

    prob, lap = result.problem, result.laplace
    obs = prob.obs_model
    d0 = obs.flux

    def logp(z, d):
        return prob.with_obs_model(obs.with_flux(d)).log_density(z)

    z = jnp.asarray(lap.mean_z)
    gn = np.asarray(lap.cov_z)
    h = -np.asarray(jax.hessian(logp, 0)(z, d0))
    h = np.where(np.isfinite(h), h, np.linalg.inv(gn))
    m = np.asarray(jax.jacrev(lambda d: jax.grad(logp, 0)(z, d))(d0))
    m = np.where(np.isfinite(m), m, 0.0)
    noise = np.full(m.shape[1], snr**-2.0)
    a = np.linalg.inv(h)
    sandwich = a @ (m * noise) @ m.T @ a
    gn_sandwich = gn @ (m * noise) @ m.T @ gn
    names = list(prob.names)
    out = {}
    for n in ("teff", "logg", "feh"):
        i = names.index(n)
        out[n] = {
            "exact_over_laplace": float(np.sqrt(a[i, i] / gn[i, i])),
            "sandwich_over_laplace": float(np.sqrt(sandwich[i, i] / gn[i, i])),
            "gauss_newton_sandwich_over_laplace": float(np.sqrt(gn_sandwich[i, i] / gn[i, i])),
        }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--atlas-dir", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--windows", default="galah-red,gaia-rvs")
    ap.add_argument("--emulators", default="auto", help="one model, or one per window joined by '+'")
    ap.add_argument("--snr", type=float, default=50.0)
    ap.add_argument("--seeds", default="0,1,5")
    ap.add_argument("-o", "--output", default=str(HERE / "results" / "sun_noise_response.json"))
    args = ap.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    import sun_fit as sf

    from stellarinf import fit_spectrum
    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.machine import machine_info

    windows = args.windows.split(",")
    try:
        names = sf.names_per_window(args.emulators, windows)
    except ValueError as exc:
        ap.error(str(exc))
    models = [sf.model_for(n, w) for n, w in zip(names, windows)]
    observed = [sf.arm_observation(w, None, args.atlas_dir) for w in windows]
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        t0 = time.time()
        spec = sf.sun_spectrum(models, observed, args.snr, seed)
        result = fit_spectrum(
            spec, emulator=models[0] if len(models) == 1 else models, sampler="laplace", seed=seed, physics_error="auto"
        )
        row = {
            "seed": seed,
            "offsets": {n: float(result.map.params[n]) - sf.SUN[n] for n in ("teff", "logg", "feh")},
            "ratios": response(result, args.snr),
            "seconds": time.time() - t0,
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    write_json_atomic(
        Path(args.output),
        {"benchmark": "sun_noise_response", "settings": vars(args), "fits": rows, "machine": machine_info()},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
