"""Data-driven MAP starts: the RV template scan and the label library, on the cheap analytic model."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import stellarinf  # noqa: F401
from stellarinf.inference import quickstart
from stellarinf.inference.density import Problem
from stellarinf.inference.map import find_map
from stellarinf.observe.model import ObservationModel
from stellarinf.validation.mocks import make_mock
from stellarinf.validation.setups import analytic_setup

TRUTH = {"teff": 5150.0, "logg": 2.9, "feh": -0.8, "rv": -63.0, "vsini": 5.0, "vmacro": 0.0}


@pytest.fixture(scope="module")
def problem():
    model, wl = analytic_setup()
    spec = make_mock(model, wl, TRUTH, snr=80, resolution=20000, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        om = ObservationModel(
            model,
            spec,
            rv_max=150,
            vsini_max=20,
            vmacro_max=10,
            fixed={"vmacro": 0.0},
            continuum_degree=1,
            continuum="marginalise",
        )
    return Problem.build(om)


def test_cheap_score_is_the_log_likelihood(problem):
    """Without error modes the scan's score (template on the wide grid, continuum integrated out) is the
    observation model's log-likelihood, up to the interpolation between two fine grids."""
    om = problem.obs_model
    ln_lo, n = quickstart._wide_grid(problem)
    params = {**{k: TRUTH[k] for k in problem.names}}
    tpl = quickstart._templates(problem, om.labels(params)[None], params, jnp.asarray(ln_lo), n)[0]
    for rv in (-63.0, -20.0, 80.0):
        p = {**params, "rv": rv}
        score = float(quickstart._score(problem, quickstart._at_pixels(problem, tpl, ln_lo, rv), om.variance(p)))
        assert score == pytest.approx(float(om.log_likelihood(p)), abs=0.5)


def test_rv_scan_finds_the_star_from_the_box_centre(problem):
    z = quickstart.quick_starts(problem, 1, n_library=0)[0]
    assert problem.to_numpy_params(z)["rv"] == pytest.approx(TRUTH["rv"], abs=1.0)


def test_library_starts_are_ordered_and_near_the_truth(problem):
    zs = quickstart.quick_starts(problem, 3, n_library=128, seed=0)
    assert zs.shape == (3, problem.n_free)
    lik = [float(problem.log_likelihood(jnp.asarray(z))) for z in zs]
    centre = quickstart.quick_starts(problem, 1, n_library=0)[0]
    assert lik[0] >= float(problem.log_likelihood(jnp.asarray(centre)))  # the box centre is one of the candidates
    x = problem.to_numpy_params(zs[0])
    assert abs(float(x["teff"]) - TRUTH["teff"]) < 600.0  # the library's spacing, not the fit's precision
    assert float(x["rv"]) == pytest.approx(TRUTH["rv"], abs=1.0)


def test_map_from_data_driven_starts_reaches_the_optimum_found_from_the_truth(problem):
    """Started at the truth, Gauss–Newton finds the optimum of the truth's basin; the data-driven starts
    (which know nothing of the truth) must reach it too: same log posterior, same RV."""
    from_truth = find_map(problem, starts=problem.unconstrain({n: TRUTH[n] for n in problem.names})[None])
    m = find_map(problem, n_starts=3)
    assert m.n_starts_agreeing >= 2
    assert bool(np.any(m.converged))
    assert m.log_posterior >= from_truth.log_posterior - 0.05
    assert m.params["rv"] == pytest.approx(TRUTH["rv"], abs=1.0)


def test_quick_starts_need_an_observation_model():
    class Bare:
        obs_model = object()

    assert not quickstart.supports_quick_start(Bare())
    with pytest.raises(TypeError, match="ObservationModel"):
        quickstart.quick_starts(Bare(), 1)
