"""The emulator's correlated error model: fitting the modes, storing them, and the likelihood that
integrates their amplitudes out (checked against a dense multivariate normal)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner
from modes_model import ModesModel
from scipy import stats

import stellarinf  # noqa: F401  (float64)
from stellarinf.cli import cli, main
from stellarinf.emulators.emulator import Emulator
from stellarinf.emulators.error_model import (
    explained_fraction,
    fit_error_modes,
    label_direction_basis,
    label_span_fraction,
    residual_matrix,
)
from stellarinf.emulators.model_io import MODES_FILE, load_model_directory, save_emulator
from stellarinf.emulators.payne import PayneConfig, PayneMLP
from stellarinf.errors import ModelFileError, ShapeError
from stellarinf.io.grid import SpectralGrid, write_grid
from stellarinf.io.spectrum import Spectrum
from stellarinf.labels import LabelSpace
from stellarinf.observe.model import ObservationModel
from stellarinf.validation.analytic import AnalyticLineModel
from stellarinf.wavelength import SPEED_OF_LIGHT_KMS, log_uniform_grid

SPACE = LabelSpace.from_bounds({"teff": (4500.0, 6500.0), "logg": (2.0, 5.0), "feh": (-1.5, 0.5)})
LABELS = {"teff": 5600.0, "logg": 4.2, "feh": -0.2}
R = 28_000.0


def modes_model(n_modes=3, seed=0):
    base = AnalyticLineModel(SPACE, (6540.0, 6660.0), resolution=R, n_lines=30, seed=3)
    ew = np.linspace(6540.0, 6660.0, 2401)
    rng = np.random.default_rng(seed)
    # smooth, line-like correlated patterns (Gaussian bumps) and a total error larger than they explain
    centres = rng.uniform(6570, 6630, size=(n_modes, 4))
    modes = np.stack([sum(0.004 * np.exp(-0.5 * ((ew - c) / 0.15) ** 2) for c in row) for row in centres])
    sigma = np.sqrt(np.sum(modes**2, axis=0) + 0.001**2)
    return ModesModel(base, jnp.asarray(ew), jnp.asarray(sigma), jnp.asarray(modes))


def spectrum(model, noise=0.004, seed=1):
    wl = log_uniform_grid(6560.0, 6640.0, R, 2.5)
    flux = np.asarray(model.flux(jnp.asarray(SPACE.array_from_mapping(LABELS)), jnp.asarray(wl)))
    rng = np.random.default_rng(seed)
    return Spectrum(wl, flux + noise * rng.normal(size=wl.size), np.full(wl.size, noise), resolution=R)


def test_fit_error_modes_recovers_a_low_rank_covariance_and_keeps_the_total_rms():
    rng = np.random.default_rng(0)
    n_pix, true_rank = 200, 3
    phi = rng.normal(size=(true_rank, n_pix)) * np.linspace(0.5, 2.0, n_pix) * 1e-3
    resid = rng.normal(size=(4000, true_rank)) @ phi + 1e-5 * rng.normal(size=(4000, n_pix))
    modes, rms = fit_error_modes(resid, true_rank)
    np.testing.assert_allclose(rms, np.sqrt(np.mean(resid**2, axis=0)))
    # covariance modesᵀmodes matches φᵀφ (sampling error ~ 1/√4000)
    np.testing.assert_allclose(modes.T @ modes, phi.T @ phi, atol=0.06 * np.max(np.abs(phi.T @ phi)))
    fresh = rng.normal(size=(500, true_rank)) @ phi
    assert explained_fraction(modes, fresh) == pytest.approx(1.0, abs=1e-3)
    assert explained_fraction(modes[:1], fresh) < 0.8
    with pytest.raises(ShapeError, match="at least n_modes"):
        fit_error_modes(resid[:3], 5)
    with pytest.raises(ShapeError, match="NaN"):
        fit_error_modes(np.full((10, 5), np.nan), 1)


def test_modes_exclude_the_directions_in_which_the_labels_move_the_spectrum():
    # residuals = a label-like change (the model's own Teff/[Fe/H] derivatives, random amplitudes) + an
    # independent line-like pattern: plain PCA modes imitate the label change, excluded modes cannot, and the
    # independent pattern is still captured; the total per-pixel rms is unchanged
    model = modes_model()
    wl = np.linspace(6545.0, 6655.0, 1500)
    x = jnp.asarray(SPACE.array_from_mapping(LABELS))
    jac = np.asarray(jax.jacfwd(lambda v: model.flux(v, jnp.asarray(wl)))(x))
    jac = jac / np.linalg.norm(jac, axis=0)
    rng = np.random.default_rng(4)
    pattern = np.exp(-0.5 * ((wl - 6601.3) / 0.2) ** 2)
    pattern -= jac @ np.linalg.lstsq(jac, pattern, rcond=None)[0]  # independent of the label directions
    resid = 3e-3 * rng.normal(size=(300, 3)) @ jac.T + 2e-3 * rng.normal(size=(300, 1)) * pattern[None, :]
    plain, rms_plain = fit_error_modes(resid, 4)
    basis = label_direction_basis(model, wl, n_points=16)
    assert basis.shape[1] >= 3 and np.allclose(basis.T @ basis, np.eye(basis.shape[1]), atol=1e-8)
    kept, rms_kept = fit_error_modes(resid, 4, exclude=basis)
    assert label_span_fraction(plain, jac).min() > 0.9
    assert label_span_fraction(kept, jac).max() < 0.05
    assert label_span_fraction(kept, pattern[:, None])[0] > 0.9
    np.testing.assert_allclose(rms_kept, rms_plain)
    with pytest.raises(ShapeError, match="exclude"):
        fit_error_modes(resid, 3, exclude=basis[:-1])


@pytest.mark.parametrize("continuum", ["sample", "marginalise"])
def test_likelihood_with_modes_equals_dense_gaussian(continuum):
    model = modes_model()
    spec = spectrum(model)
    om = ObservationModel(
        model, spec, continuum=continuum, continuum_degree=1, continuum_prior_width=0.5, fixed={"vmacro": 0.0}
    )
    assert om.n_error_modes == 3
    p = {**LABELS, "rv": 0.0, "vsini": 0.0}
    if continuum == "sample":
        p.update(cont_0_0=1.01, cont_0_1=0.02)
    p = {k: v for k, v in p.items() if k in om.param_names}
    # at rv = 0 and no extra broadening the modes the data see are the table modes at the pixels
    phi = np.asarray(om.error_mode_matrix(p))
    direct = np.stack(
        [np.interp(spec.wavelength, np.asarray(model.error_wavelength), np.asarray(m)) for m in model.error_modes], 1
    )
    np.testing.assert_allclose(phi, direct, atol=5e-3 * np.abs(direct).max())
    m = np.asarray(om.normalised_flux(p))
    white = np.asarray(model.error_white(jnp.asarray(spec.wavelength)))
    cov = np.diag(spec.sigma**2 + white**2)
    if continuum == "sample":
        cont = np.asarray(om.continuum(p))
        mean = m * cont
        cov = cov + (cont[:, None] * phi) @ (cont[:, None] * phi).T
    else:
        basis = np.asarray(om.basis)
        M = m[:, None] * basis
        mean = M @ np.array([1.0, 0.0])
        cov = cov + 0.5**2 * M @ M.T + phi @ phi.T
    dense = stats.multivariate_normal(mean, cov).logpdf(spec.flux)
    assert float(om.log_likelihood(p)) == pytest.approx(dense, abs=1e-6)
    # the total per-pixel variance is the emulator's total error: the modes only redistribute it
    np.testing.assert_allclose(
        np.asarray(om.total_variance(p)),
        spec.sigma**2 + np.asarray(model.error(jnp.asarray(spec.wavelength))) ** 2,
        rtol=1e-2,
    )


def test_modes_move_with_rv_and_gradients_stay_finite():
    model = modes_model()
    spec = spectrum(model)
    om = ObservationModel(model, spec, continuum="marginalise", continuum_degree=1, fixed={"vmacro": 0.0})
    rv = 30.0
    p = {**LABELS, "rv": rv, "vsini": 0.0}
    phi = np.asarray(om.error_mode_matrix(p))
    rest = spec.wavelength / (1 + rv / SPEED_OF_LIGHT_KMS)
    direct = np.stack(
        [np.interp(rest, np.asarray(model.error_wavelength), np.asarray(m)) for m in model.error_modes], 1
    )
    np.testing.assert_allclose(phi, direct, atol=5e-3 * np.abs(direct).max())
    # a coarser instrument smooths the modes like the spectrum (lower peak, same integral)
    coarse = ObservationModel(
        model, spec, resolution=8000.0, continuum="marginalise", continuum_degree=1, fixed={"vmacro": 0.0}
    )
    wide = np.asarray(coarse.error_mode_matrix(p))
    assert wide.max() < 0.8 * phi.max() and wide.sum() == pytest.approx(phi.sum(), rel=1e-2)
    value_and_grad = jax.jit(jax.value_and_grad(lambda q: om.log_likelihood(q)))
    rng = np.random.default_rng(2)
    for _ in range(3):
        q = {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in om.default_bounds().items()}
        ll, g = value_and_grad(q)
        assert np.isfinite(float(ll)) and all(np.isfinite(float(v)) for v in g.values())
    # error_modes=False falls back to the white total error
    white = ObservationModel(
        model, spec, continuum="marginalise", continuum_degree=1, fixed={"vmacro": 0.0}, error_modes=False
    )
    assert white.n_error_modes == 0
    np.testing.assert_allclose(np.asarray(white.emulator_error), np.asarray(model.error(jnp.asarray(spec.wavelength))))


def test_modes_absorb_a_correlated_error_that_biases_the_white_likelihood():
    """Data = model + a pattern that lies in the modes' span. The white likelihood prefers wrong labels
    by many σ; the mode likelihood, which integrates that pattern out, barely moves."""
    model = modes_model(n_modes=3, seed=5)
    wl = log_uniform_grid(6560.0, 6640.0, R, 2.5)
    lab = jnp.asarray(SPACE.array_from_mapping(LABELS))
    # the pattern: a shift of teff by 40 K, as seen in the spectrum (a "line-depth" error)
    shift = np.asarray(model.flux(lab + jnp.array([40.0, 0, 0]), jnp.asarray(wl)) - model.flux(lab, jnp.asarray(wl)))
    ew = np.asarray(model.error_wavelength)
    pattern = np.interp(ew, wl, shift)
    model = ModesModel(
        model.base,
        model.error_wavelength,
        jnp.sqrt(model.error_sigma**2 + pattern**2),
        jnp.concatenate([model.error_modes, jnp.asarray(pattern)[None]]),
    )
    flux = np.asarray(model.flux(lab, jnp.asarray(wl))) + shift
    spec = Spectrum(wl, flux, np.full(wl.size, 1e-3), resolution=R)

    def gain(om):  # ln L(best teff) − ln L(true teff)
        f = jax.jit(lambda t: om.log_likelihood({"teff": t, "logg": 4.2, "feh": -0.2}))
        return max(float(f(t)) for t in np.linspace(5500.0, 5700.0, 81)) - float(f(5600.0))

    kw = dict(continuum_degree=-1, fixed={"vmacro": 0.0, "rv": 0.0, "vsini": 0.0})
    # white: the truth is excluded at ≫ 3σ (Δ ln L ≫ 4.5); modes: the pattern is a 1σ mode amplitude (Δ ln L ≈ ½)
    assert gain(ObservationModel(model, spec, error_modes=False, **kw)) > 10.0
    assert gain(ObservationModel(model, spec, **kw)) == pytest.approx(0.5, abs=0.2)


def tiny_payne_and_grid(tmp_path):
    wl = np.linspace(6000.0, 6030.0, 64)
    net = PayneMLP(PayneConfig(n_labels=3, n_pixels=wl.size, hidden=(8,)), jax.random.key(0))
    emu = Emulator(net, SPACE, (6000.0, 6030.0), training_wavelength=wl)
    rng = np.random.default_rng(0)
    labels = SPACE.lower + rng.uniform(0.1, 0.9, size=(40, 3)) * (SPACE.upper - SPACE.lower)
    flux = emu.predict(labels, wl) + 1e-3 * rng.normal(size=(40, wl.size)) @ np.diag(np.linspace(0.5, 2, wl.size))
    path = tmp_path / "heldout.h5"
    write_grid(path, SpectralGrid(SPACE, labels, wl, flux))
    return emu, path


def test_error_model_command_stores_modes_that_round_trip(tmp_path, capsys):
    emu, grid = tiny_payne_and_grid(tmp_path)
    save_emulator(tmp_path / "m", emu)
    args = ["error-model", str(tmp_path / "m"), "--grid", str(grid), "--modes", "4", "--no-scale", "--quiet"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "4 modes capture" in res.output and "error scale" not in res.output
    loaded = load_model_directory(tmp_path / "m")
    assert loaded.n_error_modes == 4 and (tmp_path / "m" / MODES_FILE).exists()
    wl, resid = residual_matrix(emu, grid)
    # the default excludes the label directions from the modes
    modes, rms = fit_error_modes(resid, 4, exclude=label_direction_basis(emu, wl))
    np.testing.assert_allclose(np.asarray(loaded.error_sigma), rms, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(loaded.error_modes), modes, rtol=1e-5, atol=1e-9)  # stored as float32
    assert loaded.metadata["error_model"]["n_modes"] == 4
    assert loaded.metadata["error_model"]["label_directions"] == "exclude"
    assert loaded.error_scale is None and "scale" not in loaded.metadata["error_model"]
    # total error unchanged by the split; the white part is what the modes leave
    total2 = np.asarray(loaded.error_white(jnp.asarray(wl))) ** 2 + np.sum(np.asarray(loaded.error_modes) ** 2, axis=0)
    np.testing.assert_allclose(total2, rms**2, rtol=1e-4)
    # a corrupted modes file is refused with a clear message
    (tmp_path / "m" / MODES_FILE).write_bytes(b"garbage")
    with pytest.raises(ModelFileError, match="checksum"):
        load_model_directory(tmp_path / "m")
    # shipped models are not overwritten in place
    with pytest.raises(SystemExit) as exit_info:
        main(["error-model", "default-payne", "--grid", str(grid)])
    assert exit_info.value.code == 3 and "-o DIR" in capsys.readouterr().err


@pytest.mark.parametrize("continuum", ["sample", "marginalise", "profile"])
def test_marginal_fisher_curvature_equals_the_residual_jacobian_form_at_the_truth(continuum):
    """MAP and Laplace build Gauss–Newton curvature from the predicted fluxes only (variable projection over
    the marginalised continuum and error modes). Where the data equal the model (ρ = 0) it must equal
    −JᵀJ of the whitened residuals, which differentiates the whole marginalisation."""
    from stellarinf.inference.density import Problem
    from stellarinf.inference.map import _minus_jtj

    model = modes_model()
    wl = log_uniform_grid(6560.0, 6640.0, R, 2.5)
    truth = {**LABELS, "rv": 12.0, "vsini": 4.0}
    om0 = ObservationModel(
        model,
        Spectrum(wl, np.ones_like(wl), np.full(wl.size, 0.004), resolution=R),
        continuum=continuum,
        continuum_degree=1,
        fixed={"vmacro": 0.0},
    )
    params = {
        **truth,
        **({n: (1.0 if n.endswith("_0") else 0.0) for n in om0.continuum_names} if continuum == "sample" else {}),
    }
    exact = np.asarray(om0.predict(params))
    om = ObservationModel(
        model,
        Spectrum(wl, exact, np.full(wl.size, 0.004), resolution=R),
        continuum=continuum,
        continuum_degree=1,
        fixed={"vmacro": 0.0},
    )
    problem = Problem.build(om)
    z = problem.unconstrain({n: params[n] for n in problem.names})
    jac = jax.jacfwd(problem.whitened_residuals)(z)
    reference = -np.asarray(jac.T @ jac)
    fast = np.asarray(_minus_jtj(problem, z))
    np.testing.assert_allclose(fast, reference, rtol=1e-3, atol=1e-5 * np.abs(reference).max())
