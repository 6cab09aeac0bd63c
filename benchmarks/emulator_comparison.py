"""TransformerPayne vs the Payne MLP: accuracy at equal training-set size and equal wall-clock budget,
plus forward throughput, on one grid file.

For each training-set size N (nested subsets of one shuffled pool), both models are trained on the same
N spectra under the same ``--max-minutes`` budget (compilation included) and evaluated on one fixed
held-out test set (never used for training or model selection). The learning-rate schedule is fitted to
the budget: a short calibration run measures steps/s, and ``max_steps`` is set so the cosine decay ends
when the budget does. Throughput is measured on a batch of spectra at the grid's wavelengths.

Writes ``benchmarks/results/emulator_comparison.json`` (metrics, settings, machine) and a plot beside it.

Examples::

    python benchmarks/emulator_comparison.py data/grids/realistic_default.h5 --max-minutes 20
    python benchmarks/emulator_comparison.py --quick          # toy grid, tiny budget: checks the script works
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("grid", nargs="?", help="grid file (HDF5); optional with --quick (a toy grid is generated)")
    p.add_argument("--sizes", default="1000,5000", help="training-set sizes, comma-separated [1000,5000]")
    p.add_argument("--max-minutes", type=float, default=20.0, help="wall-clock budget per model and size [20]")
    p.add_argument("--test-size", type=int, default=500, help="fixed held-out test spectra [500]")
    p.add_argument("--val-size", type=int, default=200, help="validation spectra for best-model selection [200]")
    p.add_argument("--preset", default="small", help="TransformerPayne preset [small]")
    p.add_argument("--payne-hidden", default="300,300", help="Payne hidden widths [300,300]")
    p.add_argument("--payne-lr", type=float, default=1e-3)
    p.add_argument("--tp-lr", type=float, default=1e-3)
    p.add_argument("--throughput-batch", type=int, default=32, help="spectra per forward call for throughput [32]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--work-dir", default=str(ROOT / "benchmarks" / "work" / "emulator_comparison"), help="trained models go here"
    )
    p.add_argument("-o", "--output", default=None, help="JSON output [benchmarks/results/emulator_comparison.json]")
    p.add_argument(
        "--quick", action="store_true", help="tiny sizes/budget (and a toy grid if none given): checks the script"
    )
    p.add_argument("--progress", action="store_true", help="show training progress bars")
    return p.parse_args(argv)


def _toy_grid(path: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from toy_grid import make_toy_grid  # the analytic toy generator used by the tests

    make_toy_grid(n=400, n_pix=300, seed=11).save(path)
    return path


def _steps_per_second(grid, cfg, validation) -> float:
    """Measure training steps/s after compilation (short run, validation every 50 steps)."""
    import dataclasses

    from stellarinf.emulators import train

    probe = dataclasses.replace(cfg, max_steps=150, validate_every=50, max_minutes=None, patience=None, progress=False)
    hist = train(
        grid, None, probe, validation=validation, test=validation.subset(np.arange(min(8, len(validation))))
    ).history
    (a, b) = hist[1], hist[-1]
    return (b["step"] - a["step"]) / max(b["elapsed_s"] - a["elapsed_s"], 1e-9)


def throughput(emulator, labels, wavelength, repeats: int = 5) -> dict:
    """Forward pixels/s for a batch of spectra (after compilation), and the time per batch."""
    import jax.numpy as jnp

    from stellarinf.emulators import flux_batch

    lab, wl = jnp.asarray(labels), jnp.asarray(wavelength)
    flux_batch(emulator, lab, wl).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(repeats):
        flux_batch(emulator, lab, wl).block_until_ready()
    dt = (time.perf_counter() - t0) / repeats
    return {
        "batch_spectra": int(lab.shape[0]),
        "n_pixels": int(wl.shape[0]),
        "seconds_per_batch": dt,
        "pixels_per_second": lab.shape[0] * wl.shape[0] / dt,
        "spectra_per_second": lab.shape[0] / dt,
    }


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for model, marker in (("transformer-payne", "o"), ("payne", "s")):
        rows = sorted((r for r in results if r["model"] == model), key=lambda r: r["n_train"])
        n = [r["n_train"] for r in rows]
        axes[0].plot(n, [r["test"]["mae"] for r in rows], marker=marker, label=model)
        axes[1].plot(n, [r["test"]["mse"] for r in rows], marker=marker, label=model)
        axes[2].bar(model, np.mean([r["throughput"]["pixels_per_second"] for r in rows]))
    axes[0].axhline(2e-3, color="grey", ls=":", label="MAE target 2e-3")
    for ax, name in zip(axes[:2], ("held-out MAE", "held-out MSE")):
        ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel("training spectra"), ax.set_title(name), ax.legend()
    axes[2].set_yscale("log"), axes[2].set_title("forward throughput (pixels/s)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.sizes, args.max_minutes, args.test_size, args.val_size = "100,250", min(args.max_minutes, 0.3), 50, 40
        args.preset = "tiny" if args.preset == "small" else args.preset
    grid_path = Path(args.grid) if args.grid else (_toy_grid(work / "toy_grid.h5") if args.quick else None)
    if grid_path is None:
        raise SystemExit("give a grid file (or --quick to use a generated toy grid)")
    output = (
        Path(args.output)
        if args.output
        else (
            work / "emulator_comparison_quick.json"
            if args.quick
            else ROOT / "benchmarks" / "results" / "emulator_comparison.json"
        )
    )

    from stellarinf.emulators import TrainConfig, evaluate_emulator, train
    from stellarinf.io.grid import read_grid
    from stellarinf.machine import machine_info

    grid = read_grid(grid_path)
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(len(grid))
    test_idx, val_idx, pool = (
        perm[: args.test_size],
        perm[args.test_size : args.test_size + args.val_size],
        perm[args.test_size + args.val_size :],
    )
    if max(sizes) > len(pool):
        raise SystemExit(
            f"the grid has {len(grid)} spectra: not enough for {max(sizes)} training + {args.test_size} test + "
            f"{args.val_size} validation; use smaller --sizes or a bigger grid"
        )
    test_g, val_g = grid.subset(np.sort(test_idx)), grid.subset(np.sort(val_idx))
    hidden = tuple(int(h) for h in args.payne_hidden.split(","))
    configs = {
        "transformer-payne": TrainConfig(
            model="transformer-payne",
            preset=args.preset,
            learning_rate=args.tp_lr,
            seed=args.seed,
            patience=None,
            progress=args.progress,
            validate_every=200,
        ),
        "payne": TrainConfig(
            model="payne",
            hidden=hidden,
            learning_rate=args.payne_lr,
            seed=args.seed,
            patience=None,
            progress=args.progress,
            validate_every=200,
        ),
    }
    tp_labels = test_g.labels[np.arange(min(args.throughput_batch, len(test_g))) % len(test_g)]
    results = []
    for n in sizes:
        train_g = grid.subset(np.sort(pool[:n]))  # nested subsets: the 5000 contain the 1000
        for model, base in configs.items():
            rate = _steps_per_second(train_g, base, val_g)
            import dataclasses

            max_steps = max(200, int(rate * args.max_minutes * 60 * 0.9))
            cfg = dataclasses.replace(
                base,
                max_steps=max_steps,
                max_minutes=args.max_minutes,
                validate_every=max(50, min(500, max_steps // 40)),
                warmup_steps=min(500, max_steps // 20),
            )
            print(
                f"[{model} N={n}] {rate:.1f} steps/s → max_steps {max_steps} within {args.max_minutes} min", flush=True
            )
            res = train(train_g, work / f"{model}-{n}", cfg, validation=val_g, test=val_g)
            acc, _ = evaluate_emulator(res.emulator, test_g, batch_size=16)
            row = {
                "model": model,
                "n_train": n,
                "test": acc.result(),
                "steps": res.metrics["steps"],
                "elapsed_s": res.metrics["elapsed_s"],
                "stop_reason": res.stop_reason,
                "best_val_mae": res.metrics["best_val_mae"],
                "steps_per_second": rate,
                "config": cfg.to_json(),
                "architecture": res.emulator.metadata.get("architecture") or {"kind": model},
                "throughput": throughput(res.emulator, tp_labels, test_g.wavelength),
            }
            print(
                f"[{model} N={n}] test MAE {row['test']['mae']:.3e} MSE {row['test']['mse']:.3e} "
                f"p99 {row['test']['p99']:.3e}; {row['throughput']['pixels_per_second']:.3g} pixels/s",
                flush=True,
            )
            results.append(row)

    summary = {}
    for n in sizes:
        by = {r["model"]: r for r in results if r["n_train"] == n}
        ratio = by["payne"]["test"]["mae"] / by["transformer-payne"]["test"]["mae"]
        summary[str(n)] = {
            "mae_ratio_payne_over_tp": ratio,
            "tp_mae": by["transformer-payne"]["test"]["mae"],
            "payne_mae": by["payne"]["test"]["mae"],
            "target_ratio_met": ratio >= 2.0,
            "target_mae_met": by["transformer-payne"]["test"]["mae"] <= 2e-3,
        }
    doc = {
        "benchmark": "emulator_comparison",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": args.quick,
        "grid": {
            "path": str(grid_path),
            "n_spectra": len(grid),
            "n_pixels": grid.n_pixels,
            "wavelength_range": [float(grid.wavelength[0]), float(grid.wavelength[-1])],
            "metadata": grid.metadata,
        },
        "settings": {
            "sizes": sizes,
            "max_minutes": args.max_minutes,
            "test_size": args.test_size,
            "val_size": args.val_size,
            "seed": args.seed,
            "preset": args.preset,
            "payne_hidden": list(hidden),
        },
        "targets": {"mae_ratio_payne_over_tp": ">= 2", "tp_mae": "<= 2e-3"},
        "summary": summary,
        "results": results,
        "machine": machine_info(),
    }
    from stellarinf.io.atomic import write_json_atomic

    write_json_atomic(output, doc)
    plot(results, output.with_suffix(".png"))
    print(json.dumps(summary, indent=2))
    print(f"written {output} and {output.with_suffix('.png')}")
    return doc


if __name__ == "__main__":
    main()
