"""Lanes (chains, starts, draws) are mapped with vmap on accelerators and lax.map on CPU: same results."""

import jax
import jax.numpy as jnp
import numpy as np

from stellarinf.inference.lanes import lane_batch_size, map_lanes, vectorise_lanes


def test_map_lanes_equals_vmap_for_pytrees_and_several_arguments():
    def f(a, b):
        # a while-loop whose trip count differs per lane, as in NUTS trees or L-BFGS runs
        n = jax.lax.while_loop(lambda c: c[0] < a, lambda c: (c[0] + 1.0, c[1] * 1.5), (0.0, 1.0))[1]
        return {"sum": a + b["x"].sum(), "prod": b["x"] * a, "loop": n}

    a = jnp.arange(1.0, 5.0)
    b = {"x": jnp.arange(12.0).reshape(4, 3)}
    got, want = map_lanes(f, a, b), jax.vmap(f)(a, b)
    for k in want:
        np.testing.assert_allclose(np.asarray(got[k]), np.asarray(want[k]))
    np.testing.assert_allclose(np.asarray(got["loop"]), 1.5 ** np.arange(1, 5))


def test_lanes_run_one_at_a_time_on_cpu():
    assert vectorise_lanes() == (jax.default_backend() != "cpu")
    if jax.default_backend() == "cpu":
        assert lane_batch_size(64) is None
    else:
        assert lane_batch_size(64) == 64
