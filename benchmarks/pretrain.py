"""Two-stage training: pre-train TransformerPayne on a large simple-fidelity grid, fine-tune on n realistic spectra.

Question (issue #7, after Różański et al. 2024: fine-tuning needs up to 10× fewer spectra): at which n does
a model pre-trained on the cheap simple-fidelity grid and fine-tuned on n realistic spectra reach the
accuracy of a model trained from scratch on 10·n realistic spectra?

1. pre-train TransformerPayne on ``--simple-grid`` (budget ``--pretrain-minutes``), or reuse ``--pretrained``;
2. for each n in ``--sizes``: fine-tune it on the first n rows of the realistic ``--grid`` (budget
   ``--max-minutes``, learning rate ``--finetune-lr``), and train from scratch on n and on 10·n rows (same
   budget each; nested subsets; 10·n capped at the rows available);
3. evaluate all on one fixed held-out realistic ``--test-grid``; fine-tuned(n) "matches" scratch(10·n) when
   its test MAE is at most (1 + ``--tolerance``) × the scratch MAE. Reported: every metric, the ratios, and
   the smallest n that matches.

Validation (best-model selection) uses the last ``--n-validation`` rows of the realistic grid, never trained
on. Training resumes from checkpoints in ``--workdir``. The pre-training and fine-tuning grids must have the
same labels (in the same order); their wavelength grids may differ (TransformerPayne answers any wavelength).

    python benchmarks/pretrain.py --quick       # analytic toy "simple" and "realistic" grids, a few minutes
    python benchmarks/pretrain.py --simple-grid benchmarks/work/grid_simple.h5     # hours; background

Writes ``benchmarks/results/pretrain.json`` and ``pretrain.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from accuracy import (  # noqa: E402  (sibling benchmark: shared grid/training/evaluation helpers)
    DEFAULT_GRID,
    DEFAULT_TEST_GRID,
    RESULTS,
    WORK,
    default_workdir,
    evaluate,
    grid_from_model,
    parse_sizes,
    quick_lines,
    quick_model,
    quick_space,
    train_one,
)

DEFAULT_SIMPLE_GRID = WORK / "grid_simple.h5"
FULL_SIZES = (100, 200, 500, 1000)


def quick_grids(
    workdir: Path, n_simple: int, n_real: int, n_test: int, seed: int = 42, wavelength_range=(6600.0, 6620.0)
):
    """Analytic stand-ins: "realistic" = 40 lines; "simple" = 30 of them with perturbed strengths, so the
    simple model is related to but measurably different from the realistic one."""
    from stellarinf.io.grid import read_grid
    from stellarinf.wavelength import log_uniform_grid

    workdir.mkdir(parents=True, exist_ok=True)
    space = quick_space()
    wl = log_uniform_grid(*wavelength_range, 28_000.0)
    lines = quick_lines(space, wavelength_range, 40, seed=1)
    rng = np.random.default_rng(2)
    keep = np.sort(rng.choice(len(lines), 30, replace=False))
    simple_lines = [(c, s + float(rng.normal(0, 0.25)), e) for i, (c, s, e) in enumerate(lines) if i in set(keep)]
    real = quick_model(lines, space, wavelength_range)
    simple = quick_model(simple_lines, space, wavelength_range)
    paths = {}
    for name, model, n, s in (
        ("simple", simple, n_simple, seed + 7),
        ("realistic", real, n_real, seed),
        ("test", real, n_test, seed + 1000),
    ):
        path = workdir / f"quick_{name}_{n}.h5"
        if not path.exists():
            grid_from_model(model, wl, n, s, metadata={"fidelity": f"analytic-{name}"}).save(path)
        paths[name] = path
    return read_grid(paths["simple"]), read_grid(paths["realistic"]), read_grid(paths["test"])


def plan_sizes(sizes: list[int], available: int, factor: int) -> tuple[list[int], list[int]]:
    """(fine-tune sizes that fit, scratch sizes needed: every n and min(factor·n, available))."""
    ft = [n for n in sizes if n <= available]
    scratch = sorted({*ft, *(min(factor * n, available) for n in ft)})
    return ft, scratch


def summarise(
    ft_runs: dict, scratch_runs: dict, factor: int, tolerance: float, available: int
) -> tuple[list[dict], int | None]:
    rows = []
    for n, ft in sorted(ft_runs.items()):
        big = min(factor * n, available)
        ref = scratch_runs.get(big)
        same = scratch_runs.get(n)
        row = {
            "n": n,
            "scratch_reference_n": big,
            "reference_is_full_factor": big == factor * n,
            "finetuned": ft,
            "scratch_same_n": same,
            "scratch_reference": ref,
        }
        if ref is not None:
            row["mae_finetuned_over_reference"] = ft["test"]["mae"] / ref["test"]["mae"]
            row["mse_finetuned_over_reference"] = ft["test"]["mse"] / ref["test"]["mse"]
            row["matches_reference"] = bool(ft["test"]["mae"] <= (1 + tolerance) * ref["test"]["mae"])
        if same is not None:
            row["mae_scratch_over_finetuned"] = same["test"]["mae"] / ft["test"]["mae"]
        rows.append(row)
    matching = [r["n"] for r in rows if r.get("matches_reference") and r["reference_is_full_factor"]]
    return rows, (min(matching) if matching else None)


def plot(result: dict, png: Path) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    if not rows:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    sc = sorted(result["scratch_runs"], key=lambda r: r["n_train"])
    axes[0].plot([r["n_train"] for r in sc], [r["test"]["mae"] for r in sc], "o-", color="C3", label="from scratch")
    axes[0].plot(
        [r["n"] for r in rows],
        [r["finetuned"]["test"]["mae"] for r in rows],
        "o-",
        color="C0",
        label="pre-trained (simple) + fine-tuned",
    )
    pre = result.get("pretrained_on_test")
    if pre:
        axes[0].axhline(pre["mae"], color="0.5", ls=":", label="pre-trained only (no fine-tuning)")
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("realistic training spectra")
    axes[0].set_ylabel("test MAE")
    axes[0].legend(fontsize=8)
    ok = [r for r in rows if "mae_finetuned_over_reference" in r]
    axes[1].plot([r["n"] for r in ok], [r["mae_finetuned_over_reference"] for r in ok], "o-", color="k")
    axes[1].axhline(1 + result["settings"]["tolerance"], color="C2", ls="--", label="match threshold")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("n (fine-tuning spectra)")
    axes[1].set_ylabel(f"MAE fine-tuned(n) / scratch({result['settings']['factor']}·n)")
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    m = result["machine"]
    fig.suptitle(
        f"two-stage training — n_match = {result['n_match']} — {m['cpu']} ({m['cores']} cores)"
        + (" [quick]" if result["quick"] else ""),
        fontsize=10,
    )
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return str(png)


def _load(path: Path | None, default: Path, what: str, hint: str):
    from stellarinf.io.grid import read_grid

    p = path or default
    if not p.exists():
        raise SystemExit(f"error: {what} {p} does not exist; {hint}, or run with --quick")
    return read_grid(p), str(p)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="analytic toy grids, n = 16,32, tiny TransformerPayne")
    ap.add_argument(
        "--simple-grid",
        type=Path,
        default=None,
        help=f"pre-training grid (default {DEFAULT_SIMPLE_GRID.relative_to(HERE.parent)})",
    )
    ap.add_argument(
        "--grid", type=Path, default=None, help=f"realistic grid (default {DEFAULT_GRID.relative_to(HERE.parent)})"
    )
    ap.add_argument(
        "--test-grid",
        type=Path,
        default=None,
        help=f"realistic held-out grid (default {DEFAULT_TEST_GRID.relative_to(HERE.parent)})",
    )
    ap.add_argument(
        "--pretrained", default=None, help="use this pre-trained TransformerPayne (model dir) instead of pre-training"
    )
    ap.add_argument(
        "--sizes", default=None, help="fine-tuning sizes n, comma-separated (default 100,200,500,1000; quick 16,32)"
    )
    ap.add_argument("--factor", type=int, default=10, help="the from-scratch reference uses factor × n spectra")
    ap.add_argument(
        "--tolerance", type=float, default=0.1, help="fine-tuned matches when MAE ≤ (1+tolerance) × reference MAE"
    )
    ap.add_argument("--pretrain-minutes", type=float, default=None, help="pre-training budget (default 120; quick 0.5)")
    ap.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="budget of every fine-tuning and scratch run (default 20; quick 0.3)",
    )
    ap.add_argument("--max-steps", type=int, default=10**9, help="step cap per run (the budgets normally stop first)")
    ap.add_argument("--finetune-lr", type=float, default=3e-4, help="peak learning rate when fine-tuning")
    ap.add_argument(
        "--model",
        default="transformer-payne",
        choices=("transformer-payne", "payne"),
        help="emulator to pre-train and fine-tune (the Payne MLP needs one wavelength grid for both stages)",
    )
    ap.add_argument("--preset", default=None, help="TransformerPayne preset (default small; quick tiny)")
    ap.add_argument(
        "--n-validation",
        type=int,
        default=None,
        help="validation rows from the end of the realistic grid (default 256; quick 32)",
    )
    ap.add_argument(
        "--validate-every", type=int, default=None, help="steps between validations (default 200; quick 25)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="checkpoints (default benchmarks/work/pretrain[_quick])")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("-o", "--output", default=str(RESULTS / "pretrain.json"), help="JSON path (PNG beside it)")
    args = ap.parse_args(argv)

    import stellarinf

    stellarinf.enable_float64()  # atmospheres, likelihoods, Fisher matrices
    from stellarinf.emulators.registry import load_emulator
    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.machine import machine_info

    quick = args.quick
    out = Path(args.output)
    workdir = Path(args.workdir) if args.workdir else default_workdir(out, "pretrain_quick" if quick else "pretrain")
    try:
        sizes = parse_sizes(args.sizes or ("16,32" if quick else ",".join(map(str, FULL_SIZES))))
    except ValueError as exc:
        ap.error(f"--sizes: {exc}")
    if args.factor < 2:
        ap.error("--factor must be ≥ 2")
    preset = args.preset or ("tiny" if quick else "small")
    n_val = args.n_validation or (32 if quick else 256)
    ve = args.validate_every or (25 if quick else 200)
    pre_minutes = args.pretrain_minutes if args.pretrain_minutes is not None else (0.5 if quick else 120.0)
    minutes = args.max_minutes if args.max_minutes is not None else (0.3 if quick else 20.0)
    progress = not args.quiet
    t_start = time.perf_counter()

    if quick and args.grid is None:
        simple, real, test = quick_grids(workdir, 512, args.factor * max(sizes) + n_val, 64)
        sources = {
            "simple": "quick analytic-simple",
            "realistic": "quick analytic-realistic",
            "test": "quick analytic-realistic (other seed)",
        }
    else:
        hint = "make it with `python data/make_defaults.py` (steps grid, test-grid, simple-grid) or `stellarinf grid`"
        real, rs = _load(args.grid, DEFAULT_GRID, "--grid", hint)
        test, ts = _load(args.test_grid, DEFAULT_TEST_GRID, "--test-grid", hint)
        if args.pretrained:
            simple, ss = None, None
        else:
            simple, ss = _load(args.simple_grid, DEFAULT_SIMPLE_GRID, "--simple-grid", hint)
        sources = {"simple": ss, "realistic": rs, "test": ts}
    if simple is not None and simple.label_space.names != real.label_space.names:
        print(
            f"error: the simple grid has labels {simple.label_space.names} but the realistic grid has {real.label_space.names}; "
            "fine-tuning needs the same labels in the same order",
            file=sys.stderr,
        )
        return 3
    if len(real) <= n_val + 1:
        print(f"error: the realistic grid has {len(real)} rows, not more than --n-validation {n_val}", file=sys.stderr)
        return 3
    val = real.subset(np.arange(len(real) - n_val, len(real)))
    available = len(real) - n_val
    ft_sizes, scratch_sizes = plan_sizes(sizes, available, args.factor)
    if not ft_sizes:
        print(
            f"error: the realistic grid has only {available} training rows, fewer than every size in {sizes}",
            file=sys.stderr,
        )
        return 3

    # 1. pre-training
    if args.pretrained:
        pre_dir = Path(args.pretrained)
        pre = load_emulator(pre_dir)
        if pre.kind != args.model:
            print(
                f"error: --pretrained is a {pre.kind} but --model is {args.model}; use the same kind", file=sys.stderr
            )
            return 3
        pre_info = {"source": str(pre_dir), "trained_here": False}
    else:
        pre_dir = workdir / "pretrained_simple"
        print(
            f"pre-training {args.model} on {len(simple)} simple spectra ({pre_minutes:g} min) → {pre_dir}", flush=True
        )
        sp = (
            simple.split((0.95, 0.05, 0.0), seed=args.seed)
            if len(simple) >= 40
            else {"train": simple, "validation": simple}
        )
        res = train_one(
            args.model,
            sp["train"],
            sp["validation"],
            pre_dir,
            max_minutes=pre_minutes,
            preset=preset,
            seed=args.seed,
            validate_every=ve,
            max_steps=args.max_steps,
            progress=progress,
        )
        pre = res.emulator
        pre_info = {
            "source": str(pre_dir),
            "trained_here": True,
            "n_train": len(sp["train"]),
            "steps": res.metrics.get("steps"),
            "elapsed_s": res.metrics.get("elapsed_s"),
            "best_val_mae_simple": res.metrics.get("best_val_mae"),
        }
    pre_test, _ = evaluate(pre, test)

    # 2. fine-tuning and from-scratch runs
    ft_runs, scratch_runs = {}, {}
    for n in ft_sizes:
        d = workdir / f"finetuned_n{n}"
        print(f"[n={n}] fine-tuning → {d}", flush=True)
        r = train_one(
            args.model,
            real.subset(np.arange(n)),
            val,
            d,
            max_minutes=minutes,
            preset=preset,
            seed=args.seed,
            validate_every=ve,
            max_steps=args.max_steps,
            progress=progress,
            init=str(pre_dir),
            learning_rate=args.finetune_lr,
        )
        m, _ = evaluate(r.emulator, test)
        ft_runs[n] = {
            "n_train": n,
            "steps": r.metrics.get("steps"),
            "elapsed_s": r.metrics.get("elapsed_s"),
            "test": m,
            "model_dir": str(d),
        }
        print(f"[n={n}] fine-tuned MAE {m['mae']:.3g}", flush=True)
    for n in scratch_sizes:
        d = workdir / f"scratch_n{n}"
        print(f"[n={n}] from scratch → {d}", flush=True)
        r = train_one(
            args.model,
            real.subset(np.arange(n)),
            val,
            d,
            max_minutes=minutes,
            preset=preset,
            seed=args.seed,
            validate_every=ve,
            max_steps=args.max_steps,
            progress=progress,
        )
        m, _ = evaluate(r.emulator, test)
        scratch_runs[n] = {
            "n_train": n,
            "steps": r.metrics.get("steps"),
            "elapsed_s": r.metrics.get("elapsed_s"),
            "test": m,
            "model_dir": str(d),
        }
        print(f"[n={n}] scratch MAE {m['mae']:.3g}", flush=True)

    rows, n_match = summarise(ft_runs, scratch_runs, args.factor, args.tolerance, available)
    result = {
        "benchmark": "pretrain",
        "quick": quick,
        "machine": machine_info(),
        "settings": {
            "grids": sources,
            "n_simple": None if simple is None else len(simple),
            "n_realistic_rows": len(real),
            "n_validation": n_val,
            "n_test": len(test),
            "sizes_requested": sizes,
            "sizes": ft_sizes,
            "scratch_sizes": scratch_sizes,
            "factor": args.factor,
            "tolerance": args.tolerance,
            "pretrain_minutes": pre_minutes,
            "max_minutes": minutes,
            "finetune_lr": args.finetune_lr,
            "model": args.model,
            "preset": preset,
            "seed": args.seed,
            "workdir": str(workdir),
        },
        "pretrain": pre_info,
        "pretrained_on_test": pre_test,
        "scratch_runs": list(scratch_runs.values()),
        "rows": rows,
        "n_match": n_match,
        "wall_time_s": time.perf_counter() - t_start,
    }
    result["plot"] = plot(result, out.with_suffix(".png"))
    write_json_atomic(out, result)
    for r in rows:
        ratio = r.get("mae_finetuned_over_reference")
        print(
            f"n={r['n']}: fine-tuned/scratch({r['scratch_reference_n']}) MAE ratio "
            + (f"{ratio:.3g}" if ratio is not None else "n/a")
            + (" ✓" if r.get("matches_reference") else "")
        )
    print(f"smallest n matching scratch on {args.factor}×n: {n_match}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
