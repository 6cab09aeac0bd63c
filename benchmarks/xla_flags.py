#!/usr/bin/env python
"""Does an XLA flag that cuts compile time cost run time? Each workload runs in a fresh process (cold: it compiles
everything it runs), with and without the flags, alternating, and its wall time and result are recorded.

The workloads: the README's fit (the demo star, ``default-payne``, ``laplace-is``: compile-bound) and a small
realistic grid (the synthesizer: run-bound once compiled). The result digits must not move.

    python benchmarks/xla_flags.py                      # ~8 min on 2 cores
    python benchmarks/xla_flags.py --flags "--xla_llvm_disable_expensive_passes=true" --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stellarinf.io.atomic import write_json_atomic
from stellarinf.machine import machine_info

HERE = Path(__file__).resolve().parent

FIT = """
import json, stellarinf
r = stellarinf.fit_spectrum("data/demo/demo_star.fits", emulator="default-payne", sampler="laplace-is", progress=False)
s = r.summary
print(json.dumps({n: [round(float(s[i]["p50"]), 4), round(float(s[i]["sd"]), 4)]
                  for i, n in enumerate(s["name"]) if n in ("teff", "logg", "feh", "vmic")}))
"""


def grid_code(path: str, n: int) -> str:
    return f"""
import json, subprocess, h5py, numpy as np
subprocess.run(["stellarinf", "grid", "--no-progress", "-o", {path!r}, "--n", "{n}", "--seed", "7", "--window",
                "galah-red"], check=True)
with h5py.File({path!r}) as f:
    flux = np.asarray(f["flux"])
print(json.dumps({{"mean_flux": round(float(flux.mean()), 8), "rows": int(flux.shape[0])}}))
"""


def run(code: str, flags: str) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flags}".strip()
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=HERE.parent)
    wall = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(f"workload failed ({flags or 'no flags'}):\n{out.stderr[-3000:]}")
    return {"wall_s": round(wall, 1), "result": json.loads(out.stdout.strip().splitlines()[-1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flags", default="--xla_llvm_disable_expensive_passes=true")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--grid-rows", type=int, default=64)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "xla_flags.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workloads = {"readme_fit": lambda i: FIT, "grid": lambda i: grid_code(f"{tmp}/g{i}.h5", args.grid_rows)}
        runs = {name: {"default": [], "flags": []} for name in workloads}
        k = 0
        for _ in range(args.repeats):
            for name, code in workloads.items():
                for which, flags in (("default", ""), ("flags", args.flags)):
                    k += 1
                    r = run(code(k), flags)
                    runs[name][which].append(r)
                    print(f"{name:10s} {which:8s} {r['wall_s']:7.1f} s  {r['result']}", flush=True)
    summary = {
        name: {which: min(r["wall_s"] for r in rs) for which, rs in v.items()}
        | {"same_result": all(r["result"] == v["default"][0]["result"] for rs in v.values() for r in rs)}
        for name, v in runs.items()
    }
    doc = {
        "benchmark": "xla_flags",
        "flags": args.flags,
        "what": "wall seconds of a fresh process per workload (best of the repeats), with and without the flags",
        "grid_rows": args.grid_rows,
        "summary": summary,
        "runs": runs,
        "machine": machine_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, doc, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
