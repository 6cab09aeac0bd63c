"""Joint fits of many stars sharing nuisances (``stellarinf.fit_joint``, ``inference/joint.py``): the joint density is
the sum of the single-star ones, the plate model is that density, a small joint fit recovers a shared resolving
power, and bad requests fail with a message naming the problem and the fix."""

from __future__ import annotations

import dataclasses
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stellarinf.errors import StellarinfError
from stellarinf.inference.density import Problem
from stellarinf.inference.joint import JointProblem, make_joint_numpyro_model
from stellarinf.observe.model import ObservationModel
from stellarinf.validation.mocks import make_mock, random_truth
from stellarinf.validation.setups import analytic_setup

R_TRUE, R_START = 15_000.0, 20_000.0


@pytest.fixture(scope="module")
def setup():
    model, wl = analytic_setup(resolution=R_START)
    rng = np.random.default_rng(1)
    specs, truths = [], []
    for i in range(4):
        t = random_truth(model.label_space, rng, rv_max=30, vsini_range=(2, 8))
        s = make_mock(model, wl, t, snr=100, resolution=R_TRUE, seed=i)
        specs.append(dataclasses.replace(s, resolution=R_START))  # the header's nominal R, not the true one
        truths.append(t)
    return model, specs, truths


def obs_models(model, specs, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [
            ObservationModel(
                model,
                s,
                fit_resolution=True,
                continuum="marginalise",
                continuum_degree=1,
                rv_max=80,
                vsini_max=20,
                fixed={"vmacro": 0.0},
                **kw,
            )
            for s in specs
        ]


def test_joint_density_is_the_sum_of_single_star_densities(setup):
    model, specs, truths = setup
    oms = obs_models(model, specs)
    jp = JointProblem.build(oms, ("resolution",))
    assert jp.is_stacked and jp.n_free == 4 * 5 + 1
    singles = [Problem.build(om) for om in oms]
    rng = np.random.default_rng(3)
    per = {n: np.array([t[n] + 0.01 * rng.standard_normal() for t in truths]) for n in ("teff", "logg", "feh")}
    per["rv"] = np.array([t["rv"] for t in truths])
    per["vsini"] = np.array([t["vsini"] for t in truths])
    shared = {"resolution": np.array([16_000.0])}
    z = jp.from_params(per, shared)
    total = 0.0
    # compiled: each evaluation one program (op by op, each operation compiled on its own: hundreds)
    density = eqx.filter_jit(lambda p, z: p.log_density(z))
    likelihood = eqx.filter_jit(lambda m, x: m.log_likelihood(x))
    for i, p in enumerate(singles):
        params = {n: per[n][i] for n in jp.star_names}
        params["resolution"] = 16_000.0
        total += float(density(p, p.unconstrain(params)))
    # each single-star density counts the shared R's prior and Jacobian once, the joint one once in all: for a
    # uniform prior on [lo, hi] in z = logit, that term is log σ(z) + log σ(−z)
    zr = float(singles[0].unconstrain({**{n: per[n][0] for n in jp.star_names}, "resolution": 16_000.0})[-1])
    assert singles[0].names[-1] == "resolution"
    shared_term = float(jax.nn.log_sigmoid(zr) + jax.nn.log_sigmoid(-zr))
    expected = total - (len(singles) - 1) * shared_term
    assert float(density(jp, jnp.asarray(z))) == pytest.approx(expected, rel=1e-10, abs=1e-6)
    # the likelihood alone is exactly the sum of the stars' likelihoods, stacked or summed one by one
    ll = sum(
        float(likelihood(om, {**{n: jnp.asarray(per[n][i]) for n in jp.star_names}, "resolution": jnp.asarray(16e3)}))
        for i, om in enumerate(oms)
    )
    assert float(likelihood(jp, jnp.asarray(z))) == pytest.approx(ll, rel=1e-12)
    loose = dataclasses.replace(jp, stacked=None, stacked_shared=None)
    assert float(likelihood(loose, jnp.asarray(z))) == pytest.approx(ll, rel=1e-12)
    # the NumPyro plate model is the same density (its potential energy is minus it)
    from numpyro.infer.util import potential_energy

    idx = jp.index()
    energy = jax.jit(lambda sites: potential_energy(make_joint_numpyro_model(jp), (), {}, sites))
    pe = energy({n: jnp.asarray(z[idx[n]]) for n in jp.site_names})
    assert -float(pe) == pytest.approx(float(density(jp, jnp.asarray(z))), rel=1e-10)
    # the per-star blocks assemble to the joint gradient and curvature
    g, h = jp.assemble(*eqx.filter_jit(lambda p, z: p.block_curvature(z))(jp, jnp.asarray(z)))
    grad_fn = jax.jit(jax.grad(jp.log_density))
    np.testing.assert_allclose(g, np.asarray(grad_fn(jnp.asarray(z))), rtol=1e-7, atol=1e-6)
    eps = 1e-5
    fd = np.stack(
        [
            (np.asarray(grad_fn(jnp.asarray(z + eps * e))) - np.asarray(grad_fn(jnp.asarray(z - eps * e)))) / (2 * eps)
            for e in np.eye(len(z))
        ],
        axis=1,
    )
    # Gauss–Newton for the likelihood: close to the exact Hessian near the truth, not equal to it
    assert np.all(np.isfinite(h)) and np.allclose(h, h.T)
    assert h[-1, -1] == pytest.approx(fd[-1, -1], rel=0.05)  # the shared R's curvature: the sum over stars
    assert np.allclose(h[:5, 5:10], 0.0)  # star 0 and star 1 do not see each other's parameters
    assert np.all(np.linalg.eigvalsh(-h) > 0)


def test_groups_give_one_value_per_group(setup):
    model, specs, _ = setup
    oms = obs_models(model, specs)
    jp = JointProblem.build(oms, ("resolution",), groups=["a", "b", "a", "b"])
    assert jp.n_groups == (2,) and jp.group_keys == (("a", "b"),)
    per = {n: jnp.zeros(4) for n in jp.star_names}
    out = jp.star_params(per, {"resolution": jnp.asarray([1.0, 2.0])})
    np.testing.assert_array_equal(np.asarray(out["resolution"]), [1.0, 2.0, 1.0, 2.0])


# the small joint fit's settings, by Laplace draws (CI) and by NUTS (slow)
JOINT_FIT = dict(
    share="resolution",
    chains=2,
    physics_error="off",
    mask_tellurics=False,
    fixed={"vmacro": 0.0},
    continuum_degree=1,
    rv_max=80,
    vsini_max=20,
    n_starts=2,
)


def _check_small_joint_fit(res, truths, tmp_path):
    row = res.shared[0]
    assert row["name"] == "resolution" and row["n_stars"] == 4
    assert abs(row["p50"] - R_TRUE) < 3 * row["sd"]
    # the shared value is better known than a star alone knows it. Not "than every star": each star's own sd is a
    # Laplace width across its curved R–v sin i ridge, which no Gaussian follows (v sin i folded, star 1's is 2,744
    # where NUTS on that star alone gives ~4,500; on the logit box all four overstated it by ~20 %)
    alone_sd = [a["resolution"][1] for a in res.alone]
    assert row["alone_sd_min"] == pytest.approx(min(alone_sd))
    assert row["sd"] < np.median(alone_sd)
    pulls = [(res.stars[i]["teff"] - t["teff"]) / res.stars[i]["teff_err"] for i, t in enumerate(truths)]
    assert np.all(np.abs(pulls) < 4)
    assert res.idata.posterior["teff"].dims == ("chain", "draw", "star")
    assert list(res.idata.posterior["star"].values) == [r["star"] for r in res.stars]
    paths = res.write(tmp_path / "joint")
    assert all(p.is_file() for p in paths)
    from astropy.table import Table

    assert Table.read(tmp_path / "joint_shared.csv")["run_id"][0] == res.run_id


def test_small_joint_fit_by_laplace_recovers_the_shared_resolution(setup, tmp_path, monkeypatch):
    """The whole joint pipeline (alone fits, joint MAP, joint Laplace draws, tables, files) in CI's time, reached as
    NUTS past its wall-clock budget reaches it (NUTS's own stop is tested on two stars below; NUTS to the end is the
    slow test below): the fit falls back to the joint Laplace draws and says so."""
    from stellarinf import fit_joint
    from stellarinf.inference import joint
    from stellarinf.inference.samplers import SamplerBudgetExceeded

    def over_budget(*args, max_seconds=None, **kwargs):
        assert max_seconds == 60.0 * 0.5
        raise SamplerBudgetExceeded("joint NUTS stopped after 40 s (10 of 800 iterations per chain): ...", {})

    monkeypatch.setattr(joint, "run_joint_nuts", over_budget)
    model, specs, truths = setup
    lines = []
    res = fit_joint(specs, emulator=model, draws=500, max_minutes=0.5, log=lines.append, **JOINT_FIT)
    assert res.settings["sampler"] == "laplace" and res.settings["max_minutes"] == 0.5
    assert "joint NUTS stopped" in res.settings["sampler_fallback"] and res.diagnostics["warnings"]
    assert any("falling back to the joint Laplace draws" in str(line) for line in lines)
    _check_small_joint_fit(res, truths, tmp_path)


@pytest.mark.slow  # ~150 s on CI's CPU: NUTS compile and draws; benchmarks/joint_fit.py runs it at scale
def test_small_joint_fit_recovers_the_shared_resolution(setup, tmp_path):
    from stellarinf import fit_joint

    model, specs, truths = setup
    # warm-up and draws in chunks of one length: one compiled NUTS program instead of one per length (150, 200); the
    # chains' states carry on from chunk to chunk, so the draws are those of one warm-up and one draw run
    res = fit_joint(specs, emulator=model, warmup=150, draws=200, nuts_options={"chunk": 50}, **JOINT_FIT)
    assert res.diagnostics["n_divergent"] == 0
    assert res.diagnostics["r_hat_max"] < 1.05
    _check_small_joint_fit(res, truths, tmp_path)


def test_bad_requests_name_the_problem_and_the_fix(setup):
    from stellarinf import fit_joint

    model, specs, _ = setup
    kw = dict(emulator=model, physics_error="off", mask_tellurics=False)
    with pytest.raises(StellarinfError, match="at least 2 stars"):
        fit_joint(specs[:1], **kw)
    with pytest.raises(StellarinfError, match=r"cannot share 'teff'.*resolution, rv, vsini, vmacro"):
        fit_joint(specs, share=("teff",), **kw)
    with pytest.raises(StellarinfError, match=r"cannot share 'plate_scale'"):
        fit_joint(specs, share=("plate_scale",), **kw)
    no_r = [dataclasses.replace(s, resolution=None) for s in specs]
    with pytest.raises(StellarinfError, match=r"no(ne)?.*pass resolution=R"):
        fit_joint(no_r, share=("resolution",), **kw)
    with pytest.raises(StellarinfError, match="both shared and fixed"):
        fit_joint(specs, share=("vmacro",), fixed={"vmacro": 0.0}, **kw)
    other, _ = analytic_setup(names=("teff", "logg", "feh", "vmic"), resolution=R_START)
    with pytest.raises(StellarinfError, match="one label space"):
        fit_joint(specs, **{**kw, "emulator": [model, model, other, model]})
    with pytest.raises(StellarinfError, match="one key per"):
        fit_joint(specs, groups=["a", "b"], **kw)
    oms = obs_models(model, specs)
    with pytest.raises(StellarinfError, match="valid|can be shared"):
        JointProblem.build(oms, ("ln_jitter",))


def test_cli_joint_bad_requests_exit_3_with_the_fix(tmp_path, capsys):
    from stellarinf.cli import main

    a = tmp_path / "a.fits"
    a.write_bytes(b"not read: the request is checked first")
    out = str(tmp_path / "out")
    for argv, needles in (
        (["fit", "--joint", str(a), "-o", out], ["at least 2 stars"]),
        (
            ["fit", "--joint", "--share", "teff", str(a), str(a), "-o", out],
            ["cannot share 'teff'", "resolution, rv, vsini, vmacro"],
        ),
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 3
        err = capsys.readouterr().err
        assert all(n in err for n in needles), err


def test_rescaled_metric_sets_each_scale_and_keeps_the_correlations():
    from stellarinf.inference.joint import rescaled_metric

    metric = np.array([[1.0, 0.5], [0.5, 4.0]])
    rng = np.random.default_rng(0)
    # draws twice as wide as the metric in the first coordinate, as wide in the second
    true = np.array([[4.0, 0.0], [0.0, 4.0]])  # uncorrelated: the output keeps the metric's correlation
    z = rng.multivariate_normal([0.0, 0.0], true, size=(4, 5000))
    out, ratio = rescaled_metric(metric, z)
    np.testing.assert_allclose(ratio, [4.0, 1.0], rtol=0.05)
    np.testing.assert_allclose(np.diag(out), [4.0, 4.0], rtol=0.05)
    corr = out[0, 1] / np.sqrt(out[0, 0] * out[1, 1])
    assert corr == pytest.approx(0.5 / np.sqrt(4.0), rel=1e-9)  # the metric's correlation is kept
    _, clipped = rescaled_metric(metric, 100.0 * z)
    assert clipped.max() == 16.0  # at most 4× wider per coordinate


@pytest.fixture(scope="module")
def two_stars(setup):
    """The first two stars' joint problem and its Laplace approximation at the truth (the NUTS tests' start)."""
    from stellarinf.inference.joint import joint_laplace

    model, specs, truths = setup
    jp = JointProblem.build(obs_models(model, specs[:2]), ("resolution",))
    per = {n: np.array([t[n] for t in truths[:2]]) for n in jp.star_names}
    return jp, joint_laplace(jp, jp.from_params(per, {"resolution": np.array([R_TRUE])}))


def test_joint_nuts_pilot_chunks_and_time_budget(two_stars):
    """A pilot rescales the Laplace metric; chunked draws log progress, checkpoint, and stop at the time budget
    with the draws they have."""
    from stellarinf.inference.joint import run_joint_nuts

    jp, lap = two_stars
    lines, saved = [], []
    post = run_joint_nuts(
        jp,
        lap,
        chains=2,
        warmup=10,
        draws=30,
        pilot=5,
        pilot_warmup=5,
        chunk=10,
        time_budget_s=0.0,
        init_scale=0.0,
        log=lines.append,
        checkpoint=saved.append,
    )
    assert post.n_chains == 2 and post.n_draws == 10  # one chunk, then the budget stopped it
    assert post.timings["stopped_early"] is True
    assert post.samples["resolution"].shape == (2, 10, 1) and post.samples["teff"].shape == (2, 10, 2)
    assert len(saved) == 1 and saved[0].n_draws == 10
    assert any(line.startswith("pilot: 2 × (5 + 5)") for line in lines)
    assert any("draws 10/30 per chain" in line for line in lines)
    assert any("time budget" in line for line in lines)
    lo, med, hi = post.timings["metric_variance_ratio"]
    assert 0.25 <= lo <= med <= hi <= 16.0
    # a wall-clock budget the run cannot meet: it stops with what it measured instead of running on
    from stellarinf.inference.samplers import NUTS_CHUNK, SamplerBudgetExceeded

    with pytest.raises(SamplerBudgetExceeded, match=r"joint NUTS stopped .* budget .*--sampler laplace") as info:
        run_joint_nuts(jp, lap, chains=2, warmup=10, draws=30, chunk=10, init_scale=0.0, max_seconds=1e-6)
    assert info.value.measured["iterations_done"] == 10 and info.value.measured["iterations_total"] == 40
    # unchunked, a warm-up longer than one compiled step is still checked step by step (it once ran whole first)
    with pytest.raises(SamplerBudgetExceeded) as info:
        run_joint_nuts(jp, lap, chains=2, warmup=NUTS_CHUNK + 15, draws=30, init_scale=0.0, max_seconds=1e-6)
    assert info.value.measured["iterations_done"] == NUTS_CHUNK


@pytest.mark.slow  # ~25 s of joint NUTS chunks to count traces; chunked joint NUTS itself runs in the test above
def test_joint_nuts_compiles_its_chunk_once_however_many_chunks(two_stars):
    """Chunked sampling reuses one compiled program: three chunks trace no more programs than one (numpyro's MCMC.run
    traced its loop again per call and chain, and a long joint run died compiling its ninth chunk)."""
    from jax_events import TRACE_EVENT, count_jax_events

    from stellarinf.inference.joint import run_joint_nuts

    jp, lap = two_stars
    traces, lines = [], []
    for draws in (4, 4, 12):  # the first run builds what every run shares; the second counts a one-chunk run's own
        with count_jax_events() as events:
            post = run_joint_nuts(jp, lap, chains=2, warmup=4, draws=draws, chunk=4, init_scale=0.0, log=lines.append)
        traces.append(events[TRACE_EVENT])
        assert post.n_draws == draws and post.samples["teff"].shape == (2, draws, 2)
        assert np.all(np.isfinite(post.samples["resolution"]))
    assert traces[2] == traces[1], traces  # three chunks trace what one chunk traces
    assert sum("draws 12/12 per chain" in line for line in lines) == 1


def test_star_map_choices_give_the_same_density_and_gradient(setup):
    model, specs, truths = setup
    oms = obs_models(model, specs[:3])
    per = {n: np.array([t[n] for t in truths[:3]]) for n in ("teff", "logg", "feh", "rv", "vsini")}
    values = {}
    for how in ("map", "vmap", "unroll"):
        jp = JointProblem.build(oms, ("resolution",), star_map=how)
        assert jp.star_map == how
        z = jnp.asarray(jp.from_params(per, {"resolution": np.array([16_000.0])}))
        # compiled, as every fit runs it (evaluated op by op, the three choices compiled ~550 one-op programs)
        values[how] = jax.jit(jax.value_and_grad(jp.log_density))(z)
    for how in ("vmap", "unroll"):
        assert float(values[how][0]) == pytest.approx(float(values["map"][0]), rel=1e-12)
        np.testing.assert_allclose(np.asarray(values[how][1]), np.asarray(values["map"][1]), rtol=1e-9, atol=1e-9)
    assert JointProblem.build(oms, ("resolution",), vectorise=True).star_map == "vmap"
    with pytest.raises(StellarinfError, match="star_map must be one of 'map', 'vmap', 'unroll'"):
        JointProblem.build(oms, ("resolution",), star_map="loop")
