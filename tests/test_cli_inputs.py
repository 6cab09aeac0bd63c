"""Issue #23: bad command-line inputs are refused early with a clear message (exit 2 usage / 3 bad input), never a
traceback, a NaN metric, or an overwritten shipped result."""

import json

import h5py
import jax
import numpy as np
import pytest
from click.testing import CliRunner
from toy_grid import TOY_SPACE, make_toy_grid

from stellarinf.cli import cli, main
from stellarinf.errors import StellarinfError


def invoke(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def run_main(args, capsys):
    """The installed entry point in-process: (exit code, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code, capsys.readouterr().err


def test_grid_and_train_refuse_zero_sizes(tmp_path):
    r = invoke(["grid", "-o", str(tmp_path / "g.h5"), "--n", "0"])
    assert r.exit_code == 2 and "'--n'" in r.output and "0 is not in the range x>=1" in r.output
    assert not (tmp_path / "g.h5").exists()
    r = invoke(["train", "--grid", str(tmp_path / "g.h5"), "--batch-spectra", "0", "-o", str(tmp_path / "m")])
    assert r.exit_code == 2 and "'--batch-spectra'" in r.output
    from stellarinf.emulators.training import TrainConfig

    with pytest.raises(StellarinfError, match="batch_spectra must be ≥ 1.*--batch-spectra"):
        TrainConfig(batch_spectra=0).resolved()
    with pytest.raises(StellarinfError, match="batch_pixels"):
        TrainConfig(batch_pixels=0).resolved()


@pytest.fixture(scope="module")
def payne_and_grid(tmp_path_factory):
    from stellarinf.emulators import Emulator, PayneConfig, PayneMLP, save_emulator

    d = tmp_path_factory.mktemp("eval")
    grid = make_toy_grid(n=12, n_pix=40, seed=3)
    emu = Emulator(
        PayneMLP(PayneConfig(3, grid.wavelength.size, (8, 8)), jax.random.key(1)),
        TOY_SPACE,
        (float(grid.wavelength[0]), float(grid.wavelength[-1])),
        training_wavelength=grid.wavelength,
    )
    save_emulator(d / "payne", emu)
    return d / "payne", grid


def test_evaluate_refuses_nan_rows_and_corrupted_bytes(tmp_path, payne_and_grid, capsys):
    model, grid = payne_and_grid
    good = tmp_path / "good.h5"
    grid.save(good)
    out = tmp_path / "m.json"
    code, err = run_main(["evaluate", "--emulator", str(model), "--grid", str(good), "--quiet", "-o", str(out)], capsys)
    assert code == 0 and np.isfinite(json.loads(out.read_text())["mae"]), err
    nan_row = tmp_path / "nan.h5"
    grid.save(nan_row)
    with h5py.File(nan_row, "r+") as fh:
        fh["flux"][5, 7] = np.nan
    out.unlink()
    code, err = run_main(
        ["evaluate", "--emulator", str(model), "--grid", str(nan_row), "--quiet", "-o", str(out)], capsys
    )
    assert code == 3 and "grid row(s) [5] hold NaN/inf" in err and "Regenerate" in err
    assert not out.exists()  # no "mae": NaN written
    # bytes overwritten inside the flux data (0xFF... is a NaN pattern for float32)
    corrupt = tmp_path / "corrupt.h5"
    grid.save(corrupt)
    with h5py.File(corrupt, "r") as fh:
        ds = fh["flux"]
        assert ds.compression is None and ds.chunks == ds.shape  # one uncompressed chunk: row-major bytes on disk
        offset, itemsize, n_pix = ds.id.get_chunk_info(0).byte_offset, ds.dtype.itemsize, ds.shape[1]
    with open(corrupt, "r+b") as fh:
        fh.seek(offset + (9 * n_pix + 3) * itemsize)
        fh.write(b"\xff" * 16)
    code, err = run_main(["evaluate", "--emulator", str(model), "--grid", str(corrupt), "--quiet"], capsys)
    assert code == 3 and "grid row(s) [9]" in err


def test_crb_refuses_an_unknown_prior_before_computing(monkeypatch):
    import stellarinf.forecast as fc
    from stellarinf.validation.setups import analytic_model

    real = fc.resolve_model  # the CLI has no test model: inject the analytic one through the library's resolver
    monkeypatch.setattr(
        fc, "resolve_model", lambda m, window="galah-red", **kw: real(analytic_model(window), window, **kw)
    )

    def no_jacobian(*a, **k):
        raise AssertionError("the Jacobian was computed before the prior names were checked")

    monkeypatch.setattr(fc, "jacobian_and_value", no_jacobian)
    r = invoke(["crb", "--emulator", "analytic-injected", "--prior", "foo=1+-1"])
    assert r.exit_code == 3 and "prior(s) on ['foo']: no such parameter" in r.output, r.output
    r = invoke(["crb", "--emulator", "analytic-injected", "--fix", "logg", "--prior", "logg=4.4+-0.1"])
    assert r.exit_code == 3 and "held fixed" in r.output, r.output


def test_empty_and_header_only_csv_give_one_line(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "hdr.csv").write_text("wavelength,flux,error\n")
    for name, what in (("empty.csv", "is empty"), ("hdr.csv", "has a header but no rows")):
        r = invoke(["inspect", str(tmp_path / name)])
        assert r.exit_code == 3 and what in r.output and len(r.output.strip().splitlines()) == 1, r.output


def test_bench_quick_does_not_overwrite_the_shipped_results(tmp_path):
    from stellarinf.commands.bench import benchmarks_dir

    quick = benchmarks_dir() / "results" / "quick"
    r = invoke(["bench", "accuracy", "--quick", "--dry-run"])
    line = r.output.strip().splitlines()[-1]
    assert r.exit_code == 0 and f"--output {quick / 'accuracy.json'}" in line, r.output
    r = invoke(["bench", "accuracy", "--quick", "--dry-run", "--", "-o", str(tmp_path / "a.json")])
    line = r.output.strip().splitlines()[-1]
    assert "--output " not in line and line.endswith(f"-o {tmp_path / 'a.json'}")
    r = invoke(["bench", "throughput", "--dry-run"])  # full runs still write the shipped location (script default)
    assert "--output" not in r.output.strip().splitlines()[-1]


def test_time_budgeted_training_shows_a_time_bar():
    from stellarinf.emulators.training import TrainConfig, _ProgressBar

    bar = _ProgressBar(
        TrainConfig(max_minutes=2.0, max_steps=10**9, progress=True), {"step": 0, "elapsed_s": 30.0}, "payne"
    )
    assert bar.bar.total == 120.0 and bar.bar.unit == "s" and bar.bar.n == 30.0
    bar.advance({"step": 10, "elapsed_s": 90.0})
    bar.set_postfix(loss="0.1")
    assert bar.bar.n == pytest.approx(90.0) and "90/120 s" in str(bar.bar) and "step=10" in str(bar.bar)
    bar.advance({"step": 11, "elapsed_s": 500.0})  # past the budget: capped at the total
    assert bar.bar.n == pytest.approx(120.0)
    bar.close()
    steps = _ProgressBar(TrainConfig(max_steps=500, progress=True), {"step": 3, "elapsed_s": 0.0}, "payne")
    assert steps.bar.total == 500 and steps.bar.unit == "step" and steps.bar.n == 3
    steps.close()


def test_forecast_says_when_the_model_error_dominates_the_noise():
    import warnings

    from stellarinf import forecast as F
    from stellarinf.labels import default_label_space
    from stellarinf.validation.analytic import AnalyticLineModel
    from stellarinf.wavelength import Window

    assert F.emulator_error_message(np.full(10, 1e-3), np.full(10, 1e-2)) is None  # noise dominates: silent
    assert "10× the noise" in F.emulator_error_message(np.full(10, 1e-3), np.full(10, 1e-4))
    window = Window("test-small", 6540.0, 6580.0, 28_000.0, 2.5, "test window")
    space = default_label_space().subset(["teff", "logg", "feh"])
    model = AnalyticLineModel(space, (6530.0, 6590.0), None, n_lines=12, seed=3, error_level=2e-3)
    star = {"teff": 5772.0, "logg": 4.44, "feh": 0.0}
    with pytest.warns(F.EmulatorErrorWarning, match="--emulator-error"):
        F.forecast(model, star, window=window, snr=1e6, marginalize=())
    with warnings.catch_warnings():
        warnings.simplefilter("error", F.EmulatorErrorWarning)
        F.forecast(model, star, window=window, snr=100.0, marginalize=())  # σ = 1e-2 > error: no warning
        F.forecast(model, star, window=window, snr=1e6, marginalize=(), emulator_error=True)  # included: no warning


def test_evaluate_reports_the_error_between_pixels_on_an_oversampled_grid(tmp_path, payne_and_grid, capsys):
    """On a grid with every half-pixel point the Payne (its pixels: the even columns) is scored at and between them."""
    model, _ = payne_and_grid
    fine = tmp_path / "x2.h5"
    make_toy_grid(n=12, n_pix=40, seed=3, oversample=2).save(fine)
    out = tmp_path / "m.json"
    code, err = run_main(["evaluate", "--emulator", str(model), "--grid", str(fine), "--quiet", "-o", str(out)], capsys)
    m = json.loads(out.read_text())
    assert code == 0 and m["n_pixels"] == 79, err
    np.testing.assert_allclose(m["mae"], (40 * m["mae_on_pixels"] + 39 * m["mae_between_pixels"]) / 79, rtol=1e-9)
    np.testing.assert_allclose(m["between_pixel_ratio"], m["mae_between_pixels"] / m["mae_on_pixels"])
