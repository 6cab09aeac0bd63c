"""`stellarinf fit` on a tiny FITS table (analytic test model), outputs, and bad inputs (exit code 3)."""

import json
import warnings

import numpy as np
import pytest
from astropy.table import Table

import stellarinf  # noqa: F401
from stellarinf.cli import main
from stellarinf.inference.mocks import analytic_setup, make_mock
from stellarinf.inference.results import read_inference_data
from stellarinf.io.spectrum import write_spectrum_fits

TRUTH = {"teff": 5300.0, "logg": 3.9, "feh": -0.6, "rv": -21.0, "vsini": 5.0, "vmacro": 0.0}
COMMON = ["--emulator", "analytic-test", "--rv-max", "60", "--vsini-max", "20", "--fix", "vmacro=0", "--continuum-degree", "0", "--starts", "2"]


@pytest.fixture(scope="module")
def spectrum_file(tmp_path_factory):
    model, wl = analytic_setup()
    spec = make_mock(model, wl, TRUTH, snr=120, resolution=20000, seed=4)
    path = tmp_path_factory.mktemp("fit") / "star.fits"
    write_spectrum_fits(path, spec)
    return path


def run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_fit_laplace_writes_netcdf_and_tables(spectrum_file, tmp_path, capsys):
    out = tmp_path / "star"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, stdout, err = run(["fit", str(spectrum_file), *COMMON, "--sampler", "laplace", "--draws", "400", "--prior", "logg=3.9+-0.3", "-o", str(out), "--plots"], capsys)
    assert code == 0, err
    assert "teff" in stdout and "chi2=" in stdout
    idata = read_inference_data(str(out) + ".nc")
    assert {"teff", "logg", "feh", "rv", "vsini"} <= set(idata.posterior.data_vars)
    assert {"posterior_predictive", "observed_data", "constant_data"} <= set(idata.groups())
    assert json.loads(idata.posterior.attrs["priors"])["logg"]["kind"] == "gaussian"
    table = Table.read(str(out) + "_summary.fits")
    assert {"mean", "sd", "p16", "p50", "p84", "r_hat", "ess_bulk", "ess_tail", "flags"} <= set(table.colnames)
    for row in table:
        assert abs(row["p50"] - TRUTH[row["name"]]) < 3 * row["sd"], (row["name"], row["p50"], row["sd"])
    assert Table.read(str(out) + "_summary.csv", format="ascii.csv")["name"].tolist() == table["name"].tolist()
    assert (tmp_path / "star_corner.png").stat().st_size > 1000 and (tmp_path / "star_fit.png").stat().st_size > 1000
    assert 0.7 < table.meta["CHI2RED"] < 1.3


def test_fit_laplace_is_records_its_importance_diagnostics(spectrum_file, tmp_path, capsys):
    out = tmp_path / "star_is"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, stdout, err = run(["fit", str(spectrum_file), *COMMON, "--sampler", "laplace-is", "--chains", "2", "--draws", "500", "-o", str(out)], capsys)
    assert code == 0, err
    idata = read_inference_data(str(out) + ".nc")
    attrs = idata.posterior.attrs
    assert attrs["method"] == "laplace-is" and 0 < float(attrs["importance_ess"]) <= 1000
    assert float(attrs["pareto_k"]) < float(attrs["pareto_k_threshold"])
    table = Table.read(str(out) + "_summary.fits")
    assert "pareto_k" not in table.meta["FLAGS"]
    assert np.all(table["ess_bulk"] <= float(attrs["importance_ess"]) + 1e-6)
    for row in table:
        assert abs(row["p50"] - TRUTH[row["name"]]) < 3 * row["sd"], (row["name"], row["p50"], row["sd"])


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--prior", "lgg=4+-0.1"], "unknown parameter 'lgg'"),
        (["--prior", "logg=4.4"], "cannot parse"),
        (["--prior", "logg=9+-0.1"], "outside the model's range"),
        (["--fix", "vmacro"], "NAME=VALUE"),
    ],
)
def test_bad_priors_exit_3_with_a_message(spectrum_file, tmp_path, capsys, extra, words):
    code, _, err = run(["fit", str(spectrum_file), *COMMON, "--sampler", "map", *extra, "-o", str(tmp_path / "x")], capsys)
    assert code == 3 and words in err


def test_garbage_spectra_are_refused(tmp_path, capsys):
    from astropy.io import fits

    wl = np.linspace(5001.0, 5029.0, 200)
    bad = tmp_path / "bad.fits"
    cols = [fits.Column(name="wavelength", format="D", array=wl), fits.Column(name="flux", format="D", array=np.ones(200)), fits.Column(name="error", format="D", array=np.zeros(200))]
    fits.BinTableHDU.from_columns(cols).writeto(bad)
    code, _, err = run(["fit", str(bad), *COMMON, "-o", str(tmp_path / "y")], capsys)
    assert code == 3 and "uncertainties" in err
    far = tmp_path / "far.fits"
    cols[0] = fits.Column(name="wavelength", format="D", array=wl + 2000)
    cols[2] = fits.Column(name="error", format="D", array=np.full(200, 0.01))
    fits.BinTableHDU.from_columns(cols).writeto(far)
    code, _, err = run(["fit", str(far), *COMMON, "-o", str(tmp_path / "z")], capsys)
    assert code == 3 and "outside the model's range" in err
    assert not (tmp_path / "y.nc").exists() and not (tmp_path / "z.nc").exists()
