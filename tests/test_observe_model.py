import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import stellarinf  # noqa: F401  (float64)
from stellarinf.emulators.base import SpectrumModel
from stellarinf.errors import LabelError, SpectrumError, WavelengthError
from stellarinf.io.spectrum import Spectrum
from stellarinf.labels import LabelSpace
from stellarinf.observe.continuum import (
    chebyshev_design,
    gaussian_log_likelihood,
    gaussian_terms,
    linear_continuum_fit,
    linear_marginal_log_likelihood,
    linear_marginal_terms,
)
from stellarinf.observe.model import ObservationModel
from stellarinf.validation.analytic import AnalyticLineModel
from stellarinf.wavelength import SPEED_OF_LIGHT_KMS, log_uniform_grid

C = SPEED_OF_LIGHT_KMS
SPACE = LabelSpace.from_bounds(
    {"teff": (4500.0, 6500.0), "logg": (2.0, 5.0), "feh": (-1.5, 0.5), "vmic": (0.5, 2.5), "ca_fe": (-0.5, 0.5)}
)
LABELS = {"teff": 5600.0, "logg": 4.2, "feh": -0.2, "vmic": 1.1, "ca_fe": 0.1}
R_OBS = 28_000.0


@pytest.fixture(scope="module")
def emulator():
    return AnalyticLineModel(SPACE, (6540.0, 6660.0), resolution=R_OBS, n_lines=30, seed=3)


@pytest.fixture(scope="module")
def observed_wavelength():
    return log_uniform_grid(6560.0, 6640.0, R_OBS, 2.5)


def make_spectrum(emulator, wl, *, noise=0.01, seed=0, continuum=None, segments=None, mask=None):
    flux = np.asarray(emulator.flux(jnp.asarray(SPACE.array_from_mapping(LABELS)), jnp.asarray(wl)))
    if continuum is not None:
        flux = flux * continuum
    rng = np.random.default_rng(seed)
    sigma = np.full(wl.size, noise) * (1.0 if continuum is None else continuum)
    return Spectrum(wl, flux + sigma * rng.normal(size=wl.size), sigma, mask, segments, resolution=R_OBS)


def params_for(om, **extra):
    p = dict(LABELS, rv=0.0, vsini=0.0, vmacro=0.0)
    for name in om.continuum_names:
        if name in om.param_names:
            p[name] = 1.0 if name.endswith("_0") else 0.0
    p.update(extra)
    return {k: v for k, v in p.items() if k in om.param_names}


def test_analytic_model_satisfies_protocol_and_is_deterministic(emulator):
    assert isinstance(emulator, SpectrumModel)
    wl = jnp.linspace(6545.0, 6655.0, 500)
    lab = jnp.asarray(SPACE.array_from_mapping(LABELS))
    f1 = np.asarray(emulator.flux(lab, wl))
    f2 = np.asarray(AnalyticLineModel(SPACE, (6540.0, 6660.0), resolution=R_OBS, n_lines=30, seed=3).flux(lab, wl))
    np.testing.assert_array_equal(f1, f2)
    assert 0.0 < f1.min() < 0.9 and f1.max() <= 1.0
    np.testing.assert_array_equal(np.asarray(emulator.error(wl)), 0.0)
    grad = jax.grad(lambda x: jnp.sum(emulator.flux(x, wl)))(lab)
    assert np.all(np.isfinite(np.asarray(grad))) and np.all(np.asarray(grad) != 0)
    with pytest.raises(LabelError, match="does not know label"):
        AnalyticLineModel(LabelSpace.from_bounds({"teff": (4000, 5000), "rv": (-1, 1)}), (6000.0, 6100.0))


def test_zero_rv_and_broadening_gives_the_emulator_at_the_pixels(emulator, observed_wavelength):
    spec = make_spectrum(emulator, observed_wavelength)
    om = ObservationModel(emulator, spec, continuum_degree=-1)  # model R = instrument R: no extra LSF
    p = params_for(om)
    direct = np.asarray(emulator.flux(jnp.asarray(SPACE.array_from_mapping(LABELS)), jnp.asarray(observed_wavelength)))
    pred = np.asarray(om.predict(p))
    np.testing.assert_allclose(pred, direct, atol=5e-4)  # cubic interpolation from the fine grid
    assert np.sqrt(np.mean((pred - direct) ** 2)) < 1e-4
    # same with a flat sampled continuum of level 1
    om2 = ObservationModel(emulator, spec, continuum="sample", continuum_degree=2)
    np.testing.assert_allclose(np.asarray(om2.predict(params_for(om2))), pred, atol=1e-12)


def test_rv_shift_moves_a_line_by_lambda_v_over_c(observed_wavelength):
    emu = AnalyticLineModel(SPACE, (6540.0, 6660.0), resolution=R_OBS, lines=[(6600.0, 0.0, "Fe")])
    spec = make_spectrum(emu, observed_wavelength)
    om = ObservationModel(emu, spec, continuum_degree=-1, fixed={"vsini": 0.0, "vmacro": 0.0})
    wl = observed_wavelength

    def centroid(rv):
        depth = 1.0 - np.asarray(om.predict(params_for(om, rv=rv)))
        return np.sum(wl * depth) / np.sum(depth)

    c0 = centroid(0.0)
    assert c0 == pytest.approx(6600.0, abs=2e-4)
    for v in (-120.0, 37.0):
        assert centroid(v) - c0 == pytest.approx(6600.0 * v / C, rel=2e-4)


def test_broadening_parameters_act_and_conserve_equivalent_width(emulator, observed_wavelength):
    spec = make_spectrum(emulator, observed_wavelength)
    om = ObservationModel(emulator, spec, continuum_degree=-1)
    sharp = np.asarray(om.predict(params_for(om)))
    broad = np.asarray(om.predict(params_for(om, vsini=25.0, vmacro=5.0)))
    assert broad.min() > sharp.min() + 0.02
    # lines away from the ends: the equivalent width is unchanged by broadening
    assert np.sum(1 - broad) == pytest.approx(np.sum(1 - sharp), rel=2e-3)


def test_continuum_marginal_equals_dense_gaussian_and_brute_force_integral():
    rng = np.random.default_rng(7)
    n = 40
    x = np.linspace(-1, 1, n)
    basis = np.stack([np.ones(n), x], axis=1) * (1.0 - 0.3 * np.exp(-((x / 0.2) ** 2)))[:, None]
    var = rng.uniform(0.5, 1.5, n) * 0.05**2
    weight = np.ones(n)
    weight[[3, 17]] = 0.0
    y = basis @ np.array([1.1, -0.07]) + np.sqrt(var) * rng.normal(size=n)
    y[[3, 17]] = 1e3  # masked garbage
    mu0, sd = np.array([1.0, 0.0]), np.array([0.3, 0.2])
    got = float(
        linear_marginal_log_likelihood(
            jnp.asarray(y), jnp.asarray(basis), jnp.asarray(var), jnp.asarray(weight), jnp.asarray(mu0), jnp.asarray(sd)
        )
    )
    use = weight > 0
    cov = np.diag(var[use]) + basis[use] @ np.diag(sd**2) @ basis[use].T
    dense = stats.multivariate_normal(basis[use] @ mu0, cov).logpdf(y[use])
    assert got == pytest.approx(dense, abs=1e-9)
    # brute force: ∫ L(β) p(β) dβ on a grid around the peak
    beta_hat = np.linalg.lstsq(basis[use] / np.sqrt(var[use])[:, None], y[use] / np.sqrt(var[use]), rcond=None)[0]
    b0 = np.linspace(beta_hat[0] - 0.05, beta_hat[0] + 0.05, 401)
    b1 = np.linspace(beta_hat[1] - 0.08, beta_hat[1] + 0.08, 401)
    g0, g1 = np.meshgrid(b0, b1, indexing="ij")
    model = g0[..., None] * basis[use][:, 0] + g1[..., None] * basis[use][:, 1]
    loglike = -0.5 * np.sum((y[use] - model) ** 2 / var[use] + np.log(2 * np.pi * var[use]), axis=-1)
    logprior = stats.norm(mu0[0], sd[0]).logpdf(g0) + stats.norm(mu0[1], sd[1]).logpdf(g1)
    a = loglike + logprior
    brute = a.max() + np.log(np.trapezoid(np.trapezoid(np.exp(a - a.max()), b1, axis=1), b0))
    assert got == pytest.approx(brute, abs=1e-4)
    # profile: the weighted least-squares fit and its maximum log-likelihood
    prof = float(
        linear_marginal_log_likelihood(
            jnp.asarray(y),
            jnp.asarray(basis),
            jnp.asarray(var),
            jnp.asarray(weight),
            jnp.asarray(mu0),
            jnp.full(2, 1e6),
            profile=True,
        )
    )
    best = -0.5 * np.sum((y[use] - basis[use] @ beta_hat) ** 2 / var[use] + np.log(2 * np.pi * var[use]))
    assert prof == pytest.approx(best, abs=1e-6)
    fit = np.asarray(
        linear_continuum_fit(
            jnp.asarray(y),
            jnp.asarray(basis),
            jnp.asarray(var),
            jnp.asarray(weight),
            jnp.asarray(mu0),
            jnp.full(2, 1e6),
        )
    )
    np.testing.assert_allclose(fit, beta_hat, rtol=1e-8)


def test_marginal_splits_into_whitened_residuals_and_log_determinants():
    """|ρ|² is the generalised least-squares form (y − Mμ₀)ᵀ(C + MSMᵀ)⁻¹(y − Mμ₀) and c the Gaussian's
    normalisation: the split Gauss–Newton relies on, checked against dense linear algebra."""
    rng = np.random.default_rng(11)
    n, k = 30, 3
    basis = rng.normal(size=(n, k))
    var = rng.uniform(0.5, 2.0, n) * 0.01
    weight = np.ones(n)
    weight[5] = 0.0
    y = rng.normal(size=n)
    mu0, sd = rng.normal(size=k), rng.uniform(0.2, 2.0, k)
    rho, c = linear_marginal_terms(*(jnp.asarray(a) for a in (y, basis, var, weight, mu0, sd)))
    use = weight > 0
    cov = np.diag(var[use]) + basis[use] @ np.diag(sd**2) @ basis[use].T
    r = y[use] - basis[use] @ mu0
    assert float(jnp.sum(rho**2)) == pytest.approx(r @ np.linalg.solve(cov, r), rel=1e-10)
    assert float(c) == pytest.approx(-0.5 * (np.linalg.slogdet(cov)[1] + use.sum() * np.log(2 * np.pi)), rel=1e-10)
    assert float(rho[5]) == 0.0  # a masked pixel contributes nothing
    # independent pixels: ρ is (y − m)/σ
    rho_g, c_g = gaussian_terms(jnp.asarray(y), jnp.zeros(n), jnp.asarray(var), jnp.asarray(weight))
    np.testing.assert_allclose(np.asarray(rho_g)[use], (y / np.sqrt(var))[use], rtol=1e-12)
    dense_white = stats.norm(0.0, np.sqrt(var[use])).logpdf(y[use]).sum()
    got_white = float(gaussian_log_likelihood(jnp.asarray(y), jnp.zeros(n), jnp.asarray(var), jnp.asarray(weight)))
    assert got_white == pytest.approx(dense_white, rel=1e-12)


@pytest.mark.parametrize("mode", ["sample", "marginalise", "profile"])
def test_forward_jacobian_of_residuals_is_finite_and_full_rank(emulator, observed_wavelength, mode):
    """Gauss–Newton takes the forward-mode Jacobian of ρ: finite at random parameters (masked pixels,
    jitter, fitted resolution), at zero broadening, and of full column rank where the data constrain
    every parameter (noise 1 %)."""
    mask = np.arange(observed_wavelength.size) % 17 != 0
    spec = make_spectrum(emulator, observed_wavelength, mask=mask)
    om = ObservationModel(emulator, spec, continuum=mode, fit_jitter=True, fit_resolution=True)
    names = tuple(om.param_names)
    jac_fn = jax.jit(jax.jacfwd(lambda v: om.whitened_residuals(dict(zip(names, v)))))
    rng = np.random.default_rng(5)
    bounds = om.default_bounds()
    for _ in range(2):
        x = np.array([rng.uniform(*bounds[n]) for n in names])
        assert np.all(np.isfinite(np.asarray(jac_fn(jnp.asarray(x)))))
    p = params_for(om, rv=3.0, vsini=0.0, vmacro=0.0, ln_jitter=-6.0, resolution=0.7 * R_OBS)
    jac = np.asarray(jac_fn(jnp.asarray([p[n] for n in names])))
    assert np.all(np.isfinite(jac))
    assert not np.any(jac[: mask.size][~mask])  # masked pixels carry no information (ρ may end with coefficient rows)
    # vsini = vmacro = 0 is a kink of the broadening (zero first derivative there): drop both columns
    keep = [i for i, n in enumerate(names) if n not in ("vsini", "vmacro", "ln_jitter")]
    assert np.linalg.matrix_rank(jac[:, keep]) == len(keep)


def test_observation_model_marginal_matches_dense_gaussian(emulator, observed_wavelength):
    wl = observed_wavelength
    segments = (wl > 6600.0).astype(int)
    cont = np.where(segments == 0, 1.0 + 0.05 * (wl - 6580) / 20, 0.97)
    spec = make_spectrum(emulator, wl, continuum=cont, segments=segments)
    om = ObservationModel(emulator, spec, continuum="marginalise", continuum_degree=1, continuum_prior_width=0.5)
    assert not any(n.startswith("cont_") for n in om.param_names)
    p = params_for(om, rv=3.0, vsini=4.0)
    got = float(om.log_likelihood(p))
    m = np.asarray(om.normalised_flux(p))
    design = chebyshev_design(wl, segments, (0, 1), 1)
    M = m[:, None] * design
    cov = np.diag(spec.sigma**2) + 0.5**2 * M @ M.T
    dense = stats.multivariate_normal(M @ np.array([1.0, 0, 1.0, 0]), cov).logpdf(spec.flux)
    assert got == pytest.approx(dense, abs=1e-6)
    # the conditional continuum recovers the injected one
    np.testing.assert_allclose(np.asarray(om.continuum(p)), cont, atol=0.01)


def test_masked_pixels_do_not_change_the_likelihood(emulator, observed_wavelength):
    wl = observed_wavelength
    mask = np.ones(wl.size, bool)
    mask[200:260] = False
    spec = make_spectrum(emulator, wl, mask=mask)
    om = ObservationModel(emulator, spec, continuum="sample", continuum_degree=2)
    p = params_for(om, rv=1.0)
    ll = float(om.log_likelihood(p))
    garbage = Spectrum(wl, np.where(mask, spec.flux, 1e6), np.where(mask, spec.sigma, np.nan), mask, resolution=R_OBS)
    assert float(ObservationModel(emulator, garbage, continuum_degree=2).log_likelihood(p)) == pytest.approx(
        ll, abs=1e-9
    )
    dropped = spec.select(mask)  # interior pixels removed: same segment span, same likelihood
    assert float(ObservationModel(emulator, dropped, continuum_degree=2).log_likelihood(p)) == pytest.approx(
        ll, abs=1e-9
    )


def test_emulator_error_and_jitter_enter_the_variance(observed_wavelength):
    emu = AnalyticLineModel(SPACE, (6540.0, 6660.0), resolution=R_OBS, n_lines=30, seed=3, error_level=0.02)
    spec = make_spectrum(emu, observed_wavelength)
    om = ObservationModel(emu, spec, continuum_degree=-1, fit_jitter=True)
    p = params_for(om, ln_jitter=np.log(0.005))
    pred = np.asarray(om.predict(p))
    var = spec.sigma**2 + 0.02**2 + 0.005**2
    manual = -0.5 * np.sum((spec.flux - pred) ** 2 / var + np.log(2 * np.pi * var))
    assert float(om.log_likelihood(p)) == pytest.approx(manual, rel=1e-12)
    # for mocks drawn from the model itself the emulator error can be left out of the variance
    exact = ObservationModel(emu, spec, continuum_degree=-1, fit_jitter=True, include_emulator_error=False)
    np.testing.assert_allclose(np.asarray(exact.variance(p)), spec.sigma**2 + 0.005**2, rtol=1e-12)


@pytest.mark.parametrize("mode", ["sample", "marginalise"])
def test_likelihood_and_gradient_finite_at_random_params(emulator, observed_wavelength, mode):
    spec = make_spectrum(emulator, observed_wavelength)
    om = ObservationModel(emulator, spec, continuum=mode, fit_jitter=True, fit_resolution=True)
    bounds = om.default_bounds()
    rng = np.random.default_rng(11)
    value_and_grad = jax.jit(jax.value_and_grad(lambda q: om.log_likelihood(q)))
    for _ in range(3):
        p = {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in bounds.items()}
        ll, grad = value_and_grad(p)
        assert np.isfinite(float(ll))
        assert set(grad) == set(om.param_names)
        assert all(np.isfinite(float(g)) for g in grad.values())
    # and at zero broadening, the point where kernels collapse to deltas
    p.update(vsini=0.0, vmacro=0.0)
    _, grad = value_and_grad(p)
    assert all(np.isfinite(float(g)) for g in grad.values())


def test_parameters_bounds_and_initial_values(emulator, observed_wavelength):
    spec = make_spectrum(emulator, observed_wavelength, segments=(observed_wavelength > 6600).astype(int))
    om = ObservationModel(emulator, spec, continuum_degree=1, fit_jitter=True, fixed={"vmacro": 2.0})
    assert om.param_names[:5] == SPACE.names
    assert om.param_names[5:] == ("rv", "vsini", "ln_jitter", "cont_0_0", "cont_0_1", "cont_1_0", "cont_1_1")
    bounds = om.default_bounds()
    assert bounds["teff"] == (4500.0, 6500.0) and bounds["rv"] == (-300.0, 300.0)
    start = om.initial_params()
    om.validate_params(start)
    assert start["cont_0_0"] == pytest.approx(1.0, abs=0.05)  # the linear fit of a flat normalised spectrum
    assert np.isfinite(float(om.log_likelihood(start)))
    with pytest.raises(LabelError, match="outside its bounds"):
        om.validate_params({**start, "teff": 9000.0})
    with pytest.raises(LabelError, match="unknown parameter"):
        om.validate_params({**start, "tef": 5000.0})


def test_clear_errors_for_unusable_setups(emulator):
    wl = log_uniform_grid(6500.0, 6600.0, R_OBS, 2.5)  # starts below the model's 6540 Å
    spec = Spectrum(wl, np.ones(wl.size), np.full(wl.size, 0.01), resolution=R_OBS)
    with pytest.raises(WavelengthError, match="crop_to_model"):
        ObservationModel(emulator, spec)
    wl = log_uniform_grid(6560.0, 6600.0, R_OBS, 2.5)
    sharp = Spectrum(wl, np.ones(wl.size), np.full(wl.size, 0.01), resolution=60_000.0)
    with pytest.raises(SpectrumError, match="cannot be sharpened"):
        ObservationModel(emulator, sharp)
    with pytest.raises(SpectrumError, match="continuum must be"):
        ObservationModel(emulator, Spectrum(wl, np.ones(wl.size), np.full(wl.size, 0.01)), continuum="fit")


def test_likelihood_fisher_marginalises_the_continuum_like_free_coefficients(emulator, observed_wavelength):
    """Known answer: the Fisher matrix of the profile likelihood (continuum integrated out inside the
    likelihood) gives the same marginal bounds on the labels as the plain Fisher matrix with the
    continuum coefficients as free parameters of a sampled continuum."""
    from stellarinf.fisher import fisher_matrix, likelihood_fisher

    segments = (observed_wavelength > 6600.0).astype(int)
    spec = make_spectrum(emulator, observed_wavelength, noise=0.01, segments=segments)
    kw = dict(continuum_degree=1, include_emulator_error=False)
    om_profile = ObservationModel(emulator, spec, continuum="profile", **kw)
    om_sample = ObservationModel(emulator, spec, continuum="sample", **kw)
    params = params_for(om_sample, rv=4.0, vsini=6.0, vmacro=1.0)
    labels = [n for n in om_profile.param_names]
    by_profile = likelihood_fisher(om_profile, params, labels).marginal()
    plain = fisher_matrix(om_sample.predict, params, np.asarray(spec.sigma), list(om_sample.param_names)).marginal()
    for n in labels:
        assert by_profile[n] == pytest.approx(plain[n], rel=2e-3), n
    # holding the continuum fixed instead gives tighter bounds: the difference is real
    fixed_cont = fisher_matrix(om_sample.predict, params, np.asarray(spec.sigma), labels).marginal()
    assert max(by_profile[n] / fixed_cont[n] for n in labels) > 1.01, {n: by_profile[n] / fixed_cont[n] for n in labels}


def test_payne_on_a_log_uniform_grid_takes_the_upsampling_path_with_the_same_flux_and_gradients():
    """A Payne emulator trained on a log-uniform grid is evaluated by Lanczos upsampling (convolutions) on a
    fine grid at an integer fraction of its pixel; the result and its derivatives in RV and in the labels
    equal the generic path (the emulator asked at the Doppler-shifted fine wavelengths)."""
    from stellarinf.emulators import Emulator, PayneConfig, PayneMLP

    train_wl = log_uniform_grid(6540.0, 6660.0, R_OBS, 2.5)
    net = PayneMLP(PayneConfig(len(SPACE), train_wl.size, (16,), activation="silu"), jax.random.key(4))
    payne = Emulator(
        net, SPACE, (float(train_wl[0]), float(train_wl[-1])), resolution=R_OBS, training_wavelength=train_wl
    )
    spectrum = make_spectrum(payne, log_uniform_grid(6560.0, 6640.0, R_OBS, 2.5))
    om = ObservationModel(payne, spectrum)
    assert om.upsample == 2  # default step c/(5R) = half a training pixel at 2.5 pixels per resolution element
    assert float(jnp.log(om.fine_wavelength[1] / om.fine_wavelength[0])) == pytest.approx(
        payne.native_log_grid[1] / 2, rel=1e-9
    )

    def generic(p):
        rest = om.fine_wavelength / (1.0 + p["rv"] / C)
        return payne.flux(om.labels(p), jnp.clip(rest, *payne.wavelength_range))

    p0 = {k: jnp.asarray(v) for k, v in params_for(om, rv=23.4).items()}
    fast, slow = np.asarray(om.rest_frame_flux(p0)), np.asarray(generic(p0))
    inside = np.asarray(om.fine_wavelength) / (1 + 23.4 / C) > train_wl[4]
    np.testing.assert_allclose(fast[inside], slow[inside], atol=2e-6)
    weights = jnp.asarray(np.where(inside, np.cos(np.arange(inside.size) / 7.0), 0.0))
    g_fast = jax.grad(lambda p: jnp.sum(weights * om.rest_frame_flux(p)))(p0)
    g_slow = jax.grad(lambda p: jnp.sum(weights * generic(p)))(p0)
    for name in ("rv", "teff", "feh"):
        np.testing.assert_allclose(float(g_fast[name]), float(g_slow[name]), rtol=2e-3, atol=1e-9)
    # an explicit fine step that is not a fraction of the training step falls back to the generic path
    assert ObservationModel(payne, spectrum, fine_step_kms=1.7).upsample == 0
