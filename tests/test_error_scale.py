"""The emulator error's dependence on the labels (stellarinf.emulators.error_scale): fitted from held-out
residuals and stored with the model; a fit scales the error to its star (stellarinf.observe.error_scale)."""

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner
from modes_model import ModesModel
from test_error_model import LABELS, SPACE, R, modes_model

import stellarinf  # noqa: F401  (float64)
from stellarinf.cli import cli
from stellarinf.emulators.emulator import Emulator
from stellarinf.emulators.error_scale import ErrorScale, features, fit_error_scale, n_features
from stellarinf.emulators.model_io import load_model_directory, save_emulator
from stellarinf.emulators.payne import PayneConfig, PayneMLP
from stellarinf.errors import ShapeError
from stellarinf.io.grid import SpectralGrid, write_grid
from stellarinf.io.spectrum import Spectrum
from stellarinf.observe.error_scale import star_error_scales, with_error_scales
from stellarinf.observe.model import ObservationModel
from stellarinf.observe.multi_arm import MultiArmObservationModel
from stellarinf.wavelength import log_uniform_grid

NAMES = ("teff", "logg", "feh")
LOWER, UPPER = (4500.0, 2.0, -1.5), (6500.0, 5.0, 0.5)


def true_ln_scale(values):
    z = 2.0 * (np.asarray(values) - LOWER) / (np.subtract(UPPER, LOWER)) - 1.0
    return -1.5 * z[..., 0] + 0.5 * z[..., 0] ** 2 + 0.3 * z[..., 2] + 0.4 * z[..., 0] * z[..., 2]


def box_values(n, seed):
    rng = np.random.default_rng(seed)
    return np.asarray(LOWER) + rng.uniform(size=(n, 3)) * np.subtract(UPPER, LOWER)


def test_fit_error_scale_recovers_a_known_dependence_with_mean_square_one():
    values = box_values(600, 0)
    rng = np.random.default_rng(1)
    rms = 0.01 * np.exp(true_ln_scale(values) + 0.05 * rng.normal(size=600))
    scale, report = fit_error_scale(values, rms, NAMES, LOWER, UPPER)
    s = np.asarray([float(scale(v)) for v in values])
    assert np.mean(s**2) == pytest.approx(1.0, rel=1e-6)  # the table is the rms over these spectra
    # ratios between stars are the truth's (a cool star's error is e^3 ≈ 20× a hot one's here)
    cool, hot = np.array([4600.0, 4.0, 0.3]), np.array([6400.0, 4.0, -1.0])
    truth = np.exp(true_ln_scale(cool) - true_ln_scale(hot))
    assert float(scale(cool) / scale(hot)) == pytest.approx(truth, rel=0.03)
    assert report["ln_rms_variance_explained"] > 0.98 and report["scale_max"] / report["scale_min"] > 10
    # round trip; JAX and NumPy agree; outside the box the scale is the boundary's
    again = ErrorScale.from_json(scale.to_json())
    assert again == scale
    z = 2.0 * (cool - LOWER) / np.subtract(UPPER, LOWER) - 1.0
    assert float(scale(cool)) == pytest.approx(np.exp(features(z) @ np.asarray(scale.coef)), rel=1e-12)
    assert float(scale(cool + [-500.0, 0.0, 0.0])) == pytest.approx(float(scale([4500.0, 4.0, 0.3])), rel=1e-12)
    assert np.isfinite(np.asarray(jax.grad(lambda v: scale(v))(jnp.asarray(cool)))).all()
    # malformed: a clear error
    with pytest.raises(ShapeError, match="coefficients"):
        ErrorScale(NAMES, LOWER, UPPER, (0.0,) * (n_features(3) - 1))
    with pytest.raises(ShapeError, match="too few"):
        fit_error_scale(values[:10], rms[:10], NAMES, LOWER, UPPER)


def test_error_model_command_measures_the_scale_and_keeps_the_plain_table(tmp_path):
    """Held-out residuals whose size depends on the labels: `error-model` (default --scale) finds that dependence
    and stores it with the model (round trip); the error table is still the plain rms (the scale's unit)."""
    wl = np.linspace(6000.0, 6030.0, 64)
    net = PayneMLP(PayneConfig(n_labels=3, n_pixels=wl.size, hidden=(8,)), jax.random.key(0))
    emu = Emulator(net, SPACE, (6000.0, 6030.0), training_wavelength=wl)
    labels = box_values(200, 3)
    rng = np.random.default_rng(4)
    size = 2e-3 * np.exp(true_ln_scale(labels))
    flux = emu.predict(labels, wl) + size[:, None] * rng.normal(size=(200, wl.size))
    write_grid(tmp_path / "heldout.h5", SpectralGrid(SPACE, labels, wl, flux))
    save_emulator(tmp_path / "m", emu)
    args = ["error-model", str(tmp_path / "m"), "--grid", str(tmp_path / "heldout.h5"), "--modes", "2", "--quiet"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "error scale over Teff, log g, [Fe/H]" in res.output
    loaded = load_model_directory(tmp_path / "m")
    scale = loaded.error_scale
    assert scale is not None and scale.labels == NAMES
    cool, hot = np.array([4600.0, 4.0, 0.3]), np.array([6400.0, 4.0, -1.0])
    truth = np.exp(true_ln_scale(cool) - true_ln_scale(hot))
    assert float(scale(cool) / scale(hot)) == pytest.approx(truth, rel=0.15)
    doc = loaded.metadata["error_model"]
    assert doc["scale_report"]["ln_rms_variance_explained_held_out"] > 0.8
    # the table is the plain rms over the spectra (mean s² = 1 there, so it is also the scale's unit)
    assert float(np.sqrt(np.mean(np.asarray(loaded.error_sigma) ** 2))) == pytest.approx(
        np.sqrt(np.mean(size**2)), rel=0.1
    )
    s = np.asarray([float(scale(v)) for v in labels])
    assert np.mean(s**2) == pytest.approx(1.0, rel=1e-6)


# --- in a fit: s(θ) evaluated at the first MAP's labels, then held fixed (stellarinf.observe.error_scale) --------


class ScaledModesModel(eqx.Module):
    """The error-model tests' analytic model with modes, plus a measured error scale (duck-types an Emulator)."""

    inner: ModesModel
    error_scale: ErrorScale = eqx.field(static=True)

    label_space = property(lambda self: self.inner.label_space)
    wavelength_range = property(lambda self: self.inner.wavelength_range)
    resolution = property(lambda self: self.inner.resolution)
    n_error_modes = property(lambda self: self.inner.n_error_modes)
    error_modes = property(lambda self: self.inner.error_modes)
    error_wavelength = property(lambda self: self.inner.error_wavelength)
    error_sigma = property(lambda self: self.inner.error_sigma)

    def flux(self, labels, wavelength):
        return self.inner.flux(labels, wavelength)

    def error(self, wavelength):
        return self.inner.error(wavelength)

    error_white = Emulator.error_white


S_TRUTH = 0.25  # this star's error is a quarter of the box's rms


def scaled_model():
    """Box rms: modes of 0.004 and a white 0.004; s(Teff) = 0.25 at the star, rising 1.6× per 1000 K."""
    inner = modes_model(n_modes=3, seed=0)
    ew = np.asarray(inner.error_wavelength)
    sigma = np.sqrt(np.sum(np.asarray(inner.error_modes) ** 2, axis=0) + 0.004**2)
    inner = ModesModel(inner.base, inner.error_wavelength, jnp.asarray(sigma), inner.error_modes)
    z_star = 2.0 * (LABELS["teff"] - 4500.0) / 2000.0 - 1.0
    scale = ErrorScale(("teff",), (4500.0,), (6500.0,), (math.log(S_TRUTH) - 0.5 * z_star, 0.5, 0.0))
    assert ew.size == sigma.size
    return ScaledModesModel(inner, scale)


def star_spectrum(model, noise=0.001, seed=3):
    """Noise σ plus the emulator's error at this star: s × (its modes with N(0, 1) amplitudes + its white part)."""
    wl = log_uniform_grid(6560.0, 6640.0, R, 2.5)
    rng = np.random.default_rng(seed)
    truth = np.asarray(model.flux(jnp.asarray(SPACE.array_from_mapping(LABELS)), jnp.asarray(wl)))
    ew = np.asarray(model.error_wavelength)
    modes = np.stack([np.interp(wl, ew, m) for m in np.asarray(model.error_modes)])
    white = np.asarray(model.error_white(jnp.asarray(wl)))
    emu = S_TRUTH * (rng.normal(size=modes.shape[0]) @ modes + white * rng.normal(size=wl.size))
    flux = truth + emu + noise * rng.normal(size=wl.size)
    return Spectrum(wl, flux, np.full(wl.size, noise), resolution=R)


def test_with_error_scales_multiplies_each_arm_s_emulator_error_and_nothing_else():
    model = scaled_model()
    spec = star_spectrum(model)
    obs = ObservationModel(model, spec, continuum="marginalise", continuum_degree=1)
    params = {**obs.initial_params(), **LABELS}
    (s,) = star_error_scales(obs, params)
    assert s == pytest.approx(S_TRUTH, rel=1e-9)
    scaled = with_error_scales(obs, (s,))
    assert np.allclose(scaled.emulator_error, s * obs.emulator_error) and np.any(obs.emulator_error > 0)
    assert np.allclose(scaled.error_modes, s * obs.error_modes) and obs.n_error_modes == 3
    assert np.array_equal(scaled.sigma, obs.sigma) and np.array_equal(scaled.flux, obs.flux)
    # the likelihood is the one of a model whose error table and modes are s × the box's (a known answer)
    inner = model.inner
    shrunk = ModesModel(inner.base, inner.error_wavelength, s * inner.error_sigma, s * inner.error_modes)
    direct = ObservationModel(shrunk, spec, continuum="marginalise", continuum_degree=1)
    assert float(scaled.log_likelihood(params)) == pytest.approx(float(direct.log_likelihood(params)), rel=1e-10)
    # two arms: each its own emulator's scale; None leaves an arm as it is
    blue, red = spec.arms()[0], spec.arms()[0]
    two = MultiArmObservationModel(
        [
            ObservationModel(model, _with_segment(blue, 0), continuum="marginalise", continuum_degree=1),
            ObservationModel(model.inner, _with_segment(red, 1), continuum="marginalise", continuum_degree=1),
        ]
    )
    scales = star_error_scales(two, params)
    assert scales[0] == pytest.approx(S_TRUTH, rel=1e-9) and scales[1] is None  # the plain model has no scale
    both = with_error_scales(two, (0.5, None))
    assert np.allclose(both.arms[0].emulator_error, 0.5 * two.arms[0].emulator_error)
    assert np.array_equal(both.arms[1].emulator_error, two.arms[1].emulator_error)
    # the arms keep their model objects (the pipeline matches arms to models by identity)
    assert both.arms[0].emulator is two.arms[0].emulator and both.arms[1].emulator is two.arms[1].emulator
    with pytest.raises(ValueError, match="2 arms"):
        with_error_scales(two, (0.5,))


def _with_segment(spec, seg):
    return dataclasses.replace(spec, segments=np.full(spec.n_pix, seg))


@pytest.mark.parametrize("mode", ["star", "box"])
def test_a_fit_scales_the_emulator_error_to_the_star_and_its_chi2_says_so(mode):
    """Data whose emulator error is a quarter of the box's rms: scaled to the star (s at the first MAP, held fixed),
    the reduced χ² is 1 and s is recorded; with the box's table it is far below 1 (errors overstated)."""
    model = scaled_model()
    result = stellarinf.fit_spectrum(
        star_spectrum(model), emulator=model, sampler="laplace", chains=2, draws=200, n_starts=2,
        physics_error="off", continuum_degree=1, error_scale=mode,
    )  # fmt: skip
    record = result.settings["error_scale"]
    chi2_red = result.summary.meta["CHI2RED"]
    if mode == "box":
        assert record == {"mode": "box", "scales": None}
        assert chi2_red < 0.3
        return
    (s,) = record["scales"]
    teff = float(result.summary[list(result.summary["name"]).index("teff")]["p50"])
    assert abs(teff - LABELS["teff"]) < 30.0
    assert s == pytest.approx(float(model.error_scale(np.array([teff]))), rel=0.02)  # at the fit's labels
    assert s == pytest.approx(S_TRUTH, rel=0.05)
    assert 0.85 < chi2_red < 1.2


def test_a_batch_scales_each_star_s_error_and_a_joint_fit_says_it_keeps_the_table():
    """``fit_spectra`` scales each star's emulator error at its first MAP and redoes its MAP and Laplace from there
    (the scale in the table's ``error_scale`` column, the reduced χ² 1); ``fit_joint`` cannot (no per-star second
    MAP) and says so only where it matters; a mode other than star/box is refused by name."""
    from stellarinf.observe.error_scale import check_error_scale_mode, table_kept_note

    model = scaled_model()
    spectra = [star_spectrum(model, seed=3), star_spectrum(model, seed=4)]
    batch = stellarinf.fit_spectra(
        spectra, emulator=model, sampler="laplace", draws=200, n_starts=2, physics_error="off",
        continuum_degree=1, progress=False,
    )  # fmt: skip
    t = batch.table
    assert list(t["status"]) == ["ok", "ok"] and batch.settings["error_scale"]["mode"] == "star"
    for row in t:
        # s at the first MAP's labels (the row's Teff is the posterior median, a few K away: s changes 0.05 % per K)
        assert row["error_scale"] == pytest.approx(float(model.error_scale(np.array([row["teff"]]))), rel=2e-3)
        assert row["error_scale"] == pytest.approx(S_TRUTH, rel=0.05)
        assert 0.85 < row["chi2_reduced"] < 1.2  # the box's table would give < 0.3 (the fit_spectrum test above)
    note = table_kept_note("a joint fit", "star", [model.inner, model])
    assert note.startswith("a joint fit keeps the emulator's error table") and "fit-catalog" in note
    assert table_kept_note("a joint fit", "box", [model]) is None
    assert table_kept_note("a joint fit", "star", [model.inner]) is None  # nothing measured, nothing lost
    check_error_scale_mode("box")
    with pytest.raises(ShapeError, match="error_scale must be 'star' or 'box', got 'local'"):
        check_error_scale_mode("local", ShapeError)
