"""Cramér–Rao forecasts through the full observation model (stellarinf.forecast, `stellarinf crb`)."""

import json
import math
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

import stellarinf  # noqa: F401
from stellarinf import forecast as F
from stellarinf.fisher import finite_difference_jacobian, fisher_from_jacobian
from stellarinf.wavelength import Window

# a narrow window keeps the observation model small (fast to compile and differentiate)
SMALL = Window("test-small", 6540.0, 6600.0, 28_000.0, 2.5, "test window")
STAR = {"teff": 5772.0, "logg": 4.44, "feh": 0.0}


@pytest.fixture(scope="module")
def model():
    from stellarinf.labels import default_label_space
    from stellarinf.validation.analytic import AnalyticLineModel

    space = default_label_space().subset(["teff", "logg", "feh", "vmic"])
    return AnalyticLineModel(space, (SMALL.wmin - 10.0, SMALL.wmax + 10.0), None, n_lines=24, seed=3)


@pytest.fixture(scope="module")
def fc(model):
    return F.forecast(model, STAR, window=SMALL, snr=100.0)


def _steps(names, values):
    steps = {}
    for n, v in zip(names, values):
        if n == "teff":
            steps[n] = 0.5
        elif n.startswith("cont_"):
            steps[n] = 1e-5
        else:
            steps[n] = 1e-4 * max(1.0, abs(v))
    return steps


def test_jacfwd_fisher_equals_finite_difference_fisher_within_one_percent(fc):
    res = fc.result
    predict = fc.observation_model.predict
    # the observation model's grid is padded to a bucket of pixels (one compiled Jacobian per bucket): its rows
    # for the forecast's own pixels are observation_pixels
    Jfd = finite_difference_jacobian(predict, fc.params, res.names, _steps(res.names, res.values))
    assert Jfd.shape[0] >= res.jacobian.shape[0]
    Jfd = Jfd[fc.observation_pixels]
    fd = fisher_from_jacobian(Jfd, fc.sigma, res.names, values=res.values)
    F_ad, F_fd = res.fisher, fd.fisher
    scale = np.sqrt(np.outer(np.diag(F_ad), np.diag(F_ad)))
    assert np.max(np.abs(F_ad - F_fd) / scale) < 0.01
    for n in res.names:
        assert fd.marginal()[n] == pytest.approx(res.marginal()[n], rel=0.01), n
    # the forecast really depends on the labels (a Jacobian of zeros would pass the comparison above)
    for n in ("teff", "logg", "feh"):
        assert math.isfinite(res.marginal()[n]) and res.marginal()[n] > 0
    assert res.jacobian.dtype == np.float64


def test_shipped_payne_jacfwd_fisher_equals_finite_difference_within_one_percent():
    """A real trained network (the shipped Payne MLP, in float64) through Doppler, rotation, LSF, resampling and
    continuum: the autodiff Fisher matrix agrees with central finite differences."""
    window = Window("payne-small", 6555.0, 6590.0, 28_000.0, 2.5, "test window")
    fc = F.forecast("default-payne", STAR, window=window, snr=100.0, marginalize=("rv", "vsini", "continuum"))
    res = fc.result
    Jfd = finite_difference_jacobian(fc.observation_model.predict, fc.params, res.names, _steps(res.names, res.values))
    Jfd = Jfd[fc.observation_pixels]
    fd = fisher_from_jacobian(Jfd, fc.sigma, res.names, values=res.values, mask=res.weights > 0)
    scale = np.sqrt(np.outer(np.diag(res.fisher), np.diag(res.fisher)))
    assert np.max(np.abs(res.fisher - fd.fisher) / scale) < 0.01
    for n in ("teff", "logg", "feh", "vmic", "rv", "vsini"):
        assert fd.conditional()[n] == pytest.approx(res.conditional()[n], rel=0.01), n
        assert fd.marginal()[n] == pytest.approx(res.marginal()[n], rel=0.01), n
    # the Hα window carries real information on Teff: a bound of a few tens of K at S/N 100, not 0 or ∞
    assert 1.0 < res.marginal()["teff"] < 1000.0


def test_forecast_bounds_scale_exactly_as_one_over_snr(fc):
    t = F.bounds_vs_snr(fc, [25.0, 100.0, 400.0])
    for n in fc.result.names:
        prod = np.asarray(t[f"marginal_{n}"]) * np.asarray(t["snr"])
        assert np.ptp(prod) <= 1e-9 * prod[0], n
    # recomputing from scratch at another S/N agrees with the rescaled Jacobian
    again = F.forecast(fc.spectrum_model, STAR, window=SMALL, snr=400.0)
    for n in fc.result.names:
        assert again.result.marginal()[n] == pytest.approx(fc.result.marginal()[n] / 4.0, rel=1e-9)


def test_photon_noise_mode_gives_larger_sigma_in_continuum_only_than_in_lines(model):
    fc = F.forecast(model, STAR, window=SMALL, snr=100.0, snr_mode="photon")
    assert np.allclose(fc.sigma, np.sqrt(np.maximum(fc.flux, 1e-3)) / 100.0)
    # photon noise is lower in line cores, so bounds are tighter than with flat noise at the same S/N
    flat = F.forecast(model, STAR, window=SMALL, snr=100.0)
    assert fc.result.marginal()["teff"] < flat.result.marginal()["teff"]


def test_marginalising_nuisances_never_tightens_bounds(model, fc):
    base = F.forecast(model, STAR, window=SMALL, snr=100.0, marginalize=())
    rv = F.forecast(model, STAR, window=SMALL, snr=100.0, marginalize=("rv",))
    names = [n for n in base.result.names]
    assert "rv" not in names and not any(n.startswith("cont_") for n in names)
    assert "rv" in rv.result.names
    for n in names:
        assert rv.result.marginal()[n] >= base.result.marginal()[n] * (1 - 1e-9)
        assert fc.result.marginal()[n] >= rv.result.marginal()[n] * (1 - 1e-9)
    assert any(n.startswith("cont_") for n in fc.result.names)
    assert fc.result.meta["marginalized"] and "rv" in fc.result.meta["marginalized"]


def test_gaussian_prior_tightens_and_fix_removes(model):
    free = F.forecast(model, STAR, window=SMALL, snr=50.0)
    prior = F.forecast(model, STAR, window=SMALL, snr=50.0, priors={"logg": 0.01})
    assert prior.result.marginal()["logg"] < min(0.01, free.result.marginal()["logg"])
    fixed = F.forecast(model, STAR, window=SMALL, snr=50.0, fix=("logg",))
    assert "logg" not in fixed.result.names
    assert fixed.result.marginal()["teff"] <= prior.result.marginal()["teff"] * (1 + 1e-9)


def test_one_arm_presets_and_the_model_windows_come_from_the_instrument_table():
    from stellarinf.instruments import instruments
    from stellarinf.wavelength import WINDOWS

    assert F.get_preset("galah-red") == WINDOWS["galah-red"] == instruments()["galah-red"].arms[0]
    assert F.get_preset("galah-red").resolution == 28_000 and F.get_preset("gaia-rvs").resolution == 11_500
    with pytest.raises(F.ForecastError, match="4 arms"):
        F.get_preset("galah")  # several arms: forecast(window="galah") takes it whole
    with pytest.raises(F.ForecastError, match="unknown instrument preset"):
        F.get_preset("apogee-north")
    assert F.instrument_window("gaia-rvs", 5000).resolution == 5000


def test_bounds_vs_resolution_and_window_tables(model):
    t = F.bounds_vs_resolution(model, STAR, [10_000.0, 28_000.0], window=SMALL, snr=100.0)
    assert list(t["resolution"]) == [10_000.0, 28_000.0]
    assert t["n_pixels"][1] > t["n_pixels"][0]
    # higher resolution (and more pixels at the same S/N per pixel) constrains teff better
    assert t["marginal_teff"][1] < t["marginal_teff"][0]
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        tw = F.bounds_vs_window(model, STAR, [SMALL, Window("outside", 3000.0, 3100.0, 20_000.0)], snr=100.0)
    assert list(tw["window"]) == ["test-small"]
    assert any("outside" in str(w.message) for w in rec)


def test_unknown_label_and_nuisance_raise(model):
    with pytest.raises(Exception, match="unknown label"):
        F.forecast(model, {"tef": 5000.0}, window=SMALL)
    with pytest.raises(F.ForecastError, match="marginalise"):
        F.forecast(model, STAR, window=SMALL, marginalize=("spin",))


# ---------------------------------------------------------------- CLI
TEST_MODEL = "analytic-injected"  # a name only these tests resolve (monkeypatched resolver), not the production CLI's


@pytest.fixture
def injected(monkeypatch):
    """``crb`` resolves TEST_MODEL to the analytic model around the window (the CLI has no test model)."""
    from stellarinf.validation.setups import analytic_model

    real = F.resolve_model
    monkeypatch.setattr(
        F,
        "resolve_model",
        lambda m, window="galah-red", **kw: real(analytic_model(window) if m == TEST_MODEL else m, window, **kw),
    )
    return ["--emulator", TEST_MODEL]


def test_cli_crb_writes_required_json(tmp_path, injected):
    from stellarinf.cli import cli

    out = tmp_path / "crb.json"
    plots = tmp_path / "plots"
    r = CliRunner().invoke(
        cli,
        [
            "crb",
            *injected,
            "--teff",
            "5772",
            "--logg",
            "4.44",
            "--feh",
            "0",
            "--snr",
            "100",
            "--marginalize",
            "rv,continuum",
            "--prior",
            "logg=4.44+-0.2",
            "--plots",
            str(plots),
            "-o",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "teff" in r.output and "marginal" in r.output
    assert "priors: logg σ 0.2" in r.output  # said, with the bounds it shapes
    doc = json.loads(out.read_text())
    assert doc["snr"] == 100.0 and doc["resolution"] == 28_000.0
    for n in ("teff", "logg", "feh"):
        entry = doc["labels"][n]
        assert {"value", "marginal", "conditional"} <= set(entry)
        assert entry["marginal"] >= entry["conditional"] > 0
    assert doc["labels"]["teff"]["value"] == 5772.0
    assert doc["labels"]["logg"]["prior_sigma"] == 0.2
    assert "rv" in doc["labels"] and "vsini" not in doc["labels"]
    for name in ("bounds_vs_snr.png", "information_per_pixel.png", "correlation.png", "gradient_spectra.png"):
        assert (plots / name).stat().st_size > 1000


@pytest.mark.parametrize(
    "args, message",
    [
        (["--snr", "-5"], "snr"),
        (["--label", "foo=1"], "foo"),
        (["--window", "apogee"], "6465–6755"),  # no overlap: the message names what the model covers
        (["--preset", "nosuch"], "unknown instrument preset"),
        (["--star", "blue-straggler"], "solar-twin"),
        (["--snr", "100,0"], "positive"),
        (["--prior", "logg=4:5"], "Gaussian"),
        (["--marginalize", "spin"], "spin"),
    ],
)
def test_cli_bad_input_exits_3_with_message(args, message, injected):
    from stellarinf.cli import cli

    r = CliRunner().invoke(cli, ["crb", *injected, *args])
    assert r.exit_code == 3, r.output
    assert message in r.output


def test_cli_crb_has_no_test_model():
    """The analytic test double is not a production model name: ``crb`` treats it as a missing model directory."""
    from stellarinf.cli import cli

    r = CliRunner().invoke(cli, ["crb", "--emulator", "analytic"])
    assert r.exit_code == 3 and "no emulator model at analytic" in r.output, r.output


@pytest.mark.slow
def test_synthesizer_jacfwd_fisher_equals_finite_difference_within_one_percent():
    """The ground-truth forward model: jacfwd through the 1D LTE synthesizer + observation model."""
    window = Window("synth-small", 6555.0, 6590.0, 28_000.0, 2.5, "test window")
    fc = F.forecast(
        "synth", STAR, window=window, snr=100.0, marginalize=("rv", "continuum"), fix=("li_fe", "al_fe", "ba_fe")
    )
    res = fc.result
    Jfd = finite_difference_jacobian(fc.observation_model.predict, fc.params, res.names, _steps(res.names, res.values))
    Jfd = Jfd[fc.observation_pixels]
    fd = fisher_from_jacobian(Jfd, fc.sigma, res.names, values=res.values, mask=res.weights > 0)
    for n in ("teff", "logg", "feh", "vmic", "rv"):
        assert fd.conditional()[n] == pytest.approx(res.conditional()[n], rel=0.01), n
        assert fd.marginal()[n] == pytest.approx(res.marginal()[n], rel=0.01), n


def test_alpha_is_a_synthesizer_label_and_reference_stars_carry_their_class_alpha(model):
    """``alpha=True`` gives the synthesizer an [α/Fe] label (after vmic, box −0.2..0.6); reference stars then carry
    their class's [α/Fe] (the halo's +0.4, the Sun's 0); an emulator's labels cannot be chosen."""
    from stellarinf.errors import StellarinfError
    from stellarinf.reference_stars import star_labels

    window = Window("synth-alpha", 6555.0, 6590.0, 28_000.0, 2.5, "test window")
    names = F.resolve_model("synth", window, alpha=True, elements=("Mg",)).label_space.names
    assert names == ("teff", "logg", "feh", "vmic", "alpha_fe", "mg_fe")
    assert "alpha_fe" not in F.resolve_model("synth", window).label_space.names
    assert star_labels("metal-poor-giant", alpha=True)["alpha_fe"] == 0.4
    assert star_labels("solar-twin", {"alpha_fe": 0.2}, alpha=True)["alpha_fe"] == 0.2  # what the user gives wins
    assert "alpha_fe" not in star_labels("metal-poor-giant")
    with pytest.raises(StellarinfError, match="--alpha"):
        F.resolve_model(model, alpha=True)


@pytest.mark.slow
def test_alpha_fe_bound_from_the_synthesizer():
    """Ca I 6573 and the α elements' lines make [α/Fe] measurable: a finite bound that shrinks as 1/(S/N)."""
    window = Window("synth-alpha", 6555.0, 6590.0, 28_000.0, 2.5, "test window")
    star = {**STAR, "alpha_fe": 0.0}
    b = [
        F.forecast("synth", star, window=window, snr=s, alpha=True, elements=(), marginalize=("rv",)).result.marginal()
        for s in (50.0, 100.0)
    ]
    assert 0 < b[1]["alpha_fe"] < 1.0 and b[0]["alpha_fe"] == pytest.approx(2 * b[1]["alpha_fe"], rel=1e-6)


def test_a_forecast_for_a_star_cool_enough_for_tio_says_the_physics_lacks_it(model, monkeypatch):
    """A 4300 K dwarf through a model whose physics has molecules but no TiO: a PhysicsCoverageWarning naming
    no_tio and the words in the result's meta; the Sun through the same model: neither."""
    from stellarinf import physics_options

    monkeypatch.setattr(physics_options, "model_molecules", lambda m: "on")
    with pytest.warns(F.PhysicsCoverageWarning, match="no_tio: at Teff 4300 K"):
        cool = F.forecast(model, {**STAR, "teff": 4300.0, "logg": 4.6}, window=SMALL, snr=100.0)
    assert cool.result.meta["no_tio"].startswith("no_tio:")
    with warnings.catch_warnings():
        warnings.simplefilter("error", F.PhysicsCoverageWarning)
        sun = F.forecast(model, STAR, window=SMALL, snr=100.0)
    assert "no_tio" not in sun.result.meta
