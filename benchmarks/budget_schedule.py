#!/usr/bin/env python
"""A learning-rate schedule that ends where the time budget ends (issue #19 item 1), side by side in one run.

``stellarinf train --max-minutes M`` decays its cosine over ``--max-steps`` (20,000 by default) whatever the budget
allows: a TransformerPayne that takes ~0.6 s per step on this CPU stops after several hundred steps with its learning
rate still near the peak. ``--schedule budget`` times the steps and sizes the schedule so that the rate has decayed
when the time is up. This benchmark trains each network kind three times on the
same galah-red grid, seed and budget, once per schedule, the runs of a kind at the same time (so they share the machine
alike), and measures the held-out MAE on a test grid of another seed. Schedules: the cosine over ``--max-steps``
(20,000) cut short by the budget (the default); the cosine sized to the budget (decay over all of it); the peak rate held,
then the cosine over the budget's last 20 % (``--decay-fraction 0.2``: warm-up, stable, decay).

Usage (grids and finished runs are reused)::

    python benchmarks/budget_schedule.py --minutes 8 --n-train 2048 --n-test 256
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

KINDS = {  # the shipped recipes' settings, trained from scratch (data/models/RECIPE.md)
    "transformer-payne": ["--model", "transformer-payne", "--preset", "small"],
    "payne": ["--model", "payne", "--activation", "silu"],
}


def stellarinf(*args):
    subprocess.run([sys.executable, "-m", "stellarinf.cli", *args], check=True)


SCHEDULES = {  # name → (folder suffix, stellarinf train options)
    "cosine over 20,000 steps, cut by the budget": ("steps", ["--schedule", "steps"]),
    "cosine over the budget": ("budget_all", ["--schedule", "budget", "--decay-fraction", "1"]),
    "peak, then cosine over the budget's last 20 %": (
        "budget_last20",
        ["--schedule", "budget", "--decay-fraction", "0.2"],
    ),
}


def train_together(grid: Path, out: Path, kind: str, minutes: float, seed: int) -> dict[str, Path]:
    """Every schedule of ``kind`` at once (one process each), same grid, seed and budget."""
    runs, procs = {}, []
    for name, (suffix, options) in SCHEDULES.items():
        path = out / f"{kind}_{suffix}"
        runs[name] = path
        if (path / "model.json").exists():
            continue
        argv = [sys.executable, "-m", "stellarinf.cli", "train", "--grid", str(grid), *KINDS[kind], *options]
        argv += ["--max-minutes", str(minutes), "--patience", "0", "--seed", str(seed)]
        argv += ["--quiet", "-o", str(path)]
        procs.append(subprocess.Popen(argv))
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"training failed: {p.args}")
    return runs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=8.0, help="time budget of every training run")
    ap.add_argument("--n-train", type=int, default=2048)
    ap.add_argument("--n-test", type=int, default=256)
    ap.add_argument("--kinds", default="transformer-payne,payne")
    ap.add_argument("--work", default=str(HERE / "work" / "budget_schedule"))
    ap.add_argument("-o", "--output", default=str(HERE / "results" / "budget_schedule.json"))
    args = ap.parse_args(argv)

    import stellarinf as si

    si.enable_float64()
    from stellarinf.emulators.metrics import evaluate_emulator
    from stellarinf.emulators.registry import load_emulator
    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.io.grid import read_grid
    from stellarinf.machine import machine_info

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    train_path, test_path = work / "red.h5", work / "red_test.h5"
    t0 = time.perf_counter()
    for path, n, seed in ((train_path, args.n_train, 7), (test_path, args.n_test, 8)):
        stellarinf("grid", "-o", str(path), "--n", str(n), "--seed", str(seed), "--no-progress")
    grid_s = time.perf_counter() - t0
    test = read_grid(test_path)

    rows = {}
    for kind in args.kinds.split(","):
        for schedule, path in train_together(train_path, work, kind, args.minutes, seed=3).items():
            emu = load_emulator(path)
            acc, _ = evaluate_emulator(emu, test, batch_size=16)
            m = emu.metadata["metrics"]
            rows[f"{kind}, {schedule}"] = {
                "test_mae": acc.result()["mae"],
                "test_mse": acc.result()["mse"],
                "test_p99": acc.result()["p99"],
                "steps": m.get("steps"),
                "schedule_steps": m.get("schedule_steps"),
                "decay_start": m.get("decay_start"),
                "stop_reason": m.get("stop_reason"),
                "train_s": m.get("elapsed_s"),
                "best_step": m.get("best_step"),
            }
            print(kind, schedule, rows[f"{kind}, {schedule}"], flush=True)
    result = {
        "benchmark": "budget_schedule",
        "settings": {"minutes": args.minutes, "n_train": args.n_train, "n_test": args.n_test, "max_steps": 20000},
        "wall_time_s": round(time.perf_counter() - t0, 1),
        "grid_s": round(grid_s, 1),
        "machine": machine_info(),
        "train_grid": {"path": str(train_path), "n": args.n_train, "seed": 7},
        "test_grid": {"path": str(test_path), "n": args.n_test, "seed": 8},
        "runs": rows,
    }
    write_json_atomic(args.output, result)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
