"""Real-star physics: log gf calibrated on the Sun, and the synthesizer-vs-reality error in the likelihood."""

import dataclasses
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import stellarinf  # noqa: F401  (float64)
from stellarinf.io.spectrum import Spectrum
from stellarinf.observe.build import physics_error_per_pixel
from stellarinf.observe.model import ObservationModel
from stellarinf.observe.physics_error import fit_error_model, physics_error_for, systematic_floor
from stellarinf.synth import fine_grid, synthesize
from stellarinf.synth.calibration import SUN_LABELS, chunk_scale, chunks_of, fit_loggf
from stellarinf.synth.data import linelist, loggf_offsets
from stellarinf.synth.lines import line_data
from stellarinf.synth.selection import select_lines


def test_chunk_scale_recovers_a_linear_continuum_per_chunk():
    wl = np.linspace(6000.0, 6020.0, 2001)
    model = 1.0 - 0.5 * np.exp(-0.5 * ((wl - 6007.0) / 0.1) ** 2)
    chunk, x, n = chunks_of(wl, 5.0)
    assert n == 4 and x.min() >= -1.0 and x.max() <= 1.0
    truth = np.where(chunk % 2 == 0, 1.3 + 0.1 * x, 0.9 - 0.05 * x)
    got = np.asarray(chunk_scale(jnp.asarray(model), jnp.asarray(truth * model), jnp.ones(wl.size), chunk, x, n))
    np.testing.assert_allclose(got, truth, rtol=1e-10)


def test_solar_loggf_offsets_match_the_line_list_and_switch_back():
    lab, sun = loggf_offsets("laboratory"), loggf_offsets("solar")
    ll = linelist()
    assert lab.shape == sun.shape == ll.wavelength.shape and not lab.any()
    red = (ll.wavelength > 6480.0) & (ll.wavelength < 6740.0)
    assert np.count_nonzero(sun[red]) > 0.5 * red.sum()  # the calibrated window's lines carry offsets
    idx = np.flatnonzero(red)[:50]
    np.testing.assert_allclose(line_data(idx, "solar").log_gf - line_data(idx, "laboratory").log_gf, sun[idx])
    with pytest.raises(ValueError, match="laboratory"):
        loggf_offsets("astro")


def test_a_line_the_atlas_lacks_is_removed_by_the_solar_log_gf():
    # the line of the calibrated window with the most negative offset: present with laboratory values,
    # (almost) gone with the solar ones
    ll, sun = linelist(), loggf_offsets("solar")
    red = np.flatnonzero((ll.wavelength > 6490.0) & (ll.wavelength < 6730.0))
    idx, _ = select_lines(6480.0, 6740.0)
    cand = np.intersect1d(red, idx)
    i = cand[np.argmin(sun[cand])]
    assert sun[i] < -1.0
    fine = fine_grid(ll.wavelength[i] - 1.0, ll.wavelength[i] + 1.0)
    near = np.abs(fine - ll.wavelength[i]) < 0.05
    f_lab, _ = synthesize(SUN_LABELS, fine, loggf="laboratory")
    f_sun, _ = synthesize(SUN_LABELS, fine, loggf="solar")
    assert (1 - f_sun[near].min()) < 0.5 * (1 - f_lab[near].min())


def test_fit_loggf_recovers_a_known_offset_from_a_synthetic_atlas():
    # "observed" = the synthesizer with one line's log gf raised by 0.3 dex, on a 4 Å range; the fit recovers it
    from stellarinf.observe.broadening import broaden
    from stellarinf.synth.synthesize import line_synthesizer

    lo, hi, margin = 6592.0, 6596.0, 1.0
    fine = fine_grid(lo - margin, hi + margin)
    fn, lines = line_synthesizer(fine, tuple(SUN_LABELS), "laboratory")
    x = jnp.asarray(list(SUN_LABELS.values()))
    flux = np.asarray(fn(x, jnp.asarray(lines.log_gf))[0])
    depth = 1 - flux[np.abs(fine[:, None] - lines.wavelength[None, :]).argmin(axis=0)]
    inside = (lines.wavelength >= lo) & (lines.wavelength < hi)
    j = int(np.flatnonzero(inside)[np.argmax(depth[inside])])  # the strongest line inside
    assert depth[j] > 0.2
    gf = np.asarray(lines.log_gf).copy()
    gf[j] += 0.3
    dv = float(np.log(fine[1] / fine[0])) * 299792.458
    obs = 2.5 * np.asarray(broaden(fn(x, jnp.asarray(gf))[0], dv, vsini=1.8, vmacro=3.0))  # any flux unit
    res = fit_loggf(fine, obs, lo, hi, margin=margin, prior_sd=1.0, sigma=0.002, maxiter=80, progress=False)
    rows, _ = select_lines(round(float(fine[0]), 3), round(float(fine[-1]), 3))
    k = list(res.rows).index(rows[j])
    assert res.dloggf[k] == pytest.approx(0.3, abs=0.05)
    assert res.rms_after < 0.2 * res.rms_before
    assert res.vmacro == pytest.approx(3.0, abs=0.3) and abs(res.rv) < 0.2


def test_physics_error_grows_with_the_observed_line_depth():
    n = 400
    flux = np.ones(n)
    flux[180:220] = 0.5  # a wide line of depth 0.5: flat after the 3-pixel smoothing
    sig = physics_error_per_pixel(flux, np.ones(n, bool), np.zeros(n, int), 0.004, 0.03)
    assert sig[10] == pytest.approx(0.004)
    assert sig[200] == pytest.approx(np.hypot(0.004, 0.03 * 0.5))
    assert not physics_error_per_pixel(flux, np.ones(n, bool), np.zeros(n, int), 0.0, 0.0).any()


def _analytic_star():
    """(model, wavelength, flux, spectrum): an analytic-line model's 5600 K dwarf at R 28,000, σ 1 %, 6560–6640 Å."""
    from stellarinf.labels import LabelSpace
    from stellarinf.validation.analytic import AnalyticLineModel
    from stellarinf.wavelength import log_uniform_grid

    space = LabelSpace.from_bounds({"teff": (4500.0, 6500.0), "logg": (2.0, 5.0), "feh": (-1.5, 0.5)})
    model = AnalyticLineModel(space, (6540.0, 6660.0), resolution=28000.0, n_lines=30, seed=3)
    wl = log_uniform_grid(6560.0, 6640.0, 28000.0, 2.5)
    flux = np.asarray(model.flux(jnp.asarray([5600.0, 4.2, -0.2]), jnp.asarray(wl)))
    spec = Spectrum(wl, flux, np.full(wl.size, 0.01), resolution=28000.0)
    return model, wl, flux, spec


def test_physics_error_enters_the_likelihood_variance():
    model, wl, flux, spec = _analytic_star()
    params = {"teff": 5600.0, "logg": 4.2, "feh": -0.2, "rv": 0.0, "vsini": 2.0, "vmacro": 2.0}
    plain = ObservationModel(model, spec, include_emulator_error=False, continuum="marginalise")
    phys = ObservationModel(
        model, spec, include_emulator_error=False, continuum="marginalise", physics_error=(0.005, 0.05)
    )
    extra = np.asarray(phys.variance(params) - plain.variance(params))
    expected = physics_error_per_pixel(flux, np.ones(wl.size, bool), np.zeros(wl.size, int), 0.005, 0.05) ** 2
    np.testing.assert_allclose(extra, expected, rtol=1e-10)
    assert phys.log_likelihood(params) != plain.log_likelihood(params)
    with pytest.raises(Exception, match="physics_error"):
        ObservationModel(model, spec, physics_error=(-1.0, 0.0))


def test_physics_regions_are_left_out_or_given_more_error():
    """A ``(lo, hi)`` region of the physics error leaves its pixels out of the likelihood (weight 0, the rest as
    without it: the log likelihood equals the fit of the spectrum with those pixels masked); a ``(lo, hi, sd)``
    region keeps them with ``sd`` more error; a region over every pixel is refused; the pipeline names the ranges
    it left out."""
    from stellarinf.pipeline import physics_ranges_left_out

    model, wl, _, spec = _analytic_star()
    params = {"teff": 5700.0, "logg": 4.0, "feh": -0.1, "rv": 0.0, "vsini": 2.0, "vmacro": 2.0}
    inside = (wl >= 6580.0) & (wl <= 6600.0)
    kw = dict(include_emulator_error=False, continuum="marginalise")
    out = ObservationModel(model, spec, physics_error=(0.005, 0.05, ((6580.0, 6600.0),)), **kw)
    assert np.array_equal(np.asarray(out.weight) > 0, ~inside)
    masked = ObservationModel(model, dataclasses.replace(spec, mask=~inside), physics_error=(0.005, 0.05), **kw)
    assert float(out.log_likelihood(params)) == pytest.approx(float(masked.log_likelihood(params)), rel=1e-12)
    kept = ObservationModel(model, spec, physics_error=(0.005, 0.05, ((6580.0, 6600.0, 0.05),)), **kw)
    plain = ObservationModel(model, spec, physics_error=(0.005, 0.05), **kw)
    assert np.all(np.asarray(kept.weight) > 0)
    extra = np.asarray(kept.variance(params) - plain.variance(params))
    np.testing.assert_allclose(extra[inside], 0.05**2, rtol=1e-10)
    np.testing.assert_allclose(extra[~inside], 0.0, atol=1e-15)
    with pytest.raises(Exception, match="physics error leaves out"):
        ObservationModel(model, spec, physics_error=(0.005, 0.05, ((6500.0, 6700.0),)), **kw)
    with pytest.raises(Exception, match="lo < hi"):
        ObservationModel(model, spec, physics_error=(0.005, 0.05, ((6600.0, 6580.0),)), **kw)
    phys = {0: (0.005, 0.05, ((6540.0, 6590.0), (7596.0, 7702.0))), 1: None}
    assert physics_ranges_left_out(phys, wl) == ["6540–6590 Å"]
    assert physics_ranges_left_out((0.005, 0.05), wl) == []


def test_fit_error_model_recovers_floor_and_depth_fraction():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.0, 0.8, 200_000) ** 2
    r = rng.normal(size=depth.size) * np.sqrt(0.003**2 + (0.04 * depth) ** 2)
    floor, frac = fit_error_model(r, depth)
    assert floor == pytest.approx(0.003, rel=0.05) and frac == pytest.approx(0.04, rel=0.05)


def test_systematic_floor_is_what_the_fits_own_sd_does_not_explain():
    # equal sds: the closed form √max(0, mean Δ² − s²)
    d = np.array([30.0, -50.0, 40.0, -20.0])
    f, lo, hi = systematic_floor(d, np.full(4, 25.0))
    assert f == pytest.approx(np.sqrt(np.mean(d**2) - 25.0**2), abs=0.1)
    assert lo < f < hi
    # offsets the sds already cover: no floor
    assert systematic_floor(d, np.full(4, 60.0))[0] == 0.0
    # a known floor under mixed precision (S/N 50 / 100 / 200-like sds) is recovered, and the noisy fits do not
    # count as systematic: the rms offset would say ~37, the truth is 20
    rng = np.random.default_rng(0)
    s = np.repeat([60.0, 30.0, 15.0], 2000)
    d = rng.normal(0.0, np.sqrt(s**2 + 20.0**2))
    f, lo, hi = systematic_floor(d, s)
    assert np.sqrt(np.mean(d**2)) > 35.0
    assert abs(f - 20.0) < 1.5 and lo < f < hi and hi - lo < 5.0
    # a constant bias b (one star's physics error) with small noise: the floor is |b|
    d = -12.0 + rng.normal(0.0, 2.0, 30)
    assert systematic_floor(d, np.full(30, 2.0))[0] == pytest.approx(12.0, abs=1.0)
    with pytest.raises(ValueError, match="as many sds"):
        systematic_floor([1.0, 2.0], [1.0])


def test_physics_error_for_picks_the_overlapping_window(monkeypatch):
    (floor, frac, regions), labels = physics_error_for(6500.0, 6700.0)
    assert floor > 0 and frac > 0
    assert any(lo < 6564.6 < hi for lo, hi in regions)  # the Hα wings are left out
    assert set(labels) >= {"teff", "logg", "feh"} and labels["logg"] > 0
    # outside every measured window: the largest measured values, not nothing
    (floor2, frac2, _), labels2 = physics_error_for(5000.0, 5100.0)
    assert floor2 >= floor and frac2 >= frac and labels2["logg"] >= labels["logg"]
    # every GALAH arm has its own measurement: the green arm's, not the largest
    from stellarinf.observe import physics_error as pe

    table = pe.physics_error_table()
    assert {"galah-blue", "galah-green", "galah-red", "galah-ir", "gaia-rvs"} <= set(table)
    (floor3, frac3, _), labels3 = physics_error_for(5700.0, 5800.0)
    assert floor3 == table["galah-green"]["floor"] and floor3 < max(e["floor"] for e in table.values())
    # the label floor too: green's own fits of the observed Sun, not red's
    assert labels3 == table["galah-green"]["label_floor"] and labels3 != labels
    assert physics_error_for(4750.0, 4850.0)[1] == table["galah-blue"]["label_floor"]  # measured since session 24
    # a window without fits of the observed Sun gets the largest measured label floor, not none
    unmeasured = {
        w: ({k: v for k, v in e.items() if w != "galah-blue" or k != "label_floor"}) for w, e in table.items()
    }
    monkeypatch.setattr(pe, "physics_error_table", lambda: unmeasured)
    assert physics_error_for(4750.0, 4850.0)[1]["logg"] == max(
        e["label_floor"]["logg"] for e in unmeasured.values() if "label_floor" in e
    )


def test_a_model_gets_the_physics_error_measured_with_its_own_damping():
    """data/physics_error.json holds, beside each window's Unsöld × 2 term, the ABO physics' own (its calibrated
    synthesized Sun leaves smaller residuals against the independent SOLAR-HRS atlas): a fit through a model that
    learned ABO widths gets that term and label floor, one through an Unsöld model the window's own, with the same
    ranges left out; a window measured only with Unsöld × 2 gives that to every model."""
    from stellarinf.emulators.registry import load_emulator
    from stellarinf.observe import physics_error as pe
    from stellarinf.physics_options import model_damping
    from stellarinf.pipeline import resolve_physics_error

    red = pe.physics_error_table()["galah-red"]
    abo = red["by_damping"]["abo"]
    assert "solarhrs" in abo["all_measurements"][0]["atlas"] and abo["independent_of_calibration"]
    assert abo["all_measurements"][0]["rms"] < red["all_measurements"][0]["rms"]  # the better physics
    (f_u, d_u, r_u), lab_u = physics_error_for(6500.0, 6700.0)
    (f_a, d_a, r_a), lab_a = physics_error_for(6500.0, 6700.0, "abo")
    assert (f_u, d_u, lab_u) == (red["floor"], red["depth_fraction"], red["label_floor"])
    assert (f_a, d_a, lab_a) == (abo["floor"], abo["depth_fraction"], abo["label_floor"])
    assert f_a < f_u and r_a == r_u and lab_a["teff"] < lab_u["teff"]
    assert physics_error_for(5700.0, 5800.0, "abo") == physics_error_for(5700.0, 5800.0)  # green: Unsöld only

    wl = np.linspace(6500.0, 6700.0, 400)
    spec = Spectrum(wl, np.ones(wl.size), np.full(wl.size, 0.01), resolution=28000.0)
    unsold, aboed = load_emulator("default-payne"), load_emulator("default-payne-abo")
    assert (model_damping(unsold), model_damping(aboed)) == ("unsold", "abo")
    assert resolve_physics_error("auto", spec, [unsold])[:2] == ((f_u, d_u, r_u), lab_u)
    assert resolve_physics_error("auto", spec, [aboed])[:2] == ((f_a, d_a, r_a), lab_a)
    # the model serving the spectrum decides, not the first of the list
    rvs = load_emulator("default-payne-rvs-abo")
    assert resolve_physics_error("auto", spec, [rvs, aboed])[:2] == ((f_a, d_a, r_a), lab_a)


def test_a_model_fitted_to_the_sun_itself_reports_its_own_label_floor(tmp_path):
    """A window's label floor was measured through one model; a model whose own fits of the observed Sun measured
    its floor (``data/measure_physics_error.py --label-floor FITS --model M``: the maximum-likelihood floor of those
    fits, written into its model.json) reports that one instead, in every place a floor is taken, and says so; a
    model whose weights are not the ones measured (fine-tuned from it) falls back to the window's."""
    import importlib.util
    import json
    import shutil

    from stellarinf.emulators.registry import load_emulator, model_path
    from stellarinf.inference.results import label_floor
    from stellarinf.observe import physics_error as pe
    from stellarinf.pipeline import borrowed_floor_note, resolve_physics_error

    spec_ = importlib.util.spec_from_file_location(
        "mpe", Path(stellarinf.__file__).parent.parent / "data" / "measure_physics_error.py"
    )
    mpe = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(mpe)

    # fits of the Sun through the model: a constant Teff bias of 120 K beside sds of 10-40 K (S/N 200-50)
    rng = np.random.default_rng(1)
    sd = np.repeat([40.0, 20.0, 10.0], 10)
    teff = 5772.0 - 120.0 + rng.normal(0.0, sd)
    fits = [
        {
            "emulator": "m",
            "models": ["m"],
            "window": "gaia-rvs",
            "snr": 50.0,
            "seed": i,
            "physics_label_floor": {"teff": 11.0, "logg": 0.05},
            "labels": {
                "teff": {"p50": float(t), "sd": float(s), "sd_total": float(np.hypot(s, 11.0))},
                "logg": {"p50": 4.44, "sd": 0.02, "sd_total": float(np.hypot(0.02, 0.05))},
            },
        }
        for i, (t, s) in enumerate(zip(teff, sd))
    ]
    # two copies of a shipped RVS model with the measurement taken out: one to measure, one left as a user's model
    model_dir, bare_dir = tmp_path / "m", tmp_path / "bare"
    for d in (model_dir, bare_dir):
        shutil.copytree(model_path("default-payne-rvs"), d)
        doc = json.loads((d / "model.json").read_text())
        doc.pop("physics_label_floor", None)
        (d / "model.json").write_text(json.dumps(doc))
    with pytest.raises(SystemExit, match="windows"):
        mpe.store_model_floor([dict(f, window="galah-red") for f in fits[:2]] + fits, "f.json", "m", "systematic")
    stored = mpe.store_model_floor(
        [dict(f, models=[str(model_dir)]) for f in fits], "f.json", str(model_dir), "systematic"
    )
    expected = pe.systematic_floor(teff - 5772.0, sd)[0]
    assert stored["label_floor"]["teff"] == pytest.approx(expected, abs=1e-3) and 100.0 < expected < 140.0
    assert stored["label_floor"]["logg"] == 0.0 and stored["window"] == "gaia-rvs"

    own, bare = load_emulator(model_dir), load_emulator(bare_dir)
    assert pe.model_label_floor(own) == stored["label_floor"] and pe.model_label_floor(bare) is None
    wl = np.linspace(8480.0, 8730.0, 400)
    spec = Spectrum(wl, np.ones(wl.size), np.full(wl.size, 0.01), resolution=11500.0)
    term, window_floor, bare_words = resolve_physics_error("auto", spec, [bare])
    assert window_floor == pe.physics_error_table()["gaia-rvs"]["label_floor"]
    term_own, own_floor, own_words = resolve_physics_error("auto", spec, [own])
    assert (term_own, own_floor) == (term, stored["label_floor"])  # same σ_phys, own floor
    assert window_floor["teff"] < 0.2 * stored["label_floor"]["teff"]
    assert own_words.startswith(pe.OWN_FLOOR) and "f.json" in own_words and borrowed_floor_note(own_words) is None
    assert "not this one" in bare_words and "sun_fit_rvs_payne.json" in bare_words
    assert "not measured through the model fitting here" in borrowed_floor_note({"0": own_words, "1": bare_words})
    # the summary's floor (a one-arm fit with the physics error on) is the model's own
    om = ObservationModel(own, spec, physics_error=(term[0], term[1]))
    assert label_floor(om, {})["teff"] == pytest.approx(stored["label_floor"]["teff"])
    # other weights (a fine-tuned model inheriting the metadata): the window's floor again
    doc = json.loads((model_dir / "model.json").read_text())
    doc["physics_label_floor"]["weights_sha256"] = "0" * 64
    (model_dir / "model.json").write_text(json.dumps(doc))
    assert resolve_physics_error("auto", spec, [load_emulator(model_dir)]) == (term, window_floor, bare_words)
    # every shipped model carries the floor of its own fits of the observed Sun (30; broad-tp's members 15)
    from types import SimpleNamespace

    from stellarinf.emulators.model_io import read_model_document
    from stellarinf.shipped_models import SHIPPED_MODELS

    for name in SHIPPED_MODELS:
        shipped = SimpleNamespace(metadata=read_model_document(model_path(name)))
        assert pe.model_label_floor(shipped) is not None, name


def test_a_star_far_from_the_sun_is_told_its_floor_is_a_lower_bound():
    """The physics error is measured on the Sun alone: a fit that carries it says, in words and in its diagnostics,
    when the star lies farther from the Sun than :data:`SUN_REACH` in Teff, log g or [Fe/H] (fixed labels count), and
    a Sun-like star is told nothing."""
    from stellarinf import fit_spectrum
    from stellarinf.observe.physics_error import SUN, SUN_REACH, unlike_sun_note

    assert unlike_sun_note(SUN) is None
    edge = {n: SUN[n] + 0.99 * SUN_REACH[n] for n in SUN}
    assert unlike_sun_note(edge) is None
    note = unlike_sun_note({"teff": 4286.0, "logg": 1.66, "feh": -0.52, "vmic": 1.6})  # Arcturus
    assert "teff 4286" in note and "logg 1.66" in note and "feh -0.52" in note and "lower bound" in note
    assert "feh" not in unlike_sun_note({"teff": 4286.0, "logg": 4.4, "feh": 0.1})

    model, wl, _, _ = _analytic_star()
    rng = np.random.default_rng(8)
    kw = dict(emulator=model, sampler="laplace", draws=200, n_starts=2, continuum_degree=1, mask_tellurics=False)
    kw |= dict(fixed={"vmacro": 0.0, "vsini": 2.0}, rv_max=20.0, physics_error=(0.002, 0.0))
    notes = {}
    for name, truth in (("sunlike", (5750.0, 4.4, 0.0)), ("giant", (4800.0, 2.5, -0.8))):
        flux = np.asarray(model.flux(jnp.asarray(truth), jnp.asarray(wl))) + rng.normal(0.0, 0.01, wl.size)
        said = []
        result = fit_spectrum(Spectrum(wl, flux, np.full(wl.size, 0.01), resolution=28000.0), log=said.append, **kw)
        notes[name] = (result.diagnostics.get("notes", []), [s for s in map(str, said) if "lower bound" in s])
    assert notes["sunlike"] == ([], [])
    (note,), (said,) = notes["giant"]
    assert "teff 4" in note and "logg 2" in note and "feh -0" in note and note in said
    # without the physics error in the likelihood there is no Sun-measured floor to qualify
    off = fit_spectrum(Spectrum(wl, flux, np.full(wl.size, 0.01), resolution=28000.0), **{**kw, "physics_error": "off"})
    assert "notes" not in off.diagnostics
    # a batch says the same per star, in the row's note
    from stellarinf import fit_spectra

    err = np.full(wl.size, 0.01)
    sunlike = np.asarray(model.flux(jnp.asarray((5750.0, 4.4, 0.0)), jnp.asarray(wl))) + rng.normal(0.0, 0.01, wl.size)
    specs = [Spectrum(wl, f, err, resolution=28000.0) for f in (sunlike, flux)]
    batch = fit_spectra(specs, ids=["sunlike", "giant"], progress=False, **kw)
    assert batch.table["note"][0] == ""
    assert "lower bound" in batch.table["note"][1] and "logg 2" in batch.table["note"][1]
    from stellarinf import fit_joint

    joint = fit_joint(specs, ids=["sunlike", "giant"], share="rv", **kw)
    assert list(joint.diagnostics["notes"]) == ["giant"] and "logg 2" in joint.diagnostics["notes"]["giant"]


def test_telluric_bands_are_masked_and_named():
    from stellarinf.io.tellurics import telluric_mask

    wl = np.linspace(7550.0, 7800.0, 2501)
    keep, bands = telluric_mask(wl)
    # the O2 A band: its head and R branch and its P branch, i.e. every stretch the Kurucz atlas had to bridge
    # (7597.6-7598.5, 7609.4-7610.3, 7628-7642 Å) and the weak P-branch lines round K I 7699 Å air (7701.1 vacuum)
    for lo, hi in ((7597.6, 7598.5), (7609.4, 7610.3), (7628.0, 7642.0), (7660.0, 7670.0), (7700.5, 7701.6)):
        assert not keep[(wl >= lo) & (wl <= hi)].any(), (lo, hi)
    assert keep[wl < 7590.0].all() and keep[wl > 7706.0].all()  # nothing beyond the band
    assert len(bands) == 1 and bands[0].startswith("O2 A")
    keep, bands = telluric_mask(np.linspace(6480.0, 6740.0, 100))  # galah-red: no strong band
    assert keep.all() and bands == []


def test_the_solar_atlas_masks_what_fits_mask_as_telluric():
    """The log gf calibration must not fit where a fit of a real spectrum masks the Earth's lines: every telluric
    band inside a window's calibrated range is inside that window's masked ranges (the Kurucz atlas's O2 A band was
    bridged and left with residue, and a calibration that masked only its head fitted 508 lines to it)."""
    from stellarinf.io.tellurics import TELLURIC_BANDS
    from stellarinf.solar_atlas import SOLAR_ATLAS

    pad = 1.0  # the telluric bands are padded by 1 Å for barycentric shifts; the atlas has none
    checked = 0
    for entry in SOLAR_ATLAS.values():
        lo, hi = entry.calibrated_range
        for b_lo, b_hi, name in TELLURIC_BANDS:
            if b_hi < lo or b_lo > hi:
                continue
            inner = (max(b_lo + pad, lo), min(b_hi - pad, hi))
            assert any(m_lo <= inner[0] and inner[1] <= m_hi for m_lo, m_hi in entry.masked), (entry.window, name)
            checked += 1
    assert checked >= 1  # galah-ir's O2 A band


def test_outlier_mask_finds_cosmic_rays_and_nothing_else():
    from stellarinf.observe.outliers import outlier_mask

    rng = np.random.default_rng(2)
    n = 3000
    model = 1.0 - 0.5 * np.exp(-0.5 * ((np.arange(n) - 1500) / 4.0) ** 2)
    sigma = np.full(n, 0.01)
    flux = model + sigma * rng.normal(size=n)
    hits = np.array([200, 1200, 2500])
    flux[hits] += 0.5  # 50σ cosmic rays
    bad = outlier_mask(flux, model, sigma, np.ones(n, bool))
    assert set(np.flatnonzero(bad)) == {h + d for h in hits for d in (-1, 0, 1)}
    # a model that is wrong everywhere is not "outliers": at most max_fraction of the pixels go
    assert outlier_mask(flux, model + 1.0, sigma, np.ones(n, bool), grow=0).sum() == int(0.02 * n)


def test_exact_laboratory_lines_are_not_recalibrated():
    from stellarinf.synth.calibration import HOLD_LABORATORY

    ll, sun = linelist(), loggf_offsets("solar")
    held = np.isin(ll.species, HOLD_LABORATORY)
    assert held.any() and not sun[held].any()


def test_missing_features_finds_each_dip_once_at_its_centre():
    from stellarinf.synth.calibration import EMPIRICAL_MIN_SEPARATION, missing_features

    wl = np.arange(5000.0, 5010.0, 0.01)
    centres = [5002.003, 5005.5, 5005.5 + 0.5 * EMPIRICAL_MIN_SEPARATION]  # the last two are one feature
    resid = sum(-d * np.exp(-0.5 * ((wl - c) / 0.04) ** 2) for d, c in zip([0.2, 0.1, 0.05], centres))
    resid = resid + 0.02 * np.exp(-0.5 * ((wl - 5008.0) / 0.04) ** 2)  # model too deep: not a missing line
    resid = resid - 0.01 * np.exp(-0.5 * ((wl - 5009.0) / 0.04) ** 2)  # shallower than the threshold
    usable = np.ones(wl.size, bool)
    got = missing_features(wl, resid, usable, 0.03)
    assert got.size == 2
    assert got[0] == pytest.approx(centres[0], abs=0.002)  # the parabola refines below the pixel
    assert abs(got[1] - 5005.5) < 0.02
    usable[(wl > 5001.0) & (wl < 5003.0)] = False  # masked ranges are left alone
    assert missing_features(wl, resid, usable, 0.03).size == 1


def test_fit_loggf_adds_and_fits_a_line_the_list_lacks():
    # "observed" = the synthesizer plus one line the list does not have (an Fe I line of known strength at a
    # clean spot); the calibration, started from laboratory values, finds it and recovers its log gf
    from stellarinf.observe.broadening import broaden
    from stellarinf.synth.calibration import EMPIRICAL_ELOW, EMPIRICAL_ION, EMPIRICAL_Z
    from stellarinf.synth.lines import empirical_line_data
    from stellarinf.synth.synthesize import line_synthesizer

    lo, hi, margin = 6600.0, 6604.0, 1.0
    fine = fine_grid(lo - margin, hi + margin)
    x = jnp.asarray(list(SUN_LABELS.values()))
    fn, lines = line_synthesizer(fine, tuple(SUN_LABELS), "laboratory")
    clean = fn(x, jnp.asarray(lines.log_gf))[0]
    inside = (fine > lo + 0.5) & (fine < hi - 0.5)
    where = fine[inside][np.argmax(np.asarray(clean)[inside])]  # the most line-free pixel inside
    true_gf = -1.8
    extra = empirical_line_data([where], [EMPIRICAL_Z], [EMPIRICAL_ION], [EMPIRICAL_ELOW], [true_gf])
    fn2, lines2 = line_synthesizer(fine, tuple(SUN_LABELS), "laboratory", extra_lines=extra)
    dv = float(np.log(fine[1] / fine[0])) * 299792.458
    obs = np.asarray(broaden(fn2(x, jnp.asarray(lines2.log_gf))[0], dv, vsini=1.8, vmacro=3.5))
    assert 1.0 - obs[np.argmin(np.abs(fine - where))] > 0.1  # a real feature, missing from the model
    res = fit_loggf(
        fine, obs, lo, hi, margin=margin, prior_sd=0.5, sigma=0.002, maxiter=80, progress=False, missing_threshold=0.03
    )
    assert res.empirical_wavelength.size == 1
    assert res.empirical_wavelength[0] == pytest.approx(where, abs=0.01)
    assert res.empirical_loggf[0] == pytest.approx(true_gf, abs=0.1)
    assert np.abs(res.dloggf).max() < 0.1  # the list's own lines are not bent to fill the gap
    assert res.rms_after < 0.2 * res.rms_before


def test_empirical_lines_are_part_of_the_solar_log_gf_only():
    from astropy.table import Table

    from stellarinf.paths import data_file
    from stellarinf.solar_atlas import SOLAR_ATLAS
    from stellarinf.synth.data import EMPIRICAL_TABLE, empirical_lines
    from stellarinf.synth.selection import LINE_MARGIN
    from stellarinf.synth.synthesize import line_synthesizer

    table = Table.read(data_file(EMPIRICAL_TABLE))
    assert "method" in table.meta
    for w, name in zip(table["wavelength"], table["window"]):  # provenance: each row inside its calibrated range
        lo, hi = SOLAR_ATLAS[str(name)].calibrated_range
        assert lo <= w <= hi
    e = empirical_lines()
    assert e.wavelength.size == len(table) and np.all(np.diff(e.wavelength) >= 0)
    assert set(e.damping) == {"unsold", "abo"}  # each damping choice has its own (blue: both)
    for damping in ("unsold", "abo"):
        mine = e.damping == damping
        # a 2 Å range around the choice's strongest empirical line: its 'solar' has that choice's lines there (with
        # their fitted gf) and no other choice's; 'laboratory' has none
        k = int(np.flatnonzero(mine)[np.argmax(e.loggf[mine])])
        fine = fine_grid(e.wavelength[k] - 1.0, e.wavelength[k] + 1.0)
        _, lab = line_synthesizer(fine, tuple(SUN_LABELS), "laboratory", damping)
        _, sun = line_synthesizer(fine, tuple(SUN_LABELS), "solar", damping)
        lo, hi = round(float(fine[0]), 3) - LINE_MARGIN, round(float(fine[-1]), 3) + LINE_MARGIN
        near = (e.wavelength >= lo) & (e.wavelength <= hi) & mine
        assert sun.wavelength.size == lab.wavelength.size + int(near.sum())
        np.testing.assert_allclose(sun.log_gf[lab.wavelength.size :], e.loggf[near])
        f_lab, _ = synthesize(SUN_LABELS, fine, loggf="laboratory", damping=damping)
        f_sun, _ = synthesize(SUN_LABELS, fine, loggf="solar", damping=damping)
        at = np.argmin(np.abs(fine - e.wavelength[k]))
        assert f_sun[at] < f_lab[at] - 0.05  # the feature the atlas shows is there


def test_empirical_lines_of_one_damping_choice_replace_only_their_own(tmp_path):
    """data/calibrate_loggf.py's writer: a run with one damping choice replaces that choice's lines of the windows it
    fitted and keeps every other line; a table from before the damping column reads as its metadata's choice."""
    import importlib.util
    import types
    from pathlib import Path

    from astropy.table import Table

    from stellarinf.solar_atlas import solar_atlas_window
    from stellarinf.synth.data import read_empirical_lines

    spec = importlib.util.spec_from_file_location(
        "calibrate_loggf", Path(__file__).resolve().parents[1] / "data" / "calibrate_loggf.py"
    )
    cal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cal)
    path = tmp_path / "empirical.ecsv"
    legacy = Table({"wavelength": [4800.0, 7700.0], "Z": [26, 26], "ion": [0, 0], "elow": [3.5, 3.5]})
    legacy["loggf"], legacy["window"] = [-3.0, -2.0], ["galah-blue", "galah-ir"]
    legacy.meta.update(damping="unsold", windows={"galah-blue": {}, "galah-ir": {}})
    legacy.write(path, format="ascii.ecsv")
    e = read_empirical_lines(path)
    assert list(e.damping) == ["unsold", "unsold"]

    specs = {"galah-blue": solar_atlas_window("galah-blue")}
    blue = {"galah-blue": (np.array([4750.0, 4820.0]), np.array([-2.5, -4.0]))}
    for damping, gf in (("abo", (-2.5, -4.0)), ("abo", (-2.6, -4.1)), ("unsold", (-2.7, -4.2))):
        args = types.SimpleNamespace(damping=damping, empirical=0.03, molecules="on")
        cal.write_empirical(path, {"galah-blue": (blue["galah-blue"][0], np.array(gf))}, specs, args, (26, 0, 3.5))
    e = read_empirical_lines(path)
    got = sorted(zip(e.damping, e.wavelength, e.loggf))
    assert got == [
        ("abo", 4750.0, -2.6),  # the second abo run replaced the first
        ("abo", 4820.0, -4.1),
        ("unsold", 4750.0, -2.7),  # the unsold run replaced the legacy blue line, not the abo ones
        ("unsold", 4820.0, -4.2),
        ("unsold", 7700.0, -2.0),  # another window: kept
    ]
    assert set(Table.read(path).meta["windows"]) == {"galah-blue/abo", "galah-blue/unsold", "galah-ir/unsold"}


def test_batch_and_joint_fits_leave_the_physics_ranges_out():
    """``fit_spectra`` and ``fit_joint`` leave a ``(lo, hi)`` physics-error region out of every star's likelihood
    and record it per star: two stars whose flux inside 6578–6602 Å is replaced by a deep false feature come back
    at their true labels with the region left out, and far from them when it is only given the ordinary error."""
    from stellarinf import fit_joint, fit_spectra

    model, wl, _, _ = _analytic_star()
    truths = [(5600.0, 4.2, -0.2), (5900.0, 3.8, 0.1)]
    rng = np.random.default_rng(5)
    inside = (wl >= 6578.0) & (wl <= 6602.0)
    specs = []
    for t in truths:
        flux = np.asarray(model.flux(jnp.asarray(t), jnp.asarray(wl))) + rng.normal(0.0, 0.01, wl.size)
        flux[inside] *= 0.6  # what the model cannot make: a 40 % deep trough the labels would bend to
        specs.append(Spectrum(wl, flux, np.full(wl.size, 0.01), resolution=28000.0))
    region = ((6578.0, 6602.0),)
    kw = dict(emulator=model, sampler="laplace", draws=200, n_starts=2, continuum_degree=1, mask_tellurics=False)
    kw |= dict(fixed={"vmacro": 0.0, "vsini": 2.0}, rv_max=20.0, progress=False)

    def pulls(rows):
        return [abs(r["teff"] - t[0]) / r["teff_err"] for r, t in zip(rows, truths)]

    batch = fit_spectra(specs, ids=["a", "b"], physics_error=(0.002, 0.0, region), **kw)
    assert batch.settings["physics_ranges_left_out"] == {"a": ["6578–6602 Å"], "b": ["6578–6602 Å"]}
    assert batch.settings["physics_error"]["a"] == [0.002, 0.0, [[6578.0, 6602.0]]]
    assert max(pulls(batch.table)) < 4
    kept = fit_spectra(specs, ids=["a", "b"], physics_error=(0.002, 0.0), **kw)
    assert kept.settings["physics_ranges_left_out"] == {"a": [], "b": []}
    assert min(pulls(kept.table)) > 5  # the test can fail: without the region the trough drags the labels

    kw.pop("progress")
    joint = fit_joint(specs, ids=["a", "b"], share="rv", physics_error=(0.002, 0.0, region), **kw)
    assert joint.settings["physics_ranges_left_out"] == {"a": ["6578–6602 Å"], "b": ["6578–6602 Å"]}
    assert max(pulls(joint.stars)) < 4
