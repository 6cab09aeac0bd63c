#!/usr/bin/env python
"""Synthesis speed and numerical accuracy: the four GALAH arms (and Gaia RVS), each numerical preset vs a slow
reference.

Speed: steady-state spectra per second of the grid pipeline (synthesis on the fine grid, LSF broadening,
resampling to the arm's pixels; ``stellarinf grid``'s own compiled function), batched with ``jax.vmap``
after compilation, at random points of the label box, per arm and for the four arms together
(1 / Σ 1/rate), for each preset of ``stellarinf.synth.settings``; the simple fidelity too.

Accuracy: the ``standard`` (R 300,000 fine grid, 45 depths from log τ = −5, 5 angles, 16-term Voigt cores) and
``extended`` (7 more depths above) presets against ``reference`` (R 600,000, all 72 ATLAS9 depths, 8 angles,
24-term Voigt cores) on the same stars of the broad box, broadened to the arm's R on its pixels: rms and largest
|Δ flux| per arm. Writes ``benchmarks/results/synth_speed.json`` and ``synth_speed.png``.

Usage::

    python benchmarks/synth_speed.py [--window galah] [--stars 16] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def arm_pipeline(window: str, space, fidelity: str, preset: str = "standard", molecules: str = "off"):
    """(compiled labels → (flux, continuum) on the arm's pixels, the arm, n_fine) for one preset."""
    from stellarinf.commands.grid import _batched_observer
    from stellarinf.synth.observed import padded_fine_grid, resolve_window
    from stellarinf.synth.settings import fine_resolution, settings_preset
    from stellarinf.synth.synthesize import make_synthesizer

    win = resolve_window(window)
    fine = padded_fine_grid(win.wmin, win.wmax, resolution=win.resolution, fine_resolution=fine_resolution(preset))
    fn = make_synthesizer(fine, space.names, fidelity, settings=settings_preset(preset), molecules=molecules)
    return _batched_observer(fn, fine.tobytes(), win.grid().tobytes(), win.resolution), win, fine.size


def run(f, labels, batch_size: int):
    """Flux of every star (n, n_pix), the first batch compiling; (flux, seconds per spectrum after it, compile s)."""
    import jax
    import jax.numpy as jnp

    n = labels.shape[0]
    t0 = time.time()
    out = [np.asarray(jax.block_until_ready(f(jnp.asarray(labels[:batch_size]))))]
    setup = time.time() - t0
    t0 = time.time()
    for b in range(batch_size, n, batch_size):
        out.append(np.asarray(jax.block_until_ready(f(jnp.asarray(labels[b : b + batch_size])))))
    per = (time.time() - t0) / max(n - batch_size, 1)
    return np.concatenate(out)[:, 0], per, setup


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", default="galah,gaia-rvs", help="window sets (galah) or model windows, comma-separated")
    ap.add_argument("--stars", type=int, default=24, help="stars per arm (a multiple of --batch-size)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument(
        "--presets", default="reference,extended,standard", help="numerical presets to time, comma-separated"
    )
    ap.add_argument(
        "--molecules",
        choices=("off", "on", "both"),
        default="off",
        help="molecular equilibrium and lines; 'both' times every preset without and with them (keys '<preset>' "
        "and '<preset>+molecules'), each compared with the reference of the same physics when it is timed",
    )
    ap.add_argument("--out", default=str(HERE / "results" / "synth_speed.json"))
    args = ap.parse_args(argv)

    from stellarinf import enable_float64

    enable_float64()
    from stellarinf.design import sample_labels
    from stellarinf.instruments import window_set
    from stellarinf.io.atomic import atomic_path, write_json_atomic
    from stellarinf.labels import default_label_space
    from stellarinf.machine import machine_info
    from stellarinf.synth.settings import PRESETS

    arms = [w.name for name in args.window.split(",") for w in window_set(name)]  # a set or a model window
    # the broad domain's box: the default labels with [α/Fe], [Fe/H] from the atmospheres' −2.5
    base = default_label_space(alpha=True)
    space = type(base).from_bounds({lab.name: (lab.lower, lab.upper) for lab in base.labels} | {"feh": (-2.5, 0.5)})
    labels = sample_labels(space, args.stars, "uniform", 7)
    presets = [p for p in args.presets.split(",") if p]
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        ap.error(f"unknown presets {unknown}; choose from {list(PRESETS)}")
    mols = ("off", "on") if args.molecules == "both" else (args.molecules,)
    configs = [(p + ("+molecules" if m == "on" else ""), m) for m in mols for p in presets]
    per_arm, residuals = [], {}
    for arm in arms:
        row = {"arm": arm}
        fluxes = {}
        for setting, mol in configs:
            f, win, n_fine = arm_pipeline(arm, space, "realistic", setting.split("+")[0], mol)
            fluxes[setting], per, setup = run(f, labels, args.batch_size)
            row[setting] = {"seconds_per_spectrum": per, "spectra_per_second": 1.0 / per, "compile_seconds": setup}
            row[setting]["n_fine"] = int(n_fine)
            print(f"{arm} {setting}: {1 / per:.2f} spectra/s (n_fine {n_fine}, compile {setup:.0f} s)", flush=True)
        f, _, _ = arm_pipeline(arm, space, "simple")
        _, per, _ = run(f, sample_labels(space, 8 * args.batch_size, "uniform", 7), args.batch_size)
        row["simple"] = {"seconds_per_spectrum": per, "spectra_per_second": 1.0 / per}
        row["n_pixels"] = int(next(iter(fluxes.values())).shape[1])
        for setting, mol in configs:
            ref = "reference" + ("+molecules" if mol == "on" else "")
            if setting == ref or ref not in fluxes:
                continue
            d = fluxes[setting] - fluxes[ref]
            worst = int(np.argmax(np.max(np.abs(d), axis=1)))
            row[setting] |= {
                "rms_percent": float(100 * np.sqrt(np.mean(d**2))),
                "max_percent": float(100 * np.max(np.abs(d))),
                "worst_star_rms_percent": float(100 * np.max(np.sqrt(np.mean(d**2, axis=1)))),
                "worst_star": dict(zip(space.names, map(float, labels[worst]))),
                "worst_wavelength": float(win.grid()[np.argmax(np.abs(d[worst]))]),
            }
            residuals[(arm, setting)] = (win.grid(), d[worst])
            print(
                f"{arm}: {setting} vs reference rms {row[setting]['rms_percent']:.4f} %, "
                f"max {row[setting]['max_percent']:.4f} % at {row[setting]['worst_wavelength']:.2f} Å",
                flush=True,
            )
        per_arm.append(row)

    galah = [r for r in per_arm if r["arm"].startswith("galah-")]

    def together(key, rows):
        return 1.0 / sum(r[key]["seconds_per_spectrum"] for r in rows) if rows else None

    doc = {
        "benchmark": "synth_speed",
        "window": args.window,
        "arms": arms,
        "label_box": space.to_json(),
        "stars_per_arm": args.stars,
        "batch_size": args.batch_size,
        "molecules": args.molecules,
        "targets": {"four_arm_spectra_per_second": 2.0, "rms_percent": 0.1, "max_percent": 0.5},
        "galah_four_arms_spectra_per_second": {k: together(k, galah) for k in (*(c for c, _ in configs), "simple")},
        "per_arm": per_arm,
        "load_average_1_5_15min": os.getloadavg(),
        "machine": machine_info(),
        "note": "one process using every core of the machine; the load average shows what else ran beside it",
    }
    write_json_atomic(args.out, doc)
    print(f"four GALAH arms, spectra/s: {doc['galah_four_arms_spectra_per_second']}; load {os.getloadavg()}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(arms), 1, figsize=(10, 2.2 * len(arms)), squeeze=False)
    for ax, arm in zip(axes[:, 0], arms):
        for (setting, _), color in zip(configs, ("C3", "C0", "C2", "C1", "C4", "C5")):
            if (arm, setting) not in residuals:
                continue
            wl, d = residuals[(arm, setting)]
            ax.plot(wl, 100 * d, lw=0.6, color=color, label=f"{setting} − reference, its worst star (%)")
        ax.set_ylabel("Δ flux (%)")
        ax.set_title(arm, fontsize=9)
    if axes[0, 0].get_legend_handles_labels()[0]:  # (no lines when no reference was timed)
        axes[0, 0].legend(fontsize=7, loc="lower right")
    axes[-1, 0].set_xlabel("vacuum wavelength (Å)")
    fig.tight_layout()
    png = Path(args.out).with_suffix(".png")
    with atomic_path(png, ".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
