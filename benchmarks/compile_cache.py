#!/usr/bin/env python
"""What the persistent compilation cache saves a `stellarinf grid` run that starts in a new process.

A grid made in tier batches compiles one program per line-selection tier it meets (about thirty per arm), which costs
minutes before the first row is written, every time a process starts: a resumed or extended grid, a test grid after
the training grid, the next arm. Three real ``stellarinf grid`` processes of the same rows, into new files, with one
fresh ``STELLARINF_CACHE`` folder:

1. ``cold``: nothing cached (line selections computed and programs compiled);
2. ``no_compilation_cache``: line selections on disk, ``STELLARINF_COMPILATION_CACHE=off`` (how every process ran
   before the cache: it compiles again);
3. ``warm``: line selections and compiled programs on disk.

Each process's wall time (JAX import and the grid's rows included) and the cache folder's size are recorded, with
the machine, in ``benchmarks/results/compile_cache.json``.

Usage::

    python benchmarks/compile_cache.py --window galah-ir --n 96
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", default="galah-ir")
    ap.add_argument("--n", type=int, default=96, help="rows of each grid")
    ap.add_argument("--molecules", choices=("off", "on"), default="on")
    ap.add_argument("--out", default=str(HERE / "results" / "compile_cache.json"))
    args = ap.parse_args(argv)

    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.machine import machine_info

    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION", "JAX_PERSISTENT"))}
        env["STELLARINF_CACHE"] = str(cache)
        for name, extra in (
            ("cold", {}),
            ("no_compilation_cache", {"STELLARINF_COMPILATION_CACHE": "off"}),
            ("warm", {}),
        ):
            command = [sys.executable, "-m", "stellarinf.cli", "grid", "--n", str(args.n), "--window", args.window]
            command += ["--molecules", args.molecules, "-o", str(Path(tmp) / f"{name}.h5")]
            t0 = time.perf_counter()
            subprocess.run(command, env={**env, **extra}, check=True, capture_output=True)
            seconds = time.perf_counter() - t0
            jax_bytes = sum(p.stat().st_size for p in (cache / "jax").rglob("*") if p.is_file())
            runs[name] = {"seconds": seconds, "compilation_cache_mib": jax_bytes / 2**20}
            print(f"{name}: {seconds:.0f} s (compilation cache {jax_bytes / 2**20:.0f} MiB)", flush=True)
    doc = {
        "benchmark": "compile_cache",
        "window": args.window,
        "rows": args.n,
        "molecules": args.molecules,
        "runs": runs,
        "machine": machine_info(),
        "note": "each run a new `stellarinf grid` process of the same rows (default batch line selection)",
    }
    write_json_atomic(args.out, doc)


if __name__ == "__main__":
    main()
