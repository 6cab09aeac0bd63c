"""Bounded ↔ unconstrained transforms: round trip, Jacobian vs finite differences, NumPyro agreement."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

import stellarinf  # noqa: F401  (float64)
from stellarinf.inference.transforms import clip_to_interior, log_abs_det_jacobian, to_constrained, to_unconstrained

LOWER = np.array([4000.0, 1.0, 0.0, -np.inf, -np.inf])
UPPER = np.array([7000.0, 5.0, np.inf, 2.0, np.inf])


def test_round_trip_and_inside_the_box():
    z = np.random.default_rng(0).normal(0, 3, (200, 5))
    x = np.asarray(to_constrained(z, LOWER, UPPER))
    assert np.all(x > LOWER) and np.all(x < UPPER)
    np.testing.assert_allclose(np.asarray(to_unconstrained(x, LOWER, UPPER)), z, rtol=1e-8, atol=1e-8)
    # extreme z never leaves the box (bounded parameters saturate at the edges)
    xe = np.asarray(to_constrained(np.full(5, 50.0), LOWER, UPPER))
    assert xe[0] <= 7000.0 and xe[1] <= 5.0


def test_log_jacobian_matches_finite_differences():
    z = np.array([0.3, -1.2, 0.7, -0.4, 2.0])
    h = 1e-6
    fd = (np.asarray(to_constrained(z + h, LOWER, UPPER)) - np.asarray(to_constrained(z - h, LOWER, UPPER))) / (2 * h)
    np.testing.assert_allclose(
        np.asarray(log_abs_det_jacobian(z, LOWER, UPPER)), np.log(np.abs(fd)), rtol=1e-6, atol=1e-7
    )


def test_gradients_are_finite_with_infinite_bounds():
    g = jax.grad(lambda z: jnp.sum(to_constrained(z, LOWER, UPPER)) + jnp.sum(log_abs_det_jacobian(z, LOWER, UPPER)))(
        jnp.zeros(5)
    )
    assert np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize(
    "lo, hi, c",
    [
        (4000.0, 7000.0, constraints.interval(4000.0, 7000.0)),
        (0.0, np.inf, constraints.greater_than(0.0)),
        (-np.inf, 2.0, constraints.less_than(2.0)),
    ],
)
def test_same_bijection_as_numpyro(lo, hi, c):
    z = jnp.linspace(-3, 3, 7)
    t = biject_to(c)
    ours = np.asarray(to_constrained(z[:, None], np.array([lo]), np.array([hi])))[:, 0]
    np.testing.assert_allclose(ours, np.asarray(t(z)), rtol=1e-12)
    jac = np.asarray(log_abs_det_jacobian(z[:, None], np.array([lo]), np.array([hi])))[:, 0]
    np.testing.assert_allclose(jac, np.asarray(t.log_abs_det_jacobian(z, t(z))), rtol=1e-10, atol=1e-12)


def test_clip_to_interior_makes_edges_finite():
    x = clip_to_interior(np.array([4000.0, 5.0, 0.0, 2.0, 1.0]), LOWER, UPPER)
    assert np.all(np.isfinite(np.asarray(to_unconstrained(x, LOWER, UPPER))))
