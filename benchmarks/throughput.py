"""Throughput: forward pixels/s and Jacobian time of TransformerPayne, the Payne MLP and the synthesizer.

For each model on this machine's default JAX device (CPU here; run the same script on a GPU machine for
GPU numbers, the output name says the backend):

- forward: a jitted, vmapped ``model.flux(labels, wavelength)`` over a batch of spectra on the instrument
  grid of the window (galah-red: 2,7xx pixels); compile time, then the median and best of ``--repeats``
  timed calls; pixels/s = batch × n_pix / time;
- Jacobian: ``jax.jacfwd`` of one spectrum's flux with respect to its labels (n_pix × n_labels), jitted;
- FLOPs per pixel counted analytically from the architecture's matmuls (TransformerPayne: per-pixel query
  projection, attention scores, attention-weighted values, output projection, feed-forward and head, plus
  the per-spectrum label tokens and keys/values amortised over the pixels; Payne MLP: its three layers
  per spectrum divided by the pixels) and the fraction of this machine's measured float32 matmul peak
  (best of a few large ``jnp.dot``) that the forward pass achieves.

TransformerPayne presets (tiny, small, paper) are randomly initialised: speed does not depend on the weights.
The synthesizer (realistic and simple fidelity, where available) runs on its fine unbroadened grid
(R = 300,000); its FLOPs are not counted (not matmul-bound).

    python benchmarks/throughput.py --quick      # about a minute on a 2-core CPU
    python benchmarks/throughput.py              # all presets, the full window, the synthesizer

Writes ``benchmarks/results/throughput.json`` (``throughput_<backend>.json`` off CPU) and a PNG beside it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


# --------------------------------------------------------------------------------------- FLOP counts
def transformer_payne_flops(config, n_pix: int) -> dict:
    """Matmul FLOPs (multiply-add = 2) of one TransformerPayne forward pass, per pixel.

    Per pixel and layer (D = dim, T = n_tokens, F = ff_mult·D): query 2D², scores 2TD, weighted values
    2TD, output projection 2D², feed-forward 4DF; head 2D² + 4D. Per spectrum (amortised over ``n_pix``):
    label MLP 2·n_labels·D + 2·D·T·D, keys and values 4·L·T·D².
    """
    D, T, L = config.dim, config.n_tokens, config.n_layers
    F = config.ff_mult * D
    per_layer = 4 * D * D + 4 * T * D + 4 * D * F
    per_pixel = L * per_layer + 2 * D * D + 4 * D
    per_spectrum = 2 * config.n_labels * D + 2 * D * T * D + 4 * L * T * D * D
    return {
        "per_pixel_direct": int(per_pixel),
        "per_spectrum": int(per_spectrum),
        "per_pixel": float(per_pixel + per_spectrum / n_pix),
    }


def payne_flops(config, n_pix: int) -> dict:
    """Matmul FLOPs of one Payne MLP forward pass (all pixels at once), and per pixel."""
    sizes = (config.n_labels, *config.hidden, config.n_pixels)
    per_spectrum = sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return {"per_spectrum": int(per_spectrum), "per_pixel": float(per_spectrum / n_pix)}


# --------------------------------------------------------------------------------------- timing
def time_call(fn, *args, repeats: int = 5) -> dict:
    """Compile (first call) then time ``repeats`` calls; seconds as compile, median and best."""
    import jax

    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return {"compile_s": compile_s, "median_s": statistics.median(times), "best_s": min(times), "repeats": len(times)}


def matmul_peak(n: int = 2048, repeats: int = 5, dtype: str = "float32") -> dict:
    """Measured matmul throughput: best of ``repeats`` (n × n) @ (n × n) products with operands in ``dtype``
    (accumulated and returned in float32)."""
    import functools

    import jax
    import jax.numpy as jnp

    k1, k2 = jax.random.split(jax.random.key(0))
    a = jax.random.normal(k1, (n, n), dtype=jnp.float32).astype(dtype)
    b = jax.random.normal(k2, (n, n), dtype=jnp.float32).astype(dtype)
    product = jax.jit(functools.partial(jnp.dot, preferred_element_type=jnp.float32))
    t = time_call(product, a, b, repeats=repeats)
    flops = 2.0 * n**3
    return {
        "n": n,
        "dtype": dtype,
        "flops": flops,
        "best_s": t["best_s"],
        "median_s": t["median_s"],
        "gflops": flops / t["best_s"] / 1e9,
    }


# --------------------------------------------------------------------------------------- models
def _label_batch(space, batch: int, seed: int) -> np.ndarray:
    from stellarinf.design import sample_labels

    return sample_labels(space, batch, "uniform", seed)


def bench_spectrum_model(
    name: str, model, wavelength, *, batch: int, repeats: int, jacobian: bool = True, seed: int = 0
) -> dict:
    """Forward pixels/s over a batch and the time of one label Jacobian for a ``SpectrumModel``."""
    import jax
    import jax.numpy as jnp

    wl = jnp.asarray(wavelength)
    labels = jnp.asarray(_label_batch(model.label_space, batch, seed))
    forward = jax.jit(jax.vmap(model.flux, in_axes=(0, None)))
    fwd = time_call(forward, labels, wl, repeats=repeats)
    n_pix = int(wl.shape[0])
    row = {
        "name": name,
        "n_labels": len(model.label_space),
        "n_pixels": n_pix,
        "batch": batch,
        "forward_compile_s": fwd["compile_s"],
        "forward_median_s": fwd["median_s"],
        "forward_best_s": fwd["best_s"],
        "pixels_per_s": batch * n_pix / fwd["median_s"],
        "spectra_per_s": batch / fwd["median_s"],
    }
    if jacobian:
        jac = jax.jit(jax.jacfwd(lambda lab: model.flux(lab, wl)))
        j = time_call(jac, labels[0], repeats=repeats)
        row.update(
            jacobian_compile_s=j["compile_s"],
            jacobian_median_s=j["median_s"],
            jacobian_best_s=j["best_s"],
            jacobian_over_forward=j["median_s"] / (fwd["median_s"] / batch),
        )
    return row


def transformer_payne_model(preset: str, space, wavelength, seed: int = 0):
    """A randomly initialised TransformerPayne of ``preset`` wrapped as an Emulator."""
    import jax

    from stellarinf.emulators.emulator import Emulator
    from stellarinf.emulators.transformer_payne import TransformerPayne, count_parameters, preset_config

    centre = 0.5 * (wavelength[0] + wavelength[-1])
    cfg = preset_config(preset, len(space), log10_wavelength_ref=float(np.log10(centre)))
    net = TransformerPayne(cfg, jax.random.key(seed))
    emu = Emulator(net, space, (float(wavelength[0]), float(wavelength[-1])), resolution=None)
    return emu, cfg, count_parameters(net)


def payne_model(space, wavelength, hidden=(300, 300), seed: int = 0):
    """A randomly initialised Payne MLP on the instrument grid, wrapped as an Emulator."""
    import jax

    from stellarinf.emulators.emulator import Emulator
    from stellarinf.emulators.payne import PayneConfig, PayneMLP
    from stellarinf.emulators.transformer_payne import count_parameters

    cfg = PayneConfig(len(space), len(wavelength), tuple(hidden))
    net = PayneMLP(cfg, jax.random.key(seed))
    emu = Emulator(net, space, (float(wavelength[0]), float(wavelength[-1])), training_wavelength=wavelength)
    return emu, cfg, count_parameters(net)


def synthesizer_model(space, wmin: float, wmax: float, fidelity: str):
    """The synthesizer as a SpectrumModel on its fine grid: (flux function holder, fine wavelength)."""
    from stellarinf.synth.synthesize import fine_grid, make_synthesizer

    wl = fine_grid(wmin, wmax)
    fn = make_synthesizer(wl, space.names, fidelity)

    class _Synth:  # minimal SpectrumModel view of the pure synthesizer function
        label_space = space

        @staticmethod
        def flux(labels, wavelength):
            return fn(labels)[0]

    return _Synth(), wl


def add_flop_columns(row: dict, flops: dict, peak_gflops: float) -> dict:
    achieved = row["pixels_per_s"] * flops["per_pixel"] / 1e9
    row.update(
        flops=flops,
        flops_per_pixel=flops["per_pixel"],
        achieved_gflops=achieved,
        fraction_of_peak=achieved / peak_gflops if peak_gflops > 0 else None,
    )
    return row


# --------------------------------------------------------------------------------------- plot
def plot(result: dict, png: Path) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["models"] if "pixels_per_s" in r]
    if not rows:
        return None
    names = [r["name"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    y = np.arange(len(rows))
    axes[0].barh(y, [r["pixels_per_s"] for r in rows], color="C0")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("forward pixels / s")
    jac = [r.get("jacobian_median_s", np.nan) for r in rows]
    axes[1].barh(y, [j * 1e3 if j is not None else np.nan for j in jac], color="C1")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("Jacobian wrt labels, one spectrum (ms)")
    frac = [r.get("fraction_of_peak") or np.nan for r in rows]
    axes[2].barh(y, [100 * f for f in frac], color="C2")
    axes[2].set_xlabel(f"% of matmul peak ({result['matmul_peak']['gflops']:.0f} GFLOP/s)")
    for ax in axes:
        ax.set_yticks(y)
        ax.set_yticklabels(names if ax is axes[0] else [])
        ax.grid(axis="x", alpha=0.3)
    m = result["machine"]
    fig.suptitle(
        f"stellarinf throughput — {m['cpu']} ({m['cores']} cores), backend {m['jax_backend']}"
        + (" [quick]" if result["quick"] else ""),
        fontsize=10,
    )
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return str(png)


# --------------------------------------------------------------------------------------- main
def _default_output() -> Path:
    import jax

    backend = jax.default_backend()
    return RESULTS / ("throughput.json" if backend == "cpu" else f"throughput_{backend}.json")


def _safely(fn, name: str, failures: list) -> dict | None:
    try:
        return fn()
    except Exception as exc:  # one model failing must not lose the others' numbers
        failures.append({"name": name, "error": f"{type(exc).__name__}: {exc}"})
        print(f"  {name}: skipped ({type(exc).__name__}: {exc})", file=sys.stderr)
        if not isinstance(exc, (ImportError, ModuleNotFoundError)):
            traceback.print_exc()
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny/small presets, small batch, a 10 Å synthesizer window")
    ap.add_argument("--window", default="galah-red", help="instrument window whose pixel grid the emulators answer")
    ap.add_argument(
        "--presets",
        default=None,
        help="TransformerPayne presets, comma-separated (default tiny,small,paper; quick tiny,small)",
    )
    ap.add_argument("--batch", type=int, default=None, help="spectra per forward call (default 16; quick 4)")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per measurement (default 5; quick 3)")
    ap.add_argument(
        "--synth",
        default=None,
        help="synthesizer fidelities to time, comma-separated, or 'none' (default realistic,simple)",
    )
    ap.add_argument(
        "--synth-window",
        default=None,
        help="WMIN,WMAX Å of the synthesizer's fine grid (default the window; quick 6600,6610)",
    )
    ap.add_argument(
        "--emulator", action="append", default=[], help="also time a trained emulator (name or dir); repeatable"
    )
    ap.add_argument(
        "--matmul-n", type=int, default=None, help="matrix size for the matmul peak (default 2048; quick 1024)"
    )
    ap.add_argument(
        "-o", "--output", default=None, help="JSON path (default benchmarks/results/throughput[_<backend>].json)"
    )
    args = ap.parse_args(argv)

    import stellarinf

    stellarinf.enable_float64()  # atmospheres, likelihoods, Fisher matrices
    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.labels import default_label_space
    from stellarinf.machine import machine_info
    from stellarinf.wavelength import get_window

    quick = args.quick
    presets = [p for p in (args.presets or ("tiny,small" if quick else "tiny,small,paper")).split(",") if p]
    batch = args.batch or (4 if quick else 16)
    repeats = args.repeats or (3 if quick else 5)
    fidelities = [f for f in (args.synth or "realistic,simple").split(",") if f and f != "none"]
    window = get_window(args.window)
    wl = window.grid()
    if args.synth_window:
        try:
            swmin, swmax = (float(v) for v in args.synth_window.split(","))
        except ValueError:
            ap.error("--synth-window takes WMIN,WMAX in Å, e.g. 6600,6610")
    else:
        swmin, swmax = (6600.0, 6610.0) if quick else (window.wmin, window.wmax)
    space = default_label_space()
    out = Path(args.output) if args.output else _default_output()
    t_start = time.perf_counter()

    print(f"matmul peak (float32, n={args.matmul_n or (1024 if quick else 2048)}) …", flush=True)
    peak = matmul_peak(args.matmul_n or (1024 if quick else 2048), repeats=repeats)
    print(f"  {peak['gflops']:.1f} GFLOP/s")
    rows, failures = [], []

    def tp(preset):
        emu, cfg, n_par = transformer_payne_model(preset, space, wl)
        row = bench_spectrum_model(f"transformer-payne-{preset}", emu, wl, batch=batch, repeats=repeats)
        row.update(kind="transformer-payne", preset=preset, n_parameters=n_par, architecture=cfg.to_json())
        return add_flop_columns(row, transformer_payne_flops(cfg, len(wl)), peak["gflops"])

    def payne():
        emu, cfg, n_par = payne_model(space, wl)
        row = bench_spectrum_model("payne-mlp", emu, wl, batch=batch, repeats=repeats)
        row.update(kind="payne", n_parameters=n_par, architecture=cfg.to_json())
        return add_flop_columns(row, payne_flops(cfg, len(wl)), peak["gflops"])

    def trained(name):
        from stellarinf.emulators.registry import load_emulator

        emu = load_emulator(name)
        w = wl[(wl >= emu.wavelength_range[0]) & (wl <= emu.wavelength_range[1])]
        row = bench_spectrum_model(f"trained:{name}", emu, w, batch=batch, repeats=repeats)
        row.update(kind=emu.kind, source=str(name))
        net = emu.network
        flops = (
            transformer_payne_flops(net.config, len(w))
            if emu.kind == "transformer-payne"
            else payne_flops(net.config, len(w))
        )
        return add_flop_columns(row, flops, peak["gflops"])

    def synth(fidelity):
        model, fine = synthesizer_model(space, swmin, swmax, fidelity)
        row = bench_spectrum_model(
            f"synthesizer-{fidelity}",
            model,
            fine,
            batch=1 if fidelity == "realistic" else min(batch, 4),
            repeats=max(1, repeats - 1),
        )
        row.update(
            kind="synthesizer",
            fidelity=fidelity,
            fine_grid=[float(fine[0]), float(fine[-1])],
            flops_per_pixel=None,
            fraction_of_peak=None,
            instrument_pixels_per_s=row["spectra_per_s"] * len(wl) * (swmax - swmin) / (window.wmax - window.wmin),
        )
        return row

    jobs = [(f"transformer-payne-{p}", lambda p=p: tp(p)) for p in presets]
    jobs.append(("payne-mlp", payne))
    jobs += [(f"trained:{e}", lambda e=e: trained(e)) for e in args.emulator]
    jobs += [(f"synthesizer-{f}", lambda f=f: synth(f)) for f in fidelities]
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    bar = tqdm(jobs, desc="throughput", unit="model") if tqdm else jobs
    for name, job in bar:
        if tqdm:
            bar.set_postfix_str(name)
        row = _safely(job, name, failures)
        if row is not None:
            rows.append(row)
            jac = row.get("jacobian_median_s")
            msg = f"  {name}: {row['pixels_per_s']:.3g} pix/s"
            if jac is not None:
                msg += f", Jacobian {jac * 1e3:.3g} ms"
            if row.get("fraction_of_peak") is not None:
                msg += f", {row['flops_per_pixel']:.3g} FLOP/pix, {100 * row['fraction_of_peak']:.2g}% of peak"
            print(msg, flush=True)

    result = {
        "benchmark": "throughput",
        "quick": quick,
        "machine": machine_info(),
        "settings": {
            "window": window.name,
            "n_pixels": int(len(wl)),
            "batch": batch,
            "repeats": repeats,
            "presets": presets,
            "synth_fidelities": fidelities,
            "synth_window": [swmin, swmax],
        },
        "matmul_peak": peak,
        "models": rows,
        "failures": failures,
        "wall_time_s": time.perf_counter() - t_start,
    }
    result["plot"] = plot(result, out.with_suffix(".png"))
    write_json_atomic(out, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
