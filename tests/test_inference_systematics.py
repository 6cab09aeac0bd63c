"""Label-space emulator systematics: measured offsets recover a known label error, and the summary table
combines them with the posterior sd."""

import json

import equinox as eqx
import numpy as np
import pytest

import stellarinf  # noqa: F401  (float64)
from stellarinf.inference.density import Problem
from stellarinf.inference.label_systematics import sd_at
from stellarinf.inference.laplace import laplace
from stellarinf.inference.results import label_systematics_of, summary_table, to_inference_data
from stellarinf.inference.samplers import laplace_posterior
from stellarinf.observe.model import ObservationModel
from stellarinf.validation.mocks import make_mock
from stellarinf.validation.setups import analytic_setup
from stellarinf.validation.systematics import fit_label_dependence, fit_log_sd, measure_label_systematics

RESOLUTION = 20000.0


class ShiftedTeff(eqx.Module):
    """A 'truth' model whose spectra are the analytic model's at Teff + offset(labels): an emulator fitting them is
    wrong by exactly the offset in Teff (the known answer). ``offset``: a number, or a function of the labels."""

    base: object
    offset: object

    @property
    def label_space(self):
        return self.base.label_space

    @property
    def wavelength_range(self):
        return self.base.wavelength_range

    @property
    def resolution(self):
        return self.base.resolution

    def flux(self, labels, wavelength):
        shift = self.offset(labels) if callable(self.offset) else self.offset
        return self.base.flux(labels.at[0].add(shift), wavelength)

    def error(self, wavelength):
        return self.base.error(wavelength)


def test_systematics_recover_a_known_label_offset():
    model, wl = analytic_setup()
    exact = measure_label_systematics(
        model, model, wl, RESOLUTION, n_stars=2, snr=100.0, seed=1, obs_kwargs={"continuum_degree": 0}
    )
    assert exact.rms["teff"] < 1.0 and exact.rms["logg"] < 1e-3  # same model: no offset
    shifted = measure_label_systematics(
        model,
        ShiftedTeff(model, 40.0),
        wl,
        RESOLUTION,
        n_stars=2,
        snr=100.0,
        seed=1,
        obs_kwargs={"continuum_degree": 0},
    )
    np.testing.assert_allclose(shifted.bias[:, shifted.names.index("teff")], 40.0, atol=2.0)
    assert shifted.rms["teff"] == pytest.approx(40.0, abs=2.0)
    doc = shifted.to_json()
    assert doc["n_stars"] == 2 and doc["snr"] == 100.0 and set(doc["sd"]) == set(shifted.names)


class WithSystematics(eqx.Module):
    """The analytic model plus a metadata document carrying label systematics (as a saved Emulator would)."""

    base: object
    metadata: dict = eqx.field(static=True)

    def __getattr__(self, name):
        return getattr(self.base, name)

    def flux(self, labels, wavelength):
        return self.base.flux(labels, wavelength)

    def error(self, wavelength):
        return self.base.error(wavelength)


def test_summary_table_adds_systematic_and_total_sd():
    model, wl = analytic_setup()
    sys_sd = {"teff": 30.0, "logg": 0.05}
    emu = WithSystematics(model, {"label_systematics": {"sd": sys_sd}})
    assert label_systematics_of(emu) == sys_sd and label_systematics_of(model) == {}
    truth = {"teff": 5500.0, "logg": 4.2, "feh": -0.3, "rv": 5.0, "vsini": 6.0}
    spec = make_mock(model, wl, {**truth, "vmacro": 0.0}, snr=80.0, resolution=RESOLUTION, seed=3)
    problem = Problem.build(
        ObservationModel(emu, spec, continuum_degree=1, continuum="marginalise", fixed={"vmacro": 0.0}, rv_max=80.0)
    )
    post = laplace_posterior(problem, chains=2, draws=300, seed=0, init=laplace(problem, n_starts=2))
    idata = to_inference_data(post, problem, n_predictive=4)
    assert json.loads(idata.posterior.attrs["label_systematics"]) == sys_sd
    table = summary_table(idata, truth)
    rows = {r["name"]: r for r in table}
    assert rows["teff"]["sd_sys"] == 30.0 and rows["feh"]["sd_sys"] == 0.0
    assert rows["teff"]["sd_total"] == pytest.approx(np.hypot(rows["teff"]["sd"], 30.0))
    assert rows["feh"]["sd_total"] == pytest.approx(rows["feh"]["sd"])
    assert abs(rows["teff"]["pull_total"]) < abs(rows["teff"]["pull"]) or rows["teff"]["pull"] == 0
    # without systematics the table keeps its columns
    plain = summary_table(
        to_inference_data(
            post,
            Problem.build(
                ObservationModel(
                    model, spec, continuum_degree=1, continuum="marginalise", fixed={"vmacro": 0.0}, rv_max=80.0
                )
            ),
            n_predictive=4,
        )
    )
    assert "sd_sys" not in plain.colnames


def test_a_log_linear_sd_is_recovered_from_its_offsets():
    rng = np.random.default_rng(0)
    z = rng.uniform(-1.0, 1.0, (4000, 2))
    phi = np.c_[np.ones(len(z)), z]
    truth = np.array([np.log(5.0), 0.6, -0.3])
    bias = np.exp(phi @ truth) * rng.standard_normal(len(z))
    np.testing.assert_allclose(fit_log_sd(phi, bias, ridge=0.0), truth, atol=0.05)
    # a constant sd: the slopes stay near zero and the intercept is ln rms
    flat = fit_log_sd(phi, 2.0 * rng.standard_normal(len(z)), ridge=1.0)
    assert np.all(np.abs(flat[1:]) < 0.06) and flat[0] == pytest.approx(np.log(2.0), abs=0.03)


def feh_dependent_offset(feh):
    """4 K at [Fe/H] +0.5 growing to 64 K at −2.0: metal-poor stars are the hard ones."""
    return 4.0 * 16.0 ** ((0.5 - feh) / 2.5)


def test_measured_systematics_grow_where_the_truth_is_hard_and_fits_report_them_at_the_star():
    model, wl = analytic_setup()
    truth_model = ShiftedTeff(model, lambda labels: feh_dependent_offset(labels[2]))
    res = measure_label_systematics(
        model, truth_model, wl, RESOLUTION, n_stars=24, snr=100.0, seed=2, obs_kwargs={"continuum_degree": 0}
    )
    i, j = res.names.index("teff"), res.names.index("feh")
    np.testing.assert_allclose(res.bias[:, i], feh_dependent_offset(res.truths[:, j]), rtol=0.1, atol=2.0)
    doc = {"sd": res.rms, "model": fit_label_dependence(res)}
    assert "teff" in doc["model"]["label_dependent"] and doc["model"]["heldout_gain_nats_per_star"]["teff"] > 0.3
    poor, rich = sd_at(doc, {"teff": 5500.0, "feh": -1.8}), sd_at(doc, {"teff": 5500.0, "feh": 0.3})
    assert poor["teff"] > 4.0 * rich["teff"]  # the truth's offsets differ 10x over this range; ridge shrinks a little
    assert rich["teff"] < res.rms["teff"] < poor["teff"]
    # beyond the stars' range the model does not extrapolate; without a star (or a model) it is the rms
    assert sd_at(doc, {"feh": -5.0})["teff"] == pytest.approx(
        sd_at(doc, {"feh": float(res.truths[:, j].min())})["teff"]
    )
    assert sd_at(doc)["teff"] == res.rms["teff"] and sd_at({"sd": res.rms}, {"feh": -1.8})["teff"] == res.rms["teff"]

    # a fit reports sd_sys at its own best fit
    emu = WithSystematics(model, {"label_systematics": doc})
    reported = []
    for feh in (-1.7, 0.2):
        truth = {"teff": 5500.0, "logg": 4.2, "feh": feh, "rv": 5.0, "vsini": 6.0}
        spec = make_mock(model, wl, {**truth, "vmacro": 0.0}, snr=80.0, resolution=RESOLUTION, seed=3)
        problem = Problem.build(
            ObservationModel(emu, spec, continuum_degree=1, continuum="marginalise", fixed={"vmacro": 0.0}, rv_max=80.0)
        )
        post = laplace_posterior(problem, chains=2, draws=200, seed=0, init=laplace(problem, n_starts=2))
        idata = to_inference_data(post, problem, n_predictive=4)
        best = json.loads(idata.posterior.attrs["best_fit"])
        rows = {r["name"]: r for r in summary_table(idata)}
        assert rows["teff"]["sd_sys"] == pytest.approx(sd_at(doc, {**best, "vmacro": 0.0})["teff"], rel=1e-9)
        reported.append(rows["teff"]["sd_sys"])
    assert reported[0] > 2.0 * reported[1]  # the metal-poor star carries the larger systematic error


def test_systematics_command_stores_the_rms_and_its_label_dependence_in_model_json(tmp_path, monkeypatch):
    import jax
    from click.testing import CliRunner

    from stellarinf.cli import cli
    from stellarinf.commands import systematics as command
    from stellarinf.emulators import Emulator, PayneConfig, PayneMLP, save_emulator
    from stellarinf.emulators.registry import load_emulator
    from stellarinf.labels import LabelSpace
    from stellarinf.validation.analytic import AnalyticLineModel
    from stellarinf.wavelength import log_uniform_grid

    space = LabelSpace.from_bounds({"teff": (4500.0, 6500.0), "logg": (2.0, 5.0), "feh": (-1.5, 0.5)})
    wl = log_uniform_grid(6690.0, 6730.0, 28_000.0)
    emu = Emulator(
        PayneMLP(PayneConfig(3, wl.size, (8, 8)), jax.random.key(1)),
        space,
        (6680.0, 6740.0),
        resolution=28_000.0,
        training_wavelength=wl,
    )
    save_emulator(tmp_path / "m", emu)
    truth = AnalyticLineModel(space, (6680.0, 6740.0), None, n_lines=12, seed=5)
    monkeypatch.setattr(command, "reference_model", lambda emulator, resolution: (truth, wl))
    stars = tmp_path / "stars.json"
    res = CliRunner().invoke(
        cli, ["systematics", str(tmp_path / "m"), "--stars", "40", "--quiet", "--save-stars", str(stars)]
    )
    assert res.exit_code == 0, res.output
    assert "systematics stored in" in res.output and "teff" in res.output
    loaded = load_emulator(tmp_path / "m")  # the weights are untouched: their checksum still matches
    entry = loaded.metadata["label_systematics"]
    saved = json.loads(stars.read_text())
    bias = np.asarray(saved["bias"])
    assert entry["n_stars"] == 40 == len(bias) and entry["weights_sha256"] == loaded.metadata["weights"]["sha256"]
    for i, name in enumerate(saved["names"]):  # the stored rms is the saved stars' (an untrained network: large)
        assert entry["sd"][name] == pytest.approx(np.sqrt(np.mean(bias[:, i] ** 2)), rel=1e-4)
    assert set(entry["model"]["coef"]) <= set(entry["sd"]) and entry["model"]["n_stars"] == 40
    assert label_systematics_of(loaded)["teff"] == entry["sd"]["teff"]
    # bad input: a clear message, nothing written
    for args, words in (
        (["--stars", "1"], "--stars must be at least 2"),
        (["--snr", "0"], "--snr must be a positive number"),
    ):
        res = CliRunner().invoke(cli, ["systematics", str(tmp_path / "m"), *args])
        assert res.exit_code == 3 and words in res.output
    res = CliRunner().invoke(cli, ["systematics", "default-payne"])
    assert res.exit_code == 3 and "shipped model" in res.output
