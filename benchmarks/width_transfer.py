#!/usr/bin/env python
"""Does the best learning rate carry over between TransformerPayne widths? Standard vs ``--lr-scaling mup`` (issue #19
item 1: "learning-rate and width transfer").

Under one learning rate for every parameter, a wider network's best rate is smaller, so a rate tuned on a cheap narrow
network does not serve the wide one a GPU would train. ``stellarinf train --lr-scaling mup --base-width 64`` gives every
matrix whose input grows with the width ``64 / dim`` of the rate (muP for Adam). This benchmark trains widths 32, 64 and
128 (heads of 32) at four peak rates with each scaling, the same grid, seed and number of steps (two runs at a time),
and reports the held-out MAE of each and the best rate per width. Width 64 is the base: both scalings are the same run.

Usage (grids from ``stellarinf grid``; finished runs are reused)::

    python benchmarks/width_transfer.py --train-grid red.h5 --test-grid red_test.h5 --steps 300
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_argv(args, width: int, lr: float, scaling: str, out: Path) -> list[str]:
    argv = [sys.executable, "-m", "stellarinf.cli", "train", "--grid", args.train_grid, "--model", "transformer-payne"]
    argv += ["--dim", str(width), "--lr", f"{lr:g}", "--lr-scaling", scaling, "--base-width", "64"]
    argv += ["--max-steps", str(args.steps), "--warmup-steps", str(args.warmup), "--validate-every", "100"]
    argv += ["--patience", "0", "--seed", "3", "--quiet", "-o", str(out)]
    return argv


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-grid", required=True)
    ap.add_argument("--test-grid", required=True)
    ap.add_argument("--widths", default="32,64,128")
    ap.add_argument("--lrs", default="3e-4,1e-3,3e-3,1e-2")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--work", default=str(HERE / "work" / "width_transfer"))
    ap.add_argument("-o", "--output", default=str(HERE / "results" / "width_transfer.json"))
    args = ap.parse_args(argv)

    import stellarinf as si

    si.enable_float64()
    from stellarinf.emulators.metrics import evaluate_emulator
    from stellarinf.emulators.registry import load_emulator
    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.io.grid import read_grid
    from stellarinf.machine import machine_info

    t0 = time.perf_counter()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    widths = [int(w) for w in args.widths.split(",")]
    lrs = [float(v) for v in args.lrs.split(",")]
    runs = {}  # (scaling, width, lr) -> folder; the base width's runs are the same for both scalings
    for scaling, width, lr in itertools.product(("standard", "mup"), widths, lrs):
        same = "standard" if width == 64 else scaling
        runs[(scaling, width, lr)] = work / f"{same}_w{width}_lr{lr:g}_s{args.steps}"
    todo = sorted({p for p in runs.values() if not (p / "model.json").exists()})
    argv_of = {p: run_argv(args, *next((w, lr, s) for (s, w, lr), q in runs.items() if q == p), p) for p in todo}
    running: list[subprocess.Popen] = []
    for path in todo:
        while len(running) >= args.parallel:
            running[0].wait()
            running = [r for r in running if r.poll() is None]
        running.append(subprocess.Popen(argv_of[path]))
        print("started", path.name, flush=True)
    for r in running:
        r.wait()

    test = read_grid(args.test_grid)
    scores = {}
    for path in sorted(set(runs.values())):
        emu = load_emulator(path)
        acc, _ = evaluate_emulator(emu, test, batch_size=16)
        m = emu.metadata["metrics"]
        scores[path] = {"test_mae": acc.result()["mae"], "steps": m["steps"], "train_s": m["elapsed_s"]}
        print(path.name, scores[path], flush=True)
    table = [
        {"lr_scaling": s, "width": w, "lr": lr, **scores[p]}
        for (s, w, lr), p in sorted(runs.items(), key=lambda kv: kv[0])
    ]
    best = {}
    for s, w in itertools.product(("standard", "mup"), widths):
        rows = [r for r in table if r["lr_scaling"] == s and r["width"] == w]
        top = min(rows, key=lambda r: r["test_mae"])
        best[f"{s}, width {w}"] = {"lr": top["lr"], "test_mae": top["test_mae"]}
    result = {
        "benchmark": "width_transfer",
        "settings": {"steps": args.steps, "warmup": args.warmup, "base_width": 64, "head_size": 32, "seed": 3},
        "train_grid": args.train_grid,
        "test_grid": args.test_grid,
        "machine": machine_info(),
        "runs": table,
        "best": best,
        "wall_time_s": round(time.perf_counter() - t0, 1),
    }
    write_json_atomic(args.output, result)
    print(best)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
