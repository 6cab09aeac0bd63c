"""The issue's MAP anchor reproduced side by side (issue #5): The Payne's ``scipy.optimize.curve_fit`` fit vs
stellarinf's ``find_map``, on the same spectra with the same network (the shipped Payne's weights).

The anchor ("The Payne's curve_fit gives a MAP in about 0.1 CPU-s") is for The Payne's setting: a spectrum
already continuum-normalised, on the network's own pixels, at rest, with only the labels free. Here:

- ``curve_fit (The Payne)``: The Payne's fitting recipe (Ting et al. 2019, ``fitting.py``) on this machine:
  the network in NumPy, labels scaled to [−0.5, 0.5], one start at the box centre, ``method="trf"`` with
  bounds, ``ftol = xtol = 5e-4``, finite-difference Jacobian, ``absolute_sigma``.
- ``find_map, labels only``: :func:`stellarinf.inference.map.find_map` on the same problem (RV and v sin i
  fixed at 0, no continuum, no emulator error), data-driven starts, 1 and 4 of them.
- ``find_map, full problem``: the fit ``stellarinf fit`` does (RV and v sin i free, continuum marginalised,
  emulator error modes integrated out) on the same pixels, for context: it is a different, harder problem.

Mocks: realistic-fidelity synthesizer spectra (not the emulator) at the Payne's pixels, S/N 100, labels
drawn inside the box (10 % inset). Scores: seconds per spectrum (steady state; the first spectrum compiles
and is not timed), χ² at the optimum (both solve the same least-squares problem, so the lower χ² is the
better optimum), and the rms label error against the truth.

    python benchmarks/map_vs_curve_fit.py            # 20 spectra
    python benchmarks/map_vs_curve_fit.py --n 3      # a quick look

Writes benchmarks/results/map_vs_curve_fit.json.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import curve_fit

import stellarinf

stellarinf.enable_float64()  # atmospheres, likelihoods, Fisher matrices
from stellarinf.emulators.registry import load_emulator
from stellarinf.inference.density import Problem
from stellarinf.inference.map import find_map
from stellarinf.io.atomic import write_json_atomic
from stellarinf.io.spectrum import Spectrum
from stellarinf.machine import machine_info
from stellarinf.observe.model import ObservationModel
from stellarinf.synth import SynthesizerModel
from stellarinf.validation.mocks import random_truth
from stellarinf.wavelength import Window

RESULTS = Path(__file__).parent / "results"
PAYNE_TOL = 5e-4  # The Payne's fitting.py: ftol = xtol = 5e-4


def numpy_payne(emulator):
    """The Payne MLP as The Payne evaluates it: NumPy matrix products on scaled labels → flux (n_pix,)."""
    layers = [
        (np.asarray(layer.weight, np.float64), np.asarray(layer.bias, np.float64)) for layer in emulator.network.layers
    ]
    activation = emulator.network.config.activation
    slope = emulator.network.config.negative_slope

    def act(x):
        if activation == "silu":
            return x / (1.0 + np.exp(-x))
        if activation == "leaky_relu":
            return np.where(x > 0, x, slope * x)
        raise ValueError(f"numpy_payne: activation {activation!r} not implemented")

    def flux(scaled):
        x = np.asarray(scaled, np.float64)
        for w, b in layers[:-1]:
            x = act(w @ x + b)
        w, b = layers[-1]
        return w @ x + b

    return flux


def fit_curve_fit(net, flux, sigma, n_labels):
    """The Payne's fit: scaled labels from the box centre, bounded TRF → (scaled labels, χ²)."""
    popt, _ = curve_fit(
        lambda _, *p: net(np.array(p)),
        xdata=[],
        ydata=flux,
        sigma=sigma,
        p0=np.zeros(n_labels),
        bounds=(-0.5, 0.5),
        method="trf",
        ftol=PAYNE_TOL,
        xtol=PAYNE_TOL,
        absolute_sigma=True,
    )
    return popt, float(np.sum(((flux - net(popt)) / sigma) ** 2))


def labels_problem(emulator, spectrum):
    """Labels only, as The Payne fits: rest frame, no rotation, no continuum, no emulator error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        om = ObservationModel(
            emulator,
            spectrum,
            continuum_degree=-1,
            fixed={"rv": 0.0, "vsini": 0.0, "vmacro": 0.0},
            include_emulator_error=False,
            error_modes=False,
        )
    return Problem.build(om)


def full_problem(emulator, spectrum):
    """What `stellarinf fit` solves (benchmarks/inference_speed.py's setting)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        om = ObservationModel(
            emulator,
            spectrum,
            rv_max=100,
            vsini_max=30,
            fixed={"vmacro": 0.0},
            continuum_degree=1,
            continuum="marginalise",
        )
    return Problem.build(om)


def chi2_of(net, emulator, labels, flux, sigma):
    scaled = np.asarray(emulator.scale_labels(np.asarray(labels)), np.float64)
    return float(np.sum(((flux - net(scaled)) / sigma) ** 2))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emulator", default="default-payne")
    ap.add_argument("--n", type=int, default=20, help="mock spectra")
    ap.add_argument("--snr", type=float, default=100.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--output", default=str(RESULTS / "map_vs_curve_fit.json"))
    args = ap.parse_args(argv)

    emulator = load_emulator(args.emulator)
    if emulator.kind != "payne":
        raise SystemExit(
            "map_vs_curve_fit: The Payne's recipe needs a Payne MLP emulator (e.g. --emulator default-payne)"
        )
    space = emulator.label_space
    lo, hi = np.asarray(space.lower), np.asarray(space.upper)
    wl = np.asarray(emulator.training_wavelength)
    window = Window(
        "payne-pixels", float(wl[0]), float(wl[-1]), float(emulator.resolution), 2.5, "the Payne's training pixels"
    )
    synth = SynthesizerModel(space, window, "realistic", resolution=emulator.resolution)
    net = numpy_payne(emulator)
    rng = np.random.default_rng(args.seed)

    methods = (
        "curve_fit (The Payne)",
        "find_map labels only, 1 start",
        "find_map labels only, 4 starts",
        "find_map full problem, 4 starts",
    )
    rows = []
    for i in range(args.n):
        truth = random_truth(space, rng, rv_max=0.0)
        labels = np.array([truth[n] for n in space.names])
        clean = np.asarray(synth.flux(labels, wl))
        sigma = np.full_like(clean, 1.0 / args.snr)
        flux = clean + sigma * np.random.default_rng(2000 + i).standard_normal(clean.shape)
        spectrum = Spectrum(wl, flux, sigma, resolution=emulator.resolution)
        p_labels, p_full = labels_problem(emulator, spectrum), full_problem(emulator, spectrum)
        runs = {
            methods[0]: lambda: fit_curve_fit(net, flux, sigma, len(space.names)),
            methods[1]: lambda: find_map(p_labels, n_starts=1),
            methods[2]: lambda: find_map(p_labels, n_starts=4),
            methods[3]: lambda: find_map(p_full, n_starts=4),
        }
        row = {"spectrum": i, "truth": truth, "chi2_truth": chi2_of(net, emulator, labels, flux, sigma), "methods": {}}
        for name, run in runs.items():
            if i == 0:
                run()  # compile / warm caches
            t0 = time.perf_counter()
            out = run()
            seconds = time.perf_counter() - t0
            if name == methods[0]:
                best = lo + (out[0] + 0.5) * (hi - lo)
            else:
                best = np.array([out.params[n] for n in space.names])
            row["methods"][name] = {
                "seconds": seconds,
                "labels": dict(zip(space.names, map(float, best))),
                "chi2_labels_only": chi2_of(net, emulator, best, flux, sigma),
            }
        rows.append(row)
        print(
            f"spectrum {i}: "
            + ", ".join(f"{m['seconds']:.3f} s χ² {m['chi2_labels_only']:.0f}" for m in row["methods"].values()),
            flush=True,
        )

    summary = {}
    timed = rows[1:] or rows
    for name in methods:
        chi2 = np.array([r["methods"][name]["chi2_labels_only"] for r in rows])
        best_chi2 = np.array([min(r["methods"][m]["chi2_labels_only"] for m in methods[:3]) for r in rows])
        err = np.array([[r["methods"][name]["labels"][n] - r["truth"][n] for n in space.names] for r in rows])
        same_problem = (
            name in methods[:3]
        )  # the full problem fits RV, v sin i and a continuum too: its χ² here is not its objective
        summary[name] = {
            "seconds_per_spectrum_median": float(np.median([r["methods"][name]["seconds"] for r in timed])),
            "fraction_at_best_chi2": float(np.mean(chi2 <= best_chi2 + 1.0)) if same_problem else None,
            "worst_chi2_excess": float(np.max(chi2 - best_chi2)) if same_problem else None,
            "rms_error": dict(zip(space.names, map(float, np.sqrt(np.mean(err**2, axis=0))))),
        }
        s = summary[name]
        optimum = (
            f"at the best χ² (within 1) on {s['fraction_at_best_chi2']:.0%}, worst excess {s['worst_chi2_excess']:.1f}; "
            if same_problem
            else ""
        )
        print(
            f"{name}: {s['seconds_per_spectrum_median']:.3f} s per spectrum, {optimum}rms error Teff {s['rms_error']['teff']:.0f} K, "
            f"log g {s['rms_error']['logg']:.3f}, [Fe/H] {s['rms_error']['feh']:.3f}"
        )
    write_json_atomic(
        args.output,
        {
            "benchmark": "map_vs_curve_fit",
            "machine": machine_info(),
            "args": vars(args),
            "n_pixels": int(wl.size),
            "payne_tol": PAYNE_TOL,
            "summary": summary,
            "spectra": rows,
        },
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
