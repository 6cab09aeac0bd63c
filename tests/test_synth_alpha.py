"""[α/Fe] as a label: the ATLAS9 α-enhanced atmospheres and the α elements' abundances move together."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stellarinf import enable_float64
from stellarinf.errors import LabelError
from stellarinf.synth import fine_grid, make_synthesizer, synthesize
from stellarinf.synth.abundances import ALPHA_ELEMENTS
from stellarinf.synth.atmosphere import DEPTH_INDEX, interpolate_atmosphere
from stellarinf.synth.data import atmosphere_grid
from stellarinf.synth.synthesize import _unpack

enable_float64()
FIELDS = ("log_temperature", "log_pressure", "log_ne", "log_rhox")


def _logs(atm):
    return [np.log10(np.asarray(x)) for x in (atm.temperature, atm.gas_pressure, atm.electron_density, atm.rhox)]


@pytest.mark.parametrize(
    "teff, logg, mh", [(5000.0, 4.0, -1.5), (5750.0, 4.5, 0.0), (4250.0, 1.5, -2.5), (6500.0, 3.0, 0.5)]
)
def test_alpha_planes_reproduce_the_grid_models(teff, logg, mh):
    """At grid points the interpolation returns the grid's own solar-scaled and α-enhanced models, and the two
    differ (the α planes are not the same models twice)."""
    g = atmosphere_grid()
    idx = (list(g.mh).index(mh), list(g.teff).index(teff), list(g.logg).index(logg))
    for a, alpha in enumerate(g.alpha):
        got = _logs(interpolate_atmosphere(teff, logg, mh, float(alpha)))
        for name, x in zip(FIELDS, got):
            want = getattr(g, name)[idx[0], a, idx[1], idx[2]][DEPTH_INDEX]
            np.testing.assert_allclose(x, want, rtol=0, atol=1e-12, err_msg=f"{name} at [α/M]={alpha}")
    p0, p4 = (_logs(interpolate_atmosphere(teff, logg, mh, float(a)))[1] for a in g.alpha)
    assert np.max(np.abs(p4 - p0)) > 0.005  # log P at fixed τ_Ross moves with [α/M]


def test_alpha_is_linear_between_and_beyond_the_planes():
    """Halfway is the mean of the two planes' logs; 0.2 dex beyond either plane continues the same line."""
    lo, hi = (_logs(interpolate_atmosphere(5500.0, 4.0, -1.0, a)) for a in (0.0, 0.4))
    for alpha, w in ((0.2, 0.5), (-0.2, -0.5), (0.6, 1.5)):
        got = _logs(interpolate_atmosphere(5500.0, 4.0, -1.0, alpha))
        for x, a, b in zip(got, lo, hi):
            np.testing.assert_allclose(x, (1 - w) * a + w * b, rtol=0, atol=1e-12)


def test_alpha_label_sets_the_alpha_elements_unless_they_have_their_own():
    names = ("teff", "logg", "feh", "alpha_fe", "mg_fe")
    *_, alpha, xfe = _unpack(jnp.array([5000.0, 4.0, -1.0, 0.3, -0.1]), names)
    xfe = np.asarray(xfe)
    assert float(alpha) == pytest.approx(0.3)
    for z in ALPHA_ELEMENTS:
        assert xfe[z] == pytest.approx(-0.1 if z == 12 else 0.3), z  # Mg has its own label
    assert xfe[26] == 0.0 and xfe[11] == 0.0 and xfe[6] == 0.0  # Fe, Na, C do not follow α
    *_, xfe0 = _unpack(jnp.array([5000.0, 4.0, -1.0]), ("teff", "logg", "feh"))
    assert np.all(np.asarray(xfe0) == 0.0)  # no alpha_fe label: solar-scaled, as before the label existed


def test_alpha_label_deepens_alpha_lines_not_iron():
    """Mg I 5711.09 Å (air) deepens with [α/Fe] = +0.4 by about the curve of growth's answer; with [Mg/Fe] held by
    its own label only the atmosphere changes, and the Fe I 5712.13 Å line barely moves."""
    wl = fine_grid(5711.0, 5716.0)
    names = ("teff", "logg", "feh", "vmic", "alpha_fe", "mg_fe")
    rows = np.array(
        [
            [5000.0, 4.0, -1.5, 1.0, 0.0, 0.0],
            [5000.0, 4.0, -1.5, 1.0, 0.4, 0.4],  # every α element +0.4
            [5000.0, 4.0, -1.5, 1.0, 0.4, 0.0],  # α atmosphere, Mg held solar-scaled
        ]
    )
    flux, _ = synthesize(rows, wl, label_names=names)
    mg = np.argmin(np.abs(wl - 5712.67))  # vacuum
    fe = np.argmin(np.abs(wl - 5713.71))
    depth_mg = 1.0 - flux[:, mg]
    depth_fe = 1.0 - flux[:, fe]
    assert depth_mg[1] > 1.3 * depth_mg[0]  # a 0.4 dex stronger line on the linear-to-flat curve of growth
    assert abs(depth_mg[2] - depth_mg[0]) < 0.25 * (depth_mg[1] - depth_mg[0])
    assert abs(depth_fe[1] - depth_fe[0]) < 0.25 * (depth_mg[1] - depth_mg[0])


def test_alpha_out_of_range_is_a_clear_error():
    wl = fine_grid(5711.0, 5713.0)
    names = ("teff", "logg", "feh", "alpha_fe")
    for fidelity in ("realistic", "simple"):
        with pytest.raises(LabelError, match=r"alpha_fe=0\.7 .*outside -0\.2\.\.0\.6"):
            synthesize(np.array([5000.0, 4.0, -1.0, 0.7]), wl, fidelity, label_names=names)


def test_alpha_gradients_finite_over_the_box():
    """Every label's gradient is finite at the box's corners in (Teff, log g, [Fe/H], [α/Fe]), on the α planes and
    beyond them; the [α/Fe] gradient is not zero."""
    wl = fine_grid(5711.0, 5716.0)
    names = ("teff", "logg", "feh", "vmic", "alpha_fe")
    corners = [
        [t, g, f, 1.0, a] for t, g, f, a in itertools.product((4000.0, 7000.0), (1.0, 5.0), (-2.5, 0.5), (-0.2, 0.6))
    ]
    points = np.array(corners + [[5772.0, 4.44, 0.0, 1.0, 0.0], [5000.0, 2.5, -1.0, 1.5, 0.4]])
    fn = make_synthesizer(wl, names)
    weights = jnp.asarray(np.random.default_rng(0).normal(size=wl.size))

    def scalar(labels):
        flux, cont = fn(labels)
        return jnp.sum(weights * flux) + 1e-7 * jnp.sum(jnp.log(cont))

    grads = np.asarray(jax.jit(jax.vmap(jax.grad(scalar)))(jnp.asarray(points)))
    assert np.all(np.isfinite(grads)), np.argwhere(~np.isfinite(grads))
    assert np.all(np.abs(grads[:, names.index("alpha_fe")]) > 0)
