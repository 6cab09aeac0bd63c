"""Issue #23: Emulator.flux validates eager calls (training box, range), converts Quantity wavelengths, and keeps
an unchecked fast path for fits; Spectrum converts Quantity inputs instead of stripping their units."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from astropy import units as u
from toy_grid import TOY_RANGE, TOY_SPACE

from stellarinf.emulators import Emulator, PayneConfig, PayneMLP
from stellarinf.errors import LabelError, SpectrumError, WavelengthError
from stellarinf.io.spectrum import Spectrum

WL = np.linspace(TOY_RANGE[0], TOY_RANGE[1], 90)
INSIDE = np.array([5000.0, 3.0, -0.5])


@pytest.fixture(scope="module")
def emu():
    return Emulator(
        PayneMLP(PayneConfig(3, WL.size, (8, 8)), jax.random.key(6)), TOY_SPACE, TOY_RANGE, training_wavelength=WL
    )


def test_flux_outside_the_training_box_is_refused_eagerly(emu):
    outside = INSIDE.copy()
    outside[0] = 50000.0
    with pytest.raises(LabelError, match="teff=50000.*outside the allowed range"):
        emu.flux(outside, WL[10:20])
    with pytest.raises(WavelengthError, match="outside the model's range"):
        emu.flux(INSIDE, WL[10:20] + 1000.0)
    # the named fast path does not check, and agrees with the checked one inside the box
    np.testing.assert_array_equal(
        np.asarray(emu.flux_unchecked(INSIDE, WL[10:20])), np.asarray(emu.flux(INSIDE, WL[10:20]))
    )
    assert np.all(np.isfinite(np.asarray(emu.flux_unchecked(outside, WL[10:20]))))


def test_flux_under_jit_vmap_grad_is_not_checked_and_unchanged(emu):
    wl = jnp.asarray(WL[5:30])
    eager = np.asarray(emu.flux(INSIDE, wl))
    np.testing.assert_allclose(np.asarray(jax.jit(emu.flux)(jnp.asarray(INSIDE), wl)), eager, atol=1e-6)
    batch = np.asarray(jax.vmap(emu.flux, in_axes=(0, None))(jnp.stack([jnp.asarray(INSIDE)] * 2), wl))
    np.testing.assert_allclose(batch[1], eager, atol=1e-6)
    # abstract values cannot be checked: a traced call outside the box computes (as fits need), it does not raise
    far = jnp.asarray([50000.0, 3.0, -0.5])
    np.testing.assert_allclose(
        np.asarray(jax.jit(emu.flux)(far, wl)), np.asarray(emu.flux_unchecked(far, wl)), atol=1e-6
    )
    g = jax.grad(lambda x: jnp.sum(emu.flux(x, wl)))(jnp.asarray(INSIDE))
    assert g.shape == (3,) and np.all(np.isfinite(np.asarray(g)))


def test_quantity_wavelengths_are_converted_not_stripped(emu):
    nm = WL[10:20] / 10.0 * u.nm
    np.testing.assert_allclose(np.asarray(emu.flux(INSIDE, nm)), np.asarray(emu.flux(INSIDE, WL[10:20])), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(emu.error(nm)), np.asarray(emu.error(WL[10:20])))
    with pytest.raises(WavelengthError, match="cannot convert"):
        emu.flux(INSIDE, WL[10:20] * u.kg)


def test_spectrum_converts_quantities():
    wl = np.linspace(6500.0, 6540.0, 50)
    flux = 1.0 + 0.1 * np.sin(wl)
    spec = Spectrum(
        wl / 10.0 * u.nm, flux * u.erg / u.s / u.cm**2 / u.AA, 0.01 * flux * 1e-3 * u.erg / u.s / u.cm**2 / u.nm
    )
    np.testing.assert_allclose(spec.wavelength, wl, rtol=1e-14)
    np.testing.assert_allclose(spec.sigma, 1e-6 * flux, rtol=1e-12)  # 1e-5 flux per nm = 1e-6 flux per Å
    assert (spec.input_wavelength_unit, spec.wavelength_unit_source) == ("nm", "caller")
    assert u.Unit(spec.meta["flux_unit"]) == u.erg / u.s / u.cm**2 / u.AA
    freq = (wl * u.AA).to(u.THz, equivalencies=u.spectral())[::-1]  # frequency axis, descending in λ order
    np.testing.assert_allclose(Spectrum(freq[::-1], flux, np.full(50, 0.01)).wavelength, wl, rtol=1e-12)
    with pytest.raises(SpectrumError, match="cannot be converted to Å"):
        Spectrum(wl * u.s, flux, np.full(50, 0.01))
    with pytest.raises(SpectrumError, match="same \\(or convertible\\) units"):
        Spectrum(wl, flux * u.erg, np.full(50, 0.01) * u.s)
