#!/usr/bin/env python
"""Emulators against a grid made with TiO (``--molecules on+tio``): how well each reproduces the stars TiO changes
and the rest, so a model trained (or fine-tuned) on TiO physics can be compared with one that never saw TiO.

Rows are split by the ``no_tio`` rule (:func:`stellarinf.physics_options.tio_matters`, from each row's Teff, log g
and composition): MAE at the instrument's pixels per group, and the 4000–4375 K dwarfs (log g ≥ 4) alone::

    python benchmarks/tio_model.py GRID.h5 broad-payne-red path/to/tio-model [--out results/tio_model_red.json]

Writes ``benchmarks/results/tio_model_red.json`` by default (``--out``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def groups(labels: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Row indices per group: where TiO matters by the rule, where it does not, and the coolest dwarfs."""
    from stellarinf.physics_options import tio_matters

    rows = [dict(zip(names, map(float, r))) for r in labels]
    matters = np.array([tio_matters(r["teff"], r["logg"], r) for r in rows])
    cool_dwarf = (labels[:, names.index("teff")] < 4375.0) & (labels[:, names.index("logg")] >= 4.0)
    return {
        "all": np.arange(len(rows)),
        "tio_matters": np.flatnonzero(matters),
        "tio_does_not_matter": np.flatnonzero(~matters),
        "dwarfs_below_4375K": np.flatnonzero(cool_dwarf),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("grid", type=Path, help="a grid made with --molecules on+tio")
    ap.add_argument("models", nargs="+", help="emulators: registry names or model directories")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "tio_model_red.json")
    args = ap.parse_args(argv)

    from stellarinf.emulators.metrics import evaluate_emulator
    from stellarinf.emulators.registry import load_emulator
    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.io.grid import GridFile
    from stellarinf.machine import machine_info
    from stellarinf.physics_options import model_molecules

    with GridFile(args.grid) as gf:
        names, labels = list(gf.label_space.names), np.asarray(gf.read_rows(np.arange(len(gf)))[0])
        grid_molecules = gf.metadata.get("molecules", "off")
    if grid_molecules != "on+tio":
        raise SystemExit(f"{args.grid} was made with molecules={grid_molecules!r}; give a grid made with on+tio")
    parts = groups(labels, names)
    out = {
        "benchmark": "tio_model",
        "grid": str(args.grid),
        "rows": {k: int(v.size) for k, v in parts.items()},
        "machine": machine_info(),
        "models": {},
    }
    for name in args.models:
        emu = load_emulator(name)
        res = {"training_molecules": model_molecules(emu)}
        for group, rows in parts.items():
            if rows.size:
                acc, _ = evaluate_emulator(emu, args.grid, index=rows)
                m = acc.result()
                res[group] = {"mae": m["mae"], "p99": m["p99"], "n": int(rows.size)}
        out["models"][name] = res
        print(name, res["training_molecules"], {g: round(v["mae"], 6) for g, v in res.items() if isinstance(v, dict)})
    write_json_atomic(args.out, out)
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
