"""Spectra with several arms: ``Spectrum.from_arms``/``arms()``, the composite observation model
(``observe.multi_arm``), its likelihood and Fisher information as sums over arms, a two-arm fit in one call
(``fit_spectrum``, Laplace), the CLI combining files into arms, and the bad inputs (overlapping arms, different
flux units, an arm no model covers)."""

import json
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from astropy.table import Table

import stellarinf
from stellarinf import pipeline
from stellarinf.cli import main
from stellarinf.errors import LabelError, SpectrumError, StellarinfError, WavelengthError
from stellarinf.fisher import likelihood_fisher
from stellarinf.inference.density import Problem
from stellarinf.io.readers.galah import galah_arm_set
from stellarinf.io.spectrum import Spectrum, write_spectrum_fits
from stellarinf.observe.model import ObservationModel
from stellarinf.observe.multi_arm import MultiArmObservationModel, build_multi_arm
from stellarinf.observe.protocol import ObservationLike
from stellarinf.validation.mocks import make_mock
from stellarinf.validation.setups import analytic_setup

TRUTH = {"teff": 5600.0, "logg": 4.2, "feh": -0.3, "rv": 10.0, "vsini": 5.0, "vmacro": 0.0}
FREE = ("teff", "logg", "feh", "rv", "vsini")
OBS = dict(continuum="marginalise", continuum_degree=1, include_emulator_error=False, rv_max=60.0, vsini_max=20.0)
FIT = dict(
    sampler="laplace",
    draws=400,
    rv_max=60.0,
    vsini_max=20.0,
    fixed={"vmacro": 0.0},
    continuum_degree=1,
    n_starts=2,
    physics_error="off",
    mask_tellurics=False,
    clip_outliers=False,
)


@pytest.fixture(scope="module")
def models():
    model_a, wl_a = analytic_setup(wavelength_range=(5000.0, 5030.0), resolution=20000.0, seed=0)
    model_b, wl_b = analytic_setup(wavelength_range=(6000.0, 6040.0), resolution=10000.0, seed=1)
    return model_a, model_b, wl_a, wl_b


@pytest.fixture(scope="module")
def arms(models):
    model_a, model_b, wl_a, wl_b = models
    a = make_mock(model_a, wl_a, TRUTH, snr=100, resolution=20000.0, seed=1)
    b = make_mock(model_b, wl_b, TRUTH, snr=100, resolution=10000.0, seed=2)
    return a, b


@pytest.fixture(scope="module")
def two(arms):
    return Spectrum.from_arms(arms)


def at(params):
    return {k: jnp.asarray(v) for k, v in params.items()}


# ------------------------------------------------------------------------------------------- the container
def test_from_arms_keeps_each_arms_pixels_and_resolution(arms, two):
    a, b = arms
    assert two.is_multi_arm and not a.is_multi_arm
    assert two.segment_ids == (0, 1)
    assert two.resolution == {0: 20000.0, 1: 10000.0}
    assert two.n_pix == a.n_pix + b.n_pix
    back = two.arms()
    assert [s.resolution for s in back] == [20000.0, 10000.0]
    np.testing.assert_array_equal(back[1].flux, b.flux)
    assert json.dumps(two.provenance())  # the per-arm R is JSON-able
    # ids are kept when distinct, given ids win
    relabelled = Spectrum.from_arms(arms, ids=[1, 3])
    assert relabelled.segment_ids == (1, 3) and relabelled.resolution_of(3) == 10000.0


def test_a_multi_arm_spectrum_round_trips_through_the_fits_writer(two, tmp_path):
    from stellarinf.io.spectrum import read_spectrum

    write_spectrum_fits(tmp_path / "two.fits", two)
    back = read_spectrum(tmp_path / "two.fits")
    assert back.is_multi_arm and back.resolution == two.resolution
    np.testing.assert_array_equal(back.segments, two.segments)


def test_overlapping_arms_are_refused_naming_both_and_the_fix(arms):
    a, _ = arms
    with pytest.raises(SpectrumError, match=r"arms 0 .* and 1 .* overlap in wavelength.*crop one of them"):
        Spectrum.from_arms([a, a])


def test_arms_with_different_flux_units_are_refused(arms):
    a, b = arms
    a2 = Spectrum(a.wavelength, a.flux, a.sigma, meta={"flux_unit": "erg / (Angstrom s cm2)"}, resolution=2e4)
    with pytest.raises(SpectrumError, match=r"different flux units.*convert them to one unit"):
        Spectrum.from_arms([a2, b])


def test_a_per_arm_resolution_must_name_every_arm(two):
    with pytest.raises(SpectrumError, match=r"one entry per segment id.*missing \[1\]"):
        Spectrum(two.wavelength, two.flux, two.sigma, segments=two.segments, resolution={0: 2e4})
    with pytest.raises(SpectrumError, match="one ObservationModel serves one instrument"):
        ObservationModel(analytic_setup()[0], two)


# ------------------------------------------------------------------------------------------- the composite
def test_composite_log_likelihood_is_the_sum_over_arms(models, two):
    model_a, model_b = models[:2]
    spec, om = build_multi_arm([model_b, model_a], two, fixed={"vmacro": 0.0}, **OBS)  # order of models: any
    assert isinstance(om, ObservationLike) and isinstance(om.arms[0], ObservationLike)
    assert om.resolutions == {0: 20000.0, 1: 10000.0}
    assert [a.emulator for a in om.arms] == [model_a, model_b]  # each arm got the model that covers it
    assert om.param_names == FREE
    p = at({k: v for k, v in TRUTH.items() if k in FREE})
    singles = [
        ObservationModel(m, s, fixed={"vmacro": 0.0}, **OBS).log_likelihood(p)
        for m, s in zip((model_a, model_b), spec.arms())
    ]
    assert float(om.log_likelihood(p)) == pytest.approx(float(sum(singles)), rel=1e-12)
    rho, norm = om.likelihood_terms(p)
    assert float(-0.5 * jnp.sum(rho**2) + norm) == pytest.approx(float(om.log_likelihood(p)), rel=1e-10)
    assert om.predict(p).shape == om.flux.shape == (spec.n_pix,)
    # the block-diagonal linear model reproduces the likelihood's continuum fit
    offset, design, mean, sd = om.linear_model(p)
    assert design.shape == (spec.n_pix, 4) and float(jnp.abs(design[: om.arms[0].wavelength.shape[0], 2:]).max()) == 0


def test_rv_offsets_shift_only_the_later_arms(models, two):
    spec, om = build_multi_arm(list(models[:2]), two, fixed={"vmacro": 0.0}, rv_offsets=True, **OBS)
    assert om.param_names == (*FREE, "rv_offset_1")
    base = at({**{k: v for k, v in TRUTH.items() if k in FREE}, "rv_offset_1": 0.0})
    shifted = {**base, "rv_offset_1": jnp.asarray(3.0)}
    moved = {**base, "rv": jnp.asarray(TRUTH["rv"] + 3.0)}
    n0 = om.arms[0].wavelength.shape[0]
    np.testing.assert_allclose(om.predict(shifted)[:n0], om.predict(base)[:n0])
    np.testing.assert_allclose(om.predict(shifted)[n0:], om.predict(moved)[n0:], rtol=1e-12)
    with pytest.raises(LabelError, match="belong to no arm"):
        build_multi_arm(list(models[:2]), two, fixed={"vmacro": 0.0, "cont_7_0": 1.0}, **OBS)


def test_an_arm_no_model_covers_is_named_with_the_ranges(models, arms):
    model_a, model_b = models[:2]
    far = Spectrum(arms[0].wavelength * 1.5, arms[0].flux, arms[0].sigma, resolution=30000.0)
    spec = Spectrum.from_arms([*arms, far])
    with pytest.raises(
        WavelengthError, match=r"no forward model covers arm 2 \(7\d{3}\.\d\d–7\d{3}\.\d\d Å.*5000\.0–5030\.0"
    ):
        build_multi_arm([model_a, model_b], spec, **OBS)
    with pytest.raises(StellarinfError, match="no forward model covers arm"):
        stellarinf.fit_spectrum(spec, emulator=[model_a, model_b], **FIT)


def test_two_arm_fisher_information_is_the_sum_over_arms(models, two):
    spec, om = build_multi_arm(list(models[:2]), two, fixed={"vmacro": 0.0}, **OBS)
    p = {k: v for k, v in TRUTH.items() if k in FREE}
    both = likelihood_fisher(om, p, FREE).fisher
    parts = [likelihood_fisher(arm, p, FREE).fisher for arm in om.arms]
    np.testing.assert_allclose(both, parts[0] + parts[1], rtol=1e-8)
    crb_both = likelihood_fisher(om, p, FREE).marginal()
    for arm in om.arms:
        single = likelihood_fisher(arm, p, FREE).marginal()
        assert all(crb_both[n] < single[n] for n in ("teff", "logg", "feh"))


# ------------------------------------------------------------------------------------------- fits
@pytest.fixture(scope="module")
def fits(models, arms, two):
    model_a, model_b = models[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "two": stellarinf.fit_spectrum(two, emulator=[model_a, model_b], **FIT),
            "a": stellarinf.fit_spectrum(arms[0], emulator=model_a, **FIT),
            "b": stellarinf.fit_spectrum(arms[1], emulator=model_b, **FIT),
        }


def test_a_two_arm_mock_recovers_the_truth_in_one_call(fits):
    res = fits["two"]
    assert isinstance(res.problem.obs_model, MultiArmObservationModel)
    rows = {str(r["name"]): r for r in res.summary}
    for name in FREE:
        assert abs(rows[name]["p50"] - TRUTH[name]) < 3.5 * rows[name]["sd"], (
            name,
            rows[name]["p50"],
            rows[name]["sd"],
        )
    arms = res.settings["arms"]
    assert [a["arm"] for a in arms] == [0, 1] and [a["resolution"] for a in arms] == [20000.0, 10000.0]
    assert arms[0]["emulator"] == arms[1]["emulator"] == "AnalyticLineModel"
    assert res.settings["resolution"] == {"0": 20000.0, "1": 10000.0}
    assert 0.7 < res.diagnostics["chi2_reduced"] < 1.3


def test_the_two_arm_posterior_is_narrower_than_either_arm_alone(fits):
    sd = {k: {str(r["name"]): float(r["sd"]) for r in res.summary} for k, res in fits.items()}
    for name in ("teff", "logg", "feh"):
        assert sd["two"][name] < min(sd["a"][name], sd["b"][name]), (name, sd)


def test_fit_spectra_refuses_a_multi_arm_spectrum_with_the_way_forward(models, two):
    batch = stellarinf.fit_spectra([two], emulator=models[0], sampler="map", physics_error="off")
    assert "fitted on its own: use fit_spectrum" in batch.failed["spectrum_0"]


# ------------------------------------------------------------------------------------------- CLI
@pytest.fixture
def arm_files(arms, tmp_path):
    paths = []
    for k, spec in enumerate(arms):
        path = tmp_path / f"arm{k}.fits"
        write_spectrum_fits(path, spec)
        paths.append(path)
    return paths


def run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_cli_fits_the_files_as_arms_of_one_star(arm_files, models, tmp_path, capsys, monkeypatch):
    injected = {"arm-a": models[0], "arm-b": models[1]}
    real = pipeline.load_model
    monkeypatch.setattr(pipeline, "load_model", lambda name: injected.get(name) or real(name))
    out = tmp_path / "star"
    argv = ["fit", *map(str, arm_files), "--arms", "--emulator", "arm-a", "--emulator", "arm-b", "--sampler", "laplace"]
    argv += ["--draws", "200", "--rv-max", "60", "--vsini-max", "20", "--fix", "vmacro=0", "--continuum-degree", "1"]
    argv += ["--physics-error", "off", "--no-telluric-mask", "--no-clip-outliers", "--starts", "2", "-o", str(out)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, stdout, err = run(argv, capsys)
    assert code == 0, err
    assert "arms of one star" in err
    table = Table.read(str(out) + "_summary.fits")
    settings = json.loads(table.meta["SETTINGS"])
    assert [a["resolution"] for a in settings["arms"]] == [20000.0, 10000.0]
    assert [a["emulator"] for a in settings["arms"]] == ["arm-a", "arm-b"]
    rows = {str(r["name"]): r for r in table}
    assert abs(rows["teff"]["p50"] - TRUTH["teff"]) < 3.5 * rows["teff"]["sd"]


def test_cli_refuses_overlapping_arms_before_the_model_loads(arm_files, tmp_path, capsys):
    code, _, err = run(["fit", str(arm_files[0]), str(arm_files[0]), "--arms", "-o", str(tmp_path / "x")], capsys)
    assert code == 3 and "overlap in wavelength" in err
    code, _, err = run(["fit", str(arm_files[0]), "--arms", "-o", str(tmp_path / "x")], capsys)
    assert code == 3 and "two or more files" in err


def test_galah_ccd_files_of_one_star_are_recognised_as_arms():
    one = [f"131216001101059{c}.fits" for c in (3, 1, 2, 4)]
    assert list(galah_arm_set(one)) == [1, 2, 3, 4]
    assert galah_arm_set(["1312160011010591.fits", "1312160011010601.fits"]) is None  # two stars: a batch
    assert galah_arm_set(["1312160011010591.fits"]) is None
    assert galah_arm_set(["star.fits", "1312160011010591.fits"]) is None


def test_problem_builds_on_the_composite_with_rv_offsets_and_priors(models, two):
    _, om = build_multi_arm(list(models[:2]), two, fixed={"vmacro": 0.0}, rv_offsets=True, **OBS)
    problem = Problem.build(om, ["rv_offset_1=0+-0.5"])
    assert problem.names[-1] == "rv_offset_1" and problem.prior_specs[-1].kind == "gaussian"
    om.validate_params(om.initial_params())


def test_inspect_prints_each_arms_resolving_power(two, tmp_path, capsys):
    write_spectrum_fits(tmp_path / "two.fits", two)
    code, stdout, err = run(["inspect", str(tmp_path / "two.fits")], capsys)
    assert code in (0, None), err
    assert "arm 0: 20,000" in stdout + err and "arm 1: 10,000" in stdout + err
