"""Issue #23: data sharper than the emulator are refused with a way forward, and `--degrade-to-model` smooths them to
the model's R and fits them."""

import warnings

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

import stellarinf
from stellarinf.errors import SpectrumError
from stellarinf.io.spectrum import write_spectrum_fits
from stellarinf.labels import LabelSpace
from stellarinf.observe.broadening import broaden
from stellarinf.observe.degrade import degrade_spectrum
from stellarinf.validation.analytic import AnalyticLineModel
from stellarinf.validation.mocks import make_mock, noiseless_flux
from stellarinf.wavelength import SPEED_OF_LIGHT_KMS, log_uniform_grid

SPACE = LabelSpace.from_bounds({"teff": (4500.0, 6500.0), "logg": (2.0, 5.0), "feh": (-1.5, 0.5)})
RANGE = (5000.0, 5040.0)
TRUTH = {"teff": 5400.0, "logg": 4.1, "feh": -0.3, "rv": 0.0, "vsini": 3.0, "vmacro": 0.0}
R_DATA, R_MODEL = 60_000.0, 20_000.0


class AtResolution(eqx.Module):
    """The unbroadened analytic model convolved with the LSF of ``resolution``: spectra already at that R."""

    base: AnalyticLineModel
    fine: jnp.ndarray
    resolution: float = eqx.field(static=True)
    dv: float = eqx.field(static=True)

    def __init__(self, base, resolution):
        self.base, self.resolution, self.dv = base, float(resolution), 0.5
        self.fine = jnp.asarray(log_uniform_grid(*base.wavelength_range, SPEED_OF_LIGHT_KMS / 0.5, 1.0))

    @property
    def label_space(self):
        return self.base.label_space

    @property
    def wavelength_range(self):
        return (float(self.fine[0]) + 1.0, float(self.fine[-1]) - 1.0)

    def flux(self, labels, wavelength):
        f = broaden(self.base.flux(labels, self.fine), self.dv, resolution=self.resolution)
        return jnp.interp(wavelength, self.fine, f)

    def error(self, wavelength):
        return jnp.zeros_like(wavelength)


@pytest.fixture(scope="module")
def sharp():
    """A spectrum at R 60,000 (noise S/N 150) made by the unbroadened analytic model."""
    model = AnalyticLineModel(SPACE, RANGE, None, n_lines=24, seed=1)
    wl = log_uniform_grid(5003.0, 5037.0, R_DATA)
    return model, make_mock(model, wl, TRUTH, snr=150, resolution=R_DATA, seed=2)


def test_degraded_spectrum_equals_one_observed_at_the_lower_resolution(sharp):
    model, spec = sharp
    out = degrade_spectrum(spec, R_MODEL)
    assert out.resolution == R_MODEL and out.meta["degraded_from_resolution"] == R_DATA
    assert out.n_pix < spec.n_pix / 2 and "degraded from R 60,000" in out.meta["notes"][-1]
    direct = noiseless_flux(model, out.wavelength, TRUTH, R_MODEL)
    noiseless = degrade_spectrum(
        type(spec)(
            spec.wavelength, noiseless_flux(model, spec.wavelength, TRUTH, R_DATA), spec.sigma, resolution=R_DATA
        ),
        R_MODEL,
    )
    np.testing.assert_allclose(noiseless.flux, direct, atol=2e-3)
    # σ of the mean of the original pixels each new one stands for, and it is the scatter the smoothed noise has
    ratio = np.median(spec.sigma) / np.median(out.sigma)
    assert ratio == pytest.approx(np.sqrt(spec.n_pix / out.n_pix), rel=0.05)
    scatter = (out.flux - noiseless_flux(model, out.wavelength, TRUTH, R_MODEL)) / out.sigma
    assert np.std(scatter) == pytest.approx(1.0, abs=0.15)
    assert abs(np.corrcoef(scatter[:-1], scatter[1:])[0, 1]) < 0.2  # neighbours (nearly) independent
    assert degrade_spectrum(out, R_MODEL) is out  # not sharper: unchanged


def test_sharper_data_are_refused_with_the_way_forward_and_fitted_when_degraded(sharp, tmp_path):
    _, spec = sharp
    path = tmp_path / "sharp.fits"
    write_spectrum_fits(path, spec)
    model = AtResolution(sharp[0], R_MODEL)  # an "emulator" of spectra already at R 20,000
    kw = dict(emulator=model, rv_max=30.0, vsini_max=15.0, fixed={"vmacro": 0.0}, continuum_degree=0, n_starts=2)
    kw["physics_error"] = "off"  # a mock made by the model itself
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(SpectrumError, match=r"R=60,000 is higher than the model's R=20,000.*--degrade-to-model"):
            stellarinf.fit_spectrum(path, sampler="map", **kw)
        result = stellarinf.fit_spectrum(path, sampler="laplace", draws=300, degrade_to_model=True, **kw)
    assert result.settings["degraded_from_resolution"] == R_DATA and result.settings["resolution"] == R_MODEL
    rows = {r["name"]: r for r in result.summary}
    for n in ("teff", "logg", "feh"):
        assert abs(rows[n]["p50"] - TRUTH[n]) < 4 * rows[n]["sd"], (n, rows[n]["p50"], rows[n]["sd"])
    assert 0.6 < result.summary.meta["CHI2RED"] < 1.5  # σ scaled for the wider pixels: χ² stays ≈ 1


def test_fit_cli_offers_degrade_to_model():
    from click.testing import CliRunner

    from stellarinf.cli import cli

    out = CliRunner().invoke(cli, ["fit", "--help"]).output
    assert "--degrade-to-model" in out and "--fit-resolution" in out
