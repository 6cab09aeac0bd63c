#!/usr/bin/env python
"""Reproducible recipe for the shipped defaults: the default emulators and the demo star.

Steps (run all, or a comma-separated selection with ``--steps``; every step is resumable because
``stellarinf grid`` and ``stellarinf train`` resume from their own partial output):

  grid         realistic galah-red grid over the default label box:
               stellarinf grid --n N --design sobol --seed 42 --fidelity realistic --window galah-red -o WORK/grid_realistic.h5
  test-grid    held-out realistic grid, another seed (43), for the reported test metrics and the benchmarks
  simple-grid  (optional, not in the default list) large simple-fidelity grid for benchmarks/pretrain.py
  train-tp     stellarinf train --model transformer-payne --preset small --seed 0 --max-minutes M -o WORK/models/transformer-payne-small
  train-payne  stellarinf train --model payne --hidden 300,300 --seed 0 --max-minutes M -o WORK/models/payne-mlp
  install      copy model.json + weights (not the checkpoints) into data/models/transformer-payne-small/ and
               data/models/payne-mlp/ (what `--emulator default` / `default-payne` load); checks the size
  evaluate     stellarinf evaluate on the held-out grid → data/models/<name>/test_metrics.json
  error-model  stellarinf error-model on the held-out grid: per-pixel error table + correlated error modes
               (data/models/<name>/error_modes.npy), which `fit` integrates out
  demo         the demo star: realistic-fidelity synthetic spectrum (galah-red, R 28,000) with the truth below,
               Gaussian noise S/N 80 (fixed seed) → data/demo/demo_star.fits + data/demo/demo_truth.json
  demo-galah   the four-arm demo star (not in the default list): the four GALAH arms (R 28,000) of one star of the
               broad domain (35 labels, the broad set's truth below), each arm made by the realistic synthesizer with
               the physics its `broad` member was trained on, S/N 80 per arm → data/demo/demo_galah_star.fits (one
               multi-arm file) + data/demo/demo_galah_truth.json; `stellarinf demo --star galah` fits it
  recipe       data/models/RECIPE.md: the exact commands that were run, seeds, versions, sizes and metrics

WORK defaults to benchmarks/work/ (git-ignored), where benchmarks/accuracy.py and benchmarks/pretrain.py look
for the same grids. Every step calls the package (the CLI in a subprocess, or its Python API for the demo star).

    python data/make_defaults.py --dry-run              # print the commands
    python data/make_defaults.py                        # everything (hours: the grid dominates)
    python data/make_defaults.py --steps demo,recipe    # just the demo star
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent
REPO = DATA.parent
DEFAULT_WORK = REPO / "benchmarks" / "work"
MODELS = DATA / "models"
STEPS = (
    "grid",
    "test-grid",
    "simple-grid",
    "train-tp",
    "train-payne",
    "install",
    "evaluate",
    "error-model",
    "demo",
    "demo-galah",
    "recipe",
)
DEFAULT_STEPS = ("grid", "test-grid", "train-tp", "train-payne", "install", "evaluate", "error-model", "demo", "recipe")
INSTALLED = {"tp": "transformer-payne-small", "payne": "payne-mlp"}  # names under data/models/ (see emulators.registry)
KEEP_FILES_EXCLUDE = ("checkpoint",)  # training state: not shipped

DEMO_TRUTH = {
    "labels": {
        "teff": 5650.0,
        "logg": 4.3,
        "feh": -0.25,
        "vmic": 1.1,
        "li_fe": 0.2,
        "al_fe": 0.05,
        "si_fe": 0.1,
        "ca_fe": 0.12,
        "ti_fe": 0.15,
        "ni_fe": -0.03,
        "ba_fe": -0.1,
    },
    "nuisances": {"rv": 12.3, "vsini": 4.0, "vmacro": 3.0},
}
DEMO_SNR = 80.0
DEMO_NOISE_SEED = 20240607
# the four-arm demo star (step demo-galah): a mildly alpha-enhanced thin/thick-disc dwarf; [X/Fe] not listed are 0
DEMO_GALAH_WINDOWS = ("galah-blue", "galah-green", "galah-red", "galah-ir")
DEMO_GALAH_TRUTH = {
    "labels": {
        "teff": 5650.0,
        "logg": 4.3,
        "feh": -0.25,
        "vmic": 1.1,
        "alpha_fe": 0.1,
        "li_fe": 0.2,
        "c_fe": -0.05,
        "o_fe": 0.15,
        "na_fe": 0.05,
        "mg_fe": 0.12,
        "al_fe": 0.05,
        "si_fe": 0.1,
        "k_fe": 0.0,
        "ca_fe": 0.12,
        "sc_fe": 0.05,
        "ti_fe": 0.15,
        "cr_fe": -0.02,
        "mn_fe": -0.08,
        "ni_fe": -0.03,
        "cu_fe": -0.05,
        "zn_fe": 0.05,
        "y_fe": 0.05,
        "ba_fe": -0.1,
    },
    "nuisances": {"rv": 12.3, "vsini": 4.0, "vmacro": 3.0},
}
DEMO_EDGE_KMS = 30.0  # the demo grid stops this far inside the window, so a Doppler-shifted model stays in range


# ------------------------------------------------------------------------------------------- helpers
def log_path(work: Path) -> Path:
    return work / "make_defaults_log.json"


def read_log(work: Path) -> list[dict]:
    p = log_path(work)
    return json.loads(p.read_text()) if p.exists() else []


def record(work: Path, entry: dict) -> None:
    from stellarinf.io.atomic import write_json_atomic

    log = [e for e in read_log(work) if e.get("step") != entry["step"]] + [entry]
    write_json_atomic(log_path(work), log)


def demo_provenance(call: str) -> dict:
    """What a demo truth file says of how its spectrum was made (flat continuum, the call, version, commit, date)."""
    import stellarinf

    return {
        "continuum": "flat: the flux is normalised (continuum coefficients 1, 0, 0, ...)",
        "generator": call,
        "stellarinf_version": stellarinf.__version__,
        "git_commit": git_commit(),
        "date": now(),
    }


def demo_star(name: str):
    """(the demo star's entry, its spectrum path, its truth path): ``stellarinf.commands.demo.DEMO_STARS``, the one
    table `stellarinf demo --star NAME` reads, names the files and the model set."""
    from stellarinf.commands.demo import DEMO_STARS

    star = DEMO_STARS[name]
    return star, DATA.joinpath(*star.spectrum), DATA.joinpath(*star.truth)


def record_demo(work: Path, step: str, call: str, t0: float, outputs: tuple[Path, Path]) -> None:
    """The log entry of a demo step: the call that made its files, when, how long."""
    entry = {"step": step, "command": call, "finished": now(), "wall_s": round(time.perf_counter() - t0, 1)}
    record(work, {**entry, "outputs": [str(p.relative_to(REPO)) for p in outputs]})


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def cli(*args) -> list[str]:
    """``stellarinf ARGS`` with the current interpreter (no reliance on PATH)."""
    return [sys.executable, "-m", "stellarinf.cli", *map(str, args)]


def shown(cmd: list[str]) -> str:
    """The command as a reader would type it (``stellarinf ...``, paths relative to the repository)."""
    parts = ["stellarinf", *cmd[3:]] if cmd[1:3] == ["-m", "stellarinf.cli"] else cmd
    out = []
    for p in parts:
        try:
            p = str(Path(p).resolve().relative_to(REPO)) if ("/" in p and Path(p).is_absolute()) else p
        except ValueError:
            pass
        out.append(shlex.quote(p))
    return " ".join(out)


def run(step: str, cmd: list[str], work: Path, dry: bool, outputs: list[Path]) -> None:
    print(f"[{step}] $ {shown(cmd)}", flush=True)
    if dry:
        return
    t0 = time.perf_counter()
    started = now()
    rc = subprocess.call(cmd, cwd=str(REPO))
    if rc != 0:
        raise SystemExit(f"[{step}] failed with exit code {rc}; fix the cause and rerun the same command to resume")
    record(
        work,
        {
            "step": step,
            "command": shown(cmd),
            "started": started,
            "finished": now(),
            "wall_s": round(time.perf_counter() - t0, 1),
            "outputs": [shown([str(o)]) for o in outputs],
        },
    )


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


# ------------------------------------------------------------------------------------------- steps
def step_grid(a, name: str, path: Path, n: int, seed: int, fidelity: str):
    run(
        name,
        cli(
            "grid",
            "--n",
            n,
            "--design",
            "sobol",
            "--seed",
            seed,
            "--fidelity",
            fidelity,
            "--window",
            a.window,
            "--batch-size",
            a.batch_size,
            "-o",
            path,
        ),
        a.work,
        a.dry_run,
        [path],
    )


def step_train(a, name: str, kind: str, out: Path):
    args = [
        "train",
        "--grid",
        a.work / "grid_realistic.h5",
        "--model",
        kind,
        "--seed",
        a.seed,
        "--max-steps",
        a.max_steps,
        "--quiet",
    ]
    if kind == "transformer-payne":
        args += ["--preset", "small", "--max-minutes", a.tp_minutes]
    else:
        # SiLU, not the published LeakyReLU: the shipped Payne serves gradient-based fits (NUTS, Laplace),
        # which need a posterior without kinks (see stellarinf/emulators/payne.py)
        args += ["--hidden", "300,300", "--activation", "silu", "--max-minutes", a.payne_minutes]
    run(name, cli(*args, "-o", out), a.work, a.dry_run, [out])


def step_install(a):
    for key, name in INSTALLED.items():
        src, dst = a.work / "models" / name, MODELS / name
        print(
            f"[install] {shown([str(src)])} → {shown([str(dst)])} (without {', '.join(KEEP_FILES_EXCLUDE)}/)",
            flush=True,
        )
        if a.dry_run:
            continue
        if not (src / "model.json").exists():
            raise SystemExit(f"[install] {src} has no model.json; run the train-{key} step first")
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(*KEEP_FILES_EXCLUDE))
        size = dir_size(tmp)
        if size > a.max_mb * 2**20:
            shutil.rmtree(tmp)
            raise SystemExit(
                f"[install] {name} is {size / 2**20:.1f} MB, over --max-mb {a.max_mb}; use a smaller model"
            )
        shutil.rmtree(dst, ignore_errors=True)
        os.replace(tmp, dst)
        record(
            a.work,
            {
                "step": f"install-{key}",
                "command": f"copy {shown([str(src)])} → {shown([str(dst)])} (without checkpoint/)",
                "finished": now(),
                "size_mb": round(size / 2**20, 2),
                "outputs": [shown([str(dst)])],
            },
        )
        print(f"[install] {name}: {size / 2**20:.2f} MB", flush=True)


def step_evaluate(a):
    for key, name in INSTALLED.items():
        out = MODELS / name / "test_metrics.json"
        run(
            f"evaluate-{key}",
            cli(
                "evaluate",
                "--emulator",
                MODELS / name,
                "--grid",
                a.work / "grid_realistic_test.h5",
                "--quiet",
                "-o",
                out,
            ),
            a.work,
            a.dry_run,
            [out],
        )


def step_error_model(a):
    for key, name in INSTALLED.items():
        d = MODELS / name
        # label-space systematics need one MAP fit per star: minutes with the Payne, hours with TransformerPayne on a CPU
        n_sys = a.systematics if key == "payne" else 0
        run(
            f"error-model-{key}",
            cli(
                "error-model",
                d,
                "--grid",
                a.work / "grid_realistic_test.h5",
                "--modes",
                a.error_modes,
                "--max-spectra",
                a.error_spectra,
                "--systematics",
                n_sys,
                "-o",
                d,
                "--quiet",
            ),
            a.work,
            a.dry_run,
            [d / "error_modes.npy"],
        )


def demo_wavelength(window_name: str):
    """The demo star's pixels: the window's grid, DEMO_EDGE_KMS inside each end."""
    from stellarinf.wavelength import SPEED_OF_LIGHT_KMS, get_window

    w = get_window(window_name)
    wl = w.grid()
    f = 1.0 + DEMO_EDGE_KMS / SPEED_OF_LIGHT_KMS
    return w, wl[(wl >= w.wmin * f) & (wl <= w.wmax / f)]


def step_demo(a):
    call = (
        f"stellarinf.validation.mocks.make_mock(SynthesizerModel(default_label_space(), {a.window!r}, 'realistic'), "
        f"<{a.window} pixels {DEMO_EDGE_KMS:g} km/s inside each end>, truth, snr={DEMO_SNR:g}, resolution=R, seed={DEMO_NOISE_SEED})"
    )
    _, spec_path, truth_path = demo_star("red")
    print(f"[demo] {call} → {spec_path.relative_to(REPO)}, {truth_path.name}", flush=True)
    if a.dry_run:
        return
    import stellarinf
    from stellarinf.validation.mocks import make_mock

    stellarinf.enable_float64()  # the synthesizer and the observation model compute in float64
    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.io.spectrum import write_spectrum_fits
    from stellarinf.labels import default_label_space
    from stellarinf.synth import SynthesizerModel

    t0 = time.perf_counter()
    window, wl = demo_wavelength(a.window)
    space = default_label_space()
    params = {**DEMO_TRUTH["labels"], **DEMO_TRUTH["nuisances"]}
    space.validate(space.array_from_mapping(DEMO_TRUTH["labels"]), what="demo truth")
    model = SynthesizerModel(space, window, "realistic")
    spec = make_mock(model, wl, params, snr=DEMO_SNR, resolution=window.resolution, seed=DEMO_NOISE_SEED)
    spec.meta.pop("truth", None)  # the truth lives in its own file
    spec.meta["object"] = "stellarinf demo star (synthetic)"
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    write_spectrum_fits(spec_path, spec)
    truth = {
        **DEMO_TRUTH,
        "snr": DEMO_SNR,
        "noise": "Gaussian, sigma = 1/snr per pixel (normalised flux)",
        "noise_seed": DEMO_NOISE_SEED,
        "window": window.name,
        "resolution": window.resolution,
        "n_pixels": int(len(wl)),
        "wavelength_range": [float(wl[0]), float(wl[-1])],
        "medium": "vacuum",
        "fidelity": "realistic",
        **demo_provenance(call),
    }
    write_json_atomic(truth_path, truth)
    record_demo(a.work, "demo", call, t0, (spec_path, truth_path))
    print(
        f"[demo] wrote {spec_path.relative_to(REPO)} ({len(wl)} pixels, S/N {spec.snr():.0f}) and {truth_path.name}",
        flush=True,
    )


def step_demo_galah(a):
    demo, spec_path, truth_path = demo_star("galah")
    windows = ", ".join(DEMO_GALAH_WINDOWS)
    call = (
        f"per arm of {windows}: stellarinf.validation.mocks.make_mock(<the realistic synthesizer with the {demo.emulator!r} "
        f"member's training physics>, <its mock pixels>, truth, snr={DEMO_SNR:g}, resolution=28000, seed={DEMO_NOISE_SEED} + arm); "
        "Spectrum.from_arms"
    )
    print(f"[demo-galah] {call} → {spec_path.relative_to(REPO)}, {truth_path.name}", flush=True)
    if a.dry_run:
        return
    import stellarinf
    from stellarinf.io.atomic import write_json_atomic
    from stellarinf.io.spectrum import Spectrum, write_spectrum_fits
    from stellarinf.shipped_models import set_members
    from stellarinf.validation.mocks import make_mock
    from stellarinf.validation.setups import benchmark_setup

    stellarinf.enable_float64()
    t0 = time.perf_counter()
    members = [set_members(demo.emulator)[w] for w in DEMO_GALAH_WINDOWS]
    arms, pixels = [], []
    for k, member in enumerate(members):
        fit_model, truth_model, wl, resolution, _ = benchmark_setup(member, quick=False, truth="synth")
        space = fit_model.label_space
        labels = {n: DEMO_GALAH_TRUTH["labels"].get(n, 0.0) for n in space.names}  # unlisted [X/Fe]: 0
        space.validate(space.array_from_mapping(labels), what="four-arm demo truth")
        params = {**labels, **DEMO_GALAH_TRUTH["nuisances"]}
        spec = make_mock(truth_model, wl, params, snr=DEMO_SNR, resolution=resolution, seed=DEMO_NOISE_SEED + k)
        spec.meta.pop("truth", None)
        arms.append(spec)
        pixels.append(int(len(wl)))
        print(f"[demo-galah] {member}: {len(wl)} pixels, {wl[0]:.1f}–{wl[-1]:.1f} Å", flush=True)
    star = Spectrum.from_arms(arms)
    star.meta["object"] = "stellarinf four-arm demo star (synthetic)"
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    write_spectrum_fits(spec_path, star)
    truth = {
        "labels": labels,
        "nuisances": DEMO_GALAH_TRUTH["nuisances"],
        "emulator": demo.emulator,
        "snr": DEMO_SNR,
        "noise": "Gaussian, sigma = 1/snr per pixel (normalised flux), an independent seed per arm",
        "noise_seed": DEMO_NOISE_SEED,
        "windows": list(DEMO_GALAH_WINDOWS),
        "resolution": 28000.0,
        "n_pixels": pixels,
        "medium": "vacuum",
        "fidelity": "realistic, each arm with the physics its broad member was trained on (molecules, alpha atmospheres)",
        **demo_provenance(call),
    }
    write_json_atomic(truth_path, truth)
    record_demo(a.work, "demo-galah", call, t0, (spec_path, truth_path))
    print(f"[demo-galah] wrote {spec_path.relative_to(REPO)} ({sum(pixels)} pixels in 4 arms)", flush=True)


def step_recipe(a):
    print("[recipe] data/models/RECIPE.md", flush=True)
    if a.dry_run:
        return
    import stellarinf
    from stellarinf.io.atomic import write_bytes_atomic
    from stellarinf.machine import machine_info

    log = {e["step"]: e for e in read_log(a.work)}
    lines = [
        "# How the shipped defaults were made",
        "",
        "Generated by `python data/make_defaults.py` (do not edit by hand; rerun the script).",
        "",
        f"- stellarinf {stellarinf.__version__}, git commit `{git_commit()}`; written {now()}",
        f"- machine: {json.dumps(machine_info())}",
        f"- work folder: `{shown([str(a.work)])}` (git-ignored; grids and training checkpoints)",
        "",
        "Models (loaded by `--emulator default` and `--emulator default-payne`):",
        "",
        "| name | kind | directory | size | held-out MAE | MSE | p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, name in INSTALLED.items():
        d = MODELS / name
        size = f"{dir_size(d) / 2**20:.2f} MB" if d.exists() else "not installed"
        m = json.loads((d / "test_metrics.json").read_text()) if (d / "test_metrics.json").exists() else {}
        fmt = lambda k: f"{m[k]:.3g}" if k in m else "—"  # noqa: E731
        lines.append(
            f"| {'default' if key == 'tp' else 'default-payne'} | {name} | `data/models/{name}/` | {size} | "
            f"{fmt('mae')} | {fmt('mse')} | {fmt('p99')} |"
        )
    lines += ["", "## Commands, in the order they were run", ""]
    order = [
        "grid",
        "test-grid",
        "simple-grid",
        "train-tp",
        "train-payne",
        "install-tp",
        "install-payne",
        "evaluate-tp",
        "evaluate-payne",
        "error-model-tp",
        "error-model-payne",
        "demo",
    ]
    for step in order:
        e = log.get(step)
        if e is None:
            continue
        extra = f" ({e['wall_s']:.0f} s)" if "wall_s" in e else ""
        lines += [f"**{step}** — finished {e.get('finished')}{extra}", "", "```bash", e["command"], "```", ""]
    lines += [
        "## Fixed choices",
        "",
        "- label box: `stellarinf.labels.default_label_space()` (Teff 4000–7000 K, log g 1–5, [Fe/H] −2..+0.5, "
        "vmic 0.5–2.5 km/s, [X/Fe] ±0.5 for Li, Al, Si, Ca, Ti, Ni, Ba)",
        f"- window {a.window}; Sobol design; grid seed 42, test-grid seed 43; training seed {a.seed}",
        f"- demo star truth: `{json.dumps(DEMO_TRUTH)}`, S/N {DEMO_SNR:g}, noise seed {DEMO_NOISE_SEED} "
        "(details in `data/demo/demo_truth.json`)",
        "",
        "Training stops at the wall-clock budget (`--max-minutes`) or the step cap, whichever comes first, so a rerun on "
        "a faster or slower machine gives a model of the same recipe but not bit-identical weights; the batches of "
        "step s are a pure function of (seed, s).",
        "",
    ]
    MODELS.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(MODELS / "RECIPE.md", "\n".join(lines).encode())


# ------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default=",".join(DEFAULT_STEPS), help=f"comma-separated, from: {', '.join(STEPS)}")
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK, help="grids and training runs (default benchmarks/work)")
    ap.add_argument("--window", default="galah-red")
    ap.add_argument("--n-grid", type=int, default=10_000, help="realistic training grid size")
    ap.add_argument("--n-test", type=int, default=1_000, help="held-out realistic grid size (≥ 500 for the benchmarks)")
    ap.add_argument("--n-simple", type=int, default=20_000, help="simple-fidelity grid size (simple-grid step)")
    ap.add_argument("--batch-size", type=int, default=16, help="spectra per synthesis batch (and per resumable part)")
    ap.add_argument("--tp-minutes", type=float, default=180.0, help="TransformerPayne training budget")
    ap.add_argument("--payne-minutes", type=float, default=60.0, help="Payne MLP training budget")
    ap.add_argument("--max-steps", type=int, default=200_000, help="step cap of each training run")
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    ap.add_argument(
        "--error-modes",
        type=int,
        default=28,
        help="correlated error modes per model (modes + continuum coefficients ≤ 32 keeps the likelihood cheap on CPU)",
    )
    ap.add_argument("--error-spectra", type=int, default=512, help="held-out spectra used for the error model")
    ap.add_argument(
        "--systematics",
        type=int,
        default=100,
        help="noiseless synthesizer stars for the Payne's label-space systematics",
    )
    ap.add_argument("--max-mb", type=float, default=10.0, help="largest model directory allowed in data/models/")
    ap.add_argument("--dry-run", action="store_true", help="print the commands and stop")
    a = ap.parse_args(argv)
    steps = [s.strip() for s in a.steps.split(",") if s.strip()]
    bad = [s for s in steps if s not in STEPS]
    if bad:
        ap.error(f"unknown step(s) {bad}; choose from {', '.join(STEPS)}")
    a.work = a.work.resolve()
    a.work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))  # `import stellarinf` from a clone even without installing

    for step in STEPS:  # fixed order, whatever order --steps lists them in
        if step not in steps:
            continue
        if step == "grid":
            step_grid(a, step, a.work / "grid_realistic.h5", a.n_grid, 42, "realistic")
        elif step == "test-grid":
            step_grid(a, step, a.work / "grid_realistic_test.h5", a.n_test, 43, "realistic")
        elif step == "simple-grid":
            step_grid(a, step, a.work / "grid_simple.h5", a.n_simple, 44, "simple")
        elif step == "train-tp":
            step_train(a, step, "transformer-payne", a.work / "models" / INSTALLED["tp"])
        elif step == "train-payne":
            step_train(a, step, "payne", a.work / "models" / INSTALLED["payne"])
        elif step == "install":
            step_install(a)
        elif step == "evaluate":
            step_evaluate(a)
        elif step == "error-model":
            step_error_model(a)
        elif step == "demo":
            step_demo(a)
        elif step == "demo-galah":
            step_demo_galah(a)
        elif step == "recipe":
            step_recipe(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
