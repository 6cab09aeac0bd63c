#!/usr/bin/env python
"""Per-star priors without recompiling: the wall time of each of three fits whose log g priors differ only in numbers.

Three mocks of the analytic line model (the test suite's, `stellarinf.validation.setups.analytic_setup`) at S/N 120,
fitted one after another in one process by ``stellarinf.fit_spectrum`` with Gaussian log g priors 4.4±0.1, 3.6±0.2
and 2.5±0.3 (the survey case: a photometric log g per star). The first fit compiles; a sampler whose programs take
the prior's numbers as arguments fits the next two without compiling. Reports per star the wall time, the number
of programs JAX traced and the log g median.

Usage::

    python benchmarks/prior_recompile.py --samplers nuts,laplace -o benchmarks/results/prior_recompile.json
"""

from __future__ import annotations

import argparse
import collections
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
STARS = [
    ({"teff": 5200.0, "logg": 4.4, "feh": -0.1, "rv": -12.0}, "logg=4.4+-0.1"),
    ({"teff": 6100.0, "logg": 3.6, "feh": -0.8, "rv": 25.0}, "logg=3.6+-0.2"),
    ({"teff": 4800.0, "logg": 2.5, "feh": 0.2, "rv": 3.0}, "logg=2.5+-0.3"),
]
TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samplers", default="nuts,laplace")
    ap.add_argument("--label", default="", help="a tag stored with the results (e.g. the commit)")
    ap.add_argument("-o", "--output", default=str(HERE / "results" / "prior_recompile.json"))
    args = ap.parse_args(argv)

    import jax

    import stellarinf
    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.machine import machine_info
    from stellarinf.validation.mocks import make_mock
    from stellarinf.validation.setups import analytic_setup

    stellarinf.enable_float64()
    events = collections.Counter()
    jax.monitoring.register_event_duration_secs_listener(lambda event, duration, **kw: events.update([event]))
    model, wl = analytic_setup()
    specs = [
        make_mock(model, wl, {**truth, "vsini": 5.0, "vmacro": 0.0}, snr=120, resolution=20000, seed=40 + i)
        for i, (truth, _) in enumerate(STARS)
    ]
    rows = []
    for sampler in args.samplers.split(","):
        for i, ((truth, prior), spec) in enumerate(zip(STARS, specs)):
            before = events[TRACE_EVENT]
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = stellarinf.fit_spectrum(
                    spec,
                    emulator=model,
                    sampler=sampler,
                    priors=[prior],
                    chains=4,
                    draws=500,
                    warmup=300,
                    rv_max=60.0,
                    vsini_max=20.0,
                    fixed={"vmacro": 0.0},
                    continuum_degree=0,
                    physics_error="off",
                    seed=0,
                )
            row = {
                "sampler": sampler,
                "star": i,
                "prior": prior,
                "seconds": time.perf_counter() - t0,
                "programs_traced": events[TRACE_EVENT] - before,
                "logg_p50": float(next(r["p50"] for r in res.summary if r["name"] == "logg")),
                "logg_truth": truth["logg"],
            }
            rows.append(row)
            print(
                f"{sampler} star {i} ({prior}): {row['seconds']:.1f} s, {row['programs_traced']} programs traced, "
                f"log g {row['logg_p50']:.3f}",
                flush=True,
            )
    write_json_atomic(
        Path(args.output),
        {"benchmark": "prior_recompile", "label": args.label, "fits": rows, "machine": machine_info()},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
