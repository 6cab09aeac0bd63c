"""Bias-aware bounds: forecasts whose noise carries the emulator's error as a fit's likelihood does (its correlated
error modes on the forecast's pixels plus the white remainder), checked against dense linear algebra, against the
Fisher matrix of the fit's own likelihood, and against the analytic floor of a one-label toy."""

import json
import math
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner
from modes_model import ModesModel

import stellarinf  # noqa: F401  (float64)
from stellarinf import forecast as F
from stellarinf.fisher import (
    apply_inverse_covariance,
    correlated_information,
    fisher_from_jacobian,
    likelihood_fisher,
    mode_blocks,
    noise_sigma,
)
from stellarinf.io.spectrum import Spectrum
from stellarinf.labels import default_label_space
from stellarinf.observe.model import ObservationModel
from stellarinf.validation.analytic import AnalyticLineModel
from stellarinf.wavelength import Window

SMALL = Window("test-small", 6540.0, 6600.0, 28_000.0, 2.5, "test window")
STAR = {"teff": 5772.0, "logg": 4.44, "feh": 0.0}
SPACE = default_label_space().subset(["teff", "logg", "feh", "vmic"])


def modes_model(wavelength_range, *, n_modes=3, seed=0, white=4e-4, amplitude=2e-3, n_lines=24, line_seed=3):
    """Line-like correlated error patterns (Gaussian bumps, one of them on the model's strongest line's
    neighbourhood) and a white remainder ``white`` beside them."""
    base = AnalyticLineModel(SPACE, wavelength_range, None, n_lines=n_lines, seed=line_seed)
    lo, hi = wavelength_range
    ew = np.linspace(lo, hi, int((hi - lo) * 40) + 1)
    rng = np.random.default_rng(seed)
    centres = rng.uniform(lo + 10.0, hi - 10.0, size=(n_modes, 5))
    modes = np.stack([sum(amplitude * np.exp(-0.5 * ((ew - c) / 0.2) ** 2) for c in row) for row in centres])
    sigma = np.sqrt(np.sum(modes**2, axis=0) + white**2)
    return ModesModel(base, jnp.asarray(ew), jnp.asarray(sigma), jnp.asarray(modes))


@pytest.fixture(scope="module")
def model():
    return modes_model((SMALL.wmin - 10.0, SMALL.wmax + 10.0))


@pytest.fixture(scope="module")
def fc(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return F.forecast(model, STAR, window=SMALL, snr=100.0, emulator_error=True)


def _dense_fisher(J, sigma, modes):
    C = np.diag(sigma**2) + modes @ modes.T
    return J.T @ np.linalg.solve(C, J)


# ---------------------------------------------------------------- the linear algebra
def test_correlated_information_equals_the_dense_inverse_and_ignores_masked_pixels():
    rng = np.random.default_rng(0)
    n, p, k = 120, 4, 5
    J = rng.normal(size=(n, p))
    sigma = rng.uniform(0.5, 2.0, n)
    U = rng.normal(size=(n, k)) * 0.7
    w = 1.0 / sigma**2
    w[[3, 50]] = 0.0  # masked: as if those pixels were not there
    keep = w > 0
    dense = _dense_fisher(J[keep], sigma[keep], U[keep])
    np.testing.assert_allclose(correlated_information(J, w, U), dense, rtol=1e-10)
    res = fisher_from_jacobian(J, sigma, list("abcd"), mask=keep, noise_modes=U)
    np.testing.assert_allclose(res.fisher, dense, rtol=1e-10)
    X = rng.normal(size=(n, 2))
    Cinv_X = np.zeros_like(X)
    Cinv_X[keep] = np.linalg.solve(np.diag(sigma[keep] ** 2) + U[keep] @ U[keep].T, X[keep])
    np.testing.assert_allclose(apply_inverse_covariance(X, w, U), Cinv_X, rtol=1e-9, atol=1e-12)
    # each pixel's share of the information still sums to the diagonal of F
    np.testing.assert_allclose(res.per_pixel_information("diagonal").sum(axis=0), np.diag(dense), rtol=1e-9)
    # a zero mode (another arm's, on these pixels) changes nothing; no modes is the diagonal formula
    np.testing.assert_allclose(correlated_information(J, w, np.c_[U, np.zeros(n)]), dense, rtol=1e-10)
    np.testing.assert_allclose(correlated_information(J, w, U[:, :0]), (J.T * w) @ J, rtol=1e-12)
    # modes confined to separate pixel ranges (one emulator per arm) are taken block by block; pixels 40-59 have none
    B = np.zeros((n, 4))
    B[:40, :2], B[60:, 2:] = U[:40, :2], U[60:, 2:4]
    assert [(b.start, b.stop, list(c)) for b, c in mode_blocks(B)] == [(0, 40, [0, 1]), (60, n, [2, 3])]
    np.testing.assert_allclose(
        correlated_information(J, w, B), _dense_fisher(J[keep], sigma[keep], B[keep]), rtol=1e-10
    )


def test_a_mode_along_the_label_derivative_gives_the_analytic_floor_of_a_one_label_toy():
    """J = j û, one mode ε û, white photon noise σ = 1/SNR: C = σ² I + ε² û ûᵀ, so F = j²/(σ² + ε²) and the bound
    sqrt(σ² + ε²)/j falls as 1/SNR only while σ ≫ ε, then stops at ε/j."""
    rng = np.random.default_rng(1)
    n, j, eps = 400, 37.0, 2e-3
    u = rng.normal(size=n)
    u /= np.linalg.norm(u)
    J, U = (j * u)[:, None], (eps * u)[:, None]
    for snr in (10.0, 1e3, 1e5, 1e7):
        sigma = 1.0 / snr
        res = fisher_from_jacobian(J, np.full(n, sigma), ["x"], noise_modes=U)
        expected = math.sqrt(sigma**2 + eps**2) / j
        assert res.marginal()["x"] == pytest.approx(expected, rel=1e-9), snr
    assert res.marginal()["x"] == pytest.approx(eps / j, rel=1e-6)  # the floor, not 0
    # at SNR 1/ε photon noise and the mode contribute equally: the photon bound equals the floor there
    no_modes = fisher_from_jacobian(J, np.full(n, eps), ["x"])
    assert no_modes.marginal()["x"] == pytest.approx(eps / j, rel=1e-12)


# ---------------------------------------------------------------- the forecast
def test_forecast_fisher_with_modes_equals_dense_numpy(fc):
    res = fc.result
    assert fc.error_modes is not None and fc.error_modes.shape == (fc.wavelength.size, 3)
    assert res.meta["error_model"] == "modes" and res.meta["n_error_modes"] == 3
    dense = _dense_fisher(res.jacobian, fc.sigma, fc.error_modes)
    scale = np.sqrt(np.outer(np.diag(dense), np.diag(dense)))
    assert np.max(np.abs(res.fisher - dense) / scale) < 1e-10
    # the modes really matter here: the diagonal (white-only) forecast differs
    white = F.forecast(fc.spectrum_model, STAR, window=SMALL, snr=100.0, emulator_error="white")
    assert white.error_modes is None and white.result.meta["error_model"] == "white"
    assert abs(white.result.marginal()["teff"] / res.marginal()["teff"] - 1) > 1e-3


def test_forecast_with_modes_equals_the_fisher_matrix_of_the_fits_likelihood(model, fc):
    """The fit of this star's spectrum (an ObservationModel with the emulator's error, its defaults, at the
    instrument's R, photon noise as σ) has exactly the forecast's information."""
    sigma = noise_sigma(fc.flux, fc.snr, fc.snr_mode)
    spec = Spectrum(fc.wavelength, fc.flux, sigma, resolution=SMALL.resolution)
    fit = ObservationModel(model, spec, continuum="sample")
    assert fit.n_error_modes == 3
    params = {k: v for k, v in fc.params.items() if k in fit.param_names}
    lf = likelihood_fisher(fit, params, fc.result.names)
    for n in fc.result.names:
        assert fc.result.marginal()[n] == pytest.approx(lf.marginal()[n], rel=1e-6), n
    scale = np.sqrt(np.outer(np.diag(lf.fisher), np.diag(lf.fisher)))
    assert np.max(np.abs(fc.result.fisher - lf.fisher) / scale) < 1e-6
    # a mock drawn from the forecast carries the modes, and its observation model has the same likelihood
    _, mock_obs = F.mock_observation(fc, seed=0)
    assert mock_obs.n_error_modes == 3
    mock = likelihood_fisher(mock_obs, params, fc.result.names)
    assert mock.marginal()["teff"] == pytest.approx(fc.result.marginal()["teff"], rel=1e-6)


def test_with_modes_the_bound_saturates_and_at_snr_is_a_fresh_forecast(model, fc):
    snrs = [100.0, 1e3, 1e4, 1e5, F.FLOOR_SNR]
    bounds = [fc.at_snr(s).marginal()["teff"] for s in snrs]
    assert all(b1 < b0 for b0, b1 in zip(bounds, bounds[1:]))  # more photons always help a bit ...
    photon = fc.noise_only().marginal()["teff"]
    assert bounds[-1] > 10.0 * photon * 100.0 / F.FLOOR_SNR  # ... but no longer as 1/(S/N): a floor
    assert bounds[-2] == pytest.approx(bounds[-1], rel=1e-3)
    floor = F.emulator_floor(fc)["teff"]
    assert floor["floor"] == bounds[-1]
    s_star = floor["snr_floor_dominates"]  # where the photon bound meets the floor
    assert fc.noise_only(s_star).marginal()["teff"] == pytest.approx(floor["floor"], rel=1e-9)
    assert fc.at_snr(s_star).marginal()["teff"] > floor["floor"]
    # at_snr keeps the modes: it is the forecast made afresh at that S/N
    for s in (30.0, 400.0):
        fresh = F.forecast(model, STAR, window=SMALL, snr=s, emulator_error=True)
        again = fc.at_snr(s)
        for n in fc.result.names:
            assert again.marginal()[n] == pytest.approx(fresh.result.marginal()[n], rel=1e-9), (s, n)
    # another free set from the stored Jacobian keeps them too
    sub = fc.with_free(["teff", "logg", "feh", "rv"])
    dense = _dense_fisher(fc.full_jacobian[:, [fc.param_names.index(n) for n in sub.names]], fc.sigma, fc.error_modes)
    np.testing.assert_allclose(sub.fisher, dense, rtol=1e-9)


def test_without_emulator_error_nothing_changes(model, fc):
    """No emulator error: the diagonal photon-noise formula, bit for bit; "white": the old quadrature sum."""
    plain = F.forecast(model, STAR, window=SMALL, snr=100.0)
    assert plain.error_modes is None and plain.emulator_error is None and plain.result.noise_modes is None
    assert plain.result.meta["error_model"] == "none"
    sigma = noise_sigma(plain.flux, 100.0, "constant")
    assert np.array_equal(plain.sigma, sigma)
    J = plain.result.jacobian
    Fd = (J.T * (1.0 / sigma**2)) @ J
    assert np.array_equal(plain.result.data_fisher, 0.5 * (Fd + Fd.T))
    assert np.array_equal(plain.full_jacobian, fc.full_jacobian)  # the error model does not touch the Jacobian
    assert F.emulator_floor(plain) == {}
    white = F.forecast(model, STAR, window=SMALL, snr=100.0, emulator_error="white")
    full = np.asarray(model.error(jnp.asarray(white.wavelength)))
    assert np.array_equal(white.sigma, np.sqrt(sigma**2 + full**2))
    with pytest.raises(F.ForecastError, match="modes, white"):
        F.forecast(model, STAR, window=SMALL, emulator_error="correlated")


def test_several_arms_each_arms_modes_on_its_own_pixels():
    """One emulator per arm: the modes are block-diagonal (an arm's modes are zero on the other arm's pixels), so
    with each arm's continuum marginalised the shared parameters' information is the sum of each arm's own
    forecast with its modes."""
    blue = modes_model((4900.0, 5500.0), n_modes=2, seed=4, n_lines=60, line_seed=1)
    red = modes_model((6200.0, 6900.0), n_modes=3, seed=5, n_lines=60, line_seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        both = F.forecast([red, blue], STAR, window="lamost-mrs", snr=80.0, emulator_error=True)
        alone = [
            F.forecast(m, STAR, window=arm, snr=80.0, emulator_error=True)
            for m, arm in zip((blue, red), both.instrument.arms)
        ]
    U = both.error_modes
    assert U.shape == (both.wavelength.size, 5)
    b, r = both.arm_slices
    assert not np.any(U[b, 2:]) and not np.any(U[r, :2])  # blue's 2 modes, then red's 3
    np.testing.assert_array_equal(U[b, :2], alone[0].error_modes)
    np.testing.assert_array_equal(U[r, 2:], alone[1].error_modes)

    def schur(res, keep):
        names, M = list(res.names), res.fisher
        k = [names.index(n) for n in keep]
        o = [i for i in range(len(names)) if i not in k]
        return M[np.ix_(k, k)] - M[np.ix_(k, o)] @ np.linalg.solve(M[np.ix_(o, o)], M[np.ix_(o, k)])

    shared = ["teff", "logg", "feh", "vmic", "rv", "vsini", "vmacro"]
    expected = sum(schur(a.result, shared) for a in alone)
    np.testing.assert_allclose(schur(both.result, shared), expected, rtol=1e-8, atol=1e-12 * np.abs(expected).max())
    info = F.arm_information(both.result.jacobian, both.result.weights, both.arm_slices, U)
    np.testing.assert_allclose(info.sum(axis=0), both.result.data_fisher, rtol=1e-9, atol=1e-12 * np.abs(info).max())


# ---------------------------------------------------------------- CLI
def test_cli_crb_emulator_error_says_its_error_model_and_where_the_floor_dominates(tmp_path, monkeypatch, model):
    from stellarinf.cli import cli

    real = F.resolve_model
    monkeypatch.setattr(
        F,
        "resolve_model",
        lambda m, window="galah-red", **kw: real(model if m == "modes-injected" else m, window, **kw),
    )
    out = tmp_path / "crb.json"
    base = ["crb", "--emulator", "modes-injected", "--window", "R=28000:6550-6590", "--snr", "100,1000"]
    r = CliRunner().invoke(cli, [*base, "--emulator-error", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "3 correlated modes + white remainder" in r.output
    assert "emulator error floor" in r.output
    doc = json.loads(out.read_text())
    assert doc["error_model"] == "modes" and doc["n_noise_modes"] == 3
    floor = doc["emulator_floor"]["teff"]
    assert floor["floor"] > 0 and floor["snr_floor_dominates"] > 0
    # beside it, the label floor a real star's fit through this model would report (here the window's: galah-red)
    from stellarinf.observe.physics_error import physics_error_table

    assert "real-star floor sd_phys" in r.output
    assert doc["physics_floor"]["teff"]["sd_phys"] == physics_error_table()["galah-red"]["label_floor"]["teff"]
    # measured on the Sun: for this star (the box's middle, log g 3, [Fe/H] -0.75) the forecast says that floor is a
    # lower bound; for the Sun it says nothing
    assert "logg 3" in doc["physics_floor_note"] and "read sd_phys" in doc["physics_floor_note"]
    assert doc["physics_floor_note"] in r.output
    sun = CliRunner().invoke(cli, [*base, "--teff", "5772", "--logg", "4.44", "--feh", "0", "-o", str(out)])
    assert sun.exit_code == 0, sun.output
    assert "physics_floor_note" not in json.loads(out.read_text()) and "far from it" not in sun.output
    # the S/N scan is the exact one: the bound at S/N 1000 is above a tenth of the one at 100
    teff = doc["snr_scan"]["marginal"]["teff"]
    assert teff[1] > teff[0] / 10.0
    white = CliRunner().invoke(cli, [*base, "--emulator-error", "--emulator-error-model", "white"])
    assert white.exit_code == 0 and "white per pixel" in white.output, white.output
    none = CliRunner().invoke(cli, base)
    assert none.exit_code == 0 and "photon noise only" in none.output and "emulator error floor" not in none.output


def test_a_forecast_scales_the_emulator_error_to_the_star_as_a_fit_does(model):
    """An emulator whose measured error scale is s at this star forecasts as one whose error table and modes are s ×
    its own (error_scale="star", the default); "box" keeps the table. Smaller error, tighter bound."""
    from test_error_scale import ScaledModesModel

    from stellarinf.emulators.error_scale import ErrorScale

    s = 0.3
    snr_high = 1000.0  # where the emulator's error (2e-3) matters beside the photon noise
    scaled = ScaledModesModel(model, ErrorScale(("teff",), (4000.0,), (7000.0,), (math.log(s), 0.0, 0.0)))
    shrunk = ModesModel(model.base, model.error_wavelength, s * model.error_sigma, s * model.error_modes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kind in (True, "white"):
            star = F.forecast(scaled, STAR, window=SMALL, snr=snr_high, emulator_error=kind)
            known = F.forecast(shrunk, STAR, window=SMALL, snr=snr_high, emulator_error=kind)
            box = F.forecast(scaled, STAR, window=SMALL, snr=snr_high, emulator_error=kind, error_scale="box")
            table = F.forecast(model, STAR, window=SMALL, snr=snr_high, emulator_error=kind)
            assert star.result.meta["error_scale"] == {"mode": "star", "scales": [pytest.approx(s, rel=1e-12)]}
            assert box.result.meta["error_scale"] == {"mode": "box", "scales": None}
            for n in ("teff", "logg", "feh"):
                assert star.result.marginal()[n] == pytest.approx(known.result.marginal()[n], rel=1e-8), (kind, n)
                assert box.result.marginal()[n] == pytest.approx(table.result.marginal()[n], rel=1e-8), (kind, n)
            assert star.result.marginal()["teff"] < 0.95 * box.result.marginal()["teff"]
        with pytest.raises(F.ForecastError, match="error_scale"):
            F.forecast(scaled, STAR, window=SMALL, emulator_error=True, error_scale="local")
