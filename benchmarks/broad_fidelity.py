#!/usr/bin/env python
"""The Cramér–Rao fidelity of the broad-domain model sets, per arm, for the four GALAH arms together and for every arm
of the set together (issue #19).

For every member of the sets (``broad``: a Payne per GALAH arm and Gaia RVS; ``broad-tp``: a TransformerPayne per GALAH
arm) this reads the fidelity the shipped model stores for its weights and error model (what its fits flag with), or
where there is none runs ``stellarinf fidelity MEMBER -o WORK/MEMBER`` (the seven reference stars inside the box,
S/N 100, the model's R; the emulator's error in the noise; a copy of the model, so the shipped one is not changed),
skipping members whose copy already holds the result (a rerun resumes). It then tabulates, per set and label:

- each arm's ratio CRB(emulator)/CRB(synthesizer), the smallest over the reference stars (what ``model.json``
  stores; below 0.8 the emulator claims more precision than the synthesizer's spectrum carries);
- the four arms together: at each reference star the emulator's and the synthesizer's continuum-marginalised Fisher
  matrices (stored per star) summed over the arms and inverted, as a fit's ``fidelity`` flag combines them
  (:func:`~stellarinf.inference.arm_combination.combined_fidelity`); the ratio of the marginal bounds, at the solar
  twin and the smallest over the stars.

Issue #19's target: 0.9–1.1 for Teff, log g, [Fe/H] and every element of the label set.

    python benchmarks/broad_fidelity.py --work benchmarks/work/fidelity   # ~1 min from the stored fidelities; ~12 min measured

Writes ``benchmarks/results/broad_fidelity.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ARMS = ("galah-blue", "galah-green", "galah-red", "galah-ir")


def stored(work: Path, member: str) -> dict | None:
    path = work / member / "model.json"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("fidelity")


def measure(work: Path, member: str) -> dict:
    """The member's fidelity document: the one the shipped model stores for its weights and error model (what its fits
    flag with), else measured now unless the copy in ``work`` has it."""
    from stellarinf.emulator_fidelity import stored_fidelity
    from stellarinf.emulators.registry import load_emulator

    shipped, _ = stored_fidelity(load_emulator(member))
    if shipped is not None and all(st.get("fisher") for st in shipped.get("stars", [])):
        return shipped
    doc = stored(work, member)
    if doc is None:
        t0 = time.perf_counter()
        cli = Path(sys.executable).with_name("stellarinf")  # the console script beside this interpreter
        cmd = [str(cli), "fidelity", str(ROOT / "data" / "models" / member)]
        subprocess.run([*cmd, "-o", str(work / member), "--quiet"], check=True, cwd=ROOT)
        print(f"{member}: {time.perf_counter() - t0:.0f} s", flush=True)
        doc = stored(work, member)
    return doc


def combined_ratios(docs: list[dict]) -> dict[str, dict[str, float | None]]:
    """Per reference star: the four arms' stored Fisher pairs summed and compared as a fit's ``fidelity`` flag
    compares them (:func:`stellarinf.inference.arm_combination.combined_fidelity`, each arm at its stored S/N)."""
    from stellarinf.inference.arm_combination import combined_fidelity

    out = {}
    for k, star in enumerate(docs[0]["stars"]):
        arm_stars = [d["stars"][k] for d in docs]
        names = arm_stars[0]["fisher"]["names"]
        information = np.stack([np.asarray(st["fisher"]["emulator"], dtype=np.float64) for st in arm_stars])
        ratios = combined_fidelity(information, names, arm_stars)
        out[star["name"]] = {n: ratios.get(n) for n in names}
    return out


def worst_over_stars(per_star: dict, labels: list[str]) -> dict[str, float | None]:
    """Per label, the smallest combined ratio over the reference stars (None where no star has one)."""
    return {n: min((r[n] for r in per_star.values() if r.get(n) is not None), default=None) for n in labels}


def within_target(worst: dict[str, float | None]) -> list[str]:
    """The labels whose smallest ratio is inside issue #19's 0.9–1.1."""
    return [n for n, v in worst.items() if v is not None and 0.9 <= v <= 1.1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="broad,broad-tp")
    ap.add_argument("--work", default=str(HERE / "work" / "fidelity"), help="copies of the models with their results")
    ap.add_argument("-o", "--output", default=str(HERE / "results" / "broad_fidelity.json"))
    args = ap.parse_args(argv)

    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.machine import machine_info
    from stellarinf.shipped_models import set_members

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "broad_fidelity", "target": [0.9, 1.1], "sets": {}}
    for set_name in args.sets.split(","):
        members = set_members(set_name)
        windows = [*ARMS, *(w for w in members if w not in ARMS)]  # the GALAH arms, then Gaia RVS where the set has it
        docs = {w: measure(work, members[w]) for w in windows}
        labels = [n for n in docs[ARMS[0]]["ratio"]]
        combined = combined_ratios([docs[w] for w in ARMS])
        worst = worst_over_stars(combined, labels)
        result["sets"][set_name] = {
            "members": members,
            "per_arm_worst_star": {w: docs[w]["ratio"] for w in windows},
            "four_arms": {"solar-twin": combined.get("solar-twin"), "worst_star": worst, "per_star": combined},
            "elapsed_s": {w: docs[w].get("elapsed_s") for w in windows},
        }
        if len(windows) > len(ARMS):  # every arm the set has, in one fit
            every = combined_ratios([docs[w] for w in windows])
            worst_all = worst_over_stars(every, labels)
            result["sets"][set_name]["all_arms"] = {
                "windows": windows,
                "solar-twin": every.get("solar-twin"),
                "worst_star": worst_all,
                "per_star": every,
            }
            inside = within_target(worst_all)
            print(f"{set_name}: all {len(windows)} arms, worst star: {len(inside)} of {len(labels)} within 0.9–1.1")
        inside = within_target(worst)
        print(f"{set_name}: four arms, worst star: {len(inside)} of {len(labels)} labels within 0.9–1.1")
        for n in labels:
            arms = " ".join(
                f"{docs[w]['ratio'].get(n) if docs[w]['ratio'].get(n) is not None else '—':>6}" for w in windows
            )
            twin = (combined.get("solar-twin") or {}).get(n)
            print(f"  {n:9s} arms {arms}   four arms: solar twin {twin}, worst {worst[n]}")
    write_json_atomic(args.output, {**result, "machine": machine_info()})
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
