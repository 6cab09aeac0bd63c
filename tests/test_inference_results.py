"""InferenceData contents, netCDF round trip, summary-table columns and flag rules, plots, batch fitting."""

import warnings

import numpy as np
import pytest
from astropy.table import Table

import stellarinf  # noqa: F401
from stellarinf.inference.density import Problem
from stellarinf.inference.results import (
    format_summary,
    read_inference_data,
    summary_table,
    to_inference_data,
    write_inference_data,
    write_table,
)
from stellarinf.inference.samplers import Posterior
from stellarinf.observe.model import ObservationModel
from stellarinf.validation.mocks import make_mock
from stellarinf.validation.setups import analytic_setup

TRUTH = {"teff": 5500.0, "logg": 4.0, "feh": -0.3, "rv": 0.0, "vsini": 0.0, "vmacro": 0.0}
SD = {"teff": 30.0, "logg": 0.05, "feh": 0.02}


def make_problem(sigma_scale=1.0, seed=0):
    model, wl = analytic_setup()
    spec = make_mock(model, wl, TRUTH, snr=100, resolution=20000, seed=seed)
    spec.sigma = spec.sigma * sigma_scale
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        om = ObservationModel(
            model,
            spec,
            rv_max=50,
            vsini_max=10,
            vmacro_max=5,
            fixed={"vmacro": 0.0, "vsini": 0.0, "rv": 0.0},
            continuum_degree=-1,
        )
    return Problem.build(om)


def fake_posterior(problem, chains=4, draws=400, shift=None, diverging=0, seed=0):
    """Gaussian draws around the truth: no sampler needed to exercise the bookkeeping."""
    rng = np.random.default_rng(seed)
    samples = {n: TRUTH[n] + SD[n] * rng.standard_normal((chains, draws)) for n in problem.names}
    for n, s in (shift or {}).items():
        samples[n] = samples[n] + s * np.arange(chains)[:, None]
    lp = -sum(((samples[n] - TRUTH[n]) / SD[n]) ** 2 for n in problem.names)
    div = np.zeros((chains, draws), bool)
    div.flat[:diverging] = True
    stats = {"lp": lp, "diverging": div, "tree_depth": np.full((chains, draws), 3)}
    return Posterior("test", problem.names, samples, stats, {"total_s": 0.0}, 0)


@pytest.fixture(scope="module")
def problem():
    return make_problem()


def test_inference_data_groups_and_round_trip(problem, tmp_path):
    idata = to_inference_data(fake_posterior(problem), problem, n_predictive=7)
    assert set(idata.posterior.data_vars) == {"teff", "logg", "feh"}
    assert idata.posterior_predictive["model_flux"].shape[:2] == (4, 7)
    assert idata.observed_data["flux"].shape == idata.constant_data["wavelength"].shape
    assert {"diverging", "tree_depth", "lp"} <= set(idata.sample_stats.data_vars)
    path = tmp_path / "x.nc"
    write_inference_data(idata, path)
    back = read_inference_data(path)
    np.testing.assert_allclose(back.posterior["teff"].values, idata.posterior["teff"].values)
    assert back.posterior.attrs["method"] == "test" and 0.8 < back.posterior.attrs["chi2_reduced"] < 1.2
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def test_summary_statistics_and_clean_flags(problem, tmp_path):
    table = summary_table(to_inference_data(fake_posterior(problem), problem, n_predictive=3), truth=TRUTH)
    assert list(table["name"]) == ["teff", "logg", "feh"]
    for row in table:
        assert row["sd"] == pytest.approx(SD[row["name"]], rel=0.1)
        assert row["p16"] < row["p50"] < row["p84"] and abs(row["r_hat"] - 1) < 0.01 and row["flags"] == ""
    assert table.meta["FLAGS"] == "" and table.meta["NDIVERG"] == 0
    text = format_summary(table)
    assert "teff" in text and "flags=none" in text
    write_table(table, tmp_path / "s.fits")
    write_table(table, tmp_path / "s.csv")
    assert Table.read(tmp_path / "s.fits")["name"].tolist() == ["teff", "logg", "feh"]


def test_flags_fire_for_divergences_rhat_and_chi2(problem):
    t = summary_table(to_inference_data(fake_posterior(problem, diverging=3), problem, n_predictive=2))
    assert "divergences" in t.meta["FLAGS"] and t.meta["NDIVERG"] == 3
    t = summary_table(to_inference_data(fake_posterior(problem, shift={"logg": 0.1}), problem, n_predictive=2))
    flags = dict(zip(t["name"], t["flags"]))
    assert "rhat" in flags["logg"] and "rhat" not in flags["teff"]
    bad = make_problem(sigma_scale=1 / 3)  # errors underestimated 3x: reduced chi2 ~ 9
    t = summary_table(to_inference_data(fake_posterior(bad), bad, n_predictive=2))
    assert "chi2" in t.meta["FLAGS"] and t.meta["CHI2RED"] > 5


def test_plots_write_files(problem, tmp_path):
    from stellarinf.inference.plots import plot_corner, plot_fit

    idata = to_inference_data(fake_posterior(problem), problem, n_predictive=5)
    plot_corner(idata, truth=TRUTH, path=tmp_path / "c.png")
    plot_fit(idata, path=tmp_path / "f.png")
    assert (tmp_path / "c.png").stat().st_size > 2000 and (tmp_path / "f.png").stat().st_size > 2000


def _broadening_problem() -> Problem:
    """The analytic model with v sin i and v macro free on [0, 10] km/s at R 20,000 (a slow rotator's mock)."""
    model, wl = analytic_setup()
    spec = make_mock(model, wl, {**TRUTH, "vsini": 1.0, "vmacro": 1.0}, snr=100, resolution=20000, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        om = ObservationModel(
            model, spec, rv_max=50, vsini_max=10, vmacro_max=10, fixed={"rv": 0.0}, continuum_degree=-1
        )
    return Problem.build(om)


def test_chains_that_disagree_only_on_how_a_traded_pair_splits_leave_the_fit_usable():
    """Four chains on four stretches of one ring (NUTS creeping round it, as on the demo star: R-hat 1.01–1.02 for
    v sin i and v macro, 1.002 for their combination): the two are flagged rhat and traded, the fit is not
    unreliable; chains that disagree on the combination itself (different radii) make it unreliable."""
    from stellarinf import pipeline

    problem = _broadening_problem()
    rng = np.random.default_rng(3)
    shape = (4, 400)
    samples = {n: TRUTH[n] + SD[n] * rng.standard_normal(shape) for n in ("teff", "logg", "feh")}
    start = np.linspace(0.15, 0.75, 4)[:, None]  # each chain on its own stretch of the arc
    angle = start + 0.6 * rng.uniform(size=shape)
    results = {}
    for case, radius in (("split", np.full((4, 1), 4.8)), ("total", np.array([[4.3], [4.6], [5.0], [5.3]]))):
        total = radius + 0.3 * rng.standard_normal(shape)
        samples.update(vsini=total * np.cos(angle), vmacro=total * np.sin(angle))
        post = Posterior("test", problem.names, dict(samples), {"lp": np.zeros(shape)}, {"total_s": 0.0}, 0)
        table = summary_table(to_inference_data(post, problem, n_predictive=2))
        results[case] = (table, pipeline.diagnose(table, post))
    table, d = results["split"]
    flags = {str(r["name"]): str(r["flags"]) for r in table}
    for n in ("vsini", "vmacro"):
        assert {"rhat", "traded"} <= set(flags[n].split(",")), flags
    assert flags["teff"] == ""
    assert table.meta["VBROADRH"] < 1.01 and "vbroad_rhat" not in table.meta["FLAGS"]
    assert d["unreliable"] == []
    table, d = results["total"]
    assert table.meta["VBROADRH"] > 1.01 and "vbroad_rhat" in table.meta["FLAGS"]
    assert len(d["unreliable"]) == 1 and "vsini" in d["unreliable"][0] and "v macro²" in d["unreliable"][0]


def test_broadening_that_the_spectrum_cannot_split_is_flagged_but_unresolved_rotation_is_not():
    """v sin i and v macro spread over their boxes (a ridge the resolution cannot split) get ``no_information`` and
    ``traded``; on a shorter arc (each informative, strongly anticorrelated) ``traded`` alone; a v sin i piled at zero
    (rotation below the resolution) is a measurement: neither it nor its edge is flagged."""
    problem = _broadening_problem()
    rng = np.random.default_rng(1)
    shape = (4, 400)
    ridge = {n: TRUTH[n] + SD[n] * rng.standard_normal(shape) for n in ("teff", "logg", "feh")}
    angle = rng.uniform(0, np.pi / 2, shape)  # a quarter circle of (nearly) constant total broadening
    total = 9.0 + 0.2 * rng.standard_normal(shape)
    ridge.update(vsini=total * np.cos(angle), vmacro=total * np.sin(angle))
    unresolved = {
        **ridge,
        "vsini": np.abs(0.4 * rng.standard_normal(shape)),
        "vmacro": 1.0 + 0.1 * rng.standard_normal(shape),
    }
    # a shorter arc (the demo star's: each 3 ± 1.5 km/s, correlated −0.9): each is informative, neither flagged
    # no_information, but the spectrum still trades one for the other and measures only their combination
    arc_angle = rng.uniform(0.2, np.pi / 2 - 0.2, shape)
    arc_total = 4.8 + 0.3 * rng.standard_normal(shape)
    arc = {**ridge, "vsini": arc_total * np.cos(arc_angle), "vmacro": arc_total * np.sin(arc_angle)}
    flags, metas, texts = {}, {}, {}
    for name, samples in (("ridge", ridge), ("unresolved", unresolved), ("arc", arc)):
        post = Posterior("test", problem.names, samples, {"lp": np.zeros(shape)}, {"total_s": 0.0}, 0)
        table = summary_table(to_inference_data(post, problem, n_predictive=2))
        flags[name] = {str(r["name"]): str(r["flags"]) for r in table}
        metas[name], texts[name] = dict(table.meta), format_summary(table)
    assert flags["ridge"]["vsini"] == "no_information,traded" and flags["ridge"]["vmacro"] == "no_information,traded"
    assert flags["unresolved"]["vsini"] == "" and flags["unresolved"]["vmacro"] == ""
    assert flags["ridge"]["teff"] == "" and flags["unresolved"]["teff"] == ""
    # on the ridge the combined broadening is what is measured, and it is reported; off it, nothing is added
    combined = np.hypot(ridge["vsini"], ridge["vmacro"]).reshape(-1)
    assert metas["ridge"]["VBROAD"] == pytest.approx(np.median(combined))
    assert metas["ridge"]["VBROADSD"] == pytest.approx(np.std(combined, ddof=1))
    assert metas["ridge"]["VBROAD"] == pytest.approx(9.0, abs=0.05) and metas["ridge"]["VBROADSD"] < 0.25
    assert "does not tell them apart" in texts["ridge"] and f"{metas['ridge']['VBROAD']:.2f}" in texts["ridge"]
    assert "VBROAD" not in metas["unresolved"] and "tell them apart" not in texts["unresolved"]
    assert flags["arc"]["vsini"] == "traded" and flags["arc"]["vmacro"] == "traded"  # informative, but traded
    assert flags["arc"]["teff"] == ""
    assert np.corrcoef(arc["vsini"].ravel(), arc["vmacro"].ravel())[0, 1] < -0.7
    assert metas["arc"]["VBROAD"] == pytest.approx(4.8, abs=0.05) and 0.25 < metas["arc"]["VBROADSD"] < 0.35
    assert "does not tell them apart" in texts["arc"] and "traded (vsini, vmacro): " in texts["arc"]
    assert "traded" not in texts["unresolved"]


def test_a_low_chi2_from_overstated_model_errors_says_conservative_not_distrust():
    """Reduced χ² far below 1 with residuals as large as the data's noise (plain χ² per dof ≈ 1): the model's error
    terms overstate this star's error (warm stars through a broad-box emulator), so the flag is `conservative` with
    its own words and catalogue bit; χ² low because the data's errors are overstated too is still `chi2`."""
    import arviz as az

    from stellarinf.catalog.flags import FLAG_BITS, words_to_bits
    from stellarinf.inference.results import FLAG_ADVICE, global_flags_meta

    def flags(chi2, chi2_noise, dof=2574):
        idata = az.from_dict(posterior={"teff": np.zeros((2, 10))})
        idata.posterior.attrs.update(chi2=chi2, chi2_noise=chi2_noise, dof=dof, method="laplace")
        return global_flags_meta(idata)["FLAGS"]

    assert flags(837.0, 2626.0) == "conservative"  # the broad red Payne on the demo star
    assert flags(837.0, 840.0) == "chi2"  # the data's own errors are overstated as well
    # the observed Sun's four arms through broad: the plain residuals carry the physics mismatch (1.81 per dof),
    # which the physics error covers slightly generously (0.86): conservative, not an alarm
    assert flags(8771.0, 18440.0, dof=10188) == "conservative"
    assert flags(9000.0, 9000.0) == "chi2"  # too high: the model does not describe the data
    assert flags(2600.0, 2626.0) == ""
    assert "wider than the data allow" in FLAG_ADVICE["conservative"] and "not wrong" in FLAG_ADVICE["conservative"]
    assert words_to_bits(["conservative"]) == FLAG_BITS["conservative"] == 1 << 17


def test_predictive_draws_are_thinned_for_many_pixels_only():
    from stellarinf.inference.results import PREDICTIVE_VALUES, predictive_draws

    assert predictive_draws(100, 500, 4, 2739) == 100  # one GALAH arm: the draws asked for
    assert predictive_draws(100, 50, 4, 2739) == 50  # never more than the chain has
    four_arms = predictive_draws(100, 500, 4, 10853)  # four arms: thinned to the value budget
    assert four_arms == PREDICTIVE_VALUES // (4 * 10853) and 4 * four_arms * 10853 <= PREDICTIVE_VALUES
    assert predictive_draws(100, 500, 4, 10**6) == 10  # never fewer than 10 a chain
