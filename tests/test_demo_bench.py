"""`stellarinf bench` and its benchmark scripts (quick variants on toy grids), and `stellarinf demo`.

The benchmark scripts live in the repository's ``benchmarks/`` folder (not in the package); they are run
the way users run them: through ``stellarinf bench`` (a subprocess with this interpreter) or as scripts.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import stellarinf  # noqa: F401  (float64)
from stellarinf.cli import cli

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from toy_grid import TOY_SPACE, make_toy_grid  # noqa: E402


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCH))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(BENCH))
    return mod


def invoke(args, env=None):
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


# ------------------------------------------------------------------------------------ bench command
def test_bench_dry_run_passes_quick_emulator_and_output(tmp_path):
    r = invoke(["bench", "accuracy", "--quick", "--output-dir", str(tmp_path), "--dry-run", "--", "--sizes", "40"])
    assert r.exit_code == 0, r.output
    line = r.output.strip().splitlines()[-1]
    assert str(BENCH / "accuracy.py") in line
    assert "--quick" in line and f"--output {tmp_path / 'accuracy.json'}" in line and line.endswith("--sizes 40")
    r = invoke(["bench", "throughput", "--emulator", "default", "--dry-run"])
    assert r.exit_code == 0 and "--emulator default" in r.output


def test_bench_clear_errors(tmp_path):
    r = invoke(["bench", "nonsense"])
    assert r.exit_code == 2
    # accuracy.py takes no --emulator: refused with a message naming the script, not silently dropped
    from stellarinf.commands.bench import benchmarks_dir
    from stellarinf.errors import StellarinfError

    r = CliRunner().invoke(cli, ["bench", "accuracy", "--emulator", "default", "--dry-run"])
    assert isinstance(r.exception, StellarinfError) and "accuracy.py does not take --emulator" in str(r.exception)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STELLARINF_BENCHMARKS", str(tmp_path / "nowhere"))
        with pytest.raises(StellarinfError, match="benchmarks folder not found"):
            benchmarks_dir()
    # the `main` entry point turns that into exit code 3
    proc = subprocess.run(
        [sys.executable, "-m", "stellarinf.cli", "bench", "throughput", "--dry-run"],
        capture_output=True,
        text=True,
        env={**_env(), "STELLARINF_BENCHMARKS": str(tmp_path / "nowhere")},
    )
    assert proc.returncode == 3 and "benchmarks folder not found" in proc.stderr


def _env():
    import os

    return {**os.environ, "MPLBACKEND": "Agg"}


# ------------------------------------------------------------------------------------ throughput
def test_flop_counts_match_xla_for_one_layer_and_the_payne():
    import jax
    import jax.numpy as jnp

    from stellarinf.emulators.emulator import Emulator
    from stellarinf.emulators.transformer_payne import TransformerPayne, preset_config

    tp = load_script("throughput")
    wl = np.linspace(6500.0, 6600.0, 1000)
    # one layer, so XLA's cost analysis (which counts a scan body once) sees the whole network
    cfg = preset_config("small", len(TOY_SPACE), n_layers=1, log10_wavelength_ref=float(np.log10(6550.0)))
    emu = Emulator(TransformerPayne(cfg, jax.random.key(0)), TOY_SPACE, (6500.0, 6600.0))
    flops = tp.transformer_payne_flops(cfg, wl.size)
    D, T, F = 64, 8, 256
    assert flops["per_pixel_direct"] == (4 * D * D + 4 * T * D + 4 * D * F) + 2 * D * D + 4 * D
    assert flops["per_spectrum"] == 2 * len(TOY_SPACE) * D + 2 * D * T * D + 4 * 1 * T * D * D

    def xla_flops(e):
        fn = jax.jit(lambda lab, w: e.flux(lab, w))
        ca = fn.lower(jnp.asarray(TOY_SPACE.midpoint), jnp.asarray(wl)).compile().cost_analysis()
        ca = ca[0] if isinstance(ca, list) else ca
        return ca["flops"] / wl.size

    # matmuls dominate; XLA adds the element-wise work (GELU, softmax, norms, sines): within 25 %
    assert flops["per_pixel"] <= xla_flops(emu) <= 1.25 * flops["per_pixel"]
    pm, pcfg, _ = tp.payne_model(TOY_SPACE, wl)
    pf = tp.payne_flops(pcfg, wl.size)
    assert pf["per_spectrum"] == 2 * (3 * 300 + 300 * 300 + 300 * 1000)
    # the network alone (Emulator.flux adds the Lanczos interpolation to arbitrary wavelengths, ~300 FLOP/pixel)
    net = jax.jit(lambda lab: pm.network(pm.scale_labels(lab)))
    ca = net.lower(jnp.asarray(TOY_SPACE.midpoint)).compile().cost_analysis()
    ca = ca[0] if isinstance(ca, list) else ca
    assert pf["per_pixel"] <= ca["flops"] / wl.size <= 1.25 * pf["per_pixel"]
    assert xla_flops(pm) <= 2.0 * pf["per_pixel"]  # interpolation included: still the same order


def test_bench_throughput_quick_writes_results(tmp_path):
    r = invoke(
        [
            "bench",
            "throughput",
            "--quick",
            "--output-dir",
            str(tmp_path),
            "--",
            "--presets",
            "tiny",
            "--synth",
            "none",
            "--batch",
            "2",
            "--repeats",
            "1",
            "--matmul-n",
            "256",
        ]
    )
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "throughput.json").read_text())
    assert (tmp_path / "throughput.png").stat().st_size > 1000
    assert res["benchmark"] == "throughput" and res["quick"] is True
    for key in ("cpu", "cores", "jax_backend", "jax", "stellarinf"):
        assert key in res["machine"]
    assert res["matmul_peak"]["gflops"] > 0 and res["matmul_peak"]["n"] == 256
    rows = {row["name"]: row for row in res["models"]}
    assert set(rows) == {"transformer-payne-tiny", "payne-mlp"}, res["failures"]
    for row in rows.values():
        assert row["n_pixels"] == res["settings"]["n_pixels"] > 2000
        assert row["pixels_per_s"] == pytest.approx(2 * row["n_pixels"] / row["forward_median_s"])
        assert row["jacobian_median_s"] > 0 and row["flops_per_pixel"] > 0
        assert row["fraction_of_peak"] == pytest.approx(
            row["pixels_per_s"] * row["flops_per_pixel"] / 1e9 / res["matmul_peak"]["gflops"]
        )
    assert (
        rows["transformer-payne-tiny"]["n_parameters"] > 0
        and rows["transformer-payne-tiny"]["architecture"]["dim"] == 32
    )


# ------------------------------------------------------------------------------------ accuracy
def _toy_grid_files(tmp_path, n_train=56, n_test=24):
    train, test = make_toy_grid(n_train, 120, seed=1), make_toy_grid(n_test, 120, seed=2)
    train.save(tmp_path / "train.h5")
    test.save(tmp_path / "test.h5")
    return tmp_path / "train.h5", tmp_path / "test.h5", test


def test_bench_accuracy_quick_on_toy_grids(tmp_path):
    from stellarinf.emulators.metrics import evaluate_emulator
    from stellarinf.emulators.registry import load_emulator

    train, test_path, test = _toy_grid_files(tmp_path)
    out = tmp_path / "out"
    r = invoke(
        [
            "bench",
            "accuracy",
            "--quick",
            "--output-dir",
            str(out),
            "--",
            "--grid",
            str(train),
            "--test-grid",
            str(test_path),
            "--sizes",
            "40,1000",
            "--n-validation",
            "8",
            "--max-steps",
            "6",
            "--max-minutes",
            "5",
            "--validate-every",
            "3",
            "--quiet",
            "--workdir",
            str(tmp_path / "work"),
        ]
    )
    assert r.exit_code == 0, r.output
    res = json.loads((out / "accuracy.json").read_text())
    assert (out / "accuracy.png").exists()
    s = res["settings"]
    assert s["sizes"] == [40] and s["sizes_skipped"] == [1000] and s["n_test"] == 24 and s["n_validation"] == 8
    assert {run["model"] for run in res["runs"]} == {"transformer-payne", "payne"}
    for run in res["runs"]:
        assert run["n_train"] == 40 and run["steps"] == 6
        t = run["test"]
        for key in ("mae", "mse", "p99", "mae_line", "mae_continuum"):
            assert math.isfinite(t[key]) and t[key] >= 0
        assert t["n_spectra"] == 24
        # the numbers are those of the saved model on the held-out grid
        acc, _ = evaluate_emulator(load_emulator(run["model_dir"]), test)
        assert t["mae"] == pytest.approx(acc.result()["mae"], rel=1e-5)
        pos = run["position"]
        assert set(pos["by_label"]) == set(TOY_SPACE.names)
        assert sum(pos["by_label"]["teff"]["count"]) == 24 and sum(pos["by_edge_distance"]["count"]) == 24
        assert len(pos["teff_logg_map"]["mae"]) == 4
    (c,) = res["comparison"]
    by = {run["model"]: run["test"] for run in res["runs"]}
    assert c["n_train"] == 40 and c["mae_payne_over_tp"] == pytest.approx(
        by["payne"]["mae"] / by["transformer-payne"]["mae"]
    )
    assert c["in_claim_range"] is False and res["claim"]["tested_at"] == []


def test_accuracy_position_errors_bins_by_label():
    acc = load_script("accuracy")
    labels = np.array([[4600.0, 2.5, -1.0], [5500.0, 3.5, -0.5], [6300.0, 4.9, 0.4]])
    out = acc.position_errors(TOY_SPACE, labels, np.array([1.0, 3.0, 5.0]), n_bins=2, n_map=2)
    assert out["by_label"]["teff"]["mae"] == [1.0, 4.0] and out["by_label"]["teff"]["count"] == [1, 2]
    assert out["teff_logg_map"]["mae"] == [[1.0, None], [None, 4.0]]
    # distance to the nearest face (scaled units): the first and third stars lie near faces, the second at the centre
    assert out["by_edge_distance"]["count"] == [2, 1]


# ------------------------------------------------------------------------------------ pretrain
def test_pretrain_quick_two_stage_payne(tmp_path):
    from stellarinf.emulators.registry import load_emulator

    out = tmp_path / "pretrain.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "pretrain.py"),
            "--quick",
            "--model",
            "payne",
            "--sizes",
            "8",
            "--max-steps",
            "30",
            "--max-minutes",
            "5",
            "--pretrain-minutes",
            "5",
            "--validate-every",
            "10",
            "--quiet",
            "--workdir",
            str(tmp_path / "work"),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=str(REPO),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert out.with_suffix(".png").exists()
    assert res["benchmark"] == "pretrain" and res["settings"]["model"] == "payne"
    assert res["settings"]["scratch_sizes"] == [8, 80] and res["pretrain"]["trained_here"] is True
    (row,) = res["rows"]
    assert row["n"] == 8 and row["scratch_reference_n"] == 80 and row["reference_is_full_factor"]
    ratio = row["finetuned"]["test"]["mae"] / row["scratch_reference"]["test"]["mae"]
    assert row["mae_finetuned_over_reference"] == pytest.approx(ratio)
    assert row["matches_reference"] == (ratio <= 1.1)
    assert res["n_match"] == (8 if row["matches_reference"] else None)
    # the fine-tuned model really started from the pre-trained one
    meta = load_emulator(row["finetuned"]["model_dir"]).metadata
    assert meta["training"]["init"] == res["pretrain"]["source"]


# ------------------------------------------------------------------------------------ demo
def _demo_pieces_missing() -> str | None:
    missing = []
    for mod in (
        "stellarinf.observe.model",
        "stellarinf.io.spectrum",
        "stellarinf.inference.results",
        "stellarinf.inference.plots",
        "stellarinf.validation.mocks",
        "stellarinf.validation.analytic",
    ):
        if importlib.util.find_spec(mod) is None:
            missing.append(mod)
    return ", ".join(missing) or None


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    """A tiny Payne emulator trained on an analytic grid, and a noisy mock star of the same analytic model."""
    reason = _demo_pieces_missing()
    if reason:
        pytest.skip(f"stellarinf demo needs modules that are not there yet: {reason}")
    from stellarinf.design import sample_labels
    from stellarinf.emulators.training import TrainConfig, train
    from stellarinf.io.grid import SpectralGrid
    from stellarinf.io.spectrum import write_spectrum_fits
    from stellarinf.validation.analytic import AnalyticLineModel
    from stellarinf.validation.mocks import make_mock
    from stellarinf.wavelength import SPEED_OF_LIGHT_KMS, log_uniform_grid

    d = tmp_path_factory.mktemp("demo")
    model = AnalyticLineModel(TOY_SPACE, (6600.0, 6620.0), 28_000.0, n_lines=12, seed=0)
    wl = log_uniform_grid(6600.0, 6620.0, 28_000.0)
    labels = sample_labels(TOY_SPACE, 160, "sobol", 0)
    import jax

    flux = np.asarray(jax.vmap(model.flux, in_axes=(0, None))(labels, wl))
    grid = SpectralGrid(TOY_SPACE, labels, wl, flux, None, {"resolution": 28_000.0})
    cfg = TrainConfig(model="payne", hidden=(32, 32), max_steps=200, validate_every=50, progress=False, seed=0)
    train(grid, d / "model", cfg)
    f = 1 + 30.0 / SPEED_OF_LIGHT_KMS
    obs_wl = wl[(wl >= 6600.0 * f) & (wl <= 6620.0 / f)]
    truth = {
        "labels": {"teff": 5650.0, "logg": 4.3, "feh": -0.25},
        "nuisances": {"rv": 12.3, "vsini": 4.0, "vmacro": 3.0},
    }
    spec = make_mock(model, obs_wl, {**truth["labels"], **truth["nuisances"]}, snr=80, resolution=28_000.0, seed=1)
    write_spectrum_fits(d / "demo_star.fits", spec)
    (d / "demo_truth.json").write_text(json.dumps(truth))
    return d, truth


@pytest.mark.slow  # ~2 min on a loaded 2-core CPU: MAP + Laplace compile dominate; run with `pytest -m slow`
def test_demo_end_to_end_with_a_tiny_model(tiny_demo, tmp_path):
    from astropy.table import Table

    d, truth = tiny_demo
    out = tmp_path / "demo_out"
    r = invoke(
        [
            "demo",
            "--emulator",
            str(d / "model"),
            "--spectrum",
            str(d / "demo_star.fits"),
            "--sampler",
            "laplace",
            "--chains",
            "2",
            "--draws",
            "200",
            "--map-starts",
            "2",
            "-o",
            str(out),
        ]
    )
    assert r.exit_code == 0, r.output
    for name in (
        "demo.nc",
        "demo_summary.fits",
        "demo_summary.csv",
        "demo_report.json",
        "demo_corner.png",
        "demo_fit.png",
    ):
        assert (out / name).exists(), name
    report = json.loads((out / "demo_report.json").read_text())
    assert report["fixed"] == {"vmacro": 3.0}  # held at the truth file's value by default
    rows = {row["label"]: row for row in report["rows"]}
    assert set(rows) == {"teff", "logg", "feh", "rv", "vsini"}
    for name, row in rows.items():
        assert row["truth"] == {**truth["labels"], **truth["nuisances"]}[name]
        assert row["crb"] > 0 and math.isfinite(row["crb"])
        assert row["sd_over_crb"] == pytest.approx(row["sd"] / row["crb"])
        assert row["pull"] == pytest.approx((row["median"] - row["truth"]) / row["sd"])
    table = Table.read(out / "demo_summary.csv")
    assert float(table[list(table["name"]).index("teff")]["p50"]) == pytest.approx(rows["teff"]["median"], rel=1e-4)
    # the printed table has the truth, the posterior and the CRB side by side
    assert "sd/CRB" in r.output and "(med−truth)/sd" in r.output and "teff" in r.output


def test_demo_table_rows_pull_and_crb_ratio():
    from astropy.table import Table

    from stellarinf.commands.demo import comparison_rows, format_rows

    table = Table(
        rows=[
            ("teff", "K", 5700.0, 50.0, 5650.0, 5750.0, ""),
            ("cont_0_0", "", 1.0, 0.01, 0.99, 1.01, ""),
            ("rv", "km/s", 12.0, 0.2, 11.8, 12.2, "ess"),
        ],
        names=("name", "unit", "p50", "sd", "p16", "p84", "flags"),
    )
    rows = comparison_rows(table, {"teff": 5650.0, "rv": 12.3}, {"teff": 40.0, "rv": 0.25})
    assert [r["label"] for r in rows] == ["teff", "rv"]  # continuum coefficients are not reported
    assert rows[0]["pull"] == pytest.approx(1.0) and rows[0]["sd_over_crb"] == pytest.approx(1.25)
    assert rows[1]["pull"] == pytest.approx(-1.5) and rows[1]["flags"] == "ess"
    text = format_rows(rows)
    assert "5650.0" in text and "+1.00" in text and "1.25" in text and "-1.50" in text


def test_demo_names_the_fix_when_the_default_model_is_missing(tmp_path):
    from stellarinf.io.spectrum import Spectrum, write_spectrum_fits

    data = tmp_path / "data"
    (data / "demo").mkdir(parents=True)
    wl = np.linspace(6500.0, 6510.0, 50)
    # a flux with some structure: a flat one is refused (as input, before the model loads), which is not this test
    write_spectrum_fits(
        data / "demo" / "demo_star.fits",
        Spectrum(wl, 1.0 - 0.01 * np.sin(wl), np.full_like(wl, 0.01), resolution=28000.0),
    )
    (data / "demo" / "demo_truth.json").write_text(json.dumps({"labels": {"teff": 5650.0}, "nuisances": {"rv": 0.0}}))
    env = {**_env(), "STELLARINF_DATA": str(data)}
    # the three commands in one process (each `python -m stellarinf.cli` start imports JAX and the package again:
    # three starts took 22 s here, one 11 s); the second finds the star gone because the script removes it after the first
    script = f"""
import pathlib, sys
from stellarinf.cli import main
for i, argv in enumerate([["demo", "-o", {str(tmp_path / "o")!r}], ["demo"], ["demo", "--star", "galah"]]):
    try:
        main(argv)
    except SystemExit as exc:
        print(f"@@ exit {{exc.code}}", file=sys.stderr, flush=True)
    if i == 0:
        pathlib.Path({str(data / "demo" / "demo_star.fits")!r}).unlink()
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    calls = proc.stderr.split("@@ exit ")
    assert len(calls) == 4, proc.stderr[-3000:]
    codes = [int(c.split("\n", 1)[0]) for c in calls[1:]]
    model_missing, star_missing, galah_missing = calls[:3]
    assert codes == [3, 3, 3], proc.stderr[-3000:]
    assert "python data/make_defaults.py" in model_missing
    assert "demo_star.fits is missing" in star_missing and "--steps demo" in star_missing
    assert "demo_galah_star.fits is missing" in galah_missing and "--steps demo-galah" in galah_missing


def test_four_arm_demo_star_is_described_by_its_truth_through_the_broad_set():
    """The shipped four-arm demo star (`stellarinf demo --star galah`): four GALAH arms at R 28,000, each served by
    its window's member of the set its truth file names, and the truth file's labels (the set's whole label space,
    inside the box) reproduce the flux: the residual against each member's noiseless model at the truth is the
    stated noise (reduced χ² ≈ 1; the members' emulation error is ~10× below σ = 1/80)."""
    from stellarinf.commands.demo import DEMO_STARS, read_truth
    from stellarinf.emulators.registry import load_emulator
    from stellarinf.io.spectrum import read_spectrum
    from stellarinf.paths import data_dir
    from stellarinf.shipped_models import set_members
    from stellarinf.validation.mocks import noiseless_flux

    star = DEMO_STARS["galah"]
    spec = read_spectrum(data_dir().joinpath(*star.spectrum))
    doc = json.loads(data_dir().joinpath(*star.truth).read_text())
    truth = read_truth(data_dir().joinpath(*star.truth))
    assert star.emulator == doc["emulator"] == "broad"
    arms = spec.arms()
    assert len(arms) == 4 and spec.is_multi_arm
    members = set_members(star.emulator)
    for arm, window in zip(arms, ("galah-blue", "galah-green", "galah-red", "galah-ir")):
        model = load_emulator(members[window])
        lo, hi = model.wavelength_range
        assert lo < arm.wavelength[0] and arm.wavelength[-1] < hi  # inside its member's range
        assert float(arm.resolution) == 28000.0
        space = model.label_space
        assert set(doc["labels"]) == set(space.names)
        space.validate(space.array_from_mapping(doc["labels"]), what="four-arm demo truth")
        flux = noiseless_flux(model, arm.wavelength, truth, 28000.0)
        chi2r = float(np.mean(((arm.flux - flux) / arm.sigma) ** 2))
        assert 0.9 < chi2r < 1.15, (window, chi2r)
        assert np.allclose(arm.sigma, 1.0 / doc["snr"])


@pytest.mark.slow  # ~1-2 min: the four-arm MAP + Laplace compile; run with `pytest -m slow`
def test_four_arm_demo_recovers_its_truth(tmp_path):
    """`stellarinf demo --star galah` end to end: the broad set's MAP + Laplace recovers every one of the star's
    37 parameters within 3 total sd (posterior sd and the members' sd_sys in quadrature), the CRB at the truth is
    finite for each, and the plots show the stellar labels (corner) and one column per arm (fit)."""
    out = tmp_path / "galah"
    r = invoke(["demo", "--star", "galah", "--quiet", "-o", str(out)])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "demo_report.json").read_text())
    assert report["emulator"] == "broad" and report["sampler"] == "laplace"
    rows = report["rows"]
    assert len(rows) == 37  # 35 labels, rv, v sin i (v macro held at the truth)
    for row in rows:
        total = math.hypot(row["sd"], row["sd_sys"])
        assert abs(row["median"] - row["truth"]) <= 3 * total, row
        assert row["crb"] > 0 and math.isfinite(row["crb"])
    assert (out / "demo_corner.png").exists() and (out / "demo_fit.png").exists()


def test_make_defaults_dry_run_lists_the_recipe(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "data" / "make_defaults.py"), "--dry-run", "--work", str(tmp_path)],
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "stellarinf grid --n 10000 --design sobol --seed 42 --fidelity realistic --window galah-red" in text
    assert "--seed 43" in text  # the held-out grid uses another seed
    assert "--model transformer-payne" in text and "--preset small" in text and "--model payne" in text
    assert "data/models/transformer-payne-small" in text and "data/models/payne-mlp" in text
    assert "snr=80" in text and "RECIPE.md" in text
    assert not (tmp_path / "make_defaults_log.json").exists()  # a dry run records nothing


def test_recovery_benchmark_setup_uses_the_synthesizer_over_the_emulator_range():
    """The full (non-quick) recovery benchmark: the truth is the 1D LTE synthesizer over exactly the fitted
    emulator's range, and the instrument pixels leave room for Doppler shifts inside it."""
    from stellarinf.validation.setups import benchmark_setup

    fit, truth, wl, resolution, desc = benchmark_setup("default-payne", quick=False, truth="synth")
    assert type(truth).__name__ == "SynthesizerModel" and desc["truth_model"] == "SynthesizerModel(realistic)"
    assert truth.wavelength_range == pytest.approx(fit.wavelength_range)
    lo, hi = fit.wavelength_range
    assert lo < wl.min() and wl.max() < hi and resolution == 28000.0
    # mocks at the emulator's own resolving power: a Gaia RVS model's 11,500 (28,000 would be refused as sharper)
    assert benchmark_setup("default-payne-rvs", quick=False, truth="emulator")[3] == 11500.0


@pytest.mark.slow  # ~80 s on a 2-core CPU, compiles nearly all of it; the Laplace recovery it relies on is tested on
# its own (test_inference_batch, test_inference_map_laplace); run with `pytest -m slow` after changing the scripts
def test_recovery_and_calibration_quick_runs_recover_known_truth(tmp_path):
    """The plumbing of the two posterior-honesty benchmarks on the analytic model (truth = fit model): every
    star's Laplace posterior is near the truth, and the intervals' coverage is a fraction in [0, 1].

    S/N 200: at S/N 100 the first star ([Fe/H] −1.67, v sin i 12.6 km/s: its lines nearly washed out) has two
    RV modes 130 km/s apart within 0.03 in log posterior; the MAP may pick either, and a Laplace
    approximation describes only the one it sits on."""
    recovery = load_script("inference_recovery")
    out = recovery.main(["--quick", "--n-stars", "2", "--snr", "200", "--output", str(tmp_path / "rec.json")])
    doc = json.loads((tmp_path / "rec.json").read_text())
    summary = doc["per_snr"]["200"]["laplace"]
    assert summary["n_stars"] == 2 and out["per_snr"]["200"]["laplace"]["n_stars"] == 2
    assert all(abs(v) < 4.0 for v in summary["median_pull_per_label"].values())
    calibration = load_script("calibration")
    cal = calibration.main(["--quick", "--n-mocks", "4", "--output", str(tmp_path / "cal.json")])
    assert 0.0 <= cal["coverage_68"] <= cal["coverage_95"] <= 1.0 and cal["n_intervals"] == 4 * 5


def test_accuracy_compare_takes_the_silu_payne_when_the_published_one_did_not_run():
    """The claim check needs a baseline: the LeakyReLU Payne where it ran, else the SiLU one (the shipped default);
    before, a run of TransformerPayne against the SiLU Payne alone compared nothing."""
    acc = load_script("accuracy")

    def run(model, n, mae):
        keys = ("mae", "mse", "p99", "mae_line", "mae_continuum")
        return {"model": model, "n_train": n, "test": {k: mae * (i + 1) for i, k in enumerate(keys)}}

    silu_only = acc.compare([run("transformer-payne", 2000, 1e-3), run("payne-silu", 2000, 4e-3)])
    assert len(silu_only) == 1 and silu_only[0]["baseline"] == "payne-silu"
    assert silu_only[0]["mae_payne_over_tp"] == pytest.approx(4.0) and silu_only[0]["tp_at_least_2x_better_mae"]
    both = acc.compare([run("transformer-payne", 500, 1e-3), run("payne", 500, 1.5e-3), run("payne-silu", 500, 4e-3)])
    assert both[0]["baseline"] == "payne" and both[0]["mae_payne_over_tp"] == pytest.approx(1.5)
    assert both[0]["mae_payne_silu_over_tp"] == pytest.approx(4.0) and not both[0]["in_claim_range"]
    assert acc.compare([run("transformer-payne", 500, 1e-3)]) == []


def test_gpu_results_reads_the_device_log():
    """benchmarks/gpu_results.py: the GPU's nvidia-smi row and the grid run's batches off a device call's log (the
    progress bar's carriage-return updates, whole seconds), the first batch apart from the later ones."""
    gr = load_script("gpu_results")
    log = (
        "name, memory.total [MiB], driver_version\nNVIDIA H200, 143771 MiB, 580.159.04\n"
        "jax 0.11.2 [CudaDevice(id=0)] equinox 0.13.8\n== synth start (limit 150 s) [10:08:18]\n"
        "\rgrid realistic galah-red:   0%|          | 0/192 [00:00<?, ?spec/s]"
        "\rgrid realistic galah-red:  33%|###       | 64/192 [00:20<00:41,  3.06spec/s]"
        "\rgrid realistic galah-red:  67%|######    | 128/192 [00:25<00:11,  5.53spec/s]"
        "\rgrid realistic galah-red: 100%|##########| 192/192 [01:05<00:00,  6.70spec/s]\n"
        "== synth rc=0 wall=38.2 s [10:08:56]\n== fit start\n 1/2 [00:09<00:01] after the stage: not the grid's\n"
    )
    gpu = gr.gpu_line(log)
    assert gpu["nvidia_smi"] == {
        "name": "NVIDIA H200",
        "memory.total [MiB]": "143771 MiB",
        "driver_version": "580.159.04",
    }
    assert gpu["software"].startswith("jax 0.11.2")
    synth = gr.synth_progress(log)
    assert [b["rows"] for b in synth["batches"]] == [64, 64, 64]
    assert [b["seconds"] for b in synth["batches"]] == [20, 5, 40]  # 01:05 is 65 s
    assert synth["first_batch_spectra_per_second_incl_compile"] == pytest.approx(3.2)
    assert synth["later_batches_spectra_per_second"] == pytest.approx(128 / 45)
    assert gr.synth_progress("== fit start\n") is None


def test_catalog_benchmark_makes_a_set_s_stars_multi_arm(tmp_path):
    """catalog_throughput with a set of models (``--emulator broad``): a mock star is made for each member's window
    (restricted by ``--windows``), and the manifest lists a multi-arm star's files joined by ``;`` (as fit-catalog
    reads them), a one-model star's one file."""
    ct = load_script("catalog_throughput")
    assert ct.arm_models("default-payne") == ["default-payne"]
    assert ct.arm_models("broad", "gaia-rvs,galah-red") == ["broad-payne-red", "broad-payne-rvs"]
    assert len(ct.arm_models("broad")) == 5
    with pytest.raises(SystemExit, match="no member of 'broad' covers galah-uv"):
        ct.arm_models("broad", "galah-uv")
    spectra = tmp_path / "spectra"
    spectra.mkdir()
    for name in ("star00000_6478.fits", "star00000_8470.fits", "star00001.fits", "star000010_1.fits"):
        (spectra / name).write_bytes(b"")
    assert ct.star_paths(tmp_path, "star00000") == "spectra/star00000_6478.fits;spectra/star00000_8470.fits"
    assert ct.star_paths(tmp_path, "star00001") == "spectra/star00001.fits"
    rows = ct.write_manifest(tmp_path, ["star00000", "star00001"]).read_text().splitlines()
    assert rows[1] == "spectra/star00000_6478.fits;spectra/star00000_8470.fits,star00000"
