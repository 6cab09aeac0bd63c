"""An instrument whose resolving power varies with wavelength: R(λ) given per pixel (issue 17, item 2).

The observation model applies the narrowest LSF as a stationary Gaussian and each pixel's remaining width as a
banded matrix folded into its resampling row; these tests check that this is the constant-R model where R is
constant, that a line comes out with the Gaussian width of the R at its own wavelength, that it differentiates, and
that bad profiles are refused with a way forward.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stellarinf.errors import SpectrumError
from stellarinf.io.spectrum import Spectrum, read_spectrum, write_spectrum_fits
from stellarinf.labels import LabelSpace
from stellarinf.observe.broadening import FWHM_PER_SIGMA, broaden, discrete_gaussian_taps, variable_lsf_apply
from stellarinf.observe.model import ObservationModel
from stellarinf.observe.multi_arm import build_multi_arm
from stellarinf.validation.analytic import AnalyticLineModel
from stellarinf.wavelength import SPEED_OF_LIGHT_KMS, log_uniform_grid

C = SPEED_OF_LIGHT_KMS
SPACE = LabelSpace.from_bounds({"teff": (4500.0, 6500.0), "logg": (2.0, 5.0), "feh": (-1.5, 0.5), "vmic": (0.5, 2.5)})
LABELS = {"teff": 5600.0, "logg": 4.2, "feh": -0.2, "vmic": 1.1}
LINES = (6570.0, 6630.0)
# the model's range starts below the data by less than the kernel's reach, so every model's fine grid starts at
# the model's edge: the fine grids of models with different LSFs coincide and their predictions compare exactly
WL = log_uniform_grid(6540.5, 6659.5, 60_000, 4.0)
FIXED = {"vsini": 0.0, "vmacro": 0.0}


@pytest.fixture(scope="module")
def emulator():
    # unbroadened weak lines (optical depth ~0.006): the depth profile is a Gaussian of the thermal + vmic width
    return AnalyticLineModel(SPACE, (6540.0, 6660.0), resolution=None, lines=[(c, -2.0, "Fe") for c in LINES])


def observe(emulator, resolution, **kw):
    spec = Spectrum(WL, np.ones(WL.size), np.full(WL.size, 0.01), resolution=resolution)
    return ObservationModel(emulator, spec, continuum_degree=-1, fixed=FIXED, **kw)


def predict(om, **extra):
    return np.asarray(om.predict(dict(LABELS, rv=0.0, **extra)))


def line_width(flux, centre):
    """Second moment (km/s) of the depth profile within ±1.5 Å of ``centre``."""
    sel = np.abs(WL - centre) < 1.5
    depth, v = 1.0 - flux[sel], np.log(WL[sel] / centre) * C
    mean = np.sum(v * depth) / np.sum(depth)
    return float(np.sqrt(np.sum((v - mean) ** 2 * depth) / np.sum(depth)))


def sigma_of(r):
    return C / (FWHM_PER_SIGMA * r)


def test_discrete_gaussian_taps_have_the_exact_variance_down_to_a_delta():
    sig = np.array([0.0, 0.05, 0.4, 1.0, 1.9, 2.5, 4.0])
    taps = discrete_gaussian_taps(sig, 30)
    k = np.arange(-30, 31)
    np.testing.assert_allclose(taps.sum(axis=1), 1.0, atol=1e-14)
    np.testing.assert_allclose(taps @ k, 0.0, atol=1e-14)
    np.testing.assert_allclose(taps @ k**2, sig**2, rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(taps[0], np.eye(61)[30])  # σ = 0: exactly a delta
    # smoothing point by point with one σ everywhere is the stationary convolution (away from the edges)
    x = np.sin(np.arange(400) / 7.0) + (np.arange(400) == 200)
    smooth = variable_lsf_apply(x, np.full(400, 2.5))
    np.testing.assert_allclose(
        smooth[30:-30], np.asarray(broaden(jnp.asarray(x), 1.0, lsf_sigma=2.5))[30:-30], atol=1e-7
    )


def test_constant_profile_is_the_scalar_R_and_a_step_profile_is_each_R_where_it_holds(emulator):
    scalar = observe(emulator, 25_000.0)
    constant = observe(emulator, np.full(WL.size, 25_000.0))
    assert constant.resolution == 25_000.0 and constant.resolution_range is None  # one R: the stationary path
    np.testing.assert_array_equal(predict(constant), predict(scalar))

    # R = 25,000 below 6600 Å and 40,000 above: the banded path (stationary σ of 40,000, the rest per pixel)
    step = np.where(WL < 6600.0, 25_000.0, 40_000.0)
    om = observe(emulator, step)
    assert om.resolution_range == (25_000.0, 40_000.0) and om.interp_weight.shape[1] > 4
    assert om.resolution_record == {"per_pixel": True, "min": 25_000.0, "median": 25_000.0, "max": 40_000.0}
    pred = predict(om)
    for centre, r in ((6570.0, 25_000.0), (6630.0, 40_000.0)):
        ref = predict(observe(emulator, r))
        near = np.abs(WL - centre) < 1.5
        depth = np.max(1.0 - ref[near])
        assert depth > 1e-3  # a line is there
        # the same to 1e-5 of the line depth (the two discretisations differ only in kernel tails beyond 6σ)
        np.testing.assert_allclose(pred[near], ref[near], rtol=0, atol=1e-5 * depth)


def test_a_line_has_the_gaussian_width_of_R_at_its_own_wavelength(emulator):
    r_of = lambda wl: np.interp(wl, [WL[0], WL[-1]], [20_000.0, 40_000.0])  # noqa: E731
    om = observe(emulator, r_of(WL))
    pred = predict(om)
    intrinsic2 = 1.44 * LABELS["teff"] / 5000.0 + LABELS["vmic"] ** 2  # the analytic model's line σ² (km/s)²
    widths = []
    for centre in LINES:
        expected = np.sqrt(intrinsic2 + sigma_of(r_of(centre)) ** 2)
        widths.append(line_width(pred, centre))
        assert widths[-1] == pytest.approx(expected, rel=5e-4)
    # and not what one R for the whole arm would give (the median R is off at both lines by several %)
    flat = predict(observe(emulator, om.resolution))
    for centre, w in zip(LINES, widths):
        assert abs(line_width(flat, centre) / w - 1.0) > 0.03
    # rotation still acts on top of R(λ), and conserves the equivalent width
    broad = predict(om, vsini=20.0)
    assert line_width(broad, 6630.0) > widths[1] + 2.0
    near = np.abs(WL - 6630.0) < 1.5
    assert np.sum(1.0 - broad[near]) == pytest.approx(np.sum(1.0 - pred[near]), rel=1e-3)


def test_gradients_with_respect_to_labels_are_finite(emulator):
    spec = Spectrum(
        WL,
        np.asarray(emulator.flux(jnp.asarray(SPACE.array_from_mapping(LABELS)), jnp.asarray(WL))),
        np.full(WL.size, 0.01),
        resolution=np.interp(WL, [WL[0], WL[-1]], [20_000.0, 40_000.0]),
    )
    om = ObservationModel(emulator, spec, continuum="marginalise")
    params = dict(LABELS, rv=3.0, vsini=4.0, vmacro=2.0)
    value, grad = jax.jit(jax.value_and_grad(om.log_likelihood))(params)
    assert np.isfinite(float(value))
    for name in (*LABELS, "rv", "vsini", "vmacro"):
        assert np.isfinite(float(grad[name])), name
    assert all(float(grad[n]) != 0.0 for n in ("teff", "feh", "rv"))


def test_bad_profiles_are_refused_with_the_way_forward(emulator):
    r = np.full(WL.size, 25_000.0)
    ones, sig = np.ones(WL.size), np.full(WL.size, 0.01)
    with pytest.raises(SpectrumError, match=f"one R per pixel \\({WL.size} values\\), got shape \\(10,\\)"):
        Spectrum(WL, ones, sig, resolution=r[:10])
    with pytest.raises(SpectrumError, match="finite and > 0 at every pixel; 1 are not \\(first: pixel 7, R = -5"):
        Spectrum(WL, ones, sig, resolution=np.where(np.arange(WL.size) == 7, -5.0, r))
    with pytest.raises(SpectrumError, match="first: pixel 3, R = nan\\); fill those pixels"):
        Spectrum(WL, ones, sig, resolution=np.where(np.arange(WL.size) == 3, np.nan, r))
    seg = (WL > 6600.0).astype(int)
    with pytest.raises(SpectrumError, match="resolution of the arm 1 needs one R per pixel"):
        Spectrum(WL, ones, sig, segments=seg, resolution={0: 20_000.0, 1: r})
    spec = Spectrum(WL, ones, sig)
    with pytest.raises(SpectrumError, match="one R per pixel"):
        ObservationModel(emulator, spec, resolution=r[1:], continuum_degree=-1)
    varying = np.linspace(20_000.0, 30_000.0, WL.size)
    with pytest.raises(SpectrumError, match="fit_resolution fits one constant R.*resolution=<R>"):
        observe(emulator, varying, fit_resolution=True)
    sharp = AnalyticLineModel(SPACE, (6540.0, 6660.0), resolution=25_000.0, lines=[(6570.0, -2.0, "Fe")])
    with pytest.raises(SpectrumError, match="R=30000 is higher than the model's R=25000"):
        observe(sharp, varying)


def test_profile_survives_cropping_arms_and_a_fits_round_trip(emulator, tmp_path):
    r = np.interp(WL, [WL[0], WL[-1]], [20_000.0, 40_000.0])
    seg = (WL > 6600.0).astype(int)
    spec = Spectrum(WL, np.ones(WL.size), np.full(WL.size, 0.01), segments=seg, resolution=r)
    arms = spec.arms()
    np.testing.assert_array_equal(arms[1].resolution, r[seg == 1])
    multi = Spectrum.from_arms(arms)
    assert multi.provenance()["resolution"]["0"]["per_pixel"]
    write_spectrum_fits(tmp_path / "s.fits", multi)
    back = read_spectrum(tmp_path / "s.fits")
    np.testing.assert_array_equal(back.resolution[0], r[seg == 0])
    np.testing.assert_array_equal(back.resolution[1], r[seg == 1])
    # each arm is cropped to the model with its own R(λ), and observed through it
    short = AnalyticLineModel(SPACE, (6545.0, 6655.0), resolution=None, lines=[(c, -2.0, "Fe") for c in LINES])
    with pytest.warns(UserWarning, match="cropped"):
        cropped, om = build_multi_arm(short, multi, continuum_degree=-1, fixed=FIXED)
    for arm, s in zip(om.arms, cropped.arms()):
        assert arm.resolution_range == (float(s.resolution.min()), float(s.resolution.max()))
    assert np.isfinite(float(om.log_likelihood(dict(LABELS, rv=0.0))))
