#!/usr/bin/env python
"""Fit astrophysical log gf to the observed Sun and write ``data/loggf_solar.ecsv``.

The observed Sun is the Kurucz (2005) disk-integrated solar flux atlas (Kitt Peak FTS, telluric-corrected,
vacuum wavelengths), as shipped by the PyPI package ``cometspec==0.1.1``; the project's shared folder
holds per-window extracts of it (``sun_kurucz2005_<lo>_<hi>_vac.csv.gz``). Each window is fitted in
ranges of ``--chunk`` Å, one after the other, each range's lines free and the neighbours' held at their
fitted values (:func:`stellarinf.synth.calibration.fit_loggf`). Ranges finished are kept in
``--workdir`` (npz, no pickle), so a killed run resumes where it stopped.

Usage::

    python data/calibrate_loggf.py --atlas-dir ../shared/data            # galah-red and gaia-rvs
    python data/calibrate_loggf.py --windows galah-red --maxiter 150
    python data/calibrate_loggf.py --windows galah-blue,galah-green,galah-ir   # add arms, keep the others' values
    python data/calibrate_loggf.py --windows galah-blue --molecules on --empirical 0.03 --refine   # the blue arm as shipped

``--empirical T`` also gives every feature of the atlas that the model at the starting log gf leaves deeper than T
(continuum units) an empirical placeholder line whose log gf is fitted with the rest; they are written to
``data/lines_solar_empirical.ecsv`` with the damping choice they were fitted with (each choice has its own, as it has
its own log gf table) and are part of ``loggf="solar"``. ``--refine`` starts each range from the table's current
offsets (laboratory otherwise), so missing features are judged after the list's own lines are calibrated.

Windows, atlas files and masked ranges come from :mod:`stellarinf.solar_atlas`. Windows not named keep the values
(and the report) already in the output table, so arms can be calibrated one run at a time.

The synthesizer uses the table by default (``loggf="solar"``); ``loggf="laboratory"`` switches back.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv=None) -> int:
    from stellarinf.synth.data import DAMPING_CHOICES, LOGGF_TABLES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--atlas-dir", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--windows", default="galah-red,gaia-rvs")
    ap.add_argument("--chunk", type=float, default=20.0, help="Å per fitted range")
    ap.add_argument("--maxiter", type=int, default=150)
    ap.add_argument("--prior-sd", type=float, default=0.5)
    ap.add_argument("--sigma", type=float, default=0.005)
    ap.add_argument("--workdir", default=str(HERE.parent / "benchmarks" / "work" / "loggf"))
    ap.add_argument(
        "--damping",
        default="unsold",
        choices=DAMPING_CHOICES,
        help="the synthesizer's damping constants the gf are fitted with (each has its own table)",
    )
    ap.add_argument(
        "-o", "--output", default=None, help="default: data/loggf_solar.ecsv (unsold) or loggf_solar_abo.ecsv"
    )
    ap.add_argument("--molecules", choices=("off", "on"), default="off", help="fit with the molecular lines present")
    ap.add_argument(
        "--empirical",
        type=float,
        default=None,
        metavar="T",
        help="add and fit empirical lines where the atlas is deeper than the model by more than T (continuum units)",
    )
    ap.add_argument("--refine", action="store_true", help="start from the table's current offsets, not laboratory")
    ap.add_argument("--empirical-output", default=str(HERE / "lines_solar_empirical.ecsv"))
    args = ap.parse_args(argv)

    args.output = args.output or str(HERE / LOGGF_TABLES[args.damping])

    import jax
    from astropy.table import Table

    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.paths import data_file
    from stellarinf.solar_atlas import solar_atlas_window
    from stellarinf.synth.calibration import (
        EMPIRICAL_ELOW,
        EMPIRICAL_ION,
        EMPIRICAL_Z,
        HOLD_LABORATORY,
        SUN_LABELS,
        SUN_VSINI,
        fit_loggf,
    )
    from stellarinf.synth.data import linelist

    jax.config.update("jax_enable_x64", True)  # atmospheres and the fit's normal equations need float64
    ll = linelist()
    offsets = np.zeros(ll.wavelength.size)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    names = args.windows.split(",")
    specs = {name: solar_atlas_window(name) for name in names}  # unknown names fail here, before any work
    report = {"windows": {}}
    out = Path(args.output)
    if out.exists():
        # keep what other windows already fitted: their offsets and their report
        old = Table.read(out)
        rows = np.asarray(old["row"], dtype=np.int64)
        lam = ll.wavelength[rows]
        mine = np.zeros(rows.size, bool)
        for spec in specs.values():
            mine |= (lam >= spec.calibrated_range[0] - spec.margin) & (lam <= spec.calibrated_range[1] + spec.margin)
        keep = ~mine | args.refine
        offsets[rows[keep]] = np.asarray(old["dloggf"])[keep]
        report["windows"] = {k: v for k, v in dict(old.meta.get("windows", {})).items() if k not in specs}
        carried = {k: old.meta[k] for k in ("rows_remapped",) if k in old.meta}  # build_tables.py's record
    else:
        carried = {}
    # finished chunks are keyed by the line list too: their rows index it
    list_tag = sha256(data_file("linelist.ecsv"))[:8]
    new_lines: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in names:
        spec = specs[name]
        path = Path(args.atlas_dir) / spec.atlas
        atlas = np.loadtxt(path, delimiter=",", skiprows=1)
        lo, hi = spec.calibrated_range
        edges = np.append(np.arange(lo, hi, args.chunk), hi)
        chunks, empirical = [], []
        for a, b in zip(edges[:-1], edges[1:]):
            if any(m_lo <= a and b <= m_hi for m_lo, m_hi in spec.masked):
                continue  # nothing of the Sun to fit (the O2 A band): its lines keep their laboratory log gf
            tag = "" if args.damping == "unsold" else f"_{args.damping}"
            tag += "_mol" if args.molecules == "on" else ""
            tag += f"_emp{args.empirical}" if args.empirical is not None else ""
            tag += "_refine" if args.refine else ""
            part = work / f"{name}_{a:.1f}_{b:.1f}_{args.maxiter}_{args.prior_sd}_{args.sigma}{tag}_{list_tag}.npz"
            if part.exists():
                z = np.load(part, allow_pickle=False)
                rows, d, info = z["rows"], z["dloggf"], json.loads(str(z["info"]))
                emp_wl, emp_gf = z["empirical_wavelength"], z["empirical_loggf"]
            else:
                r = fit_loggf(
                    atlas[:, 0],
                    atlas[:, 1],
                    a,
                    b,
                    margin=spec.margin,
                    offsets=offsets,
                    mask_ranges=spec.masked,
                    sigma=args.sigma,
                    prior_sd=args.prior_sd,
                    maxiter=args.maxiter,
                    damping=args.damping,
                    molecules=args.molecules,
                    missing_threshold=args.empirical,
                )
                rows, d = r.rows, r.dloggf
                emp_wl, emp_gf = r.empirical_wavelength, r.empirical_loggf
                info = {
                    "wmin": a,
                    "wmax": b,
                    "rms_before": r.rms_before,
                    "rms_after": r.rms_after,
                    "rv": r.rv,
                    "vmacro": r.vmacro,
                    "n_lines": int(rows.size),
                    "n_empirical": int(emp_wl.size),
                    "evaluations": r.n_evaluations,
                    "seconds": r.seconds,
                }
                tmp = part.with_suffix(".tmp.npz")
                np.savez(
                    tmp,
                    rows=rows,
                    dloggf=d,
                    empirical_wavelength=emp_wl,
                    empirical_loggf=emp_gf,
                    info=json.dumps(info),
                )
                tmp.replace(part)
            offsets[rows] = d
            empirical.append((emp_wl, emp_gf))
            chunks.append(info)
            print(
                f"{name} {a:.0f}-{b:.0f} Å: rms {100 * info['rms_before']:.2f} % → {100 * info['rms_after']:.2f} %, "
                f"{info['n_lines']} lines, {info.get('n_empirical', 0)} empirical, rv {info['rv']:+.2f} km/s, "
                f"vmacro {info['vmacro']:.2f} km/s",
                flush=True,
            )
        if args.empirical is not None:
            new_lines[name] = tuple(np.concatenate(c) for c in zip(*empirical))
        report["windows"][name] = {
            "molecules": args.molecules,
            "empirical_threshold": args.empirical,
            "refined_from_previous_table": args.refine,
            "atlas": spec.atlas,
            "atlas_sha256": sha256(path),
            "chunks": chunks,
            "mask": [list(r) for r in spec.masked],
            "margin": spec.margin,
        }

    fitted = np.flatnonzero(offsets != 0.0)
    t = Table()
    t["row"] = fitted
    t["species"] = ll.species[fitted]
    t["wavelength"] = ll.wavelength[fitted]
    t["wavelength"].unit = "Angstrom"
    t["elow"] = ll.elow[fitted]
    t["loggf_laboratory"] = ll.loggf[fitted]
    t["dloggf"] = np.round(offsets[fitted], 4)
    t["dloggf"].description = "astrophysical − laboratory log gf (dex); < −3 means the atlas shows no such line"
    t.meta.update(
        {
            "title": "Astrophysical log gf offsets fitted to the observed Sun",
            "method": "stellarinf.synth.calibration.fit_loggf: L-BFGS-B on 0.5 Σ((obs − s·model)/σ)² + 0.5 Σ(Δ/prior_sd)², "
            "gradient by JAX through the realistic synthesizer at the Sun's labels, broadened by rotation and "
            "radial–tangential macroturbulence (fitted), a linear continuum scale per 5 Å solved in closed form, "
            "and a velocity shift of the atlas (fitted)",
            "observed_sun": "Kurucz (2005, MSAIS 8, 189) disk-integrated solar flux atlas, from PyPI cometspec==0.1.1 "
            "(cometspec/data/kurucz_irradiance.txt); vacuum wavelengths",
            "sun_labels": SUN_LABELS,
            "vsini_kms": SUN_VSINI,
            "sigma": args.sigma,
            "prior_sd_dex": args.prior_sd,
            "held_at_laboratory": list(HOLD_LABORATORY),
            "damping": args.damping,
            "chunk_angstrom": args.chunk,
            "maxiter": args.maxiter,
            "made": time.strftime("%Y-%m-%d"),
            "windows": report["windows"],
            **carried,
        }
    )
    tmp = out.with_name(out.name + ".tmp")
    t.write(tmp, format="ascii.ecsv", overwrite=True)
    tmp.replace(out)
    write_json_atomic(work / "report.json", report)
    if new_lines:
        write_empirical(
            Path(args.empirical_output), new_lines, specs, args, (EMPIRICAL_Z, EMPIRICAL_ION, EMPIRICAL_ELOW)
        )
    print(f"wrote {out}: {fitted.size} lines")
    return 0


def write_empirical(path: Path, new_lines: dict, specs: dict, args, placeholder: tuple[int, int, float]) -> None:
    """Write the empirical lines of the windows fitted now (with ``args.damping``) beside those of other windows or
    other damping choices fitted before (atomically)."""
    from astropy.table import Table, vstack

    from stellarinf.labels import ELEMENT_SYMBOLS
    from stellarinf.synth.data import legacy_damping

    z, ion, elow = placeholder
    parts, windows = [], {}
    if path.exists():
        old = Table.read(path)
        if "damping" not in old.colnames:  # written before each line carried its damping: one choice for all
            choice = legacy_damping(old.meta)
            old["damping"] = np.full(len(old), choice)
            old.meta["windows"] = {f"{k}/{choice}": v for k, v in dict(old.meta.get("windows", {})).items()}
        replaced = np.isin(np.asarray(old["window"], str), list(new_lines)) & (
            np.asarray(old["damping"], str) == args.damping
        )
        parts.append(old[~replaced])
        mine = {f"{name}/{args.damping}" for name in new_lines}
        windows = {k: v for k, v in dict(old.meta.get("windows", {})).items() if k not in mine}
    for name, (wl, gf) in new_lines.items():
        t = Table()
        t["wavelength"] = np.round(wl, 4)
        t["wavelength"].unit = "Angstrom"
        t["species"] = np.full(wl.size, f"{ELEMENT_SYMBOLS[z - 1]} {'I' * (ion + 1)}")
        t["Z"] = np.full(wl.size, z)
        t["ion"] = np.full(wl.size, ion)
        t["elow"] = np.full(wl.size, elow)
        t["elow"].unit = "eV"
        t["loggf"] = np.round(gf, 3)
        t["window"] = np.full(wl.size, name)
        t["damping"] = np.full(wl.size, args.damping)
        parts.append(t)
        windows[f"{name}/{args.damping}"] = {
            "atlas": specs[name].atlas,
            "threshold": args.empirical,
            "molecules": args.molecules,
            "calibrated_range": list(specs[name].calibrated_range),
        }
    out = vstack(parts) if parts else Table()
    out.sort(["wavelength", "damping"])
    out["damping"].description = "the damping it was fitted with: part of that choice's loggf='solar' only"
    out.meta.pop("damping", None)
    out.meta.update(
        {
            "title": "Empirical lines: features of the observed Sun that the laboratory line list lacks",
            "method": "stellarinf.synth.calibration.fit_loggf(missing_threshold=...): where the atlas lies deeper than "
            "the model at the starting (calibrated) log gf by more than the threshold, a placeholder line is placed at "
            "the residual's minimum and its log gf fitted together with the list's offsets; candidates the fit pushes "
            "to the lower bound are dropped. Species (Fe I) and lower-level energy are assumptions (most unidentified "
            "solar lines are high-excitation Fe I; Peterson & Kurucz 2015); APOGEE's line list does the same "
            "(Shetrone et al. 2015). Each damping choice has its own set (column damping; the placeholders themselves "
            "are broadened with Unsöld × 2 under either), part of that choice's loggf='solar' only.",
            "observed_sun": "Kurucz (2005) disk-integrated solar flux atlas (cometspec==0.1.1); vacuum wavelengths",
            "made": time.strftime("%Y-%m-%d"),
            "windows": windows,
        }
    )
    tmp = path.with_name(path.name + ".tmp")
    out.write(tmp, format="ascii.ecsv", overwrite=True)
    tmp.replace(path)
    print(f"wrote {path}: {len(out)} empirical lines ({int((out['damping'] == args.damping).sum())} {args.damping})")


if __name__ == "__main__":
    raise SystemExit(main())
