"""Which choice of the fit moves the observed Sun's Teff / log g? One change at a time from the pipeline's defaults.

The Kurucz atlas observed as in ``sun_fit.py`` (R 28,000, the demo star's pixels, external normalisation, S/N 200,
seeds 0 and 1), fitted with MAP + Laplace. Usage (repository root)::

    python benchmarks/sun_variants.py default-payne     # writes benchmarks/results/sun_variants_default-payne.json
    python benchmarks/sun_variants.py default-payne "baseline,emulator error white" OUT.json  # these only, merged into OUT
"""

import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stellarinf

stellarinf.enable_float64()
from sun_fit import WINDOWS, observe_sun, pixels_for

from stellarinf import fit_spectrum
from stellarinf.emulators.registry import load_emulator

warnings.simplefilter("ignore")
emu = sys.argv[1] if len(sys.argv) > 1 else "default-payne"
model = load_emulator(emu)
atlas_file, R, per = WINDOWS["galah-red"]
atlas = np.loadtxt(
    str(Path(__file__).resolve().parents[2] / "shared" / "data" / atlas_file),
    delimiter=",",
    skiprows=1,
)
pixels = pixels_for("galah-red", R, per)
STRONG = [(6494.0, 6496.8), (6496.0, 6498.0), (6716.5, 6719.0), (6592.0, 6594.5), (6643.0, 6644.5)]
variants = {
    "baseline": {},
    "mask Halpha 6540-6590": {"mask": [(6540.0, 6590.0)]},
    "mask strong lines": {"mask": STRONG},
    "fix vmic=1.0": {"fixed": {"vmic": 1.0}},
    "fix vsini=1.9 vmacro=3.5": {"fixed": {"vsini": 1.9, "vmacro": 3.5}},
    "physics error off": {"physics_error": "off"},
    "continuum degree 10": {"continuum_degree": 10},
    "fix teff=5772": {"fixed": {"teff": 5772.0}},
    # the emulator's correlated error modes against a white error of the same size (issue 21's suspicion that modes
    # absorb line-strength signal); with Teff fixed, whether log g still moves
    "emulator error white": {"emulator_error": "white"},
    "emulator error white + fix teff=5772": {"emulator_error": "white", "fixed": {"teff": 5772.0}},
    "emulator error white + mask Halpha 6540-6590": {"emulator_error": "white", "mask": [(6540.0, 6590.0)]},
}
chosen = sys.argv[2].split(",") if len(sys.argv) > 2 else list(variants)
unknown = [c for c in chosen if c not in variants]
if unknown:
    raise SystemExit(f"unknown variants {unknown}; choose from {list(variants)}")
result_path = Path(sys.argv[3] if len(sys.argv) > 3 else f"benchmarks/results/sun_variants_{emu}.json")
out = json.loads(result_path.read_text())["variants"] if result_path.exists() else {}
for name in chosen:
    v = variants[name]
    rows = []
    for seed in (0, 1):
        spec = observe_sun(atlas[:, 0], atlas[:, 1], pixels, R, 200.0, seed)
        keep = np.ones(spec.wavelength.size, bool)
        for lo, hi in v.get("mask", []):
            keep &= ~((spec.wavelength >= lo) & (spec.wavelength <= hi))
        spec = dataclasses.replace(spec, mask=spec.mask & keep)
        t = time.time()
        r = fit_spectrum(
            spec,
            emulator=model,
            sampler="laplace",
            draws=200,
            seed=seed,
            fixed=v.get("fixed"),
            physics_error=v.get("physics_error", "auto"),
            emulator_error=v.get("emulator_error", "modes"),
            continuum_degree=v.get("continuum_degree", "auto"),
        )
        p = {str(x["name"]): (float(x["p50"]), float(x["sd"])) for x in r.summary}
        rows.append(
            {k: p[k] for k in ("teff", "logg", "feh", "vmic", "vsini", "vmacro") if k in p}
            | {"chi2r": float(r.summary.meta.get("CHI2RED", np.nan))}
        )
    out[name] = rows
    m = lambda k: np.mean([row[k][0] for row in rows if k in row])
    print(
        f"{name:28s} Teff {m('teff'):6.0f} logg {m('logg'):5.2f} feh {m('feh'):+.3f} vmic {m('vmic'):.2f} vsini {m('vsini'):.1f} vmacro {m('vmacro'):.1f} chi2r {np.mean([r['chi2r'] for r in rows]):.2f}",
        flush=True,
    )
from stellarinf.io.atomic import write_json_atomic
from stellarinf.machine import machine_info

write_json_atomic(
    result_path,
    {"benchmark": "sun_variants", "emulator": emu, "variants": out, "machine": machine_info()},
)
