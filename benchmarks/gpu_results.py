"""Gather what `gpu_session.sh` brought back into ``benchmarks/results/``.

    python benchmarks/gpu_results.py RUN_DIR [RUN_DIR ...]

Each RUN_DIR holds one device call's ``log.txt`` and its ``results.tgz`` unpacked beside it. Copies the
benchmark scripts' own JSON/PNG (``accuracy_broad_red_gpu``, ``inference_speed_gpu``, ``throughput_gpu``)
with the GPU's name added to their ``machine``, and writes ``results/gpu_session.json``: the GPU, the
stages' exit codes and wall times, and the synthesizer's spectra/s read off the ``stellarinf grid``
progress bar (first batch: compiles; later ones: steady). Where the device's grid came back
(``synth.h5``) and ``--cpu-grid`` names the same rows made on this CPU (``stellarinf grid`` with the
same ``--seed``/options and ``--n`` ≤ the device's), the two are compared row by row.
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
    for run in args.runs:
        log = (run / "log.txt").read_text(errors="replace")
        gpu = gpu_line(log)
        out.setdefault("gpu", gpu)
        # stages.txt lives in /tmp there, which a warm machine keeps between calls: the last call's holds them all
        stages = (run / "stages.txt").read_text().splitlines() if (run / "stages.txt").exists() else []
        out["stages_on_the_machine"] = stages
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
    write_json_atomic(args.output, out)
    print(json.dumps(out, indent=1)[:3000])


if __name__ == "__main__":
    main()
