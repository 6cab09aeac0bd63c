#!/usr/bin/env python
"""TransformerPayne asked for float32 wavelengths: how far its flux is from its own float64 answer, with the
encoding's offset taken from a float32 reference wavelength (``transformer_payne.log10_offset``, now) and with the
plain float32 ``log10 λ − x_ref`` it replaced, side by side in one run.

A float32 ``log10 λ`` ≈ 3.8 is ~4e-7 off, which at the encoding's shortest period (1e-6 in log10 λ) is radians of
phase; float64 wavelengths (what fits and the CLI pass) were never affected, Python users without
``stellarinf.enable_float64()`` or with float32 arrays were. Results: ``benchmarks/results/float32_wavelengths.json``.

Usage::

    python benchmarks/float32_wavelengths.py --n-stars 16
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def naive_offset(wavelength, log10_ref):
    """The encoding before: log10 in the wavelength's own precision, then the reference subtracted."""
    import jax.numpy as jnp

    return jnp.log10(wavelength) - log10_ref


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emulator", default="default")
    ap.add_argument("--n-stars", type=int, default=16)
    ap.add_argument("-o", "--output", default=str(HERE / "results" / "float32_wavelengths.json"))
    args = ap.parse_args(argv)

    import stellarinf

    stellarinf.enable_float64()
    import jax

    from stellarinf.emulators import transformer_payne
    from stellarinf.emulators.registry import load_emulator
    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.machine import machine_info

    emu = load_emulator(args.emulator)
    wl64 = np.asarray(emu.training_wavelength, dtype=np.float64)
    points = {"pixels": wl64, "half-pixels": 0.5 * (wl64[1:] + wl64[:-1])}
    rng = np.random.default_rng(0)
    lo, hi = np.asarray(emu.label_space.lower), np.asarray(emu.label_space.upper)
    stars = lo + (hi - lo) * (0.1 + 0.8 * rng.random((args.n_stars, lo.size)))
    t0 = time.perf_counter()
    rows = {}
    now = transformer_payne.log10_offset
    for name, offset in (("float32 reference (now)", now), ("plain float32 log10 (before)", naive_offset)):
        transformer_payne.log10_offset = offset  # wavelength_token reads the module's function
        jax.clear_caches()  # the emulator's compiled flux holds the encoding it was traced with
        for where, wl in points.items():
            d = np.concatenate(
                [np.abs(np.asarray(emu.flux(x, wl)) - np.asarray(emu.flux(x, wl.astype(np.float32)))) for x in stars]
            )
            rows[f"{name}, {where}"] = {
                "mae": float(d.mean()),
                "p99": float(np.percentile(d, 99)),
                "max": float(d.max()),
            }
            print(name, where, rows[f"{name}, {where}"], flush=True)
    transformer_payne.log10_offset = now
    result = {
        "benchmark": "float32_wavelengths",
        "emulator": args.emulator,
        "n_stars": args.n_stars,
        "what": "|flux(λ as float64) − flux(λ as float32)| per pixel, labels uniform in the middle 80 % of the box",
        "wall_time_s": round(time.perf_counter() - t0, 1),
        "machine": machine_info(),
        "rows": rows,
    }
    write_json_atomic(args.output, result)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
