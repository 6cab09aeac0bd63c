"""Instrument presets (data/instruments.ecsv), reference stars, and forecasts over several arms."""

import warnings

import numpy as np
import pytest
from click.testing import CliRunner

import stellarinf  # noqa: F401
from stellarinf import forecast as F
from stellarinf.instruments import InstrumentError, get_instrument, instruments, presets_table
from stellarinf.reference_stars import REFERENCE_STARS, UnknownStarError, reference_star, star_labels
from stellarinf.wavelength import air_to_vacuum

STAR = {"teff": 5772.0, "logg": 4.44, "feh": 0.0}
WIDE = (4900.0, 6900.0)  # the analytic test model's range: both LAMOST-MRS arms inside it


@pytest.fixture(scope="module")
def wide_model():
    from stellarinf.labels import default_label_space
    from stellarinf.validation.analytic import AnalyticLineModel

    space = default_label_space().subset(["teff", "logg", "feh", "vmic"])
    return AnalyticLineModel(space, WIDE, None, n_lines=200, seed=5)


def test_the_table_holds_real_instruments_with_sources_and_vacuum_arms():
    table = instruments()
    real = [i for i in table.values() if i.kind == "instrument"]
    assert len(real) >= 25
    for inst in table.values():
        assert inst.source, inst.name
        for arm in inst.arms:
            assert arm.wmin < arm.wmax and arm.resolution > 0 and arm.pixels_per_resolution > 0, arm
    # GALAH's arms are quoted in air (6478–6737 Å red): read as vacuum
    red = [a for a in table["galah"].arms if a.name == "galah-red"][0]
    assert red.wmin == pytest.approx(float(air_to_vacuum([6478.0])[0])) and red.wmin > 6478.0 + 1.7
    assert len(table["galah"].arms) == 4 and get_instrument("hermes") is table["galah"]
    assert table["apogee"].arms[0].wmin == 15140.0  # quoted in vacuum: unchanged


def test_a_preset_is_cut_to_what_the_model_covers_and_refused_when_nothing_is_left():
    harps = get_instrument("harps").covered([(6480.0, 6740.0)])
    assert [(a.wmin, a.wmax) for a in harps.arms] == [(6480.0, 6740.0)]
    lamost = get_instrument("lamost-mrs").covered([(6460.0, 7020.0), (8450.0, 8760.0)])
    assert [a.name for a in lamost.arms] == ["lamost-mrs-red"]
    weave = get_instrument("weave-lr").covered([(6460.0, 7020.0), (8450.0, 8760.0)])
    assert len(weave.arms) == 2  # the red arm seen in both covered ranges
    with pytest.raises(InstrumentError, match="6480–6740"):
        get_instrument("apogee").covered([(6480.0, 6740.0)])
    covered = dict(
        zip(presets_table([(6480.0, 6740.0)], 28_000.0)["arm"], presets_table([(6480.0, 6740.0)], 28_000.0)["covered"])
    )
    assert covered["galah-blue"] == "—" and covered["harps"].startswith("R > model's")
    # several models, each its range and R: an arm across both is too sharp for one of them only
    two = presets_table([(6480.0, 6740.0), (8470.0, 8740.0)], [11_000.0, 28_000.0])
    covered = dict(zip(two["arm"], two["covered"]))
    assert covered["xshooter-vis"] == "6480–6740 (R > model's), 8470–8740"  # R 11,400
    assert covered["gaia-rvs"] == "8470–8740" and covered["harps"] == "R > model's (6480–6740)"


def test_generic_resolving_power_presets():
    inst = get_instrument("R=20000", default_range=(6480.0, 6740.0))
    assert inst.arms[0].resolution == 20_000 and (inst.arms[0].wmin, inst.arms[0].wmax) == (6480.0, 6740.0)
    inst = get_instrument("r=5000:6500-6600")
    assert (inst.arms[0].wmin, inst.arms[0].wmax, inst.arms[0].resolution) == (6500.0, 6600.0, 5000.0)
    for bad, message in (("R=0", "positive"), ("R=5000:6600-6500", "smaller to a larger"), ("R=5000", "range")):
        with pytest.raises(InstrumentError, match=message):
            get_instrument(bad)


def test_reference_stars_by_name():
    assert {"solar-twin", "metal-poor-turn-off", "red-clump", "metal-poor-giant", "k-dwarf"} <= set(REFERENCE_STARS)
    assert reference_star("Solar_Twin") == {"teff": 5772.0, "logg": 4.44, "feh": 0.0, "vmic": 1.0}
    assert star_labels("red-clump", {"feh": -0.3})["feh"] == -0.3
    with pytest.raises(UnknownStarError, match="solar-twin"):
        reference_star("blue-straggler")


def _schur(fisher, keep):
    """Fisher information of ``keep`` with the other parameters marginalised (Schur complement)."""
    names = list(fisher.names)
    F_ = fisher.fisher
    k = [names.index(n) for n in keep]
    o = [i for i in range(len(names)) if i not in k]
    return F_[np.ix_(k, k)] - F_[np.ix_(k, o)] @ np.linalg.solve(F_[np.ix_(o, o)], F_[np.ix_(o, k)])


def test_a_two_arm_forecast_is_the_sum_of_its_arms_information(wide_model):
    """Known answer: with each arm's continuum marginalised, the shared parameters' information is the sum over
    the arms of each arm's own (continuum-marginalised) information."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        both = F.forecast(wide_model, STAR, window="lamost-mrs", snr=80.0)
        arms = [F.forecast(wide_model, STAR, window=arm, snr=80.0) for arm in both.instrument.arms]
    assert [a.name for a in both.instrument.arms] == ["lamost-mrs-blue", "lamost-mrs-red"]
    assert both.wavelength.size == sum(a.wavelength.size for a in arms)
    assert {"cont_0_0", "cont_1_0"} <= set(both.result.names)
    shared = ["teff", "logg", "feh", "vmic", "rv", "vsini", "vmacro"]
    expected = sum(_schur(a.result, shared) for a in arms)
    got = _schur(both.result, shared)
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-12 * np.abs(expected).max())
    # and the bounds: two arms beat either arm alone on every shared label
    for n in ("teff", "logg", "feh"):
        assert both.result.marginal()[n] < min(a.result.marginal()[n] for a in arms)
    # another S/N is a rescaling of the same Jacobian
    assert both.at_snr(160.0).marginal()["teff"] == pytest.approx(both.result.marginal()["teff"] / 2, rel=1e-9)


def test_a_preset_sharper_than_the_model_is_refused_with_the_way_forward():
    from stellarinf.labels import default_label_space
    from stellarinf.validation.analytic import AnalyticLineModel

    space = default_label_space().subset(["teff", "logg", "feh", "vmic"])
    broadened = AnalyticLineModel(space, (6465.0, 6755.0), 28_000.0, n_lines=20, seed=1)
    with pytest.raises(F.ForecastError, match="synth"):
        F.forecast(broadened, STAR, window="harps")


def test_a_part_sharper_than_its_model_is_left_out_and_said_when_the_others_can_be_served():
    """Several models, one too coarse for its part of the preset (MIKE's red arm through the broad set's R 11,500
    Gaia RVS member): that part is left out and named with why; the rest is the forecast the served part alone gives.
    Nothing servable left: the refusal with the way forward."""
    from stellarinf.labels import default_label_space
    from stellarinf.validation.analytic import AnalyticLineModel

    space = default_label_space().subset(["teff", "logg", "feh", "vmic"])
    coarse_blue = AnalyticLineModel(space, (4900.0, 5500.0), 7_000.0, n_lines=30, seed=1)
    red = AnalyticLineModel(space, (6200.0, 6900.0), 28_000.0, n_lines=30, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fc = F.forecast([coarse_blue, red], STAR, window="lamost-mrs", snr=80.0)  # R 7,500 in both arms
        alone = F.forecast(red, STAR, window=fc.instrument.arms[0], snr=80.0)
    assert [a.name for a in fc.instrument.arms] == ["lamost-mrs-red"]
    [said] = fc.result.meta["arms_not_covered"]
    assert said.startswith("lamost-mrs-blue 495") and "R 7,500 sharper than its model's 7,000" in said
    for n in ("teff", "logg", "feh"):
        assert fc.result.marginal()[n] == pytest.approx(alone.result.marginal()[n], rel=1e-9)
    coarse_red = AnalyticLineModel(space, (6200.0, 6900.0), 7_000.0, n_lines=30, seed=2)
    with pytest.raises(F.ForecastError, match="sharper than the model's R 7,000.*synth"):
        F.forecast([coarse_blue, coarse_red], STAR, window="lamost-mrs", snr=80.0)


def test_another_resolving_power_of_the_same_pixel_bucket_compiles_nothing_and_changes_nothing():
    """An emulator (a model with its own R): R is a held parameter and the pixel count is padded to a bucket, so a
    forecast at another R traces no new program; the padded forecast equals the plain one (no padding, R static)."""
    import jax

    from stellarinf.labels import default_label_space
    from stellarinf.validation.analytic import AnalyticLineModel

    space = default_label_space().subset(["teff", "logg", "feh", "vmic"])
    emulator_like = AnalyticLineModel(space, (6465.0, 6755.0), 28_000.0, n_lines=30, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = F.forecast(emulator_like, STAR, window="galah-red", resolution=15_000.0)  # 1475 px: bucket 2048
        traced = []

        def listener(event, duration, **kwargs):
            traced.append(kwargs.get("fun_name"))

        jax.monitoring.register_event_duration_secs_listener(listener)
        try:
            other = F.forecast(emulator_like, STAR, window="galah-red", resolution=20_000.0)  # 1967 px: the same
        finally:
            jax.monitoring.unregister_event_duration_listener(listener)
        plain = F.forecast(
            emulator_like, STAR, window="galah-red", resolution=20_000.0, obs_kwargs={"continuum": "sample"}
        )
    assert first.wavelength.size != other.wavelength.size and other.wavelength.size == plain.wavelength.size
    assert "_jacobian_impl" not in traced, traced  # the Jacobian program is reused (small eager ops may trace)
    # the same bounds up to the LSF kernel's truncation (sized for R 1,000 on the bucketed path, for R itself on the
    # plain one): ~1e-5 relative
    for n in ("teff", "logg", "feh", "vmic", "rv"):
        assert other.result.marginal()[n] == pytest.approx(plain.result.marginal()[n], rel=1e-4), n
    assert other.result.marginal()["teff"] < first.result.marginal()["teff"]  # sharper: a tighter bound


# ---------------------------------------------------------------- CLI
def test_cli_lists_presets_and_forecasts_a_named_star_at_several_snr(monkeypatch):
    from stellarinf.cli import cli
    from stellarinf.validation.setups import analytic_model

    real = F.resolve_model
    monkeypatch.setattr(
        F,
        "resolve_model",
        lambda m, window="galah-red", **kw: real(analytic_model(window) if m == "t" else m, window, **kw),
    )
    r = CliRunner().invoke(cli, ["crb", "--emulator", "t", "--list-presets"])
    assert r.exit_code == 0, r.output
    assert "galah-blue" in r.output and "Sheinis" in r.output and "6465–6755" in r.output
    r = CliRunner().invoke(
        cli, ["crb", "--emulator", "t", "--preset", "hermes", "--star", "red-clump", "--snr", "50,100"]
    )
    assert r.exit_code == 0, r.output
    assert "preset galah (galah-red" in r.output and "star red-clump" in r.output
    lines = [ln.split() for ln in r.output.splitlines() if ln.startswith("teff ") and len(ln.split()) == 3]
    assert lines, r.output
    s50, s100 = (float(x) for x in lines[-1][1:])
    assert s50 == pytest.approx(2 * s100, rel=1e-3)


def test_the_systematic_floor_sits_beside_the_bound_with_the_snr_where_it_takes_over(wide_model):
    import dataclasses
    import types

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fc = F.forecast(wide_model, STAR, window="R=20000:6500-6600", snr=50.0)
    assert F.systematic_floor(fc) == {}  # a model without stored systematics: nothing claimed
    stored = types.SimpleNamespace(metadata={"label_systematics": {"sd": {"teff": 10.0, "feh": 0.01}}})
    floor = F.systematic_floor(dataclasses.replace(fc, spectrum_model=stored))
    bound = fc.result.marginal()
    assert set(floor) == {"teff", "feh"}
    # bounds fall as 1/(S/N): the floor equals the bound at S/N 50 x bound / floor
    assert floor["teff"]["snr_floor_dominates"] == pytest.approx(50.0 * bound["teff"] / 10.0)
    at = floor["feh"]["snr_floor_dominates"]
    assert fc.at_snr(at).marginal()["feh"] == pytest.approx(0.01, rel=1e-9)


def test_the_real_star_floor_is_the_label_floor_a_fit_through_the_same_model_reports(wide_model):
    """Beside the bound, the physics label floor a fit of a real star through this model reports: the model's own
    (measured on the observed Sun through it) where it has one, else its window's; with the S/N past which it exceeds
    the photon-noise bound."""
    import dataclasses
    import types

    from stellarinf.observe.physics_error import physics_error_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fc = F.forecast(wide_model, STAR, window="R=20000:6500-6600", snr=50.0)
    window = physics_error_table()["galah-red"]["label_floor"]  # the window the range overlaps
    floor = F.physics_floor(fc)
    assert {n: v["sd_phys"] for n, v in floor.items()} == {n: v for n, v in window.items() if v > 0 and n in floor}
    assert "teff" in floor and floor["teff"]["sd_phys"] == window["teff"]
    own = types.SimpleNamespace(
        metadata={
            "weights": {"sha256": "a"},
            "physics_label_floor": {"weights_sha256": "a", "label_floor": {"teff": 100.0}},
        }
    )
    floor = F.physics_floor(dataclasses.replace(fc, spectrum_model=own))
    assert set(floor) == {"teff"} and floor["teff"]["sd_phys"] == 100.0
    at = floor["teff"]["snr_floor_dominates"]
    assert at == pytest.approx(50.0 * fc.result.marginal()["teff"] / 100.0)
    assert fc.at_snr(at).marginal()["teff"] == pytest.approx(100.0, rel=1e-9)


def test_a_window_set_names_the_model_windows_that_cover_an_instruments_arms():
    from stellarinf.instruments import window_set

    galah = window_set("galah")
    assert [w.name for w in galah] == ["galah-blue", "galah-green", "galah-red", "galah-ir"]
    arms = get_instrument("galah").arms
    for arm, win in zip(arms, galah):  # every arm (air ranges read as vacuum) lies inside its model window
        # (galah-red, the shipped emulators' window, starts 0.2 Å after the red arm does in vacuum)
        assert min(arm.wmax, win.wmax) - max(arm.wmin, win.wmin) > 0.999 * (arm.wmax - arm.wmin), (arm, win)
    assert window_set("gaia-rvs") == (get_instrument("gaia-rvs").arms[0],)  # a model window is its own set
    with pytest.raises(InstrumentError, match=r"arm 4most-hrs-blue \(392\d–435\d Å\).*needs a model window"):
        window_set("4most-hrs")  # its blue arm is in no model window


def test_the_synthesizer_forecasts_any_element_and_an_emulator_refuses_to(wide_model):
    from stellarinf.wavelength import Window

    sm = F.resolve_model("synth", Window("small", 5680.0, 5700.0, 28_000.0), elements=["Na", "Eu", "C"])
    assert sm.label_space.names == ("teff", "logg", "feh", "vmic", "na_fe", "eu_fe", "c_fe")
    # built once per arm and process: the next star's forecast reuses it and the Jacobian compiled for it
    assert F.resolve_model("synth", Window("small", 5680.0, 5700.0, 28_000.0), elements=["Na", "Eu", "C"]) is sm
    assert F.resolve_model("synth", Window("small", 5680.0, 5700.0, 28_000.0), elements=["Na"]) is not sm
    # the synthesizer covers every GALAH arm now (the line list does)
    cover = F.model_coverage("synth")
    for win in (get_instrument(n).arms[0] for n in ("galah-blue", "galah-green", "galah-ir")):
        assert any(lo <= win.wmin and win.wmax <= hi for lo, hi in cover), win
    with pytest.raises(F.ForecastError, match="--emulator synth"):
        F.forecast(wide_model, STAR, window="R=20000:5000-5100", elements=["Na"])


def test_a_forecast_through_one_emulator_per_arm_is_the_sum_of_each_arms_forecast(monkeypatch):
    """Known answer: each arm served by the model whose range holds it (as a multi-arm fit is), the shared
    parameters' information is the sum of each arm's own forecast through its model; the arms' label sets must
    agree, and a model's stored systematics combine by each arm's information."""
    import dataclasses
    import types

    from stellarinf.labels import default_label_space
    from stellarinf.validation.analytic import AnalyticLineModel

    space = default_label_space().subset(["teff", "logg", "feh", "vmic"])
    blue = AnalyticLineModel(space, (4900.0, 5500.0), None, n_lines=60, seed=1)
    red = AnalyticLineModel(space, (6200.0, 6900.0), None, n_lines=60, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        both = F.forecast([red, blue], STAR, window="lamost-mrs", snr=80.0)
        alone = [F.forecast(m, STAR, window=arm, snr=80.0) for m, arm in zip((blue, red), both.instrument.arms)]
    assert [a.name for a in both.instrument.arms] == ["lamost-mrs-blue", "lamost-mrs-red"]
    assert both.arm_models == (blue, red)  # each arm its covering model, whatever the list's order
    assert both.result.meta["arms_not_covered"] == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        red_only = F.forecast([red], STAR, window="lamost-mrs", snr=80.0)
    [left_out] = red_only.result.meta["arms_not_covered"]  # said, not silently dropped
    assert left_out.startswith("lamost-mrs-blue 495") and left_out.endswith("Å")
    shared = ["teff", "logg", "feh", "vmic", "rv", "vsini", "vmacro"]
    expected = sum(_schur(a.result, shared) for a in alone)
    np.testing.assert_allclose(_schur(both.result, shared), expected, rtol=1e-8, atol=1e-12 * np.abs(expected).max())
    for n in ("teff", "logg", "feh"):
        assert both.result.marginal()[n] < min(a.result.marginal()[n] for a in alone)
    # the systematic floor: one arm's stored sd_sys, weighted by the information that arm carries here
    stored = types.SimpleNamespace(metadata={"label_systematics": {"sd": {"teff": 10.0}}})
    floor = F.systematic_floor(dataclasses.replace(both, arm_models=(stored, red)))
    assert 0.0 < floor["teff"]["sd_sys"] < 10.0
    # the real-star floor: each arm's (one model's own 100 K, the other arm's window's), weighted the same way
    own = types.SimpleNamespace(
        metadata={
            "weights": {"sha256": "a"},
            "physics_label_floor": {"weights_sha256": "a", "label_floor": {"teff": 100.0}},
        }
    )
    phys = F.physics_floor(dataclasses.replace(both, arm_models=(own, red)))["teff"]["sd_phys"]
    from stellarinf.observe.physics_error import physics_error_table

    assert physics_error_table()["galah-red"]["label_floor"]["teff"] < phys < 100.0
    # fidelity: each arm's stored emulator/synthesizer Fisher pair, combined by the information each arm carries
    # here; an emulator claiming 4× the synthesizer's information in both arms gives bounds half the real ones
    import stellarinf.emulator_fidelity as fidelity

    names = ["teff", "logg", "feh", "vmic"]
    a = np.random.default_rng(0).normal(size=(4, 4))
    syn = a @ a.T + 4.0 * np.eye(4)
    star = {"name": "twin", "labels": dict(STAR), "ratio": dict.fromkeys(names, 0.5)}
    doc = {"threshold": 0.8, "stars": [{**star, "fisher": {"names": names, "emulator": 4 * syn, "synthesizer": syn}}]}
    monkeypatch.setattr(fidelity, "fit_fidelity_document", lambda model: doc)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = F.forecast([red, blue], STAR, window="lamost-mrs", snr=80.0)
    meta = again.result.meta["emulator_fidelity"]
    assert meta["ratio"] == pytest.approx(dict.fromkeys(names, 0.5), abs=1e-4)
    assert meta["over_claiming"] == sorted(names) and meta["reference_star"] == ["twin", "twin"]
    assert any("together over-claim on teff, logg, feh, vmic" in str(w.message) for w in caught)
    # the arms must share one label set
    fewer = AnalyticLineModel(space.subset(["teff", "logg", "feh"]), (6200.0, 6900.0), None, n_lines=60, seed=2)
    with pytest.raises(F.ForecastError, match="different labels.*forecast each arm alone"):
        F.forecast([blue, fewer], STAR, window="lamost-mrs", snr=80.0)


def test_gradient_spectra_draw_each_labels_flux_change_and_mark_its_elements_lines(wide_model, tmp_path):
    """One row per label, one column per arm: the stored Jacobian times the label step (100 K, 0.1 dex), and for
    [Fe/H] the strongest Fe lines of the line list inside each arm, shifted by the forecast's RV."""
    from stellarinf.fisher_plots import plot_gradient_spectra
    from stellarinf.synth.data import linelist
    from stellarinf.wavelength import SPEED_OF_LIGHT_KMS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fc = F.forecast(wide_model, STAR, window="lamost-mrs", snr=80.0, nuisances={"rv": 30.0})
    fig = plot_gradient_spectra(fc, ["teff", "feh"], path=tmp_path / "g.png", n_lines=5)
    assert (tmp_path / "g.png").stat().st_size > 1000
    teff_blue = fig.axes[0].lines[0].get_ydata()  # row teff, first arm
    i = fc.param_names.index("teff")
    np.testing.assert_allclose(teff_blue, 100.0 * fc.full_jacobian[fc.arm_slices[0], i])
    shift = 1.0 + 30.0 / SPEED_OF_LIGHT_KMS
    ll = linelist()
    fe = set(np.round(ll.wavelength[ll.Z == 26], 6))
    marked = np.asarray(fig.marked_lines["feh"])
    assert 0 < marked.size <= 2 * 5 and fig.marked_lines["teff"] == []
    assert all(round(w / shift, 6) in fe for w in marked)  # Fe lines, in the star's frame shifted by its RV
    lo, hi = fc.wavelength[fc.arm_slices[0]].min(), fc.wavelength[fc.arm_slices[1]].max()
    assert np.all((marked >= lo) & (marked <= hi))


def test_box_prior_is_each_labels_uniform_box_sd_and_an_explicit_prior_wins():
    """``box_prior``: every free label gets σ = (upper − lower)/√12 unless ``priors`` names it; the bound equals the
    one with those priors given by hand, never exceeds the prior; at an S/N that carries nothing the warning says the
    prior sets the bound. ``crb --prior box`` asks for it."""
    import math

    from stellarinf.commands.crb import _parse_priors
    from stellarinf.labels import default_label_space
    from stellarinf.validation.analytic import AnalyticLineModel

    space = default_label_space().subset(["teff", "logg", "feh", "vmic"])
    model = AnalyticLineModel(space, (6465.0, 6755.0), None, n_lines=30, seed=3)
    box = {n: (space[n].upper - space[n].lower) / math.sqrt(12.0) for n in space.names}
    assert F.box_prior_sigmas(F.label_box(space), ["teff", "rv", "feh"]) == {"teff": box["teff"], "feh": box["feh"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auto = F.forecast(model, STAR, window="galah-red", snr=20.0, box_prior=True, priors={"logg": 0.05})
        by_hand = F.forecast(model, STAR, window="galah-red", snr=20.0, priors={**box, "logg": 0.05})
        plain = F.forecast(model, STAR, window="galah-red", snr=20.0)
    assert auto.result.prior_sigma == {**box, "logg": 0.05} and auto.result.meta["box_prior"] is True
    for n in space.names:
        assert auto.result.marginal()[n] == pytest.approx(by_hand.result.marginal()[n], rel=1e-10)
        assert auto.result.marginal()[n] < min(plain.result.marginal()[n], auto.result.prior_sigma[n])
    with pytest.warns(F.WeakConstraintWarning, match="box prior's σ"):
        F.forecast(model, STAR, window="galah-red", snr=1e-3, box_prior=True)
    assert _parse_priors(("box", "logg=4.4+-0.1")) == ({"logg": 0.1}, True)
    assert _parse_priors(("logg=4.4+-0.1",)) == ({"logg": 0.1}, False)
