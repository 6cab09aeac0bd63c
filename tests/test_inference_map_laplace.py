"""MAP (multi-start L-BFGS) and Laplace on a cheap analytic model: recovery of known truth, priors,
the log-density contract, and the prior-edge flag."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stellarinf  # noqa: F401
from stellarinf.inference.density import Problem, make_log_density
from stellarinf.inference.laplace import laplace
from stellarinf.inference.map import find_map
from stellarinf.inference.mocks import analytic_setup, make_mock
from stellarinf.inference.priors import PriorError
from stellarinf.inference.results import summary_table, to_inference_data
from stellarinf.inference.samplers import laplace_posterior
from stellarinf.observe.model import ObservationModel

TRUTH = {"teff": 5650.0, "logg": 4.1, "feh": -0.45, "rv": 37.0, "vsini": 6.0, "vmacro": 0.0}


def obs_model(truth, snr=150, seed=3):
    model, wl = analytic_setup()
    spec = make_mock(model, wl, truth, snr=snr, resolution=20000, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ObservationModel(model, spec, rv_max=100, vsini_max=20, vmacro_max=10, fixed={"vmacro": 0.0}, continuum_degree=0, continuum="marginalise")


@pytest.fixture(scope="module")
def fitted():
    problem = Problem.build(obs_model(TRUTH))
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
    truth = dict(TRUTH, feh=-1.995)  # box is [-2, 0.5]
    problem = Problem.build(obs_model(truth, snr=60, seed=5))
    lap = laplace(problem, n_starts=2)
    post = laplace_posterior(problem, chains=2, draws=500, init=lap)
    table = summary_table(to_inference_data(post, problem, n_predictive=5))
    row = table[list(table["name"]).index("feh")]
    assert "edge_low" in row["flags"]
