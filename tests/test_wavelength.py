import numpy as np
import pytest
from astropy import units as u

from stellarinf.errors import WavelengthError
from stellarinf.wavelength import WINDOWS, air_to_vacuum, as_angstrom, get_window, log_uniform_grid, vacuum_to_air


def test_halpha_air_vacuum():
    # H-alpha: 6562.80 Å in air, 6564.61 Å in vacuum (NIST).
    assert vacuum_to_air(6564.614) == pytest.approx(6562.801, abs=0.01)
    assert air_to_vacuum(6562.801) == pytest.approx(6564.614, abs=0.01)


def test_air_vacuum_round_trip():
    lam = np.linspace(3000, 25000, 2000)
    np.testing.assert_allclose(air_to_vacuum(vacuum_to_air(lam)), lam, atol=1e-8)


def test_quantity_conversion():
    np.testing.assert_allclose(as_angstrom(656.0 * u.nm), 6560.0)
    np.testing.assert_allclose(as_angstrom(np.array([1.5]) * u.um), [15000.0])
    with pytest.raises(WavelengthError):
        as_angstrom(3.0 * u.kg)


def test_log_uniform_grid_sampling():
    w = get_window("galah-red")
    grid = w.grid()
    dlnl = np.diff(np.log(grid))
    np.testing.assert_allclose(dlnl, 1 / (28000 * 2.5), rtol=1e-9)
    assert grid[0] == 6480.0 and grid[-1] <= 6740.0 and grid[-1] > 6740.0 * (1 - 2 / 70000)
    with pytest.raises(WavelengthError, match="unknown window"):
        get_window("nope")
    with pytest.raises(WavelengthError):
        log_uniform_grid(10, 5, 1000)
    assert set(WINDOWS) >= {"galah-red", "gaia-rvs"}


def test_oversampled_grid_holds_the_instrument_pixels_and_every_point_between():
    w = get_window("gaia-rvs")
    pixels = w.grid()
    for k in (2, 3):
        fine = w.grid(oversample=k)
        assert fine.size == k * (pixels.size - 1) + 1 and fine[0] == pixels[0]
        np.testing.assert_allclose(fine[::k], pixels, rtol=1e-14)  # the instrument's pixels are every k-th sample
        np.testing.assert_allclose(np.diff(np.log(fine)), 1 / (11_500 * w.pixels_per_resolution * k), rtol=1e-9)
    np.testing.assert_array_equal(w.grid(oversample=1), pixels)
    for bad in (0, 1.5):
        with pytest.raises(WavelengthError, match="oversample"):
            w.grid(oversample=bad)
