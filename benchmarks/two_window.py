"""Two windows of one star fitted in one call: galah-red at R 28,000 and gaia-rvs at R 11,500.

A star is synthesised by the synthesizer (realistic fidelity) in both windows (S/N 100 per pixel in each,
2.5 pixels per resolution element) and fitted with :func:`stellarinf.fit_spectrum` as one two-arm spectrum
(``Spectrum.from_arms``), with a ``SynthesizerModel`` per window as the forward model of its arm; then each
window alone. Checked: the labels are recovered (|p50 − truth| / sd), the two-window posterior sd is narrower
than either window alone, and the posterior sd agrees with the two-window Cramér–Rao bound
(``fisher.likelihood_fisher`` of the same composite likelihood at the truth; target ratio 0.8–1.25).

``--fit-models``: the fit's forward model per arm. ``synth`` (default): the same ``SynthesizerModel`` that made the
star; or one emulator per arm (e.g. ``default-payne,default-payne-rvs``): the realistic synthesizer's star fitted
through the emulators a user would fit it with (their [X/Fe] labels held at the star's 0; the emulators' error
models in the likelihood), which is what a realistic two-window fit costs minutes instead of hours with.

Sampler: ``laplace`` (Gaussian at the MAP with the Gauss–Newton curvature): NUTS through the synthesizer is
too slow on a CPU. To keep the run time modest ``vmic`` and ``vmacro`` are held at their true values; teff,
logg, [Fe/H], rv and v sin i are free, the continuum (one Chebyshev polynomial per arm) is marginalised.

    python benchmarks/two_window.py            # ~ tens of minutes on 2 CPU cores
    python benchmarks/two_window.py --fit-models default-payne,default-payne-rvs --out benchmarks/results/two_window_payne.json

Writes ``benchmarks/results/two_window.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from pathlib import Path

import stellarinf

stellarinf.enable_float64()
from stellarinf.fisher import likelihood_fisher
from stellarinf.io.atomic import write_json_atomic
from stellarinf.io.spectrum import Spectrum
from stellarinf.labels import LabelSpace, default_label_space
from stellarinf.synth import SynthesizerModel
from stellarinf.validation.mocks import make_mock
from stellarinf.wavelength import SPEED_OF_LIGHT_KMS, log_uniform_grid

RESULTS = Path(__file__).resolve().parent / "results"
TRUTH = {"teff": 5700.0, "logg": 4.3, "feh": -0.2, "vmic": 1.1, "rv": 12.0, "vsini": 4.0, "vmacro": 0.0}
HELD = {"vmic": 1.1, "vmacro": 0.0}
ARMS = (("galah-red", 28_000.0), ("gaia-rvs", 11_500.0))
RV_MAX = 100.0


def machine() -> dict:
    import jax

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax_backend": jax.default_backend(),
        "load_average_1_5_15min": list(os.getloadavg()),
    }


def fit(spectrum, models, args, held):
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = stellarinf.fit_spectrum(
            spectrum,
            emulator=models,
            sampler=args.sampler,
            fixed=held,
            rv_max=RV_MAX,
            physics_error="off",
            mask_tellurics=False,
            clip_outliers=False,
            n_starts=args.starts,
            chains=4,
            draws=args.draws,
            seed=args.seed,
            log=print,
        )
    wall = time.perf_counter() - t
    problem = res.problem
    truth = {n: {**TRUTH, **held}[n] for n in problem.names}
    crb = likelihood_fisher(problem.obs_model, truth, list(problem.names)).marginal()
    rows = {}
    for r in res.summary:
        n = str(r["name"])
        if n not in truth:
            continue
        sd = float(r["sd"])
        rows[n] = {
            "truth": truth[n],
            "p50": float(r["p50"]),
            "sd": sd,
            "pull": (float(r["p50"]) - truth[n]) / sd,
            "crb": float(crb[n]),
            "sd_over_crb": sd / float(crb[n]),
        }
    return {
        "wall_s": wall,
        "timings": res.timings,
        "n_pixels_used": res.settings["n_pixels_used"],
        "resolution": res.settings["resolution"],
        "arms": res.settings.get("arms"),
        "chi2_reduced": res.diagnostics["chi2_reduced"],
        "map": res.map.params,
        "labels": rows,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--snr", type=float, default=100.0)
    ap.add_argument(
        "--fidelity",
        choices=("realistic", "simple"),
        default="realistic",
        help="the synthesizer's fidelity for the mocks and the fit model (simple: ~100x faster, for a loaded machine)",
    )
    ap.add_argument(
        "--fit-models",
        default="synth",
        help="synth (the synthesizer that made the star) or one emulator per arm, comma-separated in the order "
        f"{', '.join(w for w, _ in ARMS)} (e.g. default-payne,default-payne-rvs)",
    )
    ap.add_argument("--sampler", default="laplace", choices=("laplace", "laplace-is"))
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--starts", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS / "two_window.json"))
    ap.add_argument(
        "--only",
        choices=("two_window", *(w for w, _ in ARMS)),
        default=None,
        help="run one of the three fits (to run them as parallel processes); --combine merges their files",
    )
    ap.add_argument("--combine", nargs="+", default=None, help="merge the JSON files of --only runs into --out")
    args = ap.parse_args(argv)
    if args.combine:
        return combine(args.combine, args.out)

    t0 = time.perf_counter()
    full = default_label_space()
    space = LabelSpace(tuple(full[n] for n in ("teff", "logg", "feh", "vmic")))
    models, mocks = [], []
    margin = 1 + RV_MAX / SPEED_OF_LIGHT_KMS
    emulators = None if args.fit_models == "synth" else args.fit_models.split(",")
    if emulators is not None and len(emulators) != len(ARMS):
        ap.error(f"--fit-models: give one emulator per arm ({', '.join(w for w, _ in ARMS)}) or 'synth'")
    for k, (window, r) in enumerate(ARMS):
        model = SynthesizerModel(space, window, args.fidelity)
        wmin, wmax = model.wavelength_range
        if emulators is not None:  # the emulator's pixels decide the range: the mock must lie inside them
            from stellarinf.emulators.registry import load_emulator

            emu = load_emulator(emulators[k])
            wmin, wmax = max(wmin, emu.wavelength_range[0]), min(wmax, emu.wavelength_range[1])
        wl = log_uniform_grid(wmin * margin, wmax / margin, r)
        mock = make_mock(model, wl, TRUTH, snr=args.snr, resolution=r, seed=args.seed + 17 * (k + 1))
        mock.meta["source"] = f"mock {window} R={r:g}"
        models.append(model if emulators is None else emu)
        mocks.append(mock)
        print(f"{window}: {wl.size} pixels, R {r:g}, S/N {args.snr:g}", flush=True)
    held = dict(HELD)
    if emulators is not None:  # the star is solar-scaled: every [X/Fe] of the emulators is held at 0
        held |= {n: 0.0 for m in models for n in m.label_space.names if n.endswith("_fe")}
    setup_s = time.perf_counter() - t0
    out = {
        "benchmark": "two_window",
        "truth": TRUTH,
        "held_fixed": HELD,
        "free": ["teff", "logg", "feh", "rv", "vsini"],
        "arms": [{"window": w, "resolution": r} for w, r in ARMS],
        "snr": args.snr,
        "sampler": args.sampler,
        "draws": args.draws,
        "n_starts": args.starts,
        "truth_model": f"SynthesizerModel({args.fidelity}), teff/logg/feh/vmic label space",
        "fit_model": "the same SynthesizerModel per window (one per arm)"
        if emulators is None
        else f"emulators per arm: {', '.join(emulators)}",
        "held_fixed_in_fit": held,
        "machine": machine(),
        "setup_s": setup_s,
        "fits": {},
    }
    two = Spectrum.from_arms(mocks)
    for name, spectrum, mods in (
        ("two_window", two, models),
        (ARMS[0][0], mocks[0], models[0]),
        (ARMS[1][0], mocks[1], models[1]),
    ):
        if args.only not in (None, name):
            continue
        print(f"--- fit: {name}", flush=True)
        out["fits"][name] = fit(spectrum, mods, args, held)
        write_json_atomic(args.out, out)
    if args.only is not None:
        return 0
    add_checks(out)
    out["total_s"] = time.perf_counter() - t0
    out["machine"]["load_average_end"] = list(os.getloadavg())
    write_json_atomic(args.out, out)
    return 0


def combine(paths, out_path) -> int:
    """Merge the files of ``--only`` runs (same settings) into one result with the checks."""
    import json

    parts = [json.loads(Path(p).read_text()) for p in paths]
    out = dict(parts[0])
    out["fits"] = {k: v for p in parts for k, v in p["fits"].items()}
    out["machine"] = [p["machine"] for p in parts]
    out["note"] = "the three fits ran as parallel processes (--only), merged by --combine"
    add_checks(out)
    write_json_atomic(out_path, out)
    return 0


def add_checks(out) -> None:
    both = out["fits"]["two_window"]["labels"]
    singles = [out["fits"][w]["labels"] for w, _ in ARMS]
    out["checks"] = {
        n: {
            "sd_two_over_best_single": both[n]["sd"] / min(s[n]["sd"] for s in singles),
            "narrower_than_either": bool(all(both[n]["sd"] < s[n]["sd"] for s in singles)),
            "sd_over_crb": both[n]["sd_over_crb"],
            "crb_ratio_in_0.8_1.25": bool(0.8 <= both[n]["sd_over_crb"] <= 1.25),
            "abs_pull": abs(both[n]["pull"]),
        }
        for n in both
    }
    for n, c in out["checks"].items():
        print(
            f"{n:6s} sd(two)/min sd(one) {c['sd_two_over_best_single']:.3f}  sd/CRB {c['sd_over_crb']:.3f}  "
            f"|pull| {c['abs_pull']:.2f}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
