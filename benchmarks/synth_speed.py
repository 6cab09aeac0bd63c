#!/usr/bin/env python
"""Synthesis speed: spectra per second for the default window (galah-red, R = 28,000), both fidelities.

Measures the steady-state throughput of the grid pipeline (synthesis on the R = 300,000 fine grid,
LSF broadening, resampling to the instrument grid), batched with ``jax.vmap`` after compilation, at
random points of the default label box. Writes ``benchmarks/results/synth_speed.json``.

Usage::

    python benchmarks/synth_speed.py [--batch-size 16] [--batches 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def measure(fidelity: str, batch_size: int, batches: int, window: str) -> dict:
    import jax
    import jax.numpy as jnp

    from stellarinf.commands.grid import _batched_observer
    from stellarinf.design import sample_labels
    from stellarinf.labels import default_label_space
    from stellarinf.synth.observed import padded_fine_grid, resolve_window
    from stellarinf.synth.synthesize import make_synthesizer

    space = default_label_space()
    win = resolve_window(window)
    fine = padded_fine_grid(win.wmin, win.wmax, resolution=win.resolution)
    t0 = time.time()
    fn = make_synthesizer(fine, space.names, fidelity)
    f = _batched_observer(fn, fine.tobytes(), win.grid().tobytes(), win.resolution)
    labels = sample_labels(space, batch_size * (batches + 1), "uniform", 0)
    jax.block_until_ready(f(jnp.asarray(labels[:batch_size])))
    setup = time.time() - t0
    t0, c0 = time.time(), time.process_time()
    for b in range(1, batches + 1):
        jax.block_until_ready(f(jnp.asarray(labels[b * batch_size : (b + 1) * batch_size])))
    dt, cpu = time.time() - t0, time.process_time() - c0
    n = batch_size * batches
    return {
        "fidelity": fidelity,
        "window": win.name,
        "resolution": win.resolution,
        "n_fine": int(fine.size),
        "n_pixels": int(win.grid().size),
        "batch_size": batch_size,
        "spectra": n,
        "seconds": dt,
        "spectra_per_second": n / dt,
        "cpu_seconds_per_spectrum": cpu / n,
        "setup_and_compile_seconds": setup,
        "hours_for_10000": 10000 / (n / dt) / 3600,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--window", default="galah-red")
    ap.add_argument("--out", default=str(HERE / "results" / "synth_speed.json"))
    args = ap.parse_args(argv)

    import os

    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.machine import machine_info

    results = [
        measure(fid, args.batch_size, args.batches if fid == "realistic" else 20, args.window)
        for fid in ("realistic", "simple")
    ]
    load = os.getloadavg()
    doc = {
        "benchmark": "synth_speed",
        "targets": {"realistic": 2.0, "simple": 50.0},
        "results": results,
        "load_average_1_5_15min": load,
        "machine": machine_info(),
        "note": "the machine is shared; the load average shows how many other processes competed for its cores",
    }
    write_json_atomic(args.out, doc)
    for r in results:
        print(
            f"{r['fidelity']}: {r['spectra_per_second']:.2f} spectra/s wall, {r['cpu_seconds_per_spectrum']:.3f} CPU s/spectrum "
            f"(batch {r['batch_size']}, setup {r['setup_and_compile_seconds']:.0f} s)"
        )
    print(f"load average {load}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
