#!/usr/bin/env python
"""Does the ``no_tio`` rule (:func:`stellarinf.physics_options.tio_matters`) flag the stars whose spectra TiO changes?

Two grids of the same rows, one synthesised without TiO and one with it, give each row's rms change; the rule's
answer from the row's labels (Teff, log g and its Ti, O, C) is compared with "rms above 0.1 %", as is the rule at
solar composition (Teff and log g only). Make the grids first (same seed and design; ~9 and ~20 min on one core)::

    stellarinf grid -o broad_red_on.h5 --n 128 --seed 101 --window galah-red --elements galah --alpha \\
        --label-box feh=-2.5:0.5 --molecules on --oversample 2
    stellarinf grid -o broad_red_on+tio.h5 ... --molecules on+tio ...      # the same, with TiO
    python benchmarks/tio_rule.py broad_red_on.h5 broad_red_on+tio.h5

Writes ``benchmarks/results/tio_rule.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
THRESHOLD = 1e-3  # 0.1 % rms: about the shipped emulators' own error


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("without", type=Path, help="grid made with --molecules on")
    ap.add_argument("with_tio", type=Path, help="the same rows made with --molecules on+tio")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "tio_rule.json")
    args = ap.parse_args(argv)

    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.io.grid import read_grid
    from stellarinf.machine import machine_info
    from stellarinf.physics_options import tio_composition_dex, tio_matters

    a, b = read_grid(args.without), read_grid(args.with_tio)
    if a.labels.shape != b.labels.shape or not np.allclose(a.labels, b.labels):
        raise SystemExit("the two grids must hold the same rows (same --n, --seed, --design and label box)")
    names = list(a.label_space.names)
    rms = np.sqrt(np.mean((np.asarray(a.flux) - np.asarray(b.flux)) ** 2, axis=1))
    rows = [dict(zip(names, map(float, r))) for r in np.asarray(a.labels)]
    measured = rms > THRESHOLD
    rules = {
        "composition": np.array([tio_matters(r["teff"], r["logg"], r) for r in rows]),
        "solar_composition": np.array([tio_matters(r["teff"], r["logg"]) for r in rows]),
    }
    out = {
        "what": "rows whose spectrum TiO changes by more than 0.1 % rms against the rows the no_tio rule flags",
        "grids": [str(args.without), str(args.with_tio)],
        "rows": len(rows),
        "above_threshold": int(measured.sum()),
        "machine": machine_info(),
        "rules": {
            k: {"flagged": int(v.sum()), "missed": int((measured & ~v).sum()), "false": int((~measured & v).sum())}
            for k, v in rules.items()
        },
        "per_row": [
            {
                **{n: round(r[n], 3) for n in ("teff", "logg", "feh", "alpha_fe", "c_fe", "o_fe", "ti_fe") if n in r},
                "composition_dex": round(tio_composition_dex(r), 3),
                "rms": float(rms[i]),
                "flagged": bool(rules["composition"][i]),
            }
            for i, r in enumerate(rows)
            if rms[i] > 1e-5 or rules["composition"][i]
        ],
    }
    for k, v in out["rules"].items():
        print(
            f"{k}: flags {v['flagged']}, missed {v['missed']}, false {v['false']} (above 0.1 %: {measured.sum()} of {len(rows)})"
        )
    write_json_atomic(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
