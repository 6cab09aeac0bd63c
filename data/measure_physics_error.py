#!/usr/bin/env python
"""Measure the synthesizer-vs-reality error on the observed Sun and write ``data/physics_error.json``.

For each window the realistic synthesizer's Sun (solar-calibrated log gf, the calibration's v macro and molecules
choice) and an
observed solar atlas are taken to the window's resolving power and pixels, matched by a linear continuum
scale per 5 Å, and the residual is modelled as σ² = floor² + (depth_fraction · depth)²
(:func:`stellarinf.observe.physics_error.fit_error_model`). Where an atlas that the log gf calibration did
*not* use covers the window (SOLAR-HRS, 6500–7000 Å) it is the one measured, so the number is not
flattered by the calibration having fitted the same pixels; the Kurucz atlas's numbers are stored beside it.

``--label-floor results.json`` adds, per window, the label-space floor that fits report beside their posterior
sd, from the observed Sun's fits (``benchmarks/sun_fit.py`` output, S/N 50 / 100 / 200 × ten seeds): the part of
their offsets from the Sun's labels that each fit's own sd (posterior and emulator ``sd_sys``) does not explain, by
maximum likelihood (:func:`stellarinf.observe.physics_error.systematic_floor`; ``--estimator rms``: their rms offset,
the floors until the fifty-ninth session, which count the S/N-50 fits' noise as physics).

``--label-floor results.json --model NAME`` stores the floor its fits measure through that model in the model's own
``model.json`` (``physics_label_floor``) instead: it replaces the window's for fits through that model
(:func:`stellarinf.observe.physics_error.model_label_floor`). A window's floor is measured through one model; another
model of the same physics can miss the Sun by much more (Gaia RVS through ``broad-payne-rvs``: 121 K, the window's
11 K), and its floor should say so.

``--damping abo`` measures the physics with Anstee–Barklem–O'Mara widths and its own log gf table
(``data/loggf_solar_abo.ecsv``) and stores it under the window's ``by_damping["abo"]``: an emulator that learned that
physics gets that term (:func:`stellarinf.observe.physics_error.physics_error_for`); the window's own values are
Unsöld × 2's (the default physics). Measure ``unsold`` first: the ranges left out are the window's.

Usage::

    python data/measure_physics_error.py --atlas-dir ../shared/data
    python data/measure_physics_error.py --label-floor benchmarks/results/sun_fit_solarhrs.json
    python data/measure_physics_error.py --atlas-dir ../shared/data --damping abo
    python data/measure_physics_error.py --label-floor benchmarks/results/sun_fit_solarhrs_abo.json --damping abo
    python data/measure_physics_error.py --label-floor benchmarks/results/sun_fit_broad_rvs_ten_seeds.json \
        --model broad-payne-rvs
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from stellarinf.synth.calibration import SUN_LABELS as SUN

HERE = Path(__file__).resolve().parent
C_KMS = 299792.458
# per window, beyond what stellarinf.solar_atlas gives (its Kurucz extract and masked ranges): atlases the log gf
# calibration did not use, measured first, and ranges the fits leave out, (lo, hi), where the physics is wrong in the
# shape of the whole range (an error correlated over hundreds of pixels, which no white per-pixel σ represents: with
# +5 % white error the Balmer wings still pulled the four-arm Sun's Teff down by 17-42 K;
# stellarinf.observe.build.physics_excluded), or keep with more error, (lo, hi, sd)
INDEPENDENT_ATLASES = {"galah-red": ["sun_solarhrs_6500_7000_vac.csv.gz"]}
REGIONS = {
    # the Hα wings (1D LTE, and their continuum placement in pre-normalised spectra: −100..−200 K in Teff on the
    # observed Sun; benchmarks/README.md section 6)
    "galah-red": [(6540.0, 6590.0)],
    # the other GALAH arms have the Kurucz atlas only (it calibrated them, so the adopted values are the larger of its
    # own and galah-red's independent ones); Hβ's wings like Hα's
    "galah-blue": [(4845.0, 4881.0)],
    # the O2 A band, head and P branch: fits mask it (stellarinf.io.tellurics); a spectrum fitted with it kept
    # (--no-telluric-mask, a telluric-corrected spectrum) carries the correction's residue there, and K I 7699 Å air
    # (non-LTE core) sits in it
    "galah-ir": [(7596.0, 7702.0, 0.05)],
    # the chromospheric Ca II cores, and the Paschen line P14 (8600.8 Å): the synthesizer's high Paschen lines have
    # no level dissolution nor electron-impact Stark broadening, and P14, the one not in a Ca II line, is 0.5 % too
    # deep over 8 Å on the observed Sun, where log g is what it moves (benchmarks/README.md section 6)
    "gaia-rvs": [(8497.0, 8504.0), (8541.0, 8548.0), (8597.0, 8605.0), (8661.0, 8668.0)],
}


def window_spec(window: str) -> dict:
    """Atlases (independent ones first), masked ranges and the ranges fits leave out (``regions``) of ``window``."""
    from stellarinf.solar_atlas import solar_atlas_window

    entry = solar_atlas_window(window)
    return {
        "atlases": INDEPENDENT_ATLASES.get(window, []) + [entry.atlas],
        "mask": [list(r) for r in entry.masked],
        "regions": REGIONS.get(window, []),
    }


# the log gf table (and so the v macro) each damping choice was calibrated with
LOGGF_TABLES = {"unsold": "loggf_solar.ecsv", "abo": "loggf_solar_abo.ecsv"}


def measure(
    window: str,
    atlas_path: Path,
    mask_ranges,
    vmacro: float,
    vsini: float = 1.8,
    molecules: str = "off",
    damping: str = "unsold",
):
    import jax.numpy as jnp

    from stellarinf.observe.broadening import broaden, degrade_to_resolution
    from stellarinf.observe.physics_error import fit_error_model
    from stellarinf.synth import fine_grid, synthesize
    from stellarinf.synth.calibration import chunk_scale, chunks_of
    from stellarinf.wavelength import get_window

    win = get_window(window)
    atlas = np.loadtxt(atlas_path, delimiter=",", skiprows=1)
    lo, hi = max(win.wmin, atlas[0, 0] + 2.0), min(win.wmax, atlas[-1, 0] - 2.0)
    pixels = win.grid()
    pixels = pixels[(pixels > lo + 2.0) & (pixels < hi - 2.0)]
    fine = fine_grid(lo - 3.0, hi + 3.0)
    dv = float(np.log(fine[1] / fine[0])) * C_KMS
    flux, _ = synthesize(SUN, fine, molecules=molecules, damping=damping)
    model = np.asarray(broaden(jnp.asarray(flux), dv, resolution=win.resolution, vsini=vsini, vmacro=vmacro))
    grid, obs_smooth = degrade_to_resolution(atlas[:, 0], atlas[:, 1], win.resolution)
    best = None
    for rv in np.arange(-1.5, 1.51, 0.05):  # the atlas's shift (gravitational redshift − convective blueshift)
        obs = np.interp(pixels * (1.0 + rv / C_KMS), grid, obs_smooth)
        mod = np.interp(pixels, fine, model)
        use = np.ones(pixels.size, bool)
        for a, b in mask_ranges:
            use &= ~((pixels >= a) & (pixels <= b))
        chunk, x, n_chunks = chunks_of(pixels, 5.0)
        s = np.asarray(chunk_scale(jnp.asarray(mod), jnp.asarray(obs), jnp.asarray(use * 1.0), chunk, x, n_chunks))
        use &= s != 0  # a chunk with too few unmasked pixels (the edge of a masked range) has no scale
        resid = (obs - s * mod) / np.where(s != 0, s, 1.0)
        rms = float(np.sqrt(np.mean(resid[use] ** 2)))
        if best is None or rms < best[0]:
            best = (rms, rv, resid, obs / np.where(s != 0, s, 1.0), use)
    rms, rv, resid, obs_norm, use = best
    depth = np.clip(1.0 - obs_norm, 0.0, 1.0)
    floor, frac = fit_error_model(resid[use], depth[use])
    return {
        "atlas": atlas_path.name,
        "wmin": float(pixels[0]),
        "wmax": float(pixels[-1]),
        "resolution": win.resolution,
        "rms": rms,
        "rv_atlas_kms": float(rv),
        "floor": floor,
        "depth_fraction": frac,
        "n_pixels": int(use.sum()),
    }


def _other_sd(row: dict, name: str) -> float:
    """A fit's sd without the physics label floor it was reported with: √(sd_total² − floor²), the posterior's
    and the emulator's ``sd_sys`` (the floor in use is recorded per fit by ``benchmarks/sun_fit.py``)."""
    used = row.get("physics_label_floor")
    if not isinstance(used, dict) or any(isinstance(v, dict) for v in used.values()):
        raise SystemExit(
            f"--label-floor: the fit {row.get('window')} S/N {row.get('snr')} seed {row.get('seed')} does not record "
            "the one-arm physics label floor it was reported with; rerun it with the current benchmarks/sun_fit.py"
        )
    lab = row["labels"][name]
    return float(np.sqrt(max(lab["sd_total"] ** 2 - float(used.get(name, 0.0)) ** 2, lab["sd"] ** 2)))


def label_floors(rows: list[dict], estimator: str) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Per label, the floor ``rows`` (fits of the observed Sun, one window) measure, and its 68 % interval (empty for
    ``estimator="rms"``)."""
    from stellarinf.observe.physics_error import systematic_floor

    floor, interval = {}, {}
    for n in rows[0]["labels"]:
        if _sun_value(n) is None:
            continue
        offsets = np.array([r["labels"][n]["p50"] - _sun_value(n) for r in rows])
        if estimator == "rms":
            floor[n] = round(float(np.sqrt(np.mean(offsets**2))), 4)
            continue
        f, lo, hi = systematic_floor(offsets, [_other_sd(r, n) for r in rows])
        floor[n], interval[n] = round(f, 4), [round(lo, 4), round(hi, 4)]
    return floor, interval


def floor_source(path: str, n: int, estimator: str) -> str:
    """Words for where a label floor comes from: ``n`` fits in results file ``path``."""
    return f"{Path(path).name}: " + (
        f"rms offset of {n} fits of the observed Sun"
        if estimator == "rms"
        else f"the maximum-likelihood sd of {n} fits' offsets from the Sun beyond each fit's own sd "
        "(posterior and emulator; stellarinf.observe.physics_error.systematic_floor), 68 % interval in "
        "label_floor_interval"
    )


def store_model_floor(fits: list[dict], path: str, model: str, estimator: str) -> dict:
    """Write the label floor of the fits in ``fits`` made through ``model`` into its ``model.json``; returns what was
    stored."""
    from stellarinf.emulators.model_io import MODEL_FILE
    from stellarinf.emulators.registry import model_path
    from stellarinf.io.atomic import write_json_atomic

    rows = [f for f in fits if model in f.get("models", [f.get("emulator")])]
    windows = sorted({f["window"] for f in rows})
    if len(windows) != 1:
        raise SystemExit(
            f"--model {model}: {path} holds fits through it in {len(windows)} windows ({', '.join(windows) or 'none'}); "
            "give a results file of one-arm fits through that model (benchmarks/sun_fit.py --windows W)"
        )
    floor, interval = label_floors(rows, estimator)
    entry = {
        "window": windows[0],
        "label_floor": floor,
        "label_floor_interval": interval,
        "source": floor_source(path, len(rows), estimator),
        "made": time.strftime("%Y-%m-%d"),
    }
    doc_path = model_path(model) / MODEL_FILE
    doc = json.loads(doc_path.read_text())
    entry["weights_sha256"] = doc["weights"]["sha256"]  # the floor belongs to these weights
    doc["physics_label_floor"] = entry
    write_json_atomic(doc_path, doc)
    return entry


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--atlas-dir", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--windows", default="galah-red,gaia-rvs")
    ap.add_argument(
        "--label-floor",
        default=None,
        help="a benchmarks/sun_fit.py results JSON: store the label floor its fits measure",
    )
    ap.add_argument(
        "--estimator",
        default="systematic",
        choices=["systematic", "rms"],
        help="the label floor from --label-floor's fits: systematic, the part of the offsets the fits' own sd does not "
        "explain (shipped); rms, their rms offset (the floors until the fifty-ninth session)",
    )
    ap.add_argument(
        "--model",
        default=None,
        help="with --label-floor: store the floor of the fits through this model (a shipped name or a model directory) "
        "in its model.json, where it replaces the window's for fits through it",
    )
    ap.add_argument("--damping", default="unsold", choices=sorted(LOGGF_TABLES), help="the physics measured")
    ap.add_argument("-o", "--output", default=str(HERE / "physics_error.json"))
    args = ap.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    from astropy.table import Table

    from stellarinf.io.atomic import write_json_atomic

    out = Path(args.output)
    doc = json.loads(out.read_text()) if out.exists() else {"windows": {}}
    if args.model and not args.label_floor:
        raise SystemExit("--model goes with --label-floor: the fits whose floor is stored in the model")
    if args.label_floor:
        fits = json.loads(Path(args.label_floor).read_text())["fits"]
        if args.model:
            print(json.dumps(store_model_floor(fits, args.label_floor, args.model, args.estimator), indent=1))
            return 0
        for window in doc["windows"]:
            rows = [f for f in fits if f["window"] == window]
            if not rows:
                continue
            entry = _entry(doc, window, args.damping)
            entry.pop("label_floor_interval", None)
            entry["label_floor"], interval = label_floors(rows, args.estimator)
            if interval:
                entry["label_floor_interval"] = interval
            entry["label_floor_source"] = floor_source(args.label_floor, len(rows), args.estimator)
        write_json_atomic(out, doc)
        shown = {w: _entry(doc, w, args.damping, create=False).get("label_floor") for w in doc["windows"]}
        print(json.dumps(shown, indent=1))
        return 0

    meta = Table.read(HERE / LOGGF_TABLES[args.damping]).meta
    for window in args.windows.split(","):
        spec = window_spec(window)
        vmacro = float(np.median([c["vmacro"] for c in meta["windows"][window]["chunks"]]))
        results = []
        for name in spec["atlases"]:
            path = Path(args.atlas_dir) / name
            if path.exists():
                # the physics the window's log gf were fitted with (the blue arm's: with molecules)
                molecules = meta["windows"][window].get("molecules", "off")
                results.append(measure(window, path, spec["mask"], vmacro, molecules=molecules, damping=args.damping))
                r = results[-1]
                print(
                    f"{window} {name}: rms {100 * r['rms']:.2f} %, floor {100 * r['floor']:.2f} %, "
                    f"depth fraction {r['depth_fraction']:.3f}, atlas rv {r['rv_atlas_kms']:+.2f} km/s",
                    flush=True,
                )
        if not results:
            continue
        # adopt the atlas the log gf calibration did not use where there is one (SOLAR-HRS); otherwise the
        # calibration atlas flatters the calibrated physics, so take the larger of its values and those of the
        # windows that have an independent measurement
        independent = [r for r in results if "solarhrs" in r["atlas"]]
        if independent:
            floor, frac, how = (
                independent[0]["floor"],
                independent[0]["depth_fraction"],
                "the independent atlas (SOLAR-HRS)",
            )
        else:
            same = [_entry(doc, w, args.damping, create=False) for w in doc["windows"] if w != window]
            others = [e for e in same if e.get("independent_of_calibration")]
            floor = max([results[0]["floor"]] + [e["floor"] for e in others])
            frac = max([results[0]["depth_fraction"]] + [e["depth_fraction"] for e in others])
            how = "the larger of the calibration atlas's values and those of the windows with an independent atlas"
        values = {
            "floor": floor,
            "depth_fraction": frac,
            "adopted": how,
            "independent_of_calibration": bool(independent),
            "all_measurements": results,
            "vmacro_kms": vmacro,
        }
        old = doc["windows"].get(window, {})
        if args.damping == "unsold":
            doc["windows"][window] = {
                "wmin": min(r["wmin"] for r in results),
                "wmax": max(r["wmax"] for r in results),
                **values,
                "regions": [list(r) for r in spec["regions"]],
                **{k: v for k, v in old.items() if k.startswith("label_floor") or k == "by_damping"},
            }
        else:
            if "floor" not in old:
                raise SystemExit(f"measure {window} with --damping unsold first: its ranges left out are the window's")
            kept = {
                k: v for k, v in _entry(doc, window, args.damping, create=False).items() if k.startswith("label_floor")
            }
            old.setdefault("by_damping", {})[args.damping] = {**values, **kept}
    doc["method"] = (
        "residual of the synthesized Sun (solar log gf) against an observed atlas at the window's R and pixels, "
        "linear continuum scale per 5 Å, sigma^2 = floor^2 + (depth_fraction * depth)^2 fitted in 10 depth bins; "
        "regions: vacuum Å ranges the fits leave out ([lo, hi]: the physics is wrong in the shape of the whole range) "
        "or keep with more error ([lo, hi, sd])"
    )
    doc["made"] = time.strftime("%Y-%m-%d")
    write_json_atomic(out, doc)
    return 0


def _entry(doc: dict, window: str, damping: str, create: bool = True) -> dict:
    """The dict holding ``window``'s values for ``damping`` (the window's own for Unsöld × 2, else its
    ``by_damping[damping]``), made empty when missing (``create``) or an empty dict not in ``doc``."""
    if not create:
        entry = doc["windows"].get(window, {})
        return entry if damping == "unsold" else entry.get("by_damping", {}).get(damping, {})
    entry = doc["windows"].setdefault(window, {})
    return entry if damping == "unsold" else entry.setdefault("by_damping", {}).setdefault(damping, {})


def _sun_value(name: str):
    if name in SUN:
        return SUN[name]
    if name.endswith("_fe"):
        return 0.0
    return None


if __name__ == "__main__":
    raise SystemExit(main())
