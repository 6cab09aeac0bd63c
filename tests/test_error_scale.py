"""The emulator error's dependence on the labels (stellarinf.emulators.error_scale): fitted from held-out
residuals and stored with the model as a diagnostic (fits keep the one error table)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner
from test_error_model import SPACE

import stellarinf  # noqa: F401  (float64)
from stellarinf.cli import cli
from stellarinf.emulators.emulator import Emulator
from stellarinf.emulators.error_scale import ErrorScale, features, fit_error_scale, n_features
from stellarinf.emulators.model_io import load_model_directory, save_emulator
from stellarinf.emulators.payne import PayneConfig, PayneMLP
from stellarinf.errors import ShapeError
from stellarinf.io.grid import SpectralGrid, write_grid

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
    and stores it with the model (round trip); the error table is still the plain rms (fits use it unscaled)."""
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
