"""jax.grad of spectra with respect to every label is finite over the whole default label box."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stellarinf.labels import default_label_space
from stellarinf.synth import fine_grid, make_synthesizer

SPACE = default_label_space()


def box_points(n_random=4, seed=1):
    lo, hi = SPACE.lower, SPACE.upper
    pts = []
    # All 8 corners of (teff, logg, feh); vmic and the abundances alternately at their bounds.
    for i, bits in enumerate(itertools.product([0, 1], repeat=3)):
        p = lo + (hi - lo) * np.array(list(bits) + [(i + j) % 2 for j in range(len(SPACE) - 3)])
        pts.append(p)
    rng = np.random.default_rng(seed)
    pts += list(lo + (hi - lo) * rng.random((n_random, len(SPACE))))
    return np.array(pts)


@pytest.mark.parametrize("fidelity", ["realistic", "simple"])
def test_gradients_finite_over_default_box(fidelity):
    wl = fine_grid(6707.0, 6721.0)  # Li I 6707.8 and Ca I 6717.7 (air) and Fe I lines
    fn = make_synthesizer(wl, SPACE.names, fidelity)
    weights = jnp.asarray(np.random.default_rng(0).normal(size=wl.size))

    def scalar(labels):
        flux, cont = fn(labels)
        return jnp.sum(weights * flux) + 1e-7 * jnp.sum(jnp.log(cont))

    grads = np.asarray(jax.jit(jax.vmap(jax.grad(scalar)))(jnp.asarray(box_points())))
    assert np.all(np.isfinite(grads)), np.argwhere(~np.isfinite(grads))
    # Not trivially zero: Teff and [Fe/H] move the spectrum at every point.
    assert np.all(np.abs(grads[:, SPACE.index("teff")]) > 0)
    assert np.all(np.abs(grads[:, SPACE.index("feh")]) > 0)
    # Li (6709.7 Å) and Ca (6719.5 Å) have lines here: their gradients are non-zero.
    assert np.all(np.abs(grads[:, SPACE.index("li_fe")]) > 0)
    assert np.all(np.abs(grads[:, SPACE.index("ca_fe")]) > 0)
