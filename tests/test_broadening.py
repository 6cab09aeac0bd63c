import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

import stellarinf  # noqa: F401  (enables float64)
from stellarinf.errors import SpectrumError, WavelengthError
from stellarinf.observe.broadening import (
    FWHM_PER_SIGMA,
    broaden,
    broadening_kernel,
    interpolation_weights,
    lsf_sigma_for,
    macroturbulence_profile,
    resample,
    rotation_profile,
    velocity_step,
)
from stellarinf.wavelength import SPEED_OF_LIGHT_KMS, log_uniform_grid

C = SPEED_OF_LIGHT_KMS


def gray_rotation(v, vsini, eps):
    """Gray (2005) rotation profile, numpy, written out independently of the package."""
    one = np.clip(1.0 - (v / vsini) ** 2, 0.0, None)
    return (2 * (1 - eps) * np.sqrt(one) + 0.5 * np.pi * eps * one) / (np.pi * vsini * (1 - eps / 3))


def gray_macro(v, zeta):
    """Radial-tangential macroturbulence (equal parts), numpy: (2/(√π ζ)) [exp(-x²) - √π|x| erfc|x|]."""
    from scipy.special import erfc

    x = np.abs(v) / zeta
    return 2 / (np.sqrt(np.pi) * zeta) * (np.exp(-(x**2)) - np.sqrt(np.pi) * x * erfc(x))


def offsets(kernel, dv):
    half = (kernel.shape[0] - 1) // 2
    return dv * np.arange(-half, half + 1)


def line_spectrum(n=1601, dv=1.0):
    """Flat continuum with a few absorption lines well inside the edges."""
    v = dv * (np.arange(n) - n // 2)
    flux = np.ones(n)
    for centre, depth, width in [(-300.0, 0.6, 2.0), (0.0, 0.8, 1.0), (250.0, 0.3, 5.0)]:
        flux -= depth * np.exp(-0.5 * ((v - centre) / width) ** 2)
    return flux


def test_velocity_step_of_log_uniform_grid():
    grid = log_uniform_grid(6000.0, 6100.0, 50_000.0, 4.0)
    assert velocity_step(grid) == pytest.approx(C / (50_000.0 * 4.0), rel=1e-9)
    with pytest.raises(WavelengthError, match="not uniform in ln λ"):
        velocity_step(np.linspace(6000.0, 6100.0, 1000))
    with pytest.raises(WavelengthError, match="increase"):
        velocity_step(grid[::-1])


def test_analytic_profiles_have_unit_integral_and_expected_moments():
    eps, vsini, zeta = 0.6, 30.0, 4.0
    v = np.linspace(-40, 40, 801)
    np.testing.assert_allclose(
        np.asarray(rotation_profile(v, vsini, eps)), gray_rotation(v, vsini, eps), rtol=1e-12, atol=1e-15
    )
    np.testing.assert_allclose(np.asarray(macroturbulence_profile(v, zeta)), gray_macro(v, zeta), rtol=1e-9, atol=1e-15)
    area, _ = integrate.quad(gray_rotation, -vsini, vsini, args=(vsini, eps))
    var, _ = integrate.quad(lambda u: u**2 * gray_rotation(u, vsini, eps), -vsini, vsini)
    assert area == pytest.approx(1.0, abs=1e-7)
    assert var == pytest.approx(vsini**2 * ((1 - eps) / 4 + 2 * eps / 15) / (1 - eps / 3), rel=1e-6)
    area, _ = integrate.quad(gray_macro, -60, 60, args=(zeta,), points=[0.0])
    var, _ = integrate.quad(lambda u: u**2 * gray_macro(u, zeta), -60, 60, points=[0.0])
    assert area == pytest.approx(1.0, abs=1e-7)
    assert var == pytest.approx(zeta**2 / 4, rel=1e-6)  # ⟨v²⟩ = ζ²/4 for equal radial/tangential parts


@pytest.mark.parametrize(
    "kwargs",
    [dict(resolution=30_000.0), dict(vsini=25.0), dict(vmacro=6.0), dict(resolution=20_000.0, vsini=12.0, vmacro=4.0)],
)
def test_each_kernel_conserves_flux_and_equivalent_width(kwargs):
    dv = 1.0
    flux = line_spectrum(dv=dv)
    out = np.asarray(broaden(flux, dv, **kwargs))
    # unit-sum kernels + flat (edge-padded) ends: total flux and the summed equivalent width are unchanged
    np.testing.assert_allclose(out.sum(), flux.sum(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.sum(1 - out) * dv, np.sum(1 - flux) * dv, rtol=1e-10)
    assert out.min() > flux.min()  # lines got shallower
    kernel = broadening_kernel(dv, **kwargs)
    assert float(jnp.sum(kernel)) == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.asarray(kernel) >= 0)


def test_gaussian_lsf_of_a_delta_line_has_fwhm_c_over_r():
    dv, resolution = 0.5, 30_000.0
    n = 801
    flux = np.ones(n)
    flux[n // 2] = 0.0  # delta-function absorption line
    depth = 1.0 - np.asarray(broaden(flux, dv, resolution=resolution))
    v = dv * (np.arange(n) - n // 2)
    # FWHM from the half-maximum crossings (linear interpolation on the right wing)
    half = depth.max() / 2
    right = np.where(depth[n // 2 :] < half)[0][0] + n // 2
    x0, x1, y0, y1 = v[right - 1], v[right], depth[right - 1], depth[right]
    fwhm = 2 * (x0 + (half - y0) * (x1 - x0) / (y1 - y0))
    assert fwhm == pytest.approx(C / resolution, rel=5e-3)
    # and the second moment is exactly σ² (a sampled Gaussian with σ ≫ dv)
    sigma = np.sqrt(np.sum(depth * v**2) / np.sum(depth))
    assert sigma * FWHM_PER_SIGMA == pytest.approx(C / resolution, rel=1e-7)


def test_rotation_kernel_matches_gray_profile_and_has_width_vsini():
    dv, vsini, eps = 0.25, 20.0, 0.6
    kernel = np.asarray(broadening_kernel(dv, vsini=vsini, limb_darkening=eps))
    v = offsets(kernel, dv)
    # each tap is the integral of G over its pixel's velocity bin
    expected = [integrate.quad(gray_rotation, x - dv / 2, x + dv / 2, args=(vsini, eps))[0] for x in v[::7]]
    np.testing.assert_allclose(kernel[::7], expected, rtol=1e-7, atol=1e-12)
    # support ends at ±v sin i (to within the half-pixel of the bin)
    support = v[kernel > 1e-14]
    assert support.max() == pytest.approx(vsini, abs=dv / 2 + 1e-9)
    assert support.min() == pytest.approx(-vsini, abs=dv / 2 + 1e-9)
    # variance: analytic v sin i² m₂(ε) plus the dv²/12 of the pixel bin
    m2 = ((1 - eps) / 4 + 2 * eps / 15) / (1 - eps / 3)
    assert np.sum(kernel * v**2) == pytest.approx(vsini**2 * m2 + dv**2 / 12, rel=1e-4)


def test_macroturbulence_kernel_matches_gray_profile():
    dv, zeta = 0.25, 5.0
    kernel = np.asarray(broadening_kernel(dv, vmacro=zeta))
    v = offsets(kernel, dv)
    # each tap is the integral of M over its pixel's velocity bin (renormalised after truncation at ±5ζ)
    expected = [integrate.quad(gray_macro, x - dv / 2, x + dv / 2, args=(zeta,))[0] for x in v[::5]]
    np.testing.assert_allclose(kernel[::5], expected, rtol=1e-6, atol=1e-12)


def test_combined_kernel_has_exact_second_moment():
    # variances add under convolution; the LSF absorbs the pixel-binning excess of the other kernels
    dv, resolution, vsini, zeta, eps = 1.0, 25_000.0, 8.0, 3.0, 0.6
    kernel = np.asarray(broadening_kernel(dv, resolution=resolution, vsini=vsini, vmacro=zeta, limb_darkening=eps))
    v = offsets(kernel, dv)
    m2 = ((1 - eps) / 4 + 2 * eps / 15) / (1 - eps / 3)
    expected = (C / resolution / FWHM_PER_SIGMA) ** 2 + vsini**2 * m2 + zeta**2 / 4
    assert np.sum(kernel * v**2) == pytest.approx(expected, rel=1e-6)


def test_zero_widths_are_identity_and_small_widths_tend_to_identity():
    flux = line_spectrum()
    np.testing.assert_array_equal(np.asarray(broaden(flux, 1.0)), flux)
    # traced zeros go through the kernels: the width floor makes them exact deltas
    out = jax.jit(lambda s, z: broaden(flux, 1.0, vsini=s, vmacro=z, max_velocity=20.0))(0.0, 0.0)
    np.testing.assert_allclose(np.asarray(out), flux, atol=1e-14)
    small = broaden(flux, 1.0, vsini=0.05, vmacro=0.05, max_velocity=20.0)
    np.testing.assert_allclose(np.asarray(small), flux, atol=1e-12)


@pytest.mark.parametrize("widths", [(0.0, 0.0, 0.0), (0.0, 0.3, 0.2), (5.0, 40.0, 9.0)])
def test_gradients_are_finite_and_match_finite_differences(widths):
    flux = jnp.asarray(line_spectrum(n=801))
    weights = jnp.linspace(-1.0, 1.0, 801) ** 2

    def loss(p):
        out = broaden(flux, 1.0, lsf_sigma=p[0], vsini=p[1], vmacro=p[2], max_velocity=120.0)
        return jnp.sum(weights * out**2)

    loss = jax.jit(loss)
    p = jnp.asarray(widths, dtype=jnp.float64)
    grad = np.asarray(jax.jit(jax.grad(loss))(p))
    assert np.all(np.isfinite(grad))
    if widths[1] > 1.0:
        h = 1e-5
        for i in range(3):
            e = np.zeros(3)
            e[i] = h
            fd = (loss(p + e) - loss(p - e)) / (2 * h)
            assert grad[i] == pytest.approx(float(fd), rel=1e-4, abs=1e-8)
    # the resolution parametrisation is differentiable too
    g = jax.grad(lambda r: jnp.sum(weights * broaden(flux, 1.0, resolution=r, vsini=p[1], max_velocity=120.0) ** 2))(
        30_000.0
    )
    assert np.isfinite(float(g))


def test_batched_flux_is_broadened_row_by_row():
    flux = np.stack([line_spectrum(), 1 - 0.5 * (1 - line_spectrum())])
    out = np.asarray(broaden(flux, 1.0, vsini=15.0, resolution=40_000.0))
    for i in range(2):
        np.testing.assert_allclose(
            out[i], np.asarray(broaden(flux[i], 1.0, vsini=15.0, resolution=40_000.0)), atol=1e-13
        )


def test_lsf_sigma_for_degrades_model_resolution():
    sigma = float(lsf_sigma_for(20_000.0, 50_000.0))
    expected = C / FWHM_PER_SIGMA * np.sqrt(1 / 20_000.0**2 - 1 / 50_000.0**2)
    assert sigma == pytest.approx(expected, rel=1e-12)
    # broadening an R=50k spectrum by that σ gives R=20k: variances add
    dv = 0.5
    delta = np.ones(1201)
    delta[600] = 0.0
    twice = broaden(broaden(delta, dv, resolution=50_000.0), dv, lsf_sigma=sigma)
    once = broaden(delta, dv, resolution=20_000.0)
    np.testing.assert_allclose(np.asarray(twice), np.asarray(once), atol=1e-9)
    assert float(lsf_sigma_for(20_000.0)) == pytest.approx(C / 20_000.0 / FWHM_PER_SIGMA)
    with pytest.raises(SpectrumError, match="cannot be sharpened"):
        lsf_sigma_for(60_000.0, 50_000.0)


def test_resample_linear_function_is_exact():
    wl_in = np.linspace(5000.0, 5010.0, 101)
    wl_out = np.sort(np.random.default_rng(1).uniform(5000.0, 5010.0, 57))
    flux = np.stack([3.0 + 0.2 * wl_in, -1.0 * wl_in])
    out = np.asarray(resample(wl_in, flux, wl_out))
    np.testing.assert_allclose(out, np.stack([3.0 + 0.2 * wl_out, -1.0 * wl_out]), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(resample(wl_in, flux[0], wl_out)), 3.0 + 0.2 * wl_out, rtol=1e-13)
    idx, t = interpolation_weights(wl_in, wl_out)
    np.testing.assert_allclose(flux[0][idx] * (1 - t) + flux[0][idx + 1] * t, out[0], rtol=1e-13)


def test_broadening_many_spectra_at_once_equals_one_by_one_with_a_long_kernel():
    """A batch of spectra (leading axis) with a kernel long enough for the FFT path: each row as alone."""
    rng = np.random.default_rng(0)
    flux = 1.0 - 0.5 * rng.random((5, 4000))
    kw = dict(vsini=60.0, resolution=20000.0, max_velocity=200.0)
    batch = np.asarray(broaden(flux, 0.5, **kw))
    for row, out in zip(flux, batch):
        np.testing.assert_allclose(out, np.asarray(broaden(row, 0.5, **kw)), rtol=1e-10, atol=1e-12)
