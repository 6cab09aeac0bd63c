#!/usr/bin/env python
"""The Laplace curvature of a traded v sin i / v macro pair, before and after the sixty-third session's rule, side by
side in one run.

:func:`stellarinf.inference.map.folded_curvature` replaces each folded parameter's diagonal (v sin i, v macro) by a
self-consistent precision. Until the sixty-third session it set the diagonal alone and kept the off-diagonal entries;
where the new precision fell below the Gauss–Newton one while the pair traded, their block went indefinite, the
Laplace step was flagged ``hessian`` and its regularised direction (a huge variance) leaked into every label
correlated with the pair. Now, where a folded precision falls below the Gauss–Newton one, its row and column are scaled
with it (a congruence, as if its Jacobian column were shorter); where it grows, the diagonal alone grows. Neither can
make a negative definite curvature indefinite.

Each rule runs in its own process (``--rule old|new``; the old one is patched in, nothing else differs) on:

1. an analytic star (``validation.setups.analytic_setup``), both broadenings free, R 11,500 and 20,000, four
   (v sin i, v macro), two noise seeds, six points each: how many of the 96 curvatures are indefinite;
2. the cool stars whose fits through the shipped broad Paynes were flagged ``hessian`` (``tio_bias.py``'s mocks with
   TiO, S/N 100, seed 0): flags and labels;
3. the observed Sun (the Kurucz atlas; ``sun_fit.py``'s spectra and settings, the physics error on): the red arm
   through ``auto``'s model and RVS through ``default-payne-rvs-abo``, S/N 50 / 100 / 200, seeds 0–2.

4. (``--parts calibration``) ``calibration.py --slow-rotators``: 100 Payne mocks at S/N 100 with v sin i and v macro
   both free, truths from their [0, 6] km/s boxes, fitted with laplace-is: coverage under each rule.

Usage::

    python benchmarks/laplace_fold.py --atlas-dir ../shared/data        # parts 1-3: ~12 min on the 2-core CPU
    python benchmarks/laplace_fold.py --parts calibration --out benchmarks/results/laplace_fold_calibration.json  # ~9 min

Writes ``benchmarks/results/laplace_fold.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TIO_STARS = {"broad-payne-rvs": ("4000/4.6/0.0/0.9", "4000/1.5/0.0/1.5"), "broad-payne-green": ("4250/4.6/0.0/0.9",)}
SUN_ARMS = {"galah-red": "auto", "gaia-rvs": "default-payne-rvs-abo"}
REPORTED = ("teff", "logg", "feh", "vmic", "rv", "vsini", "vmacro")


def use_old_rule() -> None:
    """Patch in the rule before the sixty-third session: the folded diagonal set, the off-diagonal kept."""
    import jax.numpy as jnp

    from stellarinf.inference import map as map_module
    from stellarinf.inference.lanes import map_lanes

    def folded_curvature(problem, z, h, jacobian=True):
        idx = map_module._folded_indices(problem)
        if idx is None:
            return h

        def precision(i):
            return jnp.maximum(
                map_module._expected_precision(problem, z, i, -h[i, i]),
                map_module._exact_precision(problem, z, i, jacobian),
            )

        return h.at[idx, idx].set(-map_lanes(precision, idx))

    map_module.folded_curvature = folded_curvature


def analytic_points() -> dict:
    import jax.numpy as jnp

    from stellarinf.inference.density import Problem
    from stellarinf.inference.map import hessian_at
    from stellarinf.observe.model import ObservationModel
    from stellarinf.validation.mocks import make_mock
    from stellarinf.validation.setups import analytic_setup

    model, wl = analytic_setup()
    smallest = []
    for resolution in (11500.0, 20000.0):
        for vsini, vmacro in ((2.0, 2.0), (3.0, 0.0), (4.0, 4.0), (6.0, 3.0)):
            for seed in (0, 1):
                truth = {"teff": 5400.0, "logg": 4.3, "feh": -0.2, "rv": 8.0, "vsini": vsini, "vmacro": vmacro}
                spec = make_mock(model, wl, truth, snr=100, resolution=resolution, seed=seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    om = ObservationModel(model, spec, rv_max=50, vsini_max=12, vmacro_max=12, continuum_degree=-1)
                problem = Problem.build(om, free=tuple(truth), fixed={})
                names = list(problem.names)
                rng = np.random.default_rng(seed)
                for _ in range(6):
                    x = {
                        **truth,
                        "vsini": vsini * rng.uniform(0.3, 1.7),
                        "vmacro": max(vmacro, 1.0) * rng.uniform(0.3, 1.7),
                    }
                    z = jnp.asarray(problem.prior.to_unconstrained(jnp.asarray([x[n] for n in names])))
                    precision = -np.asarray(hessian_at(problem, z, True))
                    smallest.append(float(np.linalg.eigvalsh(0.5 * (precision + precision.T)).min()))
    smallest = np.asarray(smallest)
    return {
        "points": int(smallest.size),
        "indefinite": int((smallest <= 0).sum()),
        "smallest_eigenvalue": smallest.tolist(),
    }


def summary_row(summary, truth=None) -> dict:
    rows = {str(r["name"]): r for r in summary}
    total = "sd_total" if "sd_total" in summary.colnames else "sd"
    out = {
        "flags": str(summary.meta.get("FLAGS", "")),
        "p50": {n: float(rows[n]["p50"]) for n in REPORTED if n in rows},
        "sd_total": {n: float(rows[n][total]) for n in REPORTED if n in rows},
    }
    if truth is not None:
        out["offset"] = {n: out["p50"][n] - truth[n] for n in out["p50"] if n in truth}
    return out


def tio_stars() -> dict:
    from tio_bias import truth_of

    import stellarinf
    from stellarinf.emulators.registry import load_emulator
    from stellarinf.physics_options import training_physics
    from stellarinf.synth import SynthesizerModel
    from stellarinf.validation.mocks import make_mock
    from stellarinf.validation.setups import observed_wavelength
    from stellarinf.wavelength import Window

    out = {}
    for name, stars in TIO_STARS.items():
        model = load_emulator(name)
        resolution = float(getattr(model, "resolution", None) or 28000.0)
        wmin, wmax = model.wavelength_range
        window = Window("emulator-range", float(wmin), float(wmax), resolution, 2.5, "the fitted emulator's range")
        synth = SynthesizerModel(model.label_space, window, "realistic", **training_physics(model))
        wl = observed_wavelength(model, resolution)
        for star in stars:
            truth = truth_of(star, model.label_space.names)
            spec = make_mock(synth, wl, truth, snr=100.0, resolution=resolution, seed=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                summary = stellarinf.fit_spectrum(
                    spec, emulator=model, emulator_name=name, sampler="laplace", physics_error="off", seed=0
                ).summary
            out[f"{name} {star}"] = summary_row(summary, truth)
            print(f"  {name} {star}: {out[f'{name} {star}']['flags']}", flush=True)
    return out


def observed_sun(atlas_dir: str) -> dict:
    import sun_fit

    out = {}
    for window, name in SUN_ARMS.items():
        model = sun_fit.model_for(name, window)
        observed = [sun_fit.arm_observation(window, None, atlas_dir)]
        for snr in (50.0, 100.0, 200.0):
            for seed in (0, 1, 2):
                spectrum = sun_fit.sun_spectrum([model], observed, snr, seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    summary = sun_fit.fit(model, spectrum, "laplace", seed)
                row = summary_row(summary, {**sun_fit.SUN, "vmic": 1.0})
                out[f"{window} {snr:.0f} {seed}"] = row
                print(f"  Sun {window} S/N {snr:.0f} seed {seed}: Teff {row['offset']['teff']:+.0f} K", flush=True)
    return out


def slow_rotator_calibration() -> dict:
    """``calibration.py --slow-rotators`` with laplace-is (its forty-third-session settings): pooled and per-label
    coverage, the combined broadening's, and the importance weights' health."""
    import calibration

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "calibration.json"
        args = "--emulator default-payne --n-mocks 100 --snr 100 --sampler laplace-is --chains 4 --draws 1000 --seed 1"
        calibration.main([*args.split(), "--slow-rotators", "--output", str(path)])
        doc = json.loads(path.read_text())
    keep = ("coverage_68", "coverage_95", "vbroad_coverage_68", "vbroad_coverage_95", "importance", "seconds_total")
    out = {k: doc[k] for k in keep}
    for q in ("68", "95"):
        out[f"coverage_{q}_vsini_vmacro"] = [doc[f"coverage_{q}_per_label"][n] for n in ("vsini", "vmacro")]
    return out


def run_rule(rule: str, atlas_dir: str, parts: list[str], out: Path) -> None:
    import stellarinf

    stellarinf.enable_float64()
    if rule == "old":
        use_old_rule()
    t0 = time.perf_counter()
    doc = {"rule": rule}
    if "fold" in parts:
        doc["analytic"] = analytic_points()
        print(f"  analytic: {doc['analytic']['indefinite']} of {doc['analytic']['points']} indefinite", flush=True)
        doc["tio_stars"] = tio_stars()
        doc["observed_sun"] = observed_sun(atlas_dir)
    if "calibration" in parts:
        doc["calibration"] = slow_rotator_calibration()
    doc["seconds"] = time.perf_counter() - t0
    out.write_text(json.dumps(doc))


def compare(old: dict, new: dict) -> dict:
    """Per case: the flags under each rule and the new rule's sd_total / the old rule's, and the shift of p50 in
    units of the new sd_total."""
    cases = {}
    for part in ("tio_stars", "observed_sun"):
        for key, a in old[part].items():
            b = new[part][key]
            cases[f"{part}: {key}"] = {
                "flags": [a["flags"], b["flags"]],
                "sd_ratio": {n: b["sd_total"][n] / a["sd_total"][n] for n in a["sd_total"]},
                "shift_in_sd": {n: (b["p50"][n] - a["p50"][n]) / b["sd_total"][n] for n in a["p50"]},
            }
    return cases


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--atlas-dir", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--rule", choices=("old", "new"), help=argparse.SUPPRESS)  # a child process: one rule
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument(
        "--parts", default="fold", help="fold (the analytic star, the TiO stars, the Sun), calibration, or both"
    )
    ap.add_argument("--out", type=Path, default=HERE / "results" / "laplace_fold.json")
    args = ap.parse_args(argv)
    parts = args.parts.split(",")
    if set(parts) - {"fold", "calibration"}:
        ap.error(f"--parts: fold and/or calibration, got {args.parts!r}")
    if args.rule:
        run_rule(args.rule, args.atlas_dir, parts, args.child_out)
        return 0

    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.machine import machine_info

    docs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rule in ("old", "new"):
            print(f"rule {rule}:", flush=True)
            child = Path(tmp) / f"{rule}.json"
            cmd = [sys.executable, __file__, "--rule", rule, "--child-out", str(child), "--atlas-dir", args.atlas_dir]
            subprocess.run([*cmd, "--parts", args.parts], check=True)
            docs[rule] = json.loads(child.read_text())
    doc = {
        "what": "Laplace curvature of a traded v sin i / v macro pair: the folded diagonal alone (old) against the "
        "folded rows and columns scaled where its precision falls (new)",
        "machine": machine_info(),
    }
    if "calibration" in parts:
        doc["calibration_slow_rotators"] = {r: docs[r]["calibration"] for r in docs}
    if "fold" in parts:
        doc.update(fold_summary(docs))
    doc["runs"] = docs
    write_json_atomic(args.out, doc)
    print(json.dumps({k: v for k, v in doc.items() if k not in ("runs", "cases", "machine")}))
    return 0


def fold_summary(docs: dict) -> dict:
    cases = compare(docs["old"], docs["new"])
    sun = [c for k, c in cases.items() if k.startswith("observed_sun")]
    return {
        "analytic_indefinite": {r: [docs[r]["analytic"]["indefinite"], docs[r]["analytic"]["points"]] for r in docs},
        "hessian_flags": {
            r: sum("hessian" in c["flags"] for c in {**docs[r]["tio_stars"], **docs[r]["observed_sun"]}.values())
            for r in docs
        },
        "observed_sun_largest_shift_in_sd": {
            n: float(max(abs(c["shift_in_sd"][n]) for c in sun)) for n in ("teff", "logg", "feh")
        },
        "observed_sun_sd_ratio_range": {
            n: [float(min(c["sd_ratio"][n] for c in sun)), float(max(c["sd_ratio"][n] for c in sun))]
            for n in ("teff", "logg", "feh", "vsini", "vmacro")
        },
        "cases": cases,
    }


if __name__ == "__main__":
    raise SystemExit(main())
