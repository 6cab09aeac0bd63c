"""Label-space emulator systematics: measured offsets recover a known label error, and the summary table
combines them with the posterior sd."""

import json

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

import stellarinf  # noqa: F401  (float64)
from stellarinf.inference.density import Problem
from stellarinf.inference.laplace import laplace
from stellarinf.inference.results import label_systematics_of, summary_table, to_inference_data
from stellarinf.inference.samplers import laplace_posterior
from stellarinf.observe.model import ObservationModel
from stellarinf.validation.mocks import make_mock
from stellarinf.validation.setups import analytic_setup
from stellarinf.validation.systematics import measure_label_systematics

RESOLUTION = 20000.0


class ShiftedTeff(eqx.Module):
    """A 'truth' model whose spectra are the analytic model's at Teff + offset: an emulator fitting them is
    wrong by exactly −offset in Teff (the known answer)."""

    base: object
    offset: float

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
        return self.base.flux(labels + jnp.zeros_like(labels).at[0].set(self.offset), wavelength)

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
