"""Laplace draws on the v sin i–v macro ring (:mod:`stellarinf.inference.ring`): where a spectrum measures only
√(v sin i² + v macro²), the draws follow the ring the posterior is (against its analytic marginals), keep what the
Gaussian knew (the combination, every other label), and are left alone where the split is measured; a fit of an
analytic-model star with both broadenings unresolved says so."""

from __future__ import annotations

import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stellarinf.inference.density import Problem
from stellarinf.inference.laplace import LaplaceResult
from stellarinf.inference.map import MAPResult
from stellarinf.inference.priors import resolve_priors
from stellarinf.inference.ring import RING_ANGLES, RING_RADII, ring_pair, scan_ring
from stellarinf.inference.samplers import laplace_posterior
from stellarinf.observe.model import ObservationModel
from stellarinf.validation.mocks import make_mock
from stellarinf.validation.setups import analytic_setup

BOX = {"vsini": (0.0, 8.0), "vmacro": (0.0, 8.0), "x": (-5.0, 5.0)}
V, V_SD = 4.0, 0.1  # the combination the toy spectrum measures, and how well


class ToyObservation(eqx.Module):
    """A likelihood of √(v sin i² + v macro²) and of an unrelated label ``x`` alone (``split``: also of the two
    apart, a resolved rotator at v sin i 3.2, v macro 2.4)."""

    split: bool = eqx.field(static=True, default=False)
    coupled: float = eqx.field(static=True, default=0.0)  # the combination measured is v − coupled · x
    param_names: tuple = ("vsini", "vmacro", "x")

    def default_bounds(self):
        return BOX

    def initial_params(self):
        return {"vsini": 3.0, "vmacro": 1.0, "x": 0.0}

    def log_likelihood(self, p):
        v = jnp.hypot(p["vsini"], p["vmacro"])
        out = -0.5 * ((v - self.coupled * p["x"] - V) / V_SD) ** 2 - 0.5 * (p["x"] / 0.5) ** 2
        if self.split:
            out += -0.5 * ((p["vsini"] - 3.2) / 0.1) ** 2
        return out


def toy_problem(split=False, coupled=0.0):
    return Problem.build(ToyObservation(split=split, coupled=coupled), free=["vsini", "vmacro", "x"])


def toy_laplace(problem, mode, sd):
    """A Laplace approximation at ``mode`` (physical) with independent sds ``sd`` in z (as a fit's would be: the
    folded v macro at 0 gets a width from its quartic curvature, v sin i the ring's radial width)."""
    z = np.asarray(problem.unconstrain(mode))
    m = MAPResult(problem.names, mode, z, 0.0, None, np.zeros(1), np.ones(1, bool), np.zeros(1), 0.0, True)
    return LaplaceResult(problem.names, z, np.diag(np.square(sd)), True, m, 0.0)


def test_the_scan_is_the_density_of_the_pair_itself_over_the_ring():
    """A likelihood of the combination alone is the same at every angle of the ring in (v sin i, v macro): the
    folded coordinates' Jacobian (which changes along it) is taken out of the sampler's density; the radial profile
    is the likelihood's (mean 4, sd 0.1 km/s) at every angle."""
    problem = toy_problem()
    assert ring_pair(problem) == (0, 1)
    scan = scan_ring(problem, problem.unconstrain({"vsini": V, "vmacro": 0.0, "x": 0.3}), radial_sd=0.12)
    assert scan.v == pytest.approx(V) and scan.phi_mode == pytest.approx(0.0)
    assert scan.log_density.shape == (RING_ANGLES, len(RING_RADII))
    assert scan.phi[0] == 0.0 and scan.phi[-1] == pytest.approx(math.pi / 2)
    np.testing.assert_allclose(scan.angle_log_density, 0.0, atol=1e-8)
    assert math.degrees(scan.sd) == pytest.approx(90 / math.sqrt(12), rel=2e-3)  # a uniform angle (32 points)
    mean, sd = scan.radial
    np.testing.assert_allclose(mean, V, atol=0.005)
    np.testing.assert_allclose(sd, V_SD, rtol=0.05)
    lo, hi = scan.ranges()["vsini"]
    assert lo == pytest.approx(0.0, abs=1e-6) and hi == pytest.approx(V, abs=0.005)
    # where the box cuts the ring (v macro ≤ 3 < 4) the scan stops at its edge
    boxed = Problem.build(ToyObservation(), resolve_priors(BOX, "vmacro=0:3"), free=["vsini", "vmacro", "x"])
    cut = scan_ring(boxed, boxed.unconstrain({"vsini": V, "vmacro": 0.0, "x": 0.0}), radial_sd=0.12)
    assert cut.phi[-1] == pytest.approx(math.asin(3.0 / V), rel=1e-6)
    assert np.isneginf(cut.log_density[-1, -1])  # beyond v macro 3 at the largest radius: off the box


def test_laplace_draws_on_an_unresolved_pair_follow_the_ring():
    """The Gaussian at the mode on the v sin i axis would put v sin i at 4.0 ± 0.1; the posterior is the quarter
    ring, an angle uniform on [0, π/2]: P(v sin i ≤ t) = 1 − (2/π) arccos(t/v) (the ring's width aside)."""
    problem = toy_problem()
    # v sin i's sd in z: the ring's width 0.1 over dx/dz of the folded [0, 8] at 4, (8/2)(1 − (4/8)²) = 3
    lap = toy_laplace(problem, {"vsini": V, "vmacro": 0.0, "x": 0.0}, sd=[V_SD / 3.0, 0.3, 0.2])
    post = laplace_posterior(problem, chains=4, draws=2000, seed=3, init=lap)
    assert post.tuning["ring_replaced"] == 1
    assert post.tuning["ring_sd_deg"] > 2.5 * post.tuning["ring_laplace_sd_deg"]  # 26° against 9°
    vsini, vmacro = (post.samples[n].reshape(-1) for n in ("vsini", "vmacro"))
    for t in (0.5, 1.5, 2.5, 3.5, 3.9):
        exact = 1.0 - 2.0 / math.pi * math.acos(t / V)
        assert np.mean(vsini <= t) == pytest.approx(exact, abs=0.03), t
        assert np.mean(vmacro <= t) == pytest.approx(exact, abs=0.03), t
    v = np.hypot(vsini, vmacro)  # the combination keeps the Gaussian's radial spread (here its v sin i sd in km/s)
    assert np.median(v) == pytest.approx(V, abs=0.02)
    assert np.std(v) == pytest.approx(V_SD, rel=0.1)  # the same width at every angle
    # the unrelated label is drawn as the Gaussian draws it (nothing else learns about the split)
    plain = lap.sample_z(jax.random.key(3 + 1), 8000)
    np.testing.assert_array_equal(post.samples["x"].reshape(-1), problem.to_numpy_params(plain)["x"])


def test_the_combination_keeps_its_marginal_width_and_its_correlation_with_another_label():
    """v = 4 + 0.5 x + N(0, 0.1), x ~ N(0, 0.5): v's marginal sd is √(0.1² + 0.25²) = 0.27 and its correlation with
    x 0.93, while the scan (x held at its mode) sees the conditional width 0.1 only. The Laplace draws (exact here
    along v sin i and x) carry both onto the ring."""
    problem = toy_problem(coupled=0.5)
    var_x, cov_vx = 0.25, 0.5 * 0.25
    var_v = V_SD**2 + 0.5**2 * var_x
    # physical → z: dx/dz of the folded v sin i at 4 is 3, of the logit box (−5, 5) at 0 is 10/4
    cov = np.diag([0.0, 0.3**2, 0.0])
    cov[0, 0], cov[2, 2], cov[0, 2] = var_v / 9.0, var_x / 6.25, cov_vx / (3.0 * 2.5)
    cov[2, 0] = cov[0, 2]
    lap = toy_laplace(problem, {"vsini": V, "vmacro": 0.0, "x": 0.0}, sd=[1.0, 1.0, 1.0])
    lap.cov_z = cov
    post = laplace_posterior(problem, chains=4, draws=2000, seed=5, init=lap)
    assert post.tuning["ring_replaced"] == 1
    v = np.hypot(post.samples["vsini"], post.samples["vmacro"]).reshape(-1)
    x = post.samples["x"].reshape(-1)
    assert np.std(v) == pytest.approx(math.sqrt(var_v), rel=0.08)
    assert np.corrcoef(v, x)[0, 1] == pytest.approx(cov_vx / math.sqrt(var_v * var_x), abs=0.03)
    assert np.median(post.samples["vsini"]) == pytest.approx(V * math.cos(math.pi / 4), abs=0.15)  # along the ring


def test_a_resolved_pair_keeps_its_gaussian_draws():
    """Where the spectrum measures each (the split term), the arc is as narrow as the Gaussian: nothing replaced."""
    problem = toy_problem(split=True)
    mode = {"vsini": 3.2, "vmacro": 2.4, "x": 0.0}
    z = np.asarray(problem.unconstrain(mode))
    h = -np.asarray(jax.hessian(problem.log_density)(jnp.asarray(z)))
    lap = toy_laplace(problem, mode, sd=[1.0, 1.0, 1.0])
    lap.cov_z = np.linalg.inv(h)
    post = laplace_posterior(problem, chains=2, draws=1000, seed=1, init=lap)
    assert post.tuning["ring_replaced"] == 0
    assert post.tuning["ring_sd_deg"] < 2 * 90 / (RING_ANGLES - 1)  # narrower than two grid steps
    # v sin i and v to 0.1 km/s each: φ = atan(v macro / v sin i) to about 3°
    vs, v = np.random.default_rng(0).normal([3.2, V], 0.1, (20000, 2)).T
    assert post.tuning["ring_sd_deg"] == pytest.approx(np.degrees(np.std(np.arccos(vs / v))), rel=0.15)
    plain = problem.to_numpy_params(lap.sample_z(jax.random.key(2), 2000))
    np.testing.assert_array_equal(post.samples["vsini"].reshape(-1), plain["vsini"])


def test_no_ring_without_both_broadenings_free():
    problem = Problem.build(ToyObservation(), free=["vsini", "x"], fixed={"vmacro": 0.0})
    assert ring_pair(problem) is None and scan_ring(problem, problem.initial_z(), radial_sd=0.1) is None
    unfolded = Problem.build(ToyObservation(), resolve_priors(BOX, "vmacro=1:8"), free=["vsini", "vmacro", "x"])
    assert ring_pair(unfolded) is None  # a box off 0: no quarter ring to follow


def test_an_analytic_star_fitted_with_laplace_quotes_its_ring():
    """A real observation model: the analytic line model at R 20,000 cannot split v sin i 4 from v macro 3; the
    laplace fit moves its draws onto the ring, covers both truths, flags them traded and says where on the ring
    the data allow each."""
    from stellarinf.inference.laplace import laplace
    from stellarinf.inference.results import format_summary, summary_table, to_inference_data

    model, wl = analytic_setup()
    truth = {"teff": 5600.0, "logg": 4.3, "feh": -0.1, "rv": 5.0, "vsini": 4.0, "vmacro": 3.0}
    spec = make_mock(model, wl, truth, snr=150, resolution=20000, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obs = ObservationModel(model, spec, rv_max=50, vsini_max=12, vmacro_max=8, continuum_degree=0)
    problem = Problem.build(obs)
    lap = laplace(problem, n_starts=4, seed=0)
    post = laplace_posterior(problem, chains=4, draws=500, seed=0, init=lap)
    assert post.tuning["ring_replaced"] == 1
    table = summary_table(to_inference_data(post, problem, n_predictive=4))
    rows = {str(r["name"]): r for r in table}
    for name in ("vsini", "vmacro"):
        assert "traded" in rows[name]["flags"]
        draws = post.samples[name].reshape(-1)
        lo, hi = np.percentile(draws, [2.5, 97.5])
        assert lo < truth[name] < hi, (name, lo, hi)
    assert table.meta["RINGVSLO"] < 3.0 and table.meta["RINGVMHI"] > 3.5  # most of the ring is allowed
    assert table.meta["VBROAD"] == pytest.approx(5.0, abs=3 * table.meta["VBROADSD"] + 0.1)
    assert "their draws follow that ring" in format_summary(table)


@pytest.mark.slow  # ~30 s: a joint Laplace fit; the ring's draws are tested on one star above, and the joint
# Laplace fit in tests/test_joint_fit.py
def test_joint_laplace_draws_follow_each_stars_ring_and_keep_the_shared_values():
    """Two analytic-model stars sharing one RV, each with v sin i and v macro free and unresolved at R 20,000: the
    joint Laplace draws move each star's pair onto its own ring and leave the shared value and every label exactly as
    the joint Gaussian draws them. The Gaussian alone misses star 1's split (v sin i 2.5, v macro 4.5: its 95 %
    intervals 3.8–6.0 and 0.05–3.5 km/s); the ring's cover both."""
    from stellarinf.inference.joint import JointProblem, joint_laplace, laplace_draws
    from stellarinf.validation.mocks import random_truth

    model, wl = analytic_setup(resolution=20000)
    rng = np.random.default_rng(4)
    truths, models = [], []
    for k, (vs, vm) in enumerate([(4.0, 3.0), (2.5, 4.5)]):
        t = random_truth(model.label_space, rng, rv_max=20)
        t.update({"teff": 5400.0 + 200 * k, "feh": 0.0, "rv": 5.0, "vsini": vs, "vmacro": vm})
        spec = make_mock(model, wl, t, snr=150, resolution=20000, seed=10 + k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            models.append(
                ObservationModel(
                    model, spec, rv_max=50, vsini_max=12, vmacro_max=8, continuum_degree=0, continuum="marginalise"
                )
            )
        truths.append(t)
    jp = JointProblem.build(models, ("rv",))
    per = {n: np.array([t[n] for t in truths]) for n in jp.star_names}
    lap = joint_laplace(jp, jp.from_params(per, {"rv": np.array([5.0])}))
    post = laplace_draws(jp, lap, chains=2, draws=500, seed=0)
    assert set(post.tuning["ring"]) == {0, 1} and all(r["ring_replaced"] for r in post.tuning["ring"].values())
    for i, t in enumerate(truths):
        for name in ("vsini", "vmacro"):
            lo, hi = np.percentile(post.samples[name][..., i], [2.5, 97.5])
            assert lo < t[name] < hi, (i, name, lo, hi)
    plain = jp.to_numpy(lap.sample_z(jax.random.key(1), 1000, metric=False).reshape(2, 500, -1))
    assert not np.percentile(plain["vmacro"][..., 1], 97.5) > truths[1]["vmacro"]  # what the ring mends
    for name in ("rv", "teff", "logg"):
        np.testing.assert_array_equal(post.samples[name], plain[name])
    # the joint stars table quotes each star's combination, what its spectrum measures
    from stellarinf.joint_pipeline import joint_inference_data, joint_summaries

    ids = ["a", "b"]
    idata = joint_inference_data(post, jp, ids, {"run_id": "test"})
    alone = [{"rv": (5.0, 0.1)} for _ in ids]
    stars, _ = joint_summaries(idata, jp, ids, [{"file": i} for i in ids], alone)
    for i, t in enumerate(truths):
        assert abs(stars[i]["vbroad"] - math.hypot(t["vsini"], t["vmacro"])) < 3 * stars[i]["vbroad_err"] + 0.1
        assert stars[i]["vbroad_err"] < 0.5 * min(stars[i]["vsini_err"], stars[i]["vmacro_err"])  # the better known
