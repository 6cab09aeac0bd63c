#!/usr/bin/env python
"""How accurate an emulator is between the pixels it was trained at (issue #19 item 2), side by side in one run.

TransformerPayne answers any wavelength, but trained at its grid's pixels only it learns those wavelengths: the
eighth session measured rms 2.7e-3 at them and 0.025–0.033 a quarter to half a pixel away. This benchmark makes a
galah-red grid with every half-pixel point (``stellarinf grid --oversample 2``: the instrument's pixels are the even
columns, the half-pixel points the odd ones, both synthesised exactly) and a held-out test grid of another seed, then
measures on the test grid, for each model, the MAE at the instrument's pixels, between them, and their ratio:

1. the shipped TransformerPayne (``default``) and the shipped Payne (``default-payne``, Lanczos-4 between its pixels)
   as they are;
2. the shipped TransformerPayne fine-tuned for ``--steps`` steps at the instrument's pixels (``--wavelengths
   instrument``: today's practice, the control);
3. the same fine-tuning, same steps and seed, at wavelengths drawn anywhere between pixels (``--wavelengths
   continuous``, targets interpolated from the 2× oversampled rows by the 8-point Lagrange polynomial).

It also evaluates every model on another instrument's pixel grid inside the window (3.3 pixels per resolution
element, a third of a pixel off ours; the truth interpolated from the oversampled test rows the same way) and reports
how far the instrument-pixel path itself is from the truth between pixels (Lanczos-4 from the even columns alone, as
``Emulator.flux`` and fits interpolate), the floor of any emulator that answers at its pixels and interpolates. Results: ``benchmarks/results/subpixel.json``.

Usage (resumable: grids and training runs continue where they stopped)::

    python benchmarks/subpixel.py --n-train 2048 --n-test 256 --steps 1200,3600

Models trained elsewhere (e.g. on a GPU by ``gpu_session.sh``) on an oversampled grid, evaluated on its oversampled
test grid the same way, without making grids or training::

    python benchmarks/subpixel.py --evaluate DIR[,DIR...] --test-grid TEST.h5 --n-test 256 -o OUT.json
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def stellarinf(*args):
    subprocess.run([sys.executable, "-m", "stellarinf.cli", *args], check=True)


def other_pixels(wavelength, resolution, pixels_per_resolution=3.3, offset=1 / 3):
    """A log-uniform pixel grid of another sampling inside ``wavelength``'s range, offset from its first pixel."""
    step = 1.0 / (resolution * pixels_per_resolution)
    lo, hi = np.log(wavelength[0]) + (4 + offset) * step, np.log(wavelength[-1]) - 4 * step
    return np.exp(np.arange(lo, hi, step))


def interpolate_rows(wavelength, flux, at, how="lagrange"):
    """Rows of ``flux`` (sampled at ``wavelength``) interpolated at ``at``: 8-point Lagrange (accurate on the 2×
    oversampled rows) or Lanczos-4 (what emulators tied to their pixels use)."""
    import jax
    import jax.numpy as jnp

    from stellarinf.emulators.interpolation import lagrange_interpolate, lanczos_interpolate

    interp = lagrange_interpolate if how == "lagrange" else lanczos_interpolate
    f = jax.jit(jax.vmap(lambda row: interp(jnp.asarray(at), jnp.asarray(wavelength), row)))
    return np.asarray(f(jnp.asarray(flux, dtype=jnp.float64)))


def evaluate(emulator, test, at_other, truth_other, batch=16):
    from stellarinf.emulators.metrics import between_pixel_metrics, evaluate_emulator

    t0 = time.perf_counter()
    acc, _ = evaluate_emulator(emulator, test, batch_size=batch)
    row = {**between_pixel_metrics(acc, test.oversample), "mae": acc.result()["mae"]}
    pred = emulator.predict(test.labels, at_other, batch_size=batch)
    row["mae_other_pixels"] = float(np.mean(np.abs(pred - truth_other)))
    row["eval_s"] = round(time.perf_counter() - t0, 1)
    return row


def plot(output, test, models, row=0, half_width=1.2):
    """Around the test spectrum's deepest line: the synthesised flux at and between the pixels, and each
    TransformerPayne on a grid 10× finer than the pixels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inst = test.instrument_pixels()
    centre = inst.wavelength[np.argmin(inst.flux[row])]
    keep = np.abs(test.wavelength - centre) < half_width
    fine = np.linspace(test.wavelength[keep][0], test.wavelength[keep][-1], 10 * keep.sum() // 2)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(
        test.wavelength[keep][1::2],
        test.flux[row][keep][1::2],
        "s",
        mfc="none",
        color="k",
        label="synthesised, half-pixel points",
    )
    ax.plot(
        test.wavelength[keep][::2], test.flux[row][keep][::2], "o", color="k", label="synthesised, instrument pixels"
    )
    for name, emu in models.items():
        if "transformer" in name:
            ax.plot(fine, emu.predict(test.labels[row], fine), lw=1.2, label=name)
    ax.set(xlabel="vacuum wavelength (Å)", ylabel="normalised flux", title="TransformerPayne between its pixels")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(Path(output).with_suffix(".png"), dpi=120)
    plt.close(fig)


def evaluate_only(dirs, test_path, args):
    """Existing models on an existing oversampled test grid: MAE at the instrument's pixels, between them (both
    may be training wavelengths of a model trained on the oversampled grid) and on another pixel grid (not)."""
    from stellarinf.emulators.registry import load_emulator
    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.io.grid import read_grid
    from stellarinf.machine import machine_info

    test = read_grid(test_path)
    if test.oversample < 2:
        raise SystemExit(f"{test_path} is not oversampled (stellarinf grid --oversample 2): nothing between pixels")
    test = test.subset(np.arange(min(args.n_test, len(test))))
    at_other = other_pixels(test.wavelength, test.metadata["resolution"])
    truth_other = interpolate_rows(test.wavelength, test.flux, at_other)
    rows = {}
    for d in dirs:
        emu = load_emulator(d)
        rows[str(d)] = {**evaluate(emu, test, at_other, truth_other), "kind": type(emu).__name__}
        print(d, {k: (round(v, 6) if isinstance(v, float) else v) for k, v in rows[str(d)].items()}, flush=True)
    write_json_atomic(
        args.output,
        {
            "benchmark": "subpixel",
            "mode": "evaluate",
            "machine": machine_info(),
            "test_grid": {"path": str(test_path), "n": len(test), "oversample": test.oversample},
            "other_pixels": {"pixels_per_resolution": 3.3, "offset_pixels": 1 / 3, "n": int(at_other.size)},
            "models": rows,
        },
    )
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-train", type=int, default=2048)
    ap.add_argument("--n-test", type=int, default=256)
    ap.add_argument(
        "--steps",
        default="1200,3600",
        help="fine-tuning stages, comma-separated: the first from the shipped model, each next from the last (a new "
        "warm-up and schedule each)",
    )
    ap.add_argument("--work", default=str(HERE / "work" / "subpixel"))
    ap.add_argument("--evaluate", default=None, help="model directories, comma-separated: only evaluate these")
    ap.add_argument(
        "--test-grid", default=None, help="with --evaluate: an oversampled test grid (its first --n-test rows)"
    )
    ap.add_argument("-o", "--output", default=str(HERE / "results" / "subpixel.json"), help="results JSON (PNG beside)")
    args = ap.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)  # wavelengths in float64 (a float32 Å is 1/200 of a pixel here)
    from stellarinf.emulators.registry import load_emulator
    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.io.grid import read_grid
    from stellarinf.machine import machine_info

    if args.evaluate:
        return evaluate_only([Path(p) for p in args.evaluate.split(",") if p], Path(args.test_grid), args)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    train_path, test_path = work / "red_x2.h5", work / "red_x2_test.h5"
    t0 = time.perf_counter()
    for path, n, seed in ((train_path, args.n_train, 7), (test_path, args.n_test, 8)):
        stellarinf("grid", "-o", str(path), "--n", str(n), "--seed", str(seed), "--oversample", "2", "--no-progress")
    grid_s = time.perf_counter() - t0

    test = read_grid(test_path)
    at_other = other_pixels(test.wavelength, test.metadata["resolution"])
    truth_other = interpolate_rows(test.wavelength, test.flux, at_other)
    inst = test.instrument_pixels()
    odd = test.wavelength[1::2]
    floor = np.abs(interpolate_rows(inst.wavelength, inst.flux, odd, "lanczos") - test.flux[:, 1::2])
    # how good the Lagrange truth is, bounded from above: from the instrument's pixels alone (a line's σ ≈ 1.1 samples)
    # against the synthesised half-pixel points; on the 2× rows (σ ≈ 2.2) a Gaussian line's error is ~80× smaller
    lagrange_half = np.abs(interpolate_rows(inst.wavelength, inst.flux, odd) - test.flux[:, 1::2])

    stages = [int(n) for n in str(args.steps).split(",")]
    runs = {}
    for mode in ("instrument", "continuous"):
        init, total = "default", 0
        for stage, steps in enumerate(stages):
            out = work / (f"tp_{mode}" if stage == 0 else f"tp_{mode}_stage{stage + 1}")
            stellarinf(
                "train", "--grid", str(train_path), "--model", "transformer-payne", "--preset", "small",
                "--init", str(init), "--lr", "3e-4", "--warmup-steps", "100", "--validate-every", "200",
                "--max-steps", str(steps), "--patience", "0", "--seed", str(5 + stage),
                "--wavelengths", mode, "--quiet", "-o", str(out),
            )  # fmt: skip
            init, total = out, total + steps
            runs[f"{mode}, {total} steps"] = out

    models = {
        "payne (shipped)": load_emulator("default-payne"),
        "transformer-payne (shipped)": load_emulator("default"),
        **{f"transformer-payne fine-tuned, {m}": load_emulator(p) for m, p in runs.items()},
    }
    rows = {}
    for name, emu in models.items():
        rows[name] = evaluate(emu, test, at_other, truth_other)
        meta = emu.metadata.get("metrics", {})
        rows[name].update(
            steps=meta.get("steps"),
            train_s=meta.get("elapsed_s"),
            trainer_test={
                k: meta.get(k) for k in ("mae", "mae_on_pixels", "mae_between_pixels", "between_pixel_ratio")
            },
        )
        print(name, {k: (round(v, 6) if isinstance(v, float) else v) for k, v in rows[name].items()}, flush=True)

    plot(args.output, test, models)
    result = {
        "benchmark": "subpixel",
        "quick": False,
        "settings": {"n_train": args.n_train, "n_test": args.n_test, "steps": stages, "lr": 3e-4, "preset": "small"},
        "wall_time_s": round(time.perf_counter() - t0, 1),
        "machine": machine_info(),
        "train_grid": {"path": str(train_path), "n": args.n_train, "seed": 7, "oversample": 2},
        "test_grid": {"path": str(test_path), "n": args.n_test, "seed": 8, "oversample": 2},
        "grid_s": round(grid_s, 1),
        "fine_tune_steps": stages,
        "other_pixels": {"pixels_per_resolution": 3.3, "offset_pixels": 1 / 3, "n": int(at_other.size)},
        "lanczos_from_instrument_pixels_at_half_pixels": {"mae": float(floor.mean()), "max": float(floor.max())},
        "lagrange_from_instrument_pixels_at_half_pixels": {
            "mae": float(lagrange_half.mean()),
            "max": float(lagrange_half.max()),
        },
        "models": rows,
    }
    write_json_atomic(args.output, result)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
