#!/usr/bin/env python
"""Does TiO matter for the broad domain's box (Teff ≥ 4000 K) at R 28,000 / 11,500? The realistic synthesizer with
``molecules="on+tio"`` (Ti in the molecular equilibrium, the TiO lines of ``data/linelist_tio.h5``) against
``molecules="on"`` (no TiO), per arm and star, after the instrument's LSF, on its pixels.

The pinned line list has 46TiO, 47TiO, 49TiO and 50TiO only (26 % of all TiO); ``linelist_tio.h5`` adds 48TiO's
lines derived from them (``data/isotopologue.py``). Each star is synthesised three times with TiO: with the whole
table (``complete``), with the source's four isotopologues only (``minor``: a lower bound), and with those four's
log gf raised by log10(1/0.2628) (``standin``: the minor isotopologues' lines carrying the opacity of all of TiO, what
the thirty-third session used before 48TiO was derived; band shapes right, single lines not).

Also, per star, the fraction of Ti bound in TiO at log τ = −3 and −1.

Usage::

    python benchmarks/tio_effect.py                      # five arms, the default stars
    python benchmarks/tio_effect.py --arms galah-red --stars 4000/4.6/0.0

Writes ``benchmarks/results/tio_effect.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ARMS = ("galah-blue", "galah-green", "galah-red", "galah-ir", "gaia-rvs")
# (Teff, log g, [Fe/H], vmic): the box's coolest dwarfs and giants, the next Teff steps, and the Sun
STARS = (
    "4000/4.6/0.0/0.9",
    "4000/4.6/-1.0/0.9",
    "4250/4.6/0.0/0.9",
    "4500/4.6/0.0/0.9",
    "4750/4.6/0.0/0.9",
    "4000/1.5/0.0/1.5",
    "4500/2.5/0.0/1.3",
    "5772/4.44/0.0/1.0",
)
MINOR_FRACTION = 0.0825 + 0.0744 + 0.0541 + 0.0518  # 46, 47, 49, 50Ti: the isotopologues the list has


def minor_data_dir(dex: float) -> Path:
    """A data folder whose files are the package's, except the TiO table without the derived 48TiO lines and every
    other log gf + ``dex``."""
    from stellarinf.paths import data_dir
    from stellarinf.synth.compact_table import TIO_DECIMALS, read_compact_table, write_compact_table
    from stellarinf.synth.data import TIO_TABLE

    src = data_dir()
    out = Path(tempfile.mkdtemp(prefix="stellarinf_tio_"))
    for f in src.iterdir():
        if f.name != TIO_TABLE:
            os.symlink(f, out / f.name)
    t = read_compact_table(src / TIO_TABLE)
    t = t[t["isotopes"] != "16-48"]
    t["loggf"] = np.round(t["loggf"] + dex, 4)
    write_compact_table(out / TIO_TABLE, t, TIO_DECIMALS)
    return out


def synthesize_arm(arm: str, labels: np.ndarray, molecules: str) -> tuple[np.ndarray, np.ndarray]:
    """(pixels, normalised flux (n_stars, n_pix)) of the realistic synthesizer through the arm's LSF."""
    from stellarinf.synth.observed import synthesize_observed

    wl, flux, _ = synthesize_observed(labels, arm, label_names=("teff", "logg", "feh", "vmic"), molecules=molecules)
    return wl, np.atleast_2d(flux)


def run_child(args) -> dict:
    """One arm, every star, one ``molecules`` choice (the data folder comes from the environment): flux arrays."""
    from stellarinf import enable_float64

    enable_float64()
    labels = np.array([[float(x) for x in s.split("/")] for s in args.stars.split(",")])
    t0 = time.perf_counter()
    wl, flux = synthesize_arm(args.arm, labels, args.molecules)
    return {"wavelength": wl.tolist(), "flux": flux.tolist(), "seconds": time.perf_counter() - t0}


def bound_titanium(stars: list[str]) -> dict:
    """Fraction of Ti in TiO at log τ_Ross = −3 and −1 per star (the equilibrium of ``"on+tio"``)."""
    from stellarinf.synth.abundances import log_abundances
    from stellarinf.synth.atmosphere import interpolate_atmosphere
    from stellarinf.synth.chemistry import populations

    out = {}
    for s in stars:
        teff, logg, feh, _ = (float(x) for x in s.split("/"))
        atm = interpolate_atmosphere(teff, logg, feh, 0.0)
        pops = populations(atm.temperature, atm.gas_pressure, atm.electron_density, log_abundances(feh), "on+tio")
        total = np.asarray(pops.species[22].sum(axis=0)) + np.asarray(pops.molecules[-1])
        lt = np.asarray(atm.log_tau_ross)
        out[s] = {
            f"log_tau_{t}": float(np.asarray(pops.molecules[-1])[k] / total[k])
            for t in (-3, -1)
            for k in [int(np.argmin(np.abs(lt - t)))]
        }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--stars", default=",".join(STARS), help="Teff/logg/feh/vmic, comma-separated")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "tio_effect.json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--arm", help=argparse.SUPPRESS)
    ap.add_argument("--molecules", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        json.dump(run_child(args), sys.stdout)
        return 0

    from stellarinf import enable_float64
    from stellarinf.machine import machine_info

    enable_float64()
    stars = args.stars.split(",")
    boost = -math.log10(MINOR_FRACTION)
    minor, scaled = minor_data_dir(0.0), minor_data_dir(boost)
    variants = {
        "none": ("on", None),
        "complete": ("on+tio", None),
        "minor": ("on+tio", minor),
        "standin": ("on+tio", scaled),
    }
    result = {
        "what": "rms and max |flux(with TiO) - flux(without)| of the realistic synthesizer after the LSF, per arm and star",
        "minor_fraction": MINOR_FRACTION,
        "standin_boost_dex": boost,
        "machine": machine_info(),
        "titanium_in_tio": bound_titanium(stars),
        "arms": {},
    }
    try:
        for arm in args.arms.split(","):
            fluxes, seconds = {}, {}
            for name, (molecules, data) in variants.items():
                env = dict(os.environ)
                if data is not None:
                    env["STELLARINF_DATA"] = str(data)
                    env["STELLARINF_CACHE"] = str(data / "cache")  # this list's own line selections
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    "--arm",
                    arm,
                    "--molecules",
                    molecules,
                    "--stars",
                    args.stars,
                ]
                done = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if done.returncode:
                    raise SystemExit(f"{arm} {name} failed:\n{done.stderr[-3000:]}")
                child = json.loads(done.stdout)
                fluxes[name], seconds[name] = np.asarray(child["flux"]), child["seconds"]
                print(f"{arm} {name}: {child['seconds']:.0f} s", flush=True)
            rows = {}
            for i, s in enumerate(stars):
                row = {}
                for name in ("complete", "minor", "standin"):
                    d = fluxes[name][i] - fluxes["none"][i]
                    row[name] = {"rms": float(np.sqrt(np.mean(d**2))), "max": float(np.max(np.abs(d)))}
                rows[s] = row
                print(
                    f"  {s:>18}: " + "; ".join(f"{k} rms {v['rms']:.2e} max {v['max']:.2e}" for k, v in row.items()),
                    flush=True,
                )
            result["arms"][arm] = {"stars": rows, "seconds": seconds}
            args.out.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.out.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(result, indent=1) + "\n")
            tmp.replace(args.out)  # a partial run keeps the arms it finished
    finally:
        for d in (minor, scaled):
            shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
