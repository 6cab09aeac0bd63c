"""Emulation accuracy vs training-grid size: TransformerPayne vs the Payne MLP under equal wall-clock budgets.

For each N in ``--sizes`` (default 500, 1,000, 2,000, 5,000, 10,000; capped at the rows the grid has) both
emulators are trained on the first N rows of one realistic grid (nested subsets: a Sobol design's prefixes
stay balanced) for the same ``--max-minutes`` each, with best-model selection on one fixed validation set
(the last ``--n-validation`` rows of the grid, never trained on), and evaluated on one fixed held-out test
grid (≥ 500 spectra in the full run; made with another seed). Reported per run: MAE, MSE, 99th-percentile
absolute error, MAE/MSE in line cores (true flux < 0.9) vs continuum, and the error vs position in the
label box (per-spectrum MAE binned along every label, on a Teff × log g map, and by distance to the box
faces). Then Payne / TransformerPayne ratios per N, and the paper's claim (TransformerPayne 2–10× lower
error at 1,000–10,000 spectra) checked at every N in that range.

Training uses :func:`stellarinf.emulators.training.train` (checkpoints in ``--workdir``: a killed full run
resumes where it stopped); metrics use :mod:`stellarinf.emulators.metrics`.

    python benchmarks/accuracy.py --quick          # analytic toy grids, tiny sizes, ~3 minutes on 2 cores
    python benchmarks/accuracy.py --grid benchmarks/work/grid_realistic.h5 \\
        --test-grid benchmarks/work/grid_realistic_test.h5 --max-minutes 30     # hours; run in the background

The grids come from ``python data/make_defaults.py --steps grid,test-grid`` (or ``stellarinf grid``).
Writes ``benchmarks/results/accuracy.json`` and ``accuracy.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
WORK = HERE / "work"
DEFAULT_GRID = WORK / "grid_realistic.h5"
DEFAULT_TEST_GRID = WORK / "grid_realistic_test.h5"
FULL_SIZES = (500, 1000, 2000, 5000, 10000)
MODELS = ("transformer-payne", "payne", "payne-silu")
# "payne" is the published LeakyReLU network; "payne-silu" the same MLP with SiLU (the shipped default-payne)
TRAIN_KIND = {
    "transformer-payne": ("transformer-payne", "leaky_relu"),
    "payne": ("payne", "leaky_relu"),
    "payne-silu": ("payne", "silu"),
}
CLAIM_RANGE = (1000, 10000)
STELLAR = ("teff", "logg", "feh", "vmic")


# --------------------------------------------------------------------------------------- quick toy grids
def quick_lines(space, wavelength_range, n_lines: int, seed: int):
    """A random line list ``[(centre Å, log10 τ, element)]`` over the range; elements cycle through the
    space's [X/Fe] labels (half the lines iron)."""
    from stellarinf.labels import element_of

    rng = np.random.default_rng(seed)
    wmin, wmax = wavelength_range
    span = wmax - wmin
    elements = [element_of(n) for n in space.names if element_of(n) is not None]
    centres = np.sort(rng.uniform(wmin + 0.03 * span, wmax - 0.03 * span, n_lines))
    strengths = rng.uniform(-1.3, 0.3, n_lines)
    els = ["Fe" if (i % 2 == 0 or not elements) else elements[(i // 2) % len(elements)] for i in range(n_lines)]
    return [(float(c), float(s), e) for c, s, e in zip(centres, strengths, els)]


def quick_space():
    """The label box of the quick variants: the default box's stellar labels plus Ca and Ti."""
    from stellarinf.labels import LabelSpace, default_label_space

    full = default_label_space()
    return LabelSpace(tuple(full[n] for n in (*STELLAR, "ca_fe", "ti_fe")))


def quick_model(lines, space, wavelength_range, resolution: float = 28_000.0):
    """An :class:`AnalyticLineModel` with the given lines (the cheap stand-in for the synthesizer)."""
    from stellarinf.validation.analytic import AnalyticLineModel

    return AnalyticLineModel(space, wavelength_range, resolution, lines=lines)


def grid_from_model(
    model, wavelength, n: int, seed: int, *, design: str = "sobol", metadata: dict | None = None, batch: int = 64
):
    """A :class:`SpectralGrid` of ``model.flux`` at ``n`` label points of ``design`` (seeded) over the model's box."""
    import jax
    import jax.numpy as jnp

    from stellarinf.design import sample_labels
    from stellarinf.io.grid import SpectralGrid

    space = model.label_space
    labels = sample_labels(space, n, design, seed)
    wl = jnp.asarray(wavelength)
    fn = jax.jit(jax.vmap(model.flux, in_axes=(0, None)))
    flux = np.concatenate([np.asarray(fn(jnp.asarray(labels[i : i + batch]), wl)) for i in range(0, n, batch)])
    meta = {
        "generator": type(model).__name__,
        "seed": seed,
        "design": design,
        "resolution": getattr(model, "resolution", None),
        **(metadata or {}),
    }
    return SpectralGrid(space, labels, np.asarray(wavelength), flux, None, meta)


def quick_grids(
    workdir: Path, n_train: int, n_test: int, seed: int = 42, n_lines: int = 40, wavelength_range=(6600.0, 6620.0)
):
    """Quick train and test grid files from an analytic line model (written once, reused)."""
    from stellarinf.io.grid import read_grid
    from stellarinf.wavelength import log_uniform_grid

    workdir.mkdir(parents=True, exist_ok=True)
    train_path, test_path = workdir / f"quick_train_{n_train}.h5", workdir / f"quick_test_{n_test}.h5"
    space = quick_space()
    wl = log_uniform_grid(*wavelength_range, 28_000.0)
    model = quick_model(quick_lines(space, wavelength_range, n_lines, seed=1), space, wavelength_range)
    for path, n, s in ((train_path, n_train, seed), (test_path, n_test, seed + 1000)):
        if not path.exists():
            grid_from_model(model, wl, n, s, metadata={"fidelity": "analytic"}).save(path)
    return read_grid(train_path), read_grid(test_path)


# --------------------------------------------------------------------------------------- evaluation
def evaluate(emulator, grid, batch_size: int = 32):
    """Metrics on ``grid`` (``emulators.metrics``) and the per-spectrum MAE (for label-box maps)."""
    from stellarinf.emulators.metrics import MetricAccumulator

    acc = MetricAccumulator(grid.n_pixels)
    per_spectrum = []
    for start in range(0, len(grid), batch_size):
        labels = grid.labels[start : start + batch_size]
        pred = emulator.predict(labels, grid.wavelength, batch_size=min(batch_size, len(labels)))
        true = grid.flux[start : start + batch_size]
        acc.update(pred, true)
        per_spectrum.append(np.mean(np.abs(np.asarray(pred, dtype=np.float64) - true), axis=1))
    return acc.result(), np.concatenate(per_spectrum)


def _binned(x, values, edges) -> dict:
    idx = np.clip(np.digitize(x, edges) - 1, 0, len(edges) - 2)
    mae = [float(values[idx == i].mean()) if np.any(idx == i) else None for i in range(len(edges) - 1)]
    count = [int(np.sum(idx == i)) for i in range(len(edges) - 1)]
    return {"edges": [float(e) for e in edges], "mae": mae, "count": count}


def position_errors(space, labels, per_spectrum_mae, n_bins: int = 5, n_map: int = 4) -> dict:
    """Per-spectrum MAE vs position in the label box: along each label, on a Teff × log g map, and by the
    distance to the nearest face of the stellar-label box (scaled units: 0 = on a face, 0.5 = the centre)."""
    out = {"by_label": {}}
    for j, lab in enumerate(space.labels):
        out["by_label"][lab.name] = _binned(
            labels[:, j], per_spectrum_mae, np.linspace(lab.lower, lab.upper, n_bins + 1)
        )
    stellar = [n for n in STELLAR if n in space.names] or list(space.names)
    scaled = space.scale(labels)[:, [space.index(n) for n in stellar]]
    distance = 0.5 - np.max(np.abs(scaled), axis=1)
    out["by_edge_distance"] = {
        **_binned(distance, per_spectrum_mae, np.linspace(0.0, 0.5, n_bins + 1)),
        "labels": stellar,
    }
    if "teff" in space.names and "logg" in space.names:
        t, g = labels[:, space.index("teff")], labels[:, space.index("logg")]
        te = np.linspace(space["teff"].lower, space["teff"].upper, n_map + 1)
        ge = np.linspace(space["logg"].lower, space["logg"].upper, n_map + 1)
        ti = np.clip(np.digitize(t, te) - 1, 0, n_map - 1)
        gi = np.clip(np.digitize(g, ge) - 1, 0, n_map - 1)
        grid = [
            [
                float(per_spectrum_mae[(ti == a) & (gi == b)].mean()) if np.any((ti == a) & (gi == b)) else None
                for b in range(n_map)
            ]
            for a in range(n_map)
        ]
        out["teff_logg_map"] = {"teff_edges": te.tolist(), "logg_edges": ge.tolist(), "mae": grid}
    return out


# --------------------------------------------------------------------------------------- training
def train_one(
    kind: str,
    train_grid,
    val_grid,
    out_dir: Path,
    *,
    max_minutes: float,
    preset: str,
    seed: int,
    validate_every: int,
    max_steps: int,
    progress: bool,
    init=None,
    learning_rate=None,
    hidden=(300, 300),
    schedule="steps",
):
    """Train (or resume) one emulator with a wall-clock budget; returns the TrainResult."""
    from stellarinf.emulators.training import TrainConfig, train

    kind, activation = TRAIN_KIND[kind]
    cfg = TrainConfig(
        model=kind,
        preset=preset,
        hidden=tuple(hidden),
        activation=activation,
        max_minutes=max_minutes,
        max_steps=max_steps,
        patience=None,
        validate_every=validate_every,
        seed=seed,
        progress=progress,
        learning_rate=learning_rate,
        warmup_steps=min(200, max(1, max_steps // 10)),
        schedule=schedule,
        error_max_spectra=min(256, len(val_grid)),
    )
    # The validation grid doubles as the "test" split inside train() (emulator-error table); the real
    # held-out test grid is only ever touched by evaluate().
    return train(train_grid, out_dir, cfg, validation=val_grid, test=val_grid, init=init)


def run_summary(result, kind: str, n_train: int, metrics: dict, position: dict, out_dir: Path) -> dict:
    m = result.metrics
    return {
        "model": kind,
        "n_train": int(n_train),
        "steps": m.get("steps"),
        "elapsed_s": m.get("elapsed_s"),
        "stop_reason": result.stop_reason,
        "best_val_mae": m.get("best_val_mae"),
        "model_dir": str(out_dir),
        "test": metrics,
        "position": position,
    }


def compare(runs: list[dict]) -> list[dict]:
    """Payne / TransformerPayne error ratios at every N where both ran (> 1: TransformerPayne better).

    The baseline is the published LeakyReLU Payne where it ran, else the SiLU variant (the shipped default).
    """
    by = {(r["model"], r["n_train"]): r["test"] for r in runs}
    rows = []
    for n in sorted({r["n_train"] for r in runs}):
        baseline = "payne" if ("payne", n) in by else "payne-silu"
        tp, pm = by.get(("transformer-payne", n)), by.get((baseline, n))
        if tp is None or pm is None:
            continue
        row = {"n_train": n, "baseline": baseline}
        for key in ("mae", "mse", "p99", "mae_line", "mae_continuum"):
            a, b = pm.get(key), tp.get(key)
            row[f"{key}_payne_over_tp"] = (a / b) if (a is not None and b) else None
        silu = by.get(("payne-silu", n))
        if silu is not None:
            row["mae_payne_silu_over_tp"] = silu["mae"] / tp["mae"] if tp.get("mae") else None
        r = row["mae_payne_over_tp"]
        in_range = CLAIM_RANGE[0] <= n <= CLAIM_RANGE[1]
        row["in_claim_range"] = in_range
        row["tp_at_least_2x_better_mae"] = None if r is None else bool(r >= 2.0)
        row["mae_ratio_within_2_to_10"] = None if r is None else bool(2.0 <= r <= 10.0)
        rows.append(row)
    return rows


def claim(comparison: list[dict]) -> dict:
    """The paper's claim and the N (of :func:`compare`'s rows) where it was tested and where it holds."""
    ranged = [c for c in comparison if c["in_claim_range"]]
    return {
        "statement": "TransformerPayne 2-10x lower MAE/MSE than the Payne at 1,000-10,000 training spectra",
        "tested_at": [c["n_train"] for c in ranged],
        "holds_at": [c["n_train"] for c in ranged if c["tp_at_least_2x_better_mae"]],
    }


# --------------------------------------------------------------------------------------- plot
def plot(result: dict, png: Path) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    if not runs:
        return None
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    colors = {"transformer-payne": "C0", "payne": "C3", "payne-silu": "C2"}
    for kind in MODELS:
        rs = sorted((r for r in runs if r["model"] == kind), key=lambda r: r["n_train"])
        if not rs:
            continue
        n = [r["n_train"] for r in rs]
        c = colors[kind]
        axes[0, 0].plot(n, [r["test"]["mae"] for r in rs], "o-", color=c, label=kind)
        axes[0, 1].plot(n, [r["test"]["mse"] for r in rs], "o-", color=c, label=kind)
        axes[0, 2].plot(n, [r["test"]["mae_line"] or np.nan for r in rs], "o-", color=c, label=f"{kind} line cores")
        axes[0, 2].plot(
            n, [r["test"]["mae_continuum"] or np.nan for r in rs], "s--", color=c, label=f"{kind} continuum"
        )
        axes[0, 0].plot(n, [r["test"]["p99"] for r in rs], ":", color=c, alpha=0.6, label=f"{kind} p99")
        last = rs[-1]["position"]
        teff = last["by_label"].get("teff")
        if teff:
            centres = 0.5 * (np.array(teff["edges"][1:]) + np.array(teff["edges"][:-1]))
            axes[1, 1].plot(
                centres,
                [v if v is not None else np.nan for v in teff["mae"]],
                "o-",
                color=c,
                label=f"{kind} N={rs[-1]['n_train']}",
            )
        ed = last["by_edge_distance"]
        centres = 0.5 * (np.array(ed["edges"][1:]) + np.array(ed["edges"][:-1]))
        axes[1, 2].plot(
            centres,
            [v if v is not None else np.nan for v in ed["mae"]],
            "o-",
            color=c,
            label=f"{kind} N={rs[-1]['n_train']}",
        )
    comp = result["comparison"]
    if comp:
        axes[1, 0].axhspan(2, 10, color="0.9", label="paper: 2–10×")
        axes[1, 0].plot(
            [c["n_train"] for c in comp], [c["mae_payne_over_tp"] or np.nan for c in comp], "o-", color="k", label="MAE"
        )
        axes[1, 0].plot(
            [c["n_train"] for c in comp],
            [c["mse_payne_over_tp"] or np.nan for c in comp],
            "s--",
            color="0.4",
            label="MSE",
        )
        axes[1, 0].axhline(1, color="k", lw=0.5)
        axes[1, 0].set_yscale("log")
        axes[1, 0].set_xscale("log")
    titles = [
        ["MAE (solid) and p99 (dotted) vs N", "MSE vs N", "MAE: line cores vs continuum"],
        ["Payne / TransformerPayne", "MAE vs Teff (largest N)", "MAE vs distance to box face (largest N)"],
    ]
    for i in range(2):
        for j in range(3):
            ax = axes[i, j]
            ax.set_title(titles[i][j], fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    for ax in (axes[0, 0], axes[0, 1], axes[0, 2]):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training spectra N")
    axes[1, 0].set_xlabel("training spectra N")
    axes[1, 1].set_xlabel("Teff (K)")
    axes[1, 2].set_xlabel("distance to nearest face (scaled units; 0.5 = centre)")
    m = result["machine"]
    s = result["settings"]
    fig.suptitle(
        f"accuracy vs grid size, {s['max_minutes']} min per model per N — {m['cpu']} ({m['cores']} cores)"
        + (" [quick]" if result["quick"] else ""),
        fontsize=10,
    )
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return str(png)


# --------------------------------------------------------------------------------------- main
def parse_sizes(text: str) -> list[int]:
    sizes = sorted({int(v) for v in text.split(",") if v.strip()})
    if not sizes or sizes[0] < 2:
        raise ValueError("sizes must be integers ≥ 2, comma-separated")
    return sizes


def default_workdir(output: Path, name: str) -> Path:
    """Checkpoints beside a custom output, else benchmarks/work/<name>."""
    return (output.parent / "work" / name) if output.parent.resolve() != RESULTS.resolve() else WORK / name


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--quick", action="store_true", help="analytic toy grids, sizes 64,128, tiny TransformerPayne, 30 s per run"
    )
    ap.add_argument(
        "--grid",
        default=None,
        help=f"training grid (default {DEFAULT_GRID.relative_to(HERE.parent)}; quick: made on the fly)",
    )
    ap.add_argument(
        "--test-grid", default=None, help=f"held-out test grid (default {DEFAULT_TEST_GRID.relative_to(HERE.parent)})"
    )
    ap.add_argument(
        "--sizes", default=None, help="training-set sizes N, comma-separated (default 500,1000,2000,5000,10000)"
    )
    ap.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="training budget per model per N (default 30; quick 0.5; the first step's JIT compile counts too)",
    )
    ap.add_argument("--max-steps", type=int, default=10**9, help="step cap (the budget normally stops training first)")
    ap.add_argument(
        "--schedule",
        choices=["steps", "budget"],
        default="steps",
        help="learning-rate schedule (stellarinf train --schedule): steps decays over --max-steps, so with the default "
        "cap the rate is near-constant; budget decays over the steps --max-minutes allows",
    )
    ap.add_argument(
        "--models",
        default="transformer-payne,payne",
        help="comma-separated: transformer-payne, payne (LeakyReLU, as "
        "published), payne-silu (the smooth variant the shipped default-payne uses)",
    )
    ap.add_argument("--preset", default=None, help="TransformerPayne preset (default small; quick tiny)")
    ap.add_argument("--hidden", default="300,300", help="Payne MLP hidden widths")
    ap.add_argument(
        "--n-validation",
        type=int,
        default=None,
        help="validation rows taken from the end of the grid (default 256; quick 32)",
    )
    ap.add_argument("--max-test", type=int, default=None, help="use at most this many test spectra (default all)")
    ap.add_argument(
        "--validate-every", type=int, default=None, help="steps between validations (default 200; quick 25)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--workdir", default=None, help="checkpoints and trained models (default benchmarks/work/accuracy[_quick])"
    )
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("-o", "--output", default=str(RESULTS / "accuracy.json"), help="JSON path (PNG beside it)")
    args = ap.parse_args(argv)

    import stellarinf

    stellarinf.enable_float64()  # atmospheres, likelihoods, Fisher matrices
    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.io.grid import read_grid
    from stellarinf.machine import machine_info

    quick = args.quick
    out = Path(args.output)
    workdir = Path(args.workdir) if args.workdir else default_workdir(out, "accuracy_quick" if quick else "accuracy")
    try:
        sizes = parse_sizes(args.sizes or ("64,128" if quick else ",".join(map(str, FULL_SIZES))))
    except ValueError as exc:
        ap.error(f"--sizes: {exc}")
    models = [m for m in args.models.split(",") if m]
    bad = [m for m in models if m not in MODELS]
    if bad:
        ap.error(f"unknown model(s) {bad}; choose from {', '.join(MODELS)}")
    max_minutes = args.max_minutes if args.max_minutes is not None else (0.5 if quick else 30.0)
    preset = args.preset or ("tiny" if quick else "small")
    n_val = args.n_validation or (32 if quick else 256)
    validate_every = args.validate_every or (25 if quick else 200)
    hidden = tuple(int(h) for h in args.hidden.split(","))

    t_start = time.perf_counter()
    if args.grid is None and quick:
        full, test = quick_grids(workdir, max(sizes) + n_val, 64)
        grid_src, test_src = "quick analytic (AnalyticLineModel)", "quick analytic (AnalyticLineModel, other seed)"
    else:
        grid_path = Path(args.grid) if args.grid else DEFAULT_GRID
        test_path = Path(args.test_grid) if args.test_grid else DEFAULT_TEST_GRID
        for p, what in ((grid_path, "--grid"), (test_path, "--test-grid")):
            if not p.exists():
                print(
                    f"error: {what} {p} does not exist; make the grids with `python data/make_defaults.py --steps grid,test-grid` "
                    "(or `stellarinf grid`), or run with --quick",
                    file=sys.stderr,
                )
                return 3
        full, test = read_grid(grid_path), read_grid(test_path)
        grid_src, test_src = str(grid_path), str(test_path)
    if args.max_test:
        test = test.subset(np.arange(min(args.max_test, len(test))))
    if len(full) <= n_val + 1:
        print(
            f"error: the grid has {len(full)} rows, not more than --n-validation {n_val}; use a larger grid",
            file=sys.stderr,
        )
        return 3
    if full.label_space.names != test.label_space.names or full.n_pixels != test.n_pixels:
        print(
            "error: the test grid has different labels or wavelengths than the training grid; make both with the same settings",
            file=sys.stderr,
        )
        return 3
    val = full.subset(np.arange(len(full) - n_val, len(full)))
    available = len(full) - n_val
    used = [n for n in sizes if n <= available]
    skipped = [n for n in sizes if n > available]
    if not used:
        used, skipped = [available], sizes
    if skipped:
        print(
            f"note: the grid has {available} training rows; sizes {skipped} are capped"
            + (f" (running N={available} instead)" if used == [available] else "")
        )
    print(
        f"accuracy vs N: N={used}, models {models}, {max_minutes:g} min each, test set {len(test)} spectra, "
        f"{full.n_pixels} pixels",
        flush=True,
    )

    runs = []
    for n in used:
        subset = full.subset(np.arange(n))
        for kind in models:
            run_dir = workdir / f"{kind}_N{n}"
            print(f"[N={n}] training {kind} → {run_dir}", flush=True)
            res = train_one(
                kind,
                subset,
                val,
                run_dir,
                max_minutes=max_minutes,
                preset=preset,
                seed=args.seed,
                validate_every=validate_every,
                max_steps=args.max_steps,
                schedule=args.schedule,
                progress=not args.quiet,
                hidden=hidden,
            )
            metrics, per_spec = evaluate(res.emulator, test)
            runs.append(
                run_summary(res, kind, n, metrics, position_errors(test.label_space, test.labels, per_spec), run_dir)
            )
            print(
                f"[N={n}] {kind}: MAE {metrics['mae']:.3g}, MSE {metrics['mse']:.3g}, p99 {metrics['p99']:.3g} "
                f"({res.metrics.get('steps')} steps)",
                flush=True,
            )
    comparison = compare(runs)
    result = {
        "benchmark": "accuracy",
        "quick": quick,
        "machine": machine_info(),
        "settings": {
            "grid": grid_src,
            "test_grid": test_src,
            "n_grid_rows": len(full),
            "n_validation": n_val,
            "n_test": len(test),
            "n_pixels": int(full.n_pixels),
            "labels": list(full.label_space.names),
            "sizes_requested": sizes,
            "sizes": used,
            "sizes_skipped": skipped,
            "models": models,
            "preset": preset,
            "payne_hidden": list(hidden),
            "max_minutes": max_minutes,
            "schedule": args.schedule,
            "validate_every": validate_every,
            "seed": args.seed,
            "workdir": str(workdir),
            "grid_metadata": full.metadata,
        },
        "runs": runs,
        "comparison": comparison,
        "claim": claim(comparison),
        "wall_time_s": time.perf_counter() - t_start,
    }
    result["plot"] = plot(result, out.with_suffix(".png"))
    write_json_atomic(out, result)
    for c in comparison:
        r = c["mae_payne_over_tp"]
        print(f"N={c['n_train']}: Payne/TP MAE ratio {r:.3g}" if r is not None else f"N={c['n_train']}: ratio n/a")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
