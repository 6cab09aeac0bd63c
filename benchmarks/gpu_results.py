"""Gather what `gpu_session.sh` brought back into ``benchmarks/results/``.

    python benchmarks/gpu_results.py RUN_DIR [RUN_DIR ...]

Each RUN_DIR holds one device call's ``log.txt`` and its ``results.tgz`` unpacked beside it. Copies the
benchmark scripts' own JSON/PNG (``accuracy_broad_red_gpu``, ``inference_speed_gpu``, ``throughput_gpu``)
with the GPU's name added to their ``machine``, and writes ``results/gpu_session.json``: the GPU, the
stages' exit codes and wall times, and the synthesizer's spectra/s read off the ``stellarinf grid``
progress bar (first batch: compiles; later ones: steady). Where the device's grid came back
(``synth.h5``) and ``--cpu-grid`` names the same rows made on this CPU (``stellarinf grid`` with the
same ``--seed``/options and ``--n`` ≤ the device's), the two are compared row by row. The ``broad`` stage's
trainings (``train_<arm>.log``, ``models/broad-tp-<arm>``, ``gpu_utilisation.txt``) go to
``results/broad_tp_gpu.json``; a call that ran only that stage leaves ``gpu_session.json`` as it was.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
TQDM = re.compile(r"(\d+)/(\d+) \[(\d+):(\d+)<")
STOPPED = re.compile(r"stopped: (\w+) after (\d+) steps \(([\d.]+) s\); best validation MAE ([\d.e-]+)")
HELD_OUT = re.compile(r"held-out test \((\d+) spectra\): MAE=([\d.e-]+) MSE=([\d.e-]+) p99=([\d.e-]+)")
BETWEEN = re.compile(r"at the instrument's pixels MAE=([\d.e-]+), between them ([\d.e-]+)")


def gpu_line(log: str) -> dict:
    """The nvidia-smi CSV row and the JAX line the session printed first."""
    out = {}
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("name, memory.total") and i + 1 < len(lines):
            keys = [k.strip() for k in line.split(",")]
            out["nvidia_smi"] = dict(zip(keys, (v.strip() for v in lines[i + 1].split(","))))
        if line.startswith("jax "):
            out["software"] = line.strip()
    return out


def synth_progress(log: str) -> dict | None:
    """Batches of the grid run from its progress bar: (rows done, seconds since start)."""
    block = log.split("== synth start", 1)
    if len(block) < 2:
        return None
    points = sorted({(int(m[1]), int(m[3]) * 60 + int(m[4])) for m in TQDM.finditer(block[1].split("== synth rc")[0])})
    points = [p for p in points if p[0] > 0]
    if not points:
        return None
    batches = []
    prev_n, prev_t = 0, 0
    for n, t in points:
        batches.append({"rows": n - prev_n, "seconds": t - prev_t})
        prev_n, prev_t = n, t
    steady = batches[1:]
    rows = sum(b["rows"] for b in steady)
    secs = sum(b["seconds"] for b in steady)
    return {
        "batches": batches,
        "first_batch_spectra_per_second_incl_compile": batches[0]["rows"] / max(batches[0]["seconds"], 1),
        "later_batches_spectra_per_second": rows / secs if secs else None,
        "resolution_s": 1,
        "note": "read off the tqdm bar (whole seconds); a later batch of other line tiers compiles its own program too",
    }


def broad_training(run: Path) -> dict | None:
    """The ``broad`` stage: per arm, what ``stellarinf train`` printed, and the GPU's utilisation samples."""
    arms = {}
    for log in sorted(run.glob("train_*.log")):
        text = log.read_text(errors="replace")
        arm = log.stem.removeprefix("train_")
        row: dict = {"model": f"broad-tp-{arm}"}
        if m := STOPPED.search(text):
            row.update(stopped=m[1], steps=int(m[2]), train_s=float(m[3]), best_val_mae=float(m[4]))
            row["steps_per_s"] = row["steps"] / row["train_s"]
        if m := HELD_OUT.search(text):
            row.update(n_test=int(m[1]), test_mae=float(m[2]), test_mse=float(m[3]), test_p99=float(m[4]))
        if m := BETWEEN.search(text):
            row.update(mae_at_pixels=float(m[1]), mae_between_pixels=float(m[2]))
        arms[arm] = row
    if not arms:
        return None
    util = run / "gpu_utilisation.txt"
    samples = [line.split(",") for line in util.read_text().splitlines()] if util.exists() else []
    busy = [float(u.strip(" %")) for u, _ in (s for s in samples if len(s) == 2)]
    return {
        "what": "a TransformerPayne per GALAH arm, the four trained at the same time on one GPU (gpu_session.sh broad)",
        "arms": arms,
        "gpu_utilisation_percent_every_20s": busy,
        "note": "test_* are stellarinf train's own held-out split (10 % of the 2,048-row grid); the 512-row test "
        "grids of another seed are in broad_models.json",
    }


def compare_grids(device: Path, cpu: Path) -> dict:
    from stellarinf.io.grid import read_grid

    g, c = read_grid(device), read_grid(cpu)
    n = len(c)
    if not np.array_equal(g.labels[:n], c.labels):
        raise SystemExit(f"{cpu} does not hold the device grid's first {n} rows (same --seed and options?)")
    d = g.flux[:n].astype(np.float64) - c.flux
    return {
        "rows": n,
        "rms_percent": float(np.sqrt(np.mean(d**2)) * 100),
        "max_percent": float(np.abs(d).max() * 100),
        "device_grid_metadata": {k: g.metadata.get(k) for k in ("window", "molecules", "oversample", "line_tiers")},
    }


def with_gpu(src: Path, dst: Path, gpu: dict) -> None:
    from stellarinf.io.atomic import write_json_atomic

    d = json.loads(src.read_text())
    d.setdefault("machine", {})["gpu"] = gpu.get("nvidia_smi")
    if d.get("benchmark") == "accuracy":  # the comparison as accuracy.py makes it now (SiLU Payne as baseline)
        from accuracy import claim, compare

        d["comparison"] = compare(d["runs"])
        d["claim"] = claim(d["comparison"])
    write_json_atomic(dst, d)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--cpu-grid", type=Path, default=None)
    ap.add_argument("-o", "--output", type=Path, default=RESULTS / "gpu_session.json")
    args = ap.parse_args(argv)

    import stellarinf

    stellarinf.enable_float64()
    from stellarinf.io.atomic import write_json_atomic

    out: dict = {"benchmark": "gpu_session", "script": "benchmarks/gpu_session.sh", "calls": []}
    only_broad = True
    for run in args.runs:
        log = (run / "log.txt").read_text(errors="replace")
        gpu = gpu_line(log)
        out.setdefault("gpu", gpu)
        # stages.txt lives in /tmp there, which a warm machine keeps between calls: the last call's holds them all
        stages = (run / "stages.txt").read_text().splitlines() if (run / "stages.txt").exists() else []
        out["stages_on_the_machine"] = stages
        only_broad = only_broad and all(line.startswith("broad ") for line in stages)
        broad = broad_training(run)
        if broad:
            doc = {
                "benchmark": "broad_tp_gpu",
                "machine": {"gpu": gpu.get("nvidia_smi"), "software": gpu.get("software")},
            }
            write_json_atomic(RESULTS / "broad_tp_gpu.json", {**doc, **broad})
            print(json.dumps(broad, indent=1))
        out["calls"].append(run.name)
        for name in ("accuracy_broad_red_gpu", "inference_speed_gpu", "throughput_gpu"):
            if (run / f"{name}.json").exists():
                with_gpu(run / f"{name}.json", RESULTS / f"{name}.json", gpu)
                if (run / f"{name}.png").exists():
                    shutil.copyfile(run / f"{name}.png", RESULTS / f"{name}.png")
        synth = synth_progress(log)
        if synth:
            out["synth"] = {
                "command": "stellarinf grid --window galah-red --n 192 --seed 7 --elements galah --alpha "
                "--label-box feh=-2.5:0.5 --molecules on --oversample 2 --batch-size 64",
                **synth,
            }
            if (run / "synth.h5").exists() and args.cpu_grid:
                out["synth"]["device_vs_cpu"] = compare_grids(run / "synth.h5", args.cpu_grid)
    if not only_broad:
        write_json_atomic(args.output, out)
        print(json.dumps(out, indent=1)[:3000])


if __name__ == "__main__":
    main()
