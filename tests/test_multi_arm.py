"""Spectra with several arms: ``Spectrum.from_arms``/``arms()``, the composite observation model
(``observe.multi_arm``), its likelihood and Fisher information as sums over arms, a two-arm fit in one call
(``fit_spectrum``, Laplace), the CLI combining files into arms, and the bad inputs (overlapping arms, different
flux units, an arm no model covers)."""

import dataclasses
import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from astropy.table import Table

import stellarinf
from stellarinf import pipeline
from stellarinf.cli import main
from stellarinf.errors import LabelError, SpectrumError, StellarinfError, WavelengthError
from stellarinf.fisher import likelihood_fisher
from stellarinf.inference.arm_combination import (
    arm_information,
    combined_fidelity,
    combined_floor,
    combined_systematics,
)
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
    continuum_degree=2,  # what "auto" gives these 30–40 Å arms: the outlier test's fit reuses these programs
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


def test_the_two_arm_posterior_has_the_two_arm_bound_narrower_than_either_arm_alone(fits, models):
    """The two-arm posterior's sd is the two-arm Cramér–Rao bound (its own likelihood's Fisher matrix at the truth),
    which is narrower than either arm alone can deliver (checked without fitting each arm alone: their bounds)."""
    res = fits["two"]
    sd = {str(r["name"]): float(r["sd"]) for r in res.summary}
    om = res.problem.obs_model
    p = {k: v for k, v in TRUTH.items() if k in FREE}
    both = likelihood_fisher(om, p, FREE).marginal()
    alone = [likelihood_fisher(arm, p, FREE).marginal() for arm in om.arms]
    for name in ("teff", "logg", "feh"):
        assert 0.85 < sd[name] / both[name] < 1.15, (name, sd[name], both[name])
        assert both[name] < 0.95 * min(a[name] for a in alone), (name, both[name], alone)


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
    argv += ["--draws", "200", "--rv-max", "60", "--vsini-max", "20", "--fix", "vmacro=0", "--continuum-degree", "2"]
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


# ------------------------------------------------------------------------------------------- arms with different emulators
def test_combined_systematics_are_the_arms_own_for_one_arm_and_average_down_for_two_equal_ones():
    """One arm, flat prior: the combination is that arm's stored sd exactly. Two arms of equal information with
    independent errors sd₁, sd₂: the combined estimate is their mean, so its sd is √(sd₁² + sd₂²)/2."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 3))
    info = a @ a.T + 3.0 * np.eye(3)
    names, dx_dz = ["teff", "logg", "rv"], np.array([200.0, 0.5, 1.0])
    one = combined_systematics(info[None], np.linalg.inv(info), dx_dz, names, [{"teff": 30.0, "logg": 0.05}])
    assert one == pytest.approx({"teff": 30.0, "logg": 0.05}, rel=1e-9)  # rv: no stored value, not reported
    two = combined_systematics(
        np.stack([info, info]), np.linalg.inv(2 * info), dx_dz, names, [{"teff": 30.0}, {"teff": 40.0}]
    )
    assert two == pytest.approx({"teff": 25.0}, rel=1e-9)


def test_combined_fidelity_weights_each_arms_ratio_by_its_information():
    """r² is the information-weighted mean of the arms' r² (an arm without a stored ratio counts as 1)."""
    info = np.stack([np.diag([3.0, 1.0]), np.diag([1.0, 1.0])])
    out = combined_fidelity(info, ["teff", "logg"], [{"ratio": {"teff": 0.5, "logg": None}}, {"ratio": {"teff": 1.0}}])
    assert out == pytest.approx({"teff": np.sqrt((3 * 0.25 + 1) / 4)}, abs=1e-4)  # logg: no arm has a ratio


def test_stored_fisher_pairs_let_a_second_arm_break_the_degeneracy_a_lone_arm_over_claims_in():
    """Arm A alone: the synthesizer's teff and logg are nearly degenerate (correlation 0.99), the emulator's less so
    (0.9), so the emulator's marginal bound is ~3× too small. Arm B pins logg: combined, the bounds agree to a few
    %. The rule sums each arm's stored pair (scaled to the arm's information in the fit) and compares marginal
    bounds: known answers from the 2×2 inverses."""
    names = ["teff", "logg"]
    syn_a, emu_a = np.array([[1.0, 0.99], [0.99, 1.0]]), np.array([[1.0, 0.9], [0.9, 1.0]])
    pin = np.diag([0.0, 50.0])

    def star(emu, syn):
        return {"ratio": {"teff": 1.0, "logg": 1.0}, "fisher": {"names": names, "emulator": emu, "synthesizer": syn}}

    def marginal(f):
        return np.sqrt(np.diag(np.linalg.inv(f)))

    alone = combined_fidelity(4.0 * emu_a[None], names, [star(emu_a, syn_a)])  # scale 4: the ratio does not move
    assert alone == pytest.approx(dict(zip(names, marginal(emu_a) / marginal(syn_a))), abs=1e-4)
    assert alone["teff"] < 0.35
    both = combined_fidelity(np.stack([emu_a, pin]), names, [star(emu_a, syn_a), None])  # B: no stored pair, exact
    expected = marginal(emu_a + pin) / marginal(syn_a + pin)
    assert both == pytest.approx(dict(zip(names, expected)), abs=1e-4)
    assert both["teff"] > 0.9


def test_combined_physics_floor_is_the_information_weighted_mean_of_the_arms():
    """The arms' physics offsets on the observed Sun are not assumed to cancel: the combination's floor lies
    between the arms' floors, weighted by each arm's information on that label."""
    info = np.stack([np.diag([3.0, 0.0]), np.diag([1.0, 2.0])])
    out = combined_floor(info, ["teff", "logg"], [{"teff": 80.0, "logg": 0.4}, {"teff": 40.0, "logg": 0.1}])
    assert out == pytest.approx({"teff": 70.0, "logg": 0.1})


def test_arm_information_is_each_arms_fisher_matrix_in_the_samplers_coordinates(fits):
    """arm_information(z) = D F_k D with F_k the arm's own likelihood Fisher matrix (fisher.likelihood_fisher) in
    physical units and D = ∂x/∂z."""
    res = fits["two"]
    problem, z = res.problem, jnp.asarray(res.laplace.mean_z)
    info = np.asarray(arm_information(problem, z))
    params = {n: float(v) for n, v in problem.constrain(z).items() if n in problem.names}
    d = np.diag(np.asarray(jax.jacfwd(lambda v: problem.to_vector(problem.constrain(v)))(z)))
    for k, arm in enumerate(problem.obs_model.arms):
        f = likelihood_fisher(arm, params, problem.names).fisher
        # to 0.5 %: Fisher's matrix is taken on noiseless data, the fit's at the observed flux
        np.testing.assert_allclose(info[k], d[:, None] * f * d[None, :], rtol=5e-3, atol=1e-6 * np.abs(info[k]).max())


def test_a_fit_through_different_emulators_carries_their_combined_systematics_and_fidelity(fits, models, monkeypatch):
    """What each arm's emulator stores (label systematics, Cramér–Rao fidelity) reaches the fit's summary as the
    combination: sd_sys between the two arms' values, and the `fidelity` flag where both arms over-claim."""
    from stellarinf.inference import arm_combination, results

    res, (model_a, model_b) = fits["two"], models[:2]
    stored = {id(model_a): {"teff": 40.0, "feh": 0.02}, id(model_b): {"teff": 80.0, "feh": 0.04}}
    seen = []  # where each arm's systematics were read: at the fitted star

    def systematics_of(m, at=None):
        seen.append(at)
        return dict(stored.get(id(m), {}))

    monkeypatch.setattr(results, "label_systematics_of", systematics_of)

    def fidelity(m):
        ratio = {"teff": 0.3, "logg": 1.0} if m is model_a else {"teff": 0.5, "logg": 0.9}
        return {"threshold": 0.8, "stars": [{"name": "x", "labels": {"teff": 5600.0}, "ratio": ratio}]}

    monkeypatch.setattr(arm_combination, "fidelity_document", fidelity)
    idata = results.to_inference_data(res.posterior, res.problem, n_predictive=4)
    rows = {str(r["name"]): r for r in results.summary_table(idata)}
    for name, (lo, hi) in {"teff": (40.0, 80.0), "feh": (0.02, 0.04)}.items():
        # independent errors average down: below the larger arm's, above a quarter of the smaller one's
        assert 0.25 * lo < rows[name]["sd_sys"] < hi, (name, rows[name]["sd_sys"])
        assert rows[name]["sd_total"] == pytest.approx(np.hypot(rows[name]["sd"], rows[name]["sd_sys"]))
    assert rows["logg"]["sd_sys"] == 0.0
    assert "fidelity" in rows["teff"]["flags"] and "fidelity" not in rows["logg"]["flags"]
    best = json.loads(idata.posterior.attrs["best_fit"])
    assert seen and all(at is not None and at["teff"] == best["teff"] for at in seen)


def test_a_soft_direction_of_the_laplace_hessian_does_not_inflate_the_combined_systematics(fits, models, monkeypatch):
    """The combined sd_sys comes from the arms' information and the prior (arm_combination), not from the Laplace
    covariance: its curvature's log-determinant terms can nearly cancel the information in some direction (the
    vmacro–vsini pair of a five-arm Sun at S/N 200 once gave a Teff floor of 111 K where other noise seeds gave
    12 K). A Laplace
    covariance inflated 10⁴-fold along a direction that mixes every parameter leaves sd_sys as it was, between a
    quarter of the smaller arm's value and the larger arm's."""
    import dataclasses

    from stellarinf.inference import arm_combination, results

    res, (model_a, model_b) = fits["two"], models[:2]
    stored = {id(model_a): {"teff": 40.0, "feh": 0.02}, id(model_b): {"teff": 80.0, "feh": 0.04}}
    monkeypatch.setattr(results, "label_systematics_of", lambda m, at=None: dict(stored.get(id(m), {})))
    best = {n: float(v) for n, v in res.map.params.items()}
    base = arm_combination.fit_terms(res.problem, res.laplace, best).emulator_sd
    u = np.ones(len(res.problem.names)) / np.sqrt(len(res.problem.names))
    soft = dataclasses.replace(res.laplace, cov_z=res.laplace.cov_z + 1e4 * np.outer(u, u))
    assert arm_combination.fit_terms(res.problem, soft, best).emulator_sd == pytest.approx(base, rel=1e-9)
    for name, (lo, hi) in {"teff": (40.0, 80.0), "feh": (0.02, 0.04)}.items():
        assert 0.25 * lo < base[name] < hi, (name, base[name])


def test_a_multi_arm_fit_carries_the_arms_physics_floors_weighted_by_their_information(fits, monkeypatch):
    """With the physics error on, each arm's measured label floor (the window it overlaps) enters the summary as
    their information-weighted mean: here arm A's 80 K and arm B's 40 K, weighted by each arm's Teff information."""
    from stellarinf.inference import arm_combination, results
    from stellarinf.observe import physics_error

    res = fits["two"]
    monkeypatch.setattr(arm_combination, "physics_error_on", lambda om: True)
    monkeypatch.setattr(
        physics_error,
        "physics_error_for",
        lambda lo, hi, damping=None, model=None: (None, {"teff": 80.0 if hi < 5500.0 else 40.0}),
    )
    best = {n: float(v) for n, v in res.map.params.items()}
    terms = arm_combination.fit_terms(res.problem, res.laplace, best)
    info = np.asarray(arm_information(res.problem, jnp.asarray(res.laplace.mean_z)))
    i = res.problem.names.index("teff")
    w = info[:, i, i]
    assert terms.physics_sd["teff"] == pytest.approx((80.0 * w[0] + 40.0 * w[1]) / w.sum(), rel=1e-9)
    assert 40.0 < terms.physics_sd["teff"] < 80.0
    # and the summary's sd_sys is that floor (no emulator systematics here) once the fit carries the physics error
    monkeypatch.setattr(type(res.problem.obs_model), "physics_error_settings", property(lambda self: (0.01, 0.0)))
    idata = results.to_inference_data(res.posterior, res.problem, n_predictive=4)
    row = next(r for r in results.summary_table(idata) if r["name"] == "teff")
    assert row["sd_sys"] == pytest.approx(terms.physics_sd["teff"], rel=1e-6)


def test_the_quick_start_arm_is_chosen_by_the_layout_not_by_a_few_masked_pixels(models, two):
    """The arm whose quick start seeds a multi-arm fit is the larger one while at least half of it is used, so stars
    observed with the same arms share one compiled quick start; a mostly masked arm gives way."""
    from stellarinf.inference.quickstart import arm_subproblem

    def build(n_masked):
        mask = np.asarray(two.mask, bool).copy()
        first = np.flatnonzero(np.asarray(two.segments) == two.segments[0])
        mid = first[first.size // 2 - n_masked // 2 :][:n_masked]  # the middle: cropping keeps it
        mask[mid] = False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, om = build_multi_arm(list(models[:2]), dataclasses.replace(two, mask=mask), fixed={"vmacro": 0.0}, **OBS)
        sub = arm_subproblem(Problem.build(om))
        return om, next(i for i, a in enumerate(om.arms) if a is sub.obs_model)

    om, arm = build(0)
    sizes = [int(np.asarray(a.weight).shape[0]) for a in om.arms]
    assert arm == 0 and sizes[0] > sizes[1]
    om, arm = build(sizes[0] - sizes[1] + 5)  # fewer used pixels than the other arm, but most of its own
    assert int(np.sum(np.asarray(om.arms[0].weight) > 0)) < sizes[1] and arm == 0
    om, arm = build(sizes[0] - sizes[0] // 2 + 5)  # most of it masked: the other arm seeds the fit
    assert arm == 1


def test_a_fit_that_masks_outliers_rebuilds_with_the_same_continuum_degree(models, two, monkeypatch):
    """After the MAP masks outlier pixels the problem is built again on the cropped spectrum; "auto" there could give
    another degree (GALAH IR: 315 Å → 8, cropped 290 Å → 7): another model and a recompile of every program (the
    observed Sun's second four-arm fit took 233 s instead of 35). The rebuild gets the first build's degree."""
    flux = np.asarray(two.flux).copy()
    flux[[40, 60, 330]] += 0.5  # cosmic rays in both arms: masked as outliers, then the MAP again
    spec = dataclasses.replace(two, flux=flux)
    degrees = []
    real = pipeline.build_problem

    def recording(model, s, **kw):
        degrees.append(kw["continuum_degree"])
        return real(model, s, **kw)

    monkeypatch.setattr(pipeline, "build_problem", recording)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = {**FIT, "clip_outliers": True, "continuum_degree": "auto", "sampler": "map"}
        res = stellarinf.fit_spectrum(spec, emulator=list(models[:2]), **fit)
    assert res.settings["outlier_pixels_masked"] >= 3
    assert degrees == ["auto", res.problem.obs_model.continuum_degree]


def test_the_automatic_continuum_degree_is_the_single_arm_rule_on_the_cropped_arms(models, arms):
    """ "auto" is one degree per 40 Å of the longest arm as its model sees it (cropped), as for one arm: pixels outside
    every model's range do not raise it (GALAH IR: 315 Å as read → 8, 290 Å inside its Payne → 7)."""
    model_a, model_b, _, _ = models
    a, b = arms
    extra = np.linspace(5035.0, 5400.0, 400)  # 365 Å beyond model a's 30 Å: 8 uncropped, 2 cropped
    wide = Spectrum(
        np.concatenate([a.wavelength, extra]),
        np.concatenate([a.flux, np.ones_like(extra)]),
        np.concatenate([a.sigma, np.full_like(extra, 0.01)]),
        resolution=a.resolution,
    )
    assert pipeline.auto_continuum_degree(wide) == 8
    build = dict(rv_max=60.0, vsini_max=20.0, continuum="marginalise", fixed={"vmacro": 0.0}, physics_error=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, one_obs, _ = pipeline.build_problem(model_a, wide, **build)
        _, obs, _ = pipeline.build_problem([model_a, model_b], Spectrum.from_arms([wide, b]), **build)
    cropped_b = pipeline.auto_continuum_degree(b)
    assert one_obs.continuum_degree == 2  # the single-arm rule on the cropped arm
    assert obs.continuum_degree == max(one_obs.continuum_degree, cropped_b)
