#!/usr/bin/env python
"""Which pixels pull a fit of the observed Sun away from the Sun's labels.

At the Sun's Teff, log g and [Fe/H] (the other parameters at their conditional best fit) the gradient of the log
likelihood along a label is Σ_pixels r · ∂model/∂label / σ², with r the residual: its sum says which way the fit
will move, its terms say which pixels push. Prints the largest 10 Å bins and pixels per label and writes
``benchmarks/results/sun_pull_<emulator>[_<arm>].json``; ``--plot`` draws the influence maps of several such files side by
side (``sun_pull.png``).

Usage::

    python benchmarks/sun_pull.py --atlas-dir ../shared/data --emulator default-payne [--mask 6561.5:6567.5]
    python benchmarks/sun_pull.py --plot benchmarks/results/sun_pull_{default-payne,synth,synth-abo}.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--atlas-dir", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--emulator", default="default-payne", help="a shipped emulator, or synth / synth-abo")
    ap.add_argument("--window", default="galah-red", help="a window with a solar atlas (galah-blue … gaia-rvs)")
    ap.add_argument("--snr", type=float, default=200.0)
    ap.add_argument("--mask", default="", help="vacuum Å ranges left out, e.g. 6561.5:6567.5")
    ap.add_argument("-o", "--output", help="default: benchmarks/results/sun_pull_<emulator>[_<arm>].json")
    ap.add_argument("--plot", nargs="+", metavar="JSON", help="only draw these results side by side and stop")
    args = ap.parse_args(argv)
    if args.plot:
        out = Path(args.output or HERE / "results" / "sun_pull.png")
        plot_influence([Path(p) for p in args.plot], out)
        print(f"wrote {out}")
        return 0
    suffix = "" if args.window == "galah-red" else f"_{args.window.removeprefix('galah-')}"
    args.output = args.output or str(HERE / "results" / f"sun_pull_{args.emulator}{suffix}.json")

    import dataclasses

    import jax
    import jax.numpy as jnp
    import sun_fit as sf

    import stellarinf
    from stellarinf.inference.map import find_map
    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.machine import machine_info
    from stellarinf.pipeline import build_problem, mask_telluric_bands, resolve_physics_error

    stellarinf.enable_float64()
    model = sf.model_for(args.emulator, args.window)
    atlas, pixels, resolution = sf.arm_observation(args.window, None, args.atlas_dir)
    spec = sf.observe_sun(atlas[:, 0], atlas[:, 1], pixels, resolution, args.snr, 0)
    keep = np.ones(spec.wavelength.size, bool)
    for part in filter(None, args.mask.split(",")):
        lo, hi = (float(v) for v in part.split(":"))
        keep &= ~((spec.wavelength >= lo) & (spec.wavelength <= hi))
    spec = mask_telluric_bands(dataclasses.replace(spec, mask=spec.mask & keep))[0]  # as fits do
    sun = {k: v for k, v in sf.SUN.items()}
    phys = resolve_physics_error("auto", spec)[0]
    _, obs_c, problem = build_problem(model, spec, fixed=sun, physics_error=phys, rv_max=300.0)
    best = find_map(problem, n_starts=4).params
    _, obs, problem_all = build_problem(model, spec, physics_error=phys, rv_max=300.0)
    full = {k: jnp.asarray(v) for k, v in {**best, **sun}.items()}
    pred = np.asarray(obs.predict(full))
    r = (np.asarray(obs.flux) - pred) * np.asarray(obs.weight)
    var = np.asarray(obs.total_variance(full))
    wl = np.asarray(obs.wavelength)
    out = {
        "emulator": args.emulator,
        "window": args.window,
        "snr": args.snr,
        "mask": args.mask,
        "conditional_best": {k: float(v) for k, v in best.items()},
        "rms_residual_at_sun": float(np.sqrt(np.sum(r**2) / np.sum(np.asarray(obs.weight)))),
        "labels": {},
        "machine": machine_info(),
    }
    for lab in ("teff", "logg", "feh"):
        jac = np.asarray(jax.jacfwd(lambda x, lab=lab: obs.predict({**full, lab: x}))(full[lab]))
        c = r * jac / var
        bins = [
            (float(b), float(c[(wl >= b) & (wl < b + 10)].sum()))
            for b in np.arange(np.floor(wl.min() / 10) * 10, wl.max(), 10.0)
        ]
        bins.sort(key=lambda t: -abs(t[1]))
        top = np.argsort(-np.abs(c))[:10]
        out["labels"][lab] = {
            "dlnL": float(c.sum()),
            "top_bins": bins[:8],
            "top_pixels": [(float(wl[i]), float(c[i])) for i in top],
        }
        print(f"{lab}: d lnL = {c.sum():+.1f}; bins " + ", ".join(f"{b:.0f} Å {v:+.1f}" for b, v in bins[:6]))
    out["influence"] = influence(obs, problem_all.names, full, wl)
    write_json_atomic(Path(args.output), out)
    return 0


def influence(obs, names, point, wl, top=15):
    """Where the fit will go from the Sun and which pixels send it there.

    One Gauss–Newton step from the Sun's labels (nuisances at their conditional best) over every free
    parameter: Δθ = −(JᵀJ)⁻¹ Jᵀ ρ with ρ the whitened residuals of the fit's own likelihood (physics error,
    error modes and continuum included) and J = ∂ρ/∂θ. Unlike the plain pull above it lets correlated labels
    move together, so the per-pixel terms −[(JᵀJ)⁻¹Jᵀ]_label,i ρ_i add up to the predicted offset of each label.
    """
    import jax
    import jax.numpy as jnp

    names = tuple(names)
    x0 = jnp.array([float(point[n]) for n in names])

    def rho(x):
        return obs.whitened_residuals({**point, **{n: x[i] for i, n in enumerate(names)}})

    r = np.asarray(rho(x0))
    jac = np.asarray(jax.jacfwd(rho)(x0))
    # the pseudo-inverse: (JᵀJ)⁻¹Jᵀ where JᵀJ is regular; a label the window has no line of (Li in RVS) gets no step
    gain = -np.linalg.pinv(jac, rcond=1e-12)  # (n_free, n_res)
    step = gain @ r
    n_pix = wl.size
    result = {"step": {n: float(step[i]) for i, n in enumerate(names)}, "labels": {}}
    for lab in ("teff", "logg", "feh", "vmic"):
        if lab not in names:
            continue
        c = gain[names.index(lab)] * r
        pix = c[:n_pix]
        bins = [
            (float(b), float(pix[(wl >= b) & (wl < b + 5)].sum()))
            for b in np.arange(np.floor(wl.min() / 5) * 5, wl.max(), 5.0)
        ]
        bins.sort(key=lambda t: -abs(t[1]))
        order = np.argsort(-np.abs(pix))
        result["labels"][lab] = {
            "predicted_offset": float(step[names.index(lab)]),
            "from_pixels": float(pix.sum()),
            "from_marginalised_terms": float(c[n_pix:].sum()),
            "top_5A_bins": bins[:top],
            "top_pixels": [(float(wl[i]), float(pix[i])) for i in order[:top]],
            "cumulative_share_of_top_bins": float(sum(v for _, v in bins[:top]) / pix.sum()) if pix.sum() else None,
        }
        print(
            f"{lab}: Gauss-Newton offset {step[names.index(lab)]:+.3f} (pixels {pix.sum():+.3f}); 5 Å bins "
            + ", ".join(f"{b:.0f} {v:+.3f}" for b, v in bins[:10])
        )
    return result


def plot_influence(paths: list[Path], out: Path) -> None:
    """Per label (Teff, log g, [Fe/H]), each file's Gauss-Newton offset split over its largest 5 Å bins."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [json.loads(p.read_text()) for p in paths]
    labels = [("teff", "Teff (K)"), ("logg", "log g"), ("feh", "[Fe/H]")]
    fig, axes = plt.subplots(len(labels), 1, figsize=(10, 8), constrained_layout=True)
    width = 5.0 / (len(runs) + 1)
    for ax, (lab, title) in zip(axes, labels):
        for k, run in enumerate(runs):
            info = run["influence"]["labels"][lab]
            b, v = np.array(info["top_5A_bins"]).T
            ax.bar(
                b + 2.5 + (k - (len(runs) - 1) / 2) * width,
                v,
                width=width,
                label=f"{run['emulator']}: offset {info['predicted_offset']:+.3g}",
            )
        ax.axhline(0.0, color="0.5", lw=0.5)
        ax.set_ylabel(f"Δ{title} from 5 Å")
        ax.legend(fontsize=8, loc="lower right")
    axes[-1].set_xlabel("vacuum wavelength (Å); the largest 15 bins per run")
    fig.suptitle("Where a fit of the observed Sun goes from the Sun's labels (Gauss-Newton step, S/N 200)")
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(out)


if __name__ == "__main__":
    raise SystemExit(main())
