"""The fidelity flag of a fit whose arms have different emulators, against the truth it stands for.

Each shipped Payne's fidelity (``stellarinf fidelity``) is measured with its arm alone at seven reference stars,
where the arm's near-degeneracies (Teff, log g, [Fe/H], vmic without Balmer lines) make small derivative errors
count most; it stores, per reference star, the emulator's and the synthesizer's Fisher matrices. A fit of several
arms (:mod:`stellarinf.inference.arm_combination`) flags ``fidelity`` from the stored pairs at the reference
star nearest the fit, each scaled to that arm's information, summed, and compared as marginal bounds (the
"matrices" rule); emulators stored before the matrices use the information-weighted mean of the arms' r²
(the "weighted" rule).

Here, at stars *between* the seven stored reference stars (random mixes of two of them), each arm's Fisher matrix is computed at S/N 100 on the
emulator's own window and R (as ``stellarinf fidelity`` does) through its emulator (its error in the noise) and
through the realistic synthesizer, continuum marginalised; for every set of arms the measured ratio
(combined marginal bounds, emulator/synthesizer) is printed beside both rules' with the labels each rule
flags wrongly (false alarms) or fails to flag (misses).

    python benchmarks/arm_fidelity.py          # green, red, IR, RVS at 8 stars; ~25 min on one core

Writes ``benchmarks/results/arm_fidelity.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
import warnings
from pathlib import Path

import numpy as np

import stellarinf

stellarinf.enable_float64()
from stellarinf.emulator_fidelity import (  # noqa: E402
    OVER_CLAIM,
    REFERENCE_STARS,
    continuum_marginal_fisher,
    emulator_window,
    fit_fidelity_document,
    nearest_reference_star,
    reference_labels,
    synthesizer_for,
)
from stellarinf.forecast import DEFAULT_MARGINALIZE, forecast, resolve_model  # noqa: E402
from stellarinf.inference.arm_combination import combined_fidelity  # noqa: E402
from stellarinf.io.atomic import write_json_atomic  # noqa: E402
from stellarinf.machine import machine_info  # noqa: E402

DEFAULT_MODELS = "default-payne-green,default-payne,default-payne-ir,default-payne-rvs"
SNR = 100.0
N_TEST_STARS = 8


def test_stars(space, n: int, seed: int) -> list[tuple[str, dict[str, float]]]:
    """Stars *between* the stored reference stars: each a random mix (weight 0.3–0.7) of two different ones, so
    a dwarf and a giant make a subgiant and the labels stay where real stars are (no hot giants off the grid)."""
    ref = reference_labels(space, REFERENCE_STARS)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        i, j = rng.choice(len(ref), 2, replace=False)
        t = float(rng.uniform(0.3, 0.7))
        labels = {k: (1 - t) * ref[i][1][k] + t * ref[j][1][k] for k in ref[i][1]}
        out.append((f"{1 - t:.2f} {ref[i][0]} + {t:.2f} {ref[j][0]}", labels))
    return out


def marginal_bounds(names, info: np.ndarray) -> dict[str, float]:
    d = np.sqrt(np.diag(info))  # scaled: the parameters differ in scale by orders of magnitude (K, dex, km/s)
    cov = np.linalg.inv(info / np.outer(d, d)) / np.outer(d, d)
    return {n: float(np.sqrt(cov[i, i])) for i, n in enumerate(names)}


def arm_matrices(model, labels: dict[str, float]) -> dict:
    """One arm at one star: the emulator's and the synthesizer's continuum-marginal Fisher matrices."""
    window = emulator_window(model)
    kw = dict(window=window, snr=SNR, marginalize=DEFAULT_MARGINALIZE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # weak-constraint and fidelity notes: this benchmark measures them
        emu = forecast(model, labels, emulator_error="white", **kw).result  # as the stored fidelity is measured
        truth = synthesizer_for(model, window)
        ref = forecast(truth, {n: v for n, v in labels.items() if n in truth.label_space.names}, **kw).result
    names_e, f_e = continuum_marginal_fisher(emu)
    names_s, f_s = continuum_marginal_fisher(ref)
    assert names_e == names_s, (names_e, names_s)
    return {"names": names_e, "emulator": f_e, "synthesizer": f_s}


def combination(arms: list[dict], stars: list[dict | None], shared: list[str], labels: list[str]) -> dict:
    """Measured (the combined marginal bounds) and both rules' ratios for one set of arms."""
    emu = marginal_bounds(shared, sum(a["emulator"] for a in arms))
    syn = marginal_bounds(shared, sum(a["synthesizer"] for a in arms))
    info = np.stack([a["emulator"] for a in arms])  # what the fit's arm_information is, in physical units
    measured = {n: round(emu[n] / syn[n], 4) for n in shared if n in labels}
    matrices = combined_fidelity(info, shared, stars)
    weighted = combined_fidelity(info, shared, [None if s is None else {"ratio": s["ratio"]} for s in stars])

    def verdict(rule):
        flagged = {n for n, r in rule.items() if r < OVER_CLAIM}
        truly = {n for n, r in measured.items() if r < OVER_CLAIM}
        worst = max((abs(rule[n] - measured[n]) for n in ("teff", "logg", "feh", "vmic") if n in rule), default=0.0)
        return {"false_alarms": sorted(flagged - truly), "missed": sorted(truly - flagged), "max_abs_error": worst}

    return {
        "ratio_measured": measured,
        "ratio_rule_matrices": matrices,
        "ratio_rule_weighted": weighted,
        "rule_matrices": verdict(matrices),
        "rule_weighted": verdict(weighted),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated shipped emulators, one per arm")
    ap.add_argument("--n-stars", type=int, default=N_TEST_STARS, help="test stars between the reference stars")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/arm_fidelity.json"))
    args = ap.parse_args(argv)
    t_start = time.time()
    names = args.models.split(",")
    models = [resolve_model(n) for n in names]
    space = models[0].label_space
    bounds = {lab.name: (lab.lower, lab.upper) for lab in space.labels}
    docs = [fit_fidelity_document(m) for m in models]
    missing = [n for n, d in zip(names, docs) if not d or not all(s.get("fisher") for s in d["stars"])]
    if missing:
        raise SystemExit(f"{missing} store no Fisher matrices: run `stellarinf fidelity MODEL_DIR` on them first")
    tally = {"rule_matrices": [0, 0], "rule_weighted": [0, 0]}
    stars = []
    for star, labels in test_stars(space, args.n_stars, args.seed):
        t0 = time.perf_counter()
        arms = [arm_matrices(m, labels) for m in models]
        shared = arms[0]["names"]
        assert all(a["names"] == shared for a in arms), "the arms' models must share labels and nuisances"
        nearest = [nearest_reference_star(d, labels, bounds) for d in docs]
        combos = {}
        for k in range(1, len(models) + 1):
            for idx in itertools.combinations(range(len(models)), k):
                key = "+".join(names[i] for i in idx)
                c = combination([arms[i] for i in idx], [nearest[i] for i in idx], shared, list(space.names))
                combos[key] = c
                for rule in tally:
                    tally[rule][0] += len(c[rule]["false_alarms"])
                    tally[rule][1] += len(c[rule]["missed"])
                print(
                    f"{star} {key}: matrices {c['rule_matrices']}; weighted {c['rule_weighted']}",
                    flush=True,
                )
        stars.append(
            {
                "name": star,
                "labels": {k: round(v, 4) for k, v in labels.items()},
                "nearest_reference_star": [s["name"] for s in nearest],
                "combinations": combos,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        write_json_atomic(args.out, {"benchmark": "arm_fidelity", "partial": True, "stars": stars})
    out = {
        "benchmark": "arm_fidelity",
        "models": names,
        "snr": SNR,
        "over_claim_threshold": OVER_CLAIM,
        "false_alarms_and_misses": {k: {"false_alarms": v[0], "missed": v[1]} for k, v in tally.items()},
        "stars": stars,
        "wall_s": round(time.time() - t_start, 1),
        "machine": machine_info(),
    }
    write_json_atomic(args.out, out)
    print(json.dumps(out["false_alarms_and_misses"]))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
