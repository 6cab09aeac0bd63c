"""MAP (multi-start L-BFGS) and Laplace on a cheap analytic model: recovery of known truth, priors,
the log-density contract, and the prior-edge flag."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from analytic_fits import analytic_obs_model

import stellarinf  # noqa: F401
from stellarinf.inference.density import Problem, make_log_density
from stellarinf.inference.laplace import laplace
from stellarinf.inference.map import find_map
from stellarinf.inference.priors import PriorError
from stellarinf.inference.results import summary_table, to_inference_data
from stellarinf.inference.samplers import laplace_posterior
from stellarinf.observe.model import ObservationModel
from stellarinf.validation.mocks import make_mock, noiseless_flux
from stellarinf.validation.setups import analytic_setup

TRUTH = {"teff": 5650.0, "logg": 4.1, "feh": -0.45, "rv": 37.0, "vsini": 6.0, "vmacro": 0.0}


@pytest.fixture(scope="module")
def fitted():
    problem = Problem.build(analytic_obs_model(TRUTH))
    m = find_map(problem, n_starts=4, seed=1)
    return problem, m, laplace(problem, m)


def test_log_density_contract(fitted):
    problem, m, _ = fitted
    logdensity, unflatten = make_log_density(problem)
    z = jnp.asarray(m.z)
    params = unflatten(z)
    assert set(params) >= set(TRUTH) - {"vmacro"}
    # dict input equals array input; Jacobian term is the only difference to the physical posterior
    zd = {n: z[i] for i, n in enumerate(problem.names)}
    assert float(logdensity(zd)) == pytest.approx(float(logdensity(z)))
    assert float(problem.log_density(z) - problem.log_posterior(z)) == pytest.approx(float(problem.log_jacobian(z)))
    g = jax.grad(logdensity)(z)
    assert np.all(np.isfinite(np.asarray(g)))


def test_map_and_laplace_recover_truth_within_3_sigma(fitted):
    problem, m, lap = fitted
    assert m.n_starts_agreeing >= 2  # several starts find the same optimum
    assert lap.hessian_ok
    post = laplace_posterior(problem, chains=2, draws=1000, seed=2, init=lap)
    for n in ("teff", "logg", "feh", "rv", "vsini"):
        draws = post.samples[n].ravel()
        sd = draws.std()
        assert abs(m.params[n] - TRUTH[n]) < 3 * sd, (n, m.params[n], TRUTH[n], sd)
        assert abs(np.median(draws) - TRUTH[n]) < 3 * sd
    # RV found from a start of 0 km/s far outside the line width (the grid scan works)
    assert abs(m.params["rv"] - TRUTH["rv"]) < 1.0
    # a star well inside the box raises no edge flag
    table = summary_table(to_inference_data(post, problem, n_predictive=3))
    assert not any("edge" in f for f in table["flags"]), list(table["flags"])


def test_gaussian_prior_pulls_the_posterior(fitted):
    problem, _, lap0 = fitted
    strong = Problem.build(problem.obs_model, ["logg=3.0+-0.02"])
    lap = laplace(strong, n_starts=2)
    post = laplace_posterior(strong, chains=1, draws=2000, seed=0, init=lap)
    assert abs(np.median(post.samples["logg"]) - 3.0) < 0.06
    assert post.samples["logg"].std() < 0.03


def test_prior_on_unknown_or_fixed_parameter_is_an_error(fitted):
    problem, _, _ = fitted
    with pytest.raises(PriorError, match="unknown parameter 'vmic'"):
        Problem.build(problem.obs_model, ["vmic=1+-0.1"])
    with pytest.raises(PriorError, match="not free"):
        Problem.build(problem.obs_model, ["logg=4+-0.1"], fixed={"logg": 4.0})


def test_label_at_the_box_edge_is_flagged():
    # box is [-2, 0.5]; at the metal-rich edge the lines are strong, so the data (not the prior) put it there
    # (at the metal-poor edge this analytic spectrum is nearly featureless at S/N 60)
    truth = dict(TRUTH, feh=0.495)
    problem = Problem.build(analytic_obs_model(truth, snr=60, seed=5))
    lap = laplace(problem, n_starts=2)
    post = laplace_posterior(problem, chains=2, draws=500, init=lap)
    table = summary_table(to_inference_data(post, problem, n_predictive=5))
    row = table[list(table["name"]).index("feh")]
    assert "edge_high" in row["flags"]


def test_laplace_from_a_map_on_the_box_edge_finds_the_unconstrained_mode(fitted):
    """A physical MAP on the box edge is z ≈ ±27 in float64 (a label the spectrum hardly constrains), where
    the unconstrained density is flat to e^-27; the Laplace approximation must still be centred on that
    density's mode, not left at the edge. Here [Fe/H] is handed over on its upper edge."""
    import dataclasses

    problem, m, lap = fitted
    i = problem.names.index("feh")
    z_edge = m.z.copy()
    z_edge[i] = 27.0
    lap_edge = laplace(problem, dataclasses.replace(m, z=z_edge))
    grad = np.asarray(jax.grad(problem.log_density)(jnp.asarray(lap_edge.mean_z)))
    assert np.max(np.abs(grad)) < 0.05, grad
    assert np.allclose(lap_edge.mean_z, lap.mean_z, atol=0.05 * lap.sd_z)


def test_gauss_newton_curvature_equals_the_exact_hessian_where_residuals_vanish():
    """Noiseless data at the truth: ρ = 0 there, so −JᵀJ + (remainder) is the exact Hessian; away from
    it Gauss–Newton stays negative definite (a usable Laplace covariance) by construction."""
    from stellarinf.inference.map import gauss_newton_hessian, hessian_fd
    from stellarinf.io.spectrum import Spectrum

    model, wl = analytic_setup()
    noisy = make_mock(model, wl, TRUTH, snr=150, resolution=20000, seed=3)
    exact = Spectrum(wl, noiseless_flux(model, wl, TRUTH, 20000), noisy.sigma, resolution=20000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        om = ObservationModel(
            model, exact, rv_max=100, vsini_max=20, vmacro_max=10, fixed={"vmacro": 0.0}, continuum_degree=-1
        )
    problem = Problem.build(om)
    z = problem.unconstrain({n: TRUTH[n] for n in problem.names})
    assert float(jnp.max(jnp.abs(problem.whitened_residuals(z)))) < 1e-3  # float32 emulator: ~1e-4 σ
    gn = np.asarray(gauss_newton_hessian(problem, z))
    fd = np.asarray(hessian_fd(problem.log_density, z, step=1e-5))
    np.testing.assert_allclose(gn, fd, rtol=2e-3, atol=1e-3 * np.abs(fd).max())
    # a point far from the truth, where the residual term of the full Hessian matters: still definite
    z_far = problem.unconstrain({**{n: TRUTH[n] for n in problem.names}, "teff": 6300.0, "rv": 45.0})
    assert np.all(np.linalg.eigvalsh(-np.asarray(gauss_newton_hessian(problem, z_far))) > 0)


def test_flat_directions_are_capped_at_the_uniform_prior_width(fitted):
    """A Laplace variance wider than a uniform prior's logistic variance in z (π²/3) is a flat direction:
    it is shrunk to that width, correlations kept; unbounded parameters are never capped."""
    from stellarinf.inference.laplace import LOGISTIC_VARIANCE, cap_to_prior_width

    problem, _, lap = fitted
    n = problem.n_free
    corr = 0.5 * np.eye(n) + 0.5 * np.full((n, n), 0.3) + 0.5 * np.eye(n) * 0.7
    sd = np.full(n, 0.1)
    sd[1] = 30.0  # logg: box-bounded and hopelessly flat
    cov = corr * sd[:, None] * sd[None, :]
    capped = cap_to_prior_width(cov, problem)
    assert capped[1, 1] == pytest.approx(LOGISTIC_VARIANCE)
    np.testing.assert_allclose(np.delete(np.delete(capped, 1, 0), 1, 1), np.delete(np.delete(cov, 1, 0), 1, 1))
    c_in = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    c_out = capped / np.sqrt(np.outer(np.diag(capped), np.diag(capped)))
    np.testing.assert_allclose(c_out, c_in, atol=1e-12)
    np.testing.assert_array_equal(
        cap_to_prior_width(lap.cov_z, problem), lap.cov_z
    )  # a well-measured star is untouched
    assert not lap.capped
    # an unbounded parameter (no box) keeps any variance; a one-sided bound counts as unbounded
    from types import SimpleNamespace

    open_box = SimpleNamespace(prior=SimpleNamespace(lower=np.array([-np.inf, 0.0]), upper=np.array([np.inf, np.inf])))
    wide = np.diag([100.0, 50.0])
    np.testing.assert_allclose(cap_to_prior_width(wide, open_box), wide)


def test_gauss_newton_stops_only_where_the_gradient_vanishes(fitted):
    """From scattered starts, every start the damped Gauss–Newton loop reports converged sits at a stationary
    point (Newton decrement ½ gᵀA⁻¹g below the tolerance): a step that gains nothing raises the damping and
    retries instead of ending the search where it stands."""
    from stellarinf.inference.map import newton_steps, prior_draw_starts, step_curvature

    problem = fitted[0]
    starts = jnp.asarray(prior_draw_starts(problem, 8, seed=4))
    run = jax.jit(lambda z: newton_steps(problem, z, 40, False))
    n_converged = 0
    for z0 in starts:
        z, _, _, converged = run(z0)
        if not bool(converged):
            continue
        n_converged += 1
        g = np.asarray(jax.grad(problem.log_posterior)(z))
        # the loop's own curvature (with the gradient: a folded v sin i near 0 gets its exact curvature there)
        a = -np.asarray(step_curvature(problem, z, False, jnp.asarray(g)))
        # a label on its box edge is a flat direction of the physical-space objective: pseudo-inverse, as the loop floors it
        assert 0.5 * g @ np.linalg.pinv(a, rcond=1e-8, hermitian=True) @ g < 2e-3, (np.asarray(z0), np.asarray(z))
    assert n_converged >= 6


def test_screened_starts_reach_the_optimum_of_all_starts(fitted):
    """Successive halving (the default): only the better half of the starts is carried past the screening
    steps, and the optimum is the one every start carried to convergence finds."""
    from stellarinf.inference.map import SCREEN_STEPS, carried_to_convergence

    problem, screened, _ = fitted  # find_map(problem, n_starts=4, seed=1), screened by default
    full = find_map(problem, n_starts=4, seed=1, screen=False)
    assert screened.log_posterior == pytest.approx(full.log_posterior, abs=1e-3)
    np.testing.assert_allclose(screened.z, full.z, atol=1e-3)
    assert np.sum(screened.n_iterations > SCREEN_STEPS) <= carried_to_convergence(4) == 2


def test_refining_a_map_repolishes_only_its_best_start(fitted):
    """``MAPResult.final_z`` keeps where every start ended (the best row is the MAP). ``refine_map`` (the pipeline,
    after masking outlier pixels) carries only that best point to convergence again and evaluates the others where
    they ended: on an unchanged problem the same optimum, the same agreement, no steps for the other starts."""
    from stellarinf.inference.map import refine_map

    problem, m, _ = fitted
    assert m.final_z.shape == (4, problem.n_free)
    np.testing.assert_array_equal(m.final_z[int(np.argmax(m.start_values))], m.z)
    again = refine_map(problem, m)
    assert again.log_posterior == pytest.approx(m.log_posterior, abs=1e-3)
    np.testing.assert_allclose(again.z, m.z, atol=1e-3)
    np.testing.assert_allclose(again.start_values, m.start_values, atol=1e-3)
    assert again.n_starts_agreeing == m.n_starts_agreeing
    new_steps = again.n_iterations - m.n_iterations
    assert np.count_nonzero(new_steps) <= 1 and new_steps.max() <= 2
