#!/usr/bin/env python
"""Where a TransformerPayne training step's time goes on this machine, and what made it cheaper (issue #19 item 1).

In one run, on the same random batch (speed does not depend on the values):

- the step as it was (each spectrum's forward pass ``jax.vmap``-ed, the layers in a ``lax.scan`` of one layer per
  iteration) against the step now (one batched pass: every pixel of every spectrum through one matrix product per
  weight, the layers unrolled), both float32, and the step now with ``--precision bfloat16`` (matrix products'
  operands in bfloat16, accumulated in float32; ``transformer_payne.matmul``);
- for each, the time per step, the achieved matmul FLOP rate against this CPU's measured float32 / bfloat16 matmul
  peaks, and where the time goes: XLA's own per-operation trace (``jax.profiler``, Perfetto JSON) summed into matrix
  products, elementwise fusions, copies/transposes, broadcasts and the scan's per-layer slicing;
- the shipped width (``small``, dim 64) and four times it (dim 256, 8 heads, 16 tokens: where a larger model goes);
- batch shapes (spectra × pixels per spectrum) at a fixed number of pixels per step;
- the Payne MLP's step in float32 and bfloat16;
- the log-density gradient a fit of the demo star takes through the shipped TransformerPayne (float64) with the layer
  loop rolled and unrolled, and how far apart the two networks' fluxes are;
- optionally (``--train-grid``/``--test-grid``): the same TransformerPayne trained for ``--steps`` steps in float32 and
  in bfloat16 at the same time (one process each), held-out MAE of the float32 networks they leave.

Usage::

    python benchmarks/train_step.py                                                     # ~5 min
    python benchmarks/train_step.py --train-grid red.h5 --test-grid red_test.h5 --steps 2000
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import glob
import gzip
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

WIDE = {"dim": 256, "n_heads": 8, "n_tokens": 16}  # four times the shipped width


# --------------------------------------------------------------------------------------- what a step costs
@contextlib.contextmanager
def layers_per_iteration(n: int):
    """Trace the TransformerPayne decoder with ``n`` layers per loop iteration (1 = as before this benchmark)."""
    from stellarinf.emulators import transformer_payne as tp

    before, tp.SCAN_UNROLL = tp.SCAN_UNROLL, n
    try:
        yield
    finally:
        tp.SCAN_UNROLL = before


def random_batch(n_labels: int, spectra: int, pixels: int, seed: int = 0):
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = jnp.asarray(rng.uniform(-0.5, 0.5, (spectra, n_labels)), jnp.float32)
    wl = jnp.asarray(rng.uniform(6478.0, 6737.0, (spectra, pixels)))
    flux = jnp.asarray(rng.uniform(0.3, 1.0, (spectra, pixels)), jnp.float32)
    return labels, wl, flux, None


def compiled_step(loss, optimizer):
    """``step(params, state) -> (params, state, loss)``: the loss's gradient and one optimiser update, compiled."""
    import equinox as eqx
    import jax

    @jax.jit
    def step(p, state):
        value, grads = jax.value_and_grad(loss)(p)
        updates, state = optimizer.update(grads, state, p)
        return eqx.apply_updates(p, updates), state, value

    return step


def tp_step(overrides: dict, spectra: int, pixels: int, precision: str, style: str):
    """A compiled TransformerPayne training step (loss, gradient, AdamW update as ``stellarinf train`` does) and its
    arguments. ``style``: "before" (vmapped per spectrum, one layer per scan iteration) or "now"."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from stellarinf.emulators import training
    from stellarinf.emulators import transformer_payne as tp
    from stellarinf.emulators.kinds import get_kind

    kind = get_kind("transformer-payne")
    cfg = training.TrainConfig(precision=precision).resolved()
    tp_cfg = tp.preset_config("small", 11, log10_wavelength_ref=3.82, **overrides)
    net = tp.TransformerPayne(tp_cfg, jax.random.key(0))
    params, static = eqx.partition(net, eqx.is_inexact_array)
    optimizer = training.make_optimizer(cfg, params, kind)
    batch = random_batch(11, spectra, pixels)

    if style == "before":

        def loss(p):  # the training loss as it was: each spectrum's own forward pass
            n = eqx.combine(p, static)
            pf = jax.vmap(lambda ls, w: n(ls, w)[:, 0])(batch[0], batch[1])
            return jnp.mean(jnp.square(pf - batch[2]))
    else:

        def loss(p):
            return training._loss_fn(kind, "mse", 0.1, precision)(p, static, batch)

    return compiled_step(loss, optimizer), (params, optimizer.init(params)), tp_cfg


def payne_step(precision: str, spectra: int = 128, n_pix: int = 2754):
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np

    from stellarinf.emulators import payne, training
    from stellarinf.emulators.kinds import get_kind

    kind = get_kind("payne")
    cfg = training.TrainConfig(model="payne", activation="silu", precision=precision).resolved()
    net = payne.PayneMLP(payne.PayneConfig(11, n_pix, (300, 300), activation="silu"), jax.random.key(0))
    params, static = eqx.partition(net, eqx.is_inexact_array)
    optimizer = training.make_optimizer(cfg, params, kind)
    rng = np.random.default_rng(0)
    batch = (
        jnp.asarray(rng.uniform(-0.5, 0.5, (spectra, 11)), jnp.float32),
        jnp.asarray(rng.uniform(0.3, 1.0, (spectra, n_pix)), jnp.float32),
    )
    loss = training._loss_fn(kind, "mse", 0.0, precision)
    step = compiled_step(lambda p: loss(p, static, batch), optimizer)
    return step, (params, optimizer.init(params)), net.config


def time_steps(step, args, repeats: int) -> dict:
    """Compile, then time ``repeats`` steps each fed the previous one's parameters (as training does)."""
    import jax

    t0 = time.perf_counter()
    p, s, _ = step(*args)
    jax.block_until_ready(p)
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        p, s, v = step(p, s)
        jax.block_until_ready(p)
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"compile_s": round(compile_s, 2), "step_s": times[len(times) // 2], "best_s": times[0]}


def _category(name: str) -> str | None:
    """The kind of work an XLA CPU trace event is (None: not an operation)."""
    if name.startswith("$") or name.startswith("ThunkExecutor") or "ThreadPool" in name:
        return None
    name = re.sub(r"\.\d+$", "", name)
    if name.startswith("ynn") or "dot" in name or "custom-call" in name or "onednn" in name or "xnn" in name:
        return "matrix products"
    if "dynamic-update-slice" in name or "dynamic-slice" in name:
        return "scan: per-layer slicing"
    if name.startswith("copy") or "transpose" in name:
        return "copies, transposes"
    if "broadcast" in name:
        return "broadcasts"
    if name.startswith("while") or name.startswith("conditional"):
        return "loop control"
    return "elementwise fusions"


def profile(step, args, repeats: int = 3) -> dict:
    """Share of the step's operation time per kind of work, from XLA's own trace of ``repeats`` steps."""
    import jax

    p, s, _ = step(*args)
    jax.block_until_ready(p)
    with tempfile.TemporaryDirectory() as folder:
        with jax.profiler.trace(folder, create_perfetto_trace=True):
            for _ in range(repeats):
                p, s, _ = step(p, s)
                jax.block_until_ready(p)
        files = glob.glob(f"{folder}/**/*.trace.json.gz", recursive=True)
        if not files:
            return {}
        with gzip.open(files[0]) as fh:
            events = json.load(fh)["traceEvents"]
    total = collections.Counter()
    for e in events:
        cat = _category(e.get("name", "")) if e.get("ph") == "X" else None
        if cat:
            total[cat] += e.get("dur", 0)
    whole = sum(total.values()) or 1
    return {k: round(v / whole, 3) for k, v in total.most_common()}


def fit_gradient(layers: int, repeats: int = 10) -> tuple[float, object]:
    """Seconds per value-and-gradient of the log density of a fit of the demo star (``data/demo/demo_star.fits``,
    the pipeline's defaults) through the shipped TransformerPayne in float64, with ``layers`` decoder layers per loop
    iteration; and the flux it gives at the fit's starting point."""
    import jax
    import jax.numpy as jnp

    from stellarinf.emulators.registry import load_emulator
    from stellarinf.io.spectrum import read_spectrum
    from stellarinf.pipeline import build_problem

    emu = load_emulator("default").astype(jnp.float64)
    _, obs, problem = build_problem(emu, read_spectrum(HERE.parent / "data" / "demo" / "demo_star.fits"))
    z0 = jnp.asarray(problem.initial_z())
    with layers_per_iteration(layers):
        f = jax.jit(jax.value_and_grad(problem.log_density))
        jax.block_until_ready(f(z0))
        wl = jnp.asarray(emu.training_wavelength)
        flux = jax.jit(lambda x: emu.flux(x, wl))(jnp.asarray(emu.label_space.midpoint))
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(z0 + 1e-4 * i))
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2], flux


# --------------------------------------------------------------------------------------- accuracy per step
def run_training(precision: str, train_grid: str, test_grid: str, out: str, steps: int, seed: int) -> None:
    """One training run (a subprocess of this script, so runs of both precisions share the machine alike)."""
    import stellarinf as si

    si.enable_float64()
    from stellarinf.emulators.training import TrainConfig, train
    from stellarinf.io.grid import read_grid

    cfg = TrainConfig(precision=precision, max_steps=steps, patience=None, seed=seed, progress=False)
    test = read_grid(test_grid)
    train(train_grid, out, cfg, test=test)


def trained_side_by_side(args, work: Path) -> dict:
    from stellarinf.emulators.metrics import evaluate_emulator
    from stellarinf.emulators.registry import load_emulator
    from stellarinf.io.grid import read_grid

    procs, outs = [], {}
    for precision in ("float32", "bfloat16"):
        out = work / f"tp_small_{precision}_{args.steps}"
        outs[precision] = out
        if not (out / "model.json").exists():
            argv = [sys.executable, __file__, "--run-training", precision, str(out), "--train-grid", args.train_grid]
            argv += ["--test-grid", args.test_grid, "--steps", str(args.steps)]
            procs.append(subprocess.Popen(argv))
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"training failed: {p.args}")
    test = read_grid(args.test_grid)
    rows = {}
    for precision, out in outs.items():
        emu = load_emulator(out)
        acc, _ = evaluate_emulator(emu, test, batch_size=16)
        m = emu.metadata["metrics"]
        rows[precision] = {
            "test_mae": acc.result()["mae"],
            "test_mse": acc.result()["mse"],
            "test_p99": acc.result()["p99"],
            "steps": m["steps"],
            "train_s": m["elapsed_s"],
            "s_per_step": round(m["elapsed_s"] / max(m["steps"], 1), 4),
            "best_val_mae": m["best_val_mae"],
        }
        print(f"trained {precision}: {rows[precision]}", flush=True)
    return rows


# --------------------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15, help="timed steps per variant")
    ap.add_argument("--train-grid", help="galah-red grid for the equal-steps training (optional)")
    ap.add_argument("--test-grid", help="held-out grid of another seed")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--work", default=str(HERE / "work" / "train_step"))
    ap.add_argument("--run-training", nargs=2, metavar=("PRECISION", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("-o", "--output", default=str(HERE / "results" / "train_step.json"))
    args = ap.parse_args(argv)
    if args.run_training:
        precision, out = args.run_training
        run_training(precision, args.train_grid, args.test_grid, out, args.steps, seed=3)
        return

    import jax
    import numpy as np
    from throughput import matmul_peak, transformer_payne_flops

    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.machine import machine_info

    t_start = time.perf_counter()
    peaks = {dt: matmul_peak(2048, dtype=dt)["gflops"] for dt in ("float32", "bfloat16")}
    print(f"matmul peak: float32 {peaks['float32']:.0f}, bfloat16 {peaks['bfloat16']:.0f} GFLOP/s", flush=True)

    rows = []
    for width, overrides in (("small (dim 64)", {}), ("dim 256", WIDE)):
        for style, precision in (("before", "float32"), ("now", "float32"), ("now", "bfloat16")):
            with layers_per_iteration(1 if style == "before" else 8):
                step, step_args, cfg = tp_step(overrides, 32, 256, precision, style)
                t = time_steps(step, step_args, args.repeats)
                shares = profile(step, step_args)
            flops = 3 * transformer_payne_flops(cfg, 256)["per_pixel"] * 32 * 256  # forward + backward ≈ 3 forwards
            row = {
                "network": f"TransformerPayne {width}",
                "step": style,
                "precision": precision,
                "spectra_x_pixels": "32 x 256",
                **t,
                "gflops": round(flops / t["step_s"] / 1e9, 1),
                "fraction_of_peak": round(flops / t["step_s"] / 1e9 / peaks[precision], 3),
                "time_shares": shares,
            }
            rows.append(row)
            print(row, flush=True)

    shapes = []
    for spectra, pixels in ((8, 1024), (16, 512), (32, 256), (64, 128), (128, 64), (64, 256)):
        step, step_args, cfg = tp_step({}, spectra, pixels, "float32", "now")
        t = time_steps(step, step_args, args.repeats)
        row = {
            "spectra": spectra,
            "pixels": pixels,
            **t,
            "pixels_per_s": round(spectra * pixels / t["step_s"]),
        }
        shapes.append(row)
        print("shape", row, flush=True)

    payne = []
    for precision in ("float32", "bfloat16"):
        step, step_args, _ = payne_step(precision)
        t = time_steps(step, step_args, args.repeats * 10)
        payne.append({"precision": precision, **t, "time_shares": profile(step, step_args)})
        print("payne", payne[-1], flush=True)

    jax.config.update("jax_enable_x64", True)
    rolled_s, rolled = fit_gradient(1)
    unrolled_s, unrolled = fit_gradient(8)
    fit = {
        "star": "data/demo/demo_star.fits, shipped default, pipeline defaults",
        "dtype": "float64",
        "one_layer_per_iteration_s": round(rolled_s, 4),
        "unrolled_s": round(unrolled_s, 4),
        "max_abs_flux_difference": float(np.max(np.abs(np.asarray(rolled) - np.asarray(unrolled)))),
    }
    print("fit gradient", fit, flush=True)

    trained = None
    if args.train_grid and args.test_grid:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        trained = trained_side_by_side(args, work)

    result = {
        "benchmark": "train_step",
        "machine": machine_info(),
        "matmul_peak_gflops": {k: round(v, 1) for k, v in peaks.items()},
        "tp_steps": rows,
        "batch_shapes": shapes,
        "payne_steps": payne,
        "fit_gradient": fit,
        "trained": trained,
        "train_settings": None
        if trained is None
        else {"steps": args.steps, "grid": args.train_grid, "test": args.test_grid, "preset": "small", "seed": 3},
        "wall_time_s": round(time.perf_counter() - t_start, 1),
    }
    write_json_atomic(args.output, result)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
