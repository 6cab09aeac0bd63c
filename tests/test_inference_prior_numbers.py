"""Priors that differ only in their numbers (a Gaussian's mean and width, a box's finite ends, Gaussian or uniform) share
compiled programs: their numbers are array leaves of the :class:`~stellarinf.inference.density.Problem` (traced), only
their structure (which bounds are finite, folded) is static. Per-star priors (a photometric log g for every star
of a catalogue) would otherwise compile every program again for every star (about a minute each on a CPU).

Compilations are counted by a Python side effect inside the traced function (it runs once per trace) and, for whole
fits, by JAX's own trace events (``jax.monitoring``): a program taken from JAX's caches is not traced again, whether
or not the persistent compilation cache (conftest) would have supplied its machine code.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from analytic_fits import CATALOG_SETTINGS, analytic_obs_model
from jax_events import TRACE_EVENT, count_jax_events
from scipy.stats import truncnorm

import stellarinf  # noqa: F401
from stellarinf.inference.density import Problem
from stellarinf.inference.map import find_map
from stellarinf.inference.priors import GAUSSIAN
from stellarinf.validation.mocks import make_mock
from stellarinf.validation.setups import analytic_setup

TRUTH = {"teff": 5650.0, "logg": 4.1, "feh": -0.45, "rv": 37.0, "vsini": 6.0, "vmacro": 0.0}


@pytest.fixture(scope="module")
def obs_model():
    return analytic_obs_model(TRUTH)


def test_prior_numbers_are_leaves_and_structure_is_static(obs_model):
    a = Problem.build(obs_model, ["logg=4.0+-0.1", "teff=5000:6000"])
    b = Problem.build(obs_model, ["logg=4.3+-0.2", "teff=5200:5700"])
    assert a.prior.structure == b.prior.structure  # same structure: the same compiled programs
    arrays_a, static_a = eqx.partition(a, eqx.is_array)
    _, static_b = eqx.partition(b, eqx.is_array)
    assert eqx.tree_equal(static_a, static_b)
    assert any(leaf is a.prior.mean for leaf in jax.tree.leaves(arrays_a))
    # the priors are still reported as Prior objects, numbers exact
    i = a.names.index("logg")
    assert a.prior_specs[i].kind == GAUSSIAN and (a.prior_specs[i].mean, a.prior_specs[i].sigma) == (4.0, 0.1)
    assert b.prior_specs[a.names.index("teff")].lower == 5200.0
    # a fold is structure: the unfolded problem has the same numbers, the vsini box logit-scaled
    assert a.prior.folded[a.names.index("vsini")] and not any(a.unfolded().prior.folded)
    assert a.unfolded().prior.lower is a.prior.lower
    # a Gaussian instead of a uniform prior is a number (its weight), not structure
    plain = Problem.build(obs_model)
    assert plain.prior.structure == a.prior.structure
    assert plain.prior.gaussian[i] is False and a.prior.gaussian[i] is True
    assert eqx.tree_equal(eqx.partition(plain, eqx.is_array)[1], static_a)
    # one parameter fewer is other structure
    assert Problem.build(obs_model, fixed={"vsini": 5.0}).prior.structure != a.prior.structure


def test_problems_differing_in_prior_numbers_compile_once_and_give_the_right_values(obs_model):
    traces = []

    @eqx.filter_jit
    def log_density(problem, z):
        traces.append(1)  # runs when (and only when) the function is traced
        return problem.log_density(z), problem.log_prior(z), problem.constrain(z)

    base = Problem.build(obs_model, ["logg=4.0+-0.1", "teff=5000:6000"])
    other_mean = Problem.build(obs_model, ["logg=4.3+-0.2", "teff=5000:6000"])
    other_box = Problem.build(obs_model, ["logg=4.0+-0.1", "teff=5200:5700"])
    z = jnp.asarray(base.initial_z())
    out = {name: log_density(p, z) for name, p in [("base", base), ("mean", other_mean), ("box", other_box)]}
    assert len(traces) == 1

    il, it = base.names.index("logg"), base.names.index("teff")
    x = float(out["base"][2]["logg"])
    assert float(out["mean"][2]["logg"]) == pytest.approx(x, rel=1e-14)  # the same box: the same point

    def truncated(x, mean, sigma):  # log density of N(mean, sigma) truncated to the model's logg range
        lo, hi = base.prior_specs[il].lower, base.prior_specs[il].upper
        return truncnorm.logpdf(x, (lo - mean) / sigma, (hi - mean) / sigma, loc=mean, scale=sigma)

    expected = truncated(x, 4.3, 0.2) - truncated(x, 4.0, 0.1)
    assert float(out["mean"][1] - out["base"][1]) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert float(out["mean"][0] - out["base"][0]) == pytest.approx(expected, rel=1e-9, abs=1e-9)  # likelihood alike

    # the narrower box: z means another teff (5200 + 500 u where the other box had 5000 + 1000 u), the uniform density
    # is 1/500 instead of 1/1000, and the Jacobian of the logit box halves
    u = (float(out["base"][2]["teff"]) - 5000.0) / 1000.0
    assert float(out["box"][2]["teff"]) == pytest.approx(5200.0 + 500.0 * u, rel=1e-12)
    assert float(out["box"][1] - out["base"][1]) == pytest.approx(np.log(2.0), rel=1e-12)
    assert float(other_box.log_jacobian(z) - base.log_jacobian(z)) == pytest.approx(-np.log(2.0), rel=1e-12)
    assert it != il
    # eager and jitted agree
    assert float(out["box"][0]) == pytest.approx(float(other_box.log_density(z)), rel=1e-12)

    # a uniform log g instead of a Gaussian: the same program, the Gaussian term gone
    uniform = Problem.build(obs_model, ["teff=5000:6000"])
    out["uniform"] = log_density(uniform, z)
    assert len(traces) == 1
    box = np.log(base.prior_specs[il].upper - base.prior_specs[il].lower)
    assert float(out["uniform"][1] - out["base"][1]) == pytest.approx(-box - truncated(x, 4.0, 0.1), rel=1e-9)
    assert float(out["uniform"][1]) == pytest.approx(float(uniform.log_prior(z)), rel=1e-12)
    # other structure (one parameter fewer) is a new program: the counter above can fail
    fewer = Problem.build(obs_model, ["teff=5000:6000"], fixed={"vsini": 5.0})
    log_density(fewer, jnp.asarray(fewer.initial_z()))
    assert len(traces) == 2


def test_find_map_with_another_gaussian_prior_traces_nothing_new(obs_model):
    plain = find_map(Problem.build(obs_model), n_starts=2, seed=1)
    with count_jax_events() as events:  # a Gaussian prior where the first fit had none: no new program either
        first = find_map(Problem.build(obs_model, ["logg=4.0+-0.1"]), n_starts=2, seed=1)
    assert events[TRACE_EVENT] == 0, dict(events)
    assert abs(plain.params["logg"] - TRUTH["logg"]) < 0.3
    problem = Problem.build(obs_model, ["logg=4.6+-0.05"])
    with count_jax_events() as events:
        second = find_map(problem, n_starts=2, seed=1)
    assert events[TRACE_EVENT] == 0, dict(events)
    # and the prior was used: the MAP's log g moves towards 4.6 (4.0 the first time); the truth is 4.1
    assert first.params["logg"] < 4.2 < second.params["logg"] < 4.6
    # the same answer as a problem never seen before with these numbers would give (the numbers are not stale)
    assert second.log_posterior == pytest.approx(
        float(problem.log_posterior(jnp.asarray(second.z))), rel=1e-12, abs=1e-9
    )


@pytest.mark.slow  # ~30 s of NUTS to count traces; MAP and the catalogue worker are checked for it above and below
def test_numpyro_nuts_with_another_prior_traces_nothing_new(obs_model):
    """NumPyro NUTS takes the problem as an argument of its compiled programs: a second fit whose log g prior differs
    only in numbers (and whose Laplace start differs) traces no program, and its draws follow the new prior."""
    from stellarinf.inference.laplace import laplace
    from stellarinf.inference.samplers import run_numpyro_nuts

    kw = dict(chains=2, warmup=60, draws=60, seed=2)
    wide = Problem.build(obs_model, ["logg=4.1+-1.0"])
    run_numpyro_nuts(wide, init=laplace(wide, seed=2), **kw)
    tight = Problem.build(obs_model, ["logg=3.0+-0.01"])  # far from the truth (4.1) and narrow: the prior decides
    lap = laplace(tight, seed=2)
    with count_jax_events() as events:
        post = run_numpyro_nuts(tight, init=lap, **kw)
    assert events[TRACE_EVENT] == 0, dict(events)
    logg = post.samples["logg"]
    assert abs(float(np.mean(logg)) - 3.0) < 0.02 and float(np.std(logg)) < 0.02
    assert post.n_divergent == 0


def test_catalogue_worker_fits_stars_with_their_own_log_g_prior_without_compiling_again(tmp_path):
    """The fit-catalog worker's own loop (:func:`stellarinf.catalog.worker.fit_chunk`, in this process): three stars,
    each with a different ``prior_logg``; the first compiles, the others trace no program at all."""
    from stellarinf.catalog.worker import fit_chunk, read_json, star_paths
    from stellarinf.io.spectrum import write_spectrum_fits

    model, wl = analytic_setup()
    truths = {
        "a": ({"teff": 5200.0, "logg": 4.4, "feh": -0.1, "rv": -12.0}, "logg=4.4+-0.1"),
        "b": ({"teff": 6100.0, "logg": 3.6, "feh": -0.8, "rv": 25.0}, "logg=3.6+-0.2"),
        "c": ({"teff": 4800.0, "logg": 2.5, "feh": 0.2, "rv": 3.0}, "logg=2.5+-0.3"),
    }
    stars = []
    for i, (sid, (truth, prior)) in enumerate(truths.items()):
        spec = make_mock(model, wl, {**truth, "vsini": 5.0, "vmacro": 0.0}, snr=120, resolution=20000, seed=40 + i)
        write_spectrum_fits(tmp_path / f"{sid}.fits", spec)
        stars.append({"id": sid, "path": str(tmp_path / f"{sid}.fits"), "resolution": None, "priors": [prior]})
    out = tmp_path / "out"
    (out / "stars").mkdir(parents=True)
    fit_kwargs = dict(CATALOG_SETTINGS, priors=[], read_options={}, progress=False, log=None)
    first = fit_chunk(stars[:1], str(out), "analytic-test", model, fit_kwargs)
    with count_jax_events() as events:
        rest = fit_chunk(stars[1:], str(out), "analytic-test", model, fit_kwargs)
    assert [r["status"] for r in first + rest] == ["ok"] * 3, first + rest
    assert events[TRACE_EVENT] == 0, dict(events)
    for sid, (truth, prior) in truths.items():
        record = read_json(star_paths(out, sid)[0])
        assert record["request"]["priors"] == [prior]
        logg = next(r for r in record["summary"] if r["name"] == "logg")
        assert abs(logg["p50"] - truth["logg"]) < 0.3
