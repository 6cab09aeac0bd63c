"""NUTS (NumPyro and BlackJAX) and MCLMC on a small analytic problem: truth recovered, R-hat < 1.01,
and the two NUTS implementations agree (means within 0.1σ, sds within 10%)."""

import warnings

import numpy as np
import pytest

import stellarinf  # noqa: F401
from stellarinf.inference.density import Problem
from stellarinf.inference.laplace import laplace
from stellarinf.inference.results import summary_table, to_inference_data
from stellarinf.inference.samplers import run_blackjax_mclmc, run_blackjax_nuts, run_numpyro_nuts
from stellarinf.observe.model import ObservationModel
from stellarinf.validation.mocks import make_mock
from stellarinf.validation.setups import analytic_setup

TRUTH = {"teff": 5400.0, "logg": 4.3, "feh": -0.2, "rv": 8.0, "vsini": 0.0, "vmacro": 0.0}
LABELS = ("teff", "logg", "feh")


@pytest.fixture(scope="module")
def problem_and_init():
    model, wl = analytic_setup()
    spec = make_mock(model, wl, TRUTH, snr=80, resolution=20000, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        om = ObservationModel(
            model,
            spec,
            rv_max=50,
            vsini_max=10,
            vmacro_max=5,
            fixed={"vmacro": 0.0, "vsini": 0.0, "rv": 8.0},
            continuum_degree=-1,
        )
    problem = Problem.build(om)
    assert problem.names == LABELS
    return problem, laplace(problem, n_starts=2)


@pytest.fixture(scope="module")
def nuts_pair(problem_and_init):
    problem, lap = problem_and_init
    # 4 × 600 draws: bulk ESS ~2,000 per label, so the two samplers' means and sds agree to ~0.03 sd and ~3 % by chance
    a = run_numpyro_nuts(problem, chains=4, warmup=300, draws=600, seed=1, init=lap)
    b = run_blackjax_nuts(problem, chains=4, warmup=300, draws=600, seed=2, init=lap)
    return problem, a, b


def _check_recovery(problem, post):
    table = summary_table(to_inference_data(post, problem, n_predictive=5), truth=TRUTH)
    for row in table:
        assert abs(row["pull"]) < 3, (post.method, row["name"], row["p50"], row["truth"], row["sd"])
        assert row["r_hat"] < 1.01, (post.method, row["name"], row["r_hat"])
    return table


def test_numpyro_and_blackjax_nuts_recover_truth(nuts_pair):
    problem, a, b = nuts_pair
    for post in (a, b):
        table = _check_recovery(problem, post)
        assert post.n_divergent == 0 and table.meta["NDIVERG"] == 0
        assert post.stats["tree_depth"].min() >= 1
        assert np.all(table["ess_bulk"] > 400)


def test_nuts_implementations_agree(nuts_pair):
    _, a, b = nuts_pair
    for n in LABELS:
        xa, xb = a.samples[n].ravel(), b.samples[n].ravel()
        sd = 0.5 * (xa.std() + xb.std())
        assert abs(xa.mean() - xb.mean()) < 0.1 * sd, (n, xa.mean(), xb.mean(), sd)
        assert abs(xa.std() / xb.std() - 1) < 0.10, (n, xa.std(), xb.std())


def test_mclmc_recovers_truth_and_matches_laplace_width(problem_and_init):
    problem, lap = problem_and_init
    post = run_blackjax_mclmc(problem, chains=4, warmup=300, draws=1500, seed=3, init=lap)
    _check_recovery(problem, post)
    from stellarinf.inference.samplers import laplace_posterior

    lp = laplace_posterior(problem, chains=1, draws=4000, init=lap)
    for n in LABELS:
        assert abs(post.samples[n].std() / lp.samples[n].std() - 1) < 0.25


def test_laplace_draws_without_their_log_density_are_the_same_draws(problem_and_init):
    """draw_log_density=False (fit-catalog without --save-posterior) skips the 4,000 likelihoods behind
    sample_stats.lp and nothing else: same draws, same summary; samplers that need the density ignore it."""
    from stellarinf.inference.samplers import _batch_log_density, laplace_posterior, sample

    problem, lap = problem_and_init
    a = laplace_posterior(problem, chains=2, draws=300, seed=4, init=lap)
    b = sample(problem, "laplace", chains=2, draws=300, seed=4, init=lap, draw_log_density=False)
    assert b.stats == {} and a.stats["lp"].shape == (2, 300)
    for n in LABELS:
        np.testing.assert_array_equal(a.samples[n], b.samples[n])
    # a's lp is the model's log density at those draws (the first draw, recomputed from its unconstrained point)
    z0 = np.asarray(problem.unconstrain({n: a.samples[n][0, 0] for n in LABELS}))
    assert float(_batch_log_density(problem, z0[None])[0]) == pytest.approx(a.stats["lp"][0, 0], rel=1e-6)
    ta = summary_table(to_inference_data(a, problem, n_predictive=5))
    idata_b = to_inference_data(b, problem, n_predictive=5)
    assert "sample_stats" not in idata_b.groups()
    tb = summary_table(idata_b)
    np.testing.assert_array_equal(ta["p50"], tb["p50"])
    np.testing.assert_array_equal(ta["sd"], tb["sd"])
    c = sample(problem, "laplace-is", chains=2, draws=200, seed=4, init=lap, draw_log_density=False)
    assert np.all(np.isfinite(c.stats["lp"]))  # importance sampling needs the density: the option does not reach it


def test_laplace_draws_leave_out_their_log_density_past_its_budget(problem_and_init, monkeypatch):
    """By default (draw_log_density=None) sample_stats.lp is computed only when it fits LOG_DENSITY_BUDGET_S (116 s
    of 4,000 likelihoods for TransformerPayne on four arms); past it the draws are the same and ``tuning`` says what
    is missing and how to get it. True computes it whatever it costs; a batch is given up after two blocks at most."""
    from stellarinf.inference import samplers

    problem, lap = problem_and_init
    monkeypatch.setattr(samplers, "LOG_DENSITY_BUDGET_S", 0.0)
    monkeypatch.setattr(samplers, "LOG_DENSITY_BLOCK", 64)  # 600 draws: 10 blocks, so the budget is looked at
    skipped = samplers.laplace_posterior(problem, chains=2, draws=300, seed=4, init=lap)
    kept = samplers.laplace_posterior(problem, chains=2, draws=300, seed=4, init=lap, draw_log_density=True)
    assert "lp" not in skipped.stats and "draw_log_density=True" in skipped.tuning["lp_skipped"]
    assert kept.stats["lp"].shape == (2, 300) and "lp_skipped" not in kept.tuning
    for n in LABELS:
        np.testing.assert_array_equal(skipped.samples[n], kept.samples[n])
    z = np.asarray(problem.unconstrain({n: kept.samples[n][0, :128] for n in LABELS}))
    assert samplers._batch_log_density(problem, z, max_seconds=0.0) is not None  # two blocks: nothing to project
    assert samplers._batch_log_density(problem, np.concatenate([z, z]), max_seconds=0.0) is None
    np.testing.assert_allclose(samplers._batch_log_density(problem, z, max_seconds=1e9), kept.stats["lp"][0, :128])


def test_laplace_is_matches_nuts_and_flags_a_bad_proposal(nuts_pair, problem_and_init):
    import dataclasses

    from stellarinf.inference.samplers import run_laplace_is

    problem, lap = problem_and_init
    _, a, _ = nuts_pair
    post = run_laplace_is(problem, chains=4, draws=1000, seed=4, init=lap)
    assert post.n_gradient_evals == 0 and post.tuning["pareto_k"] < post.tuning["pareto_k_threshold"]
    table = _check_recovery(problem, post)
    assert "pareto_k" not in table.meta["FLAGS"]
    assert np.all(table["ess_bulk"] <= post.tuning["importance_ess"] + 1e-9) and np.all(table["ess_bulk"] > 400)
    for n in LABELS:
        xa, xb = a.samples[n].ravel(), post.samples[n].ravel()
        assert abs(xa.mean() - xb.mean()) < 0.1 * xa.std(), (n, xa.mean(), xb.mean())
        assert abs(xb.std() / xa.std() - 1) < 0.10, (n, xa.std(), xb.std())
    # a proposal 100x too narrow: the weights' tail says the result cannot be trusted
    narrow = dataclasses.replace(lap, metric_z=lap.metric * 1e-4)
    bad = run_laplace_is(problem, chains=2, draws=500, seed=5, init=narrow, extra_rounds=0)
    assert bad.tuning["pareto_k"] > bad.tuning["pareto_k_threshold"]
    bad_table = summary_table(to_inference_data(bad, problem, n_predictive=5))
    assert "pareto_k" in bad_table.meta["FLAGS"].split(",")
    from stellarinf.inference.results import format_summary

    assert "--sampler nuts" in format_summary(bad_table)


def test_budget_verdict_projects_from_the_mean_rate():
    from stellarinf.inference.samplers import budget_verdict

    assert budget_verdict(10.0, 10, 100, 1.0, None) is None  # no budget
    assert budget_verdict(10.0, 10, 100, None, 60.0) is None  # first chunk (compiling): no rate yet
    assert budget_verdict(10.0, 50, 100, 0.2, 60.0) is None  # projects 20 s of 60
    assert budget_verdict(10.0, 10, 100, 0.6, 60.0) is None  # projects 64 s: within the 20 % margin
    assert budget_verdict(10.0, 10, 100, 1.0, 60.0) == pytest.approx(100.0)  # projects 100 s of 60
    assert budget_verdict(70.0, 99, 100, None, 60.0) == pytest.approx(70.0)  # already past it


def test_nuts_stops_on_its_wall_clock_budget_and_caps_tree_depth(problem_and_init):
    from stellarinf.inference.samplers import SamplerBudgetExceeded

    problem, lap = problem_and_init
    # nuts_pair's chains and warm-up: its compiled NUTS programs serve this run too
    with pytest.raises(SamplerBudgetExceeded, match=r"budget.*--sampler laplace-is") as info:
        run_numpyro_nuts(problem, chains=4, warmup=300, draws=200, seed=3, init=lap, max_seconds=1e-3)
    measured = info.value.measured
    assert measured["iterations_done"] < measured["iterations_total"] == 500
    # a tree-depth cap of 2 bounds every draw at 3 leapfrog steps, and the posterior says which cap it ran under
    post = run_numpyro_nuts(problem, chains=2, warmup=50, draws=50, seed=3, init=lap, max_tree_depth=2)
    assert post.stats["n_steps"].max() <= 3 and post.tuning["max_tree_depth"] == 2
    assert post.samples["teff"].shape == (2, 50)
