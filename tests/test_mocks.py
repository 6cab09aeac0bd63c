"""Mocks made many at a time equal mocks made one by one, and keep their truth and noise."""

import numpy as np
import pytest

from stellarinf.validation.mocks import make_mock, noiseless_flux, noiseless_fluxes, random_truth, with_noise
from stellarinf.validation.setups import analytic_setup


@pytest.fixture(scope="module")
def setup():
    model, wl = analytic_setup()
    rng = np.random.default_rng(3)
    return model, wl, [random_truth(model.label_space, rng) for _ in range(3)]


def test_batched_mocks_equal_one_by_one_across_a_padded_last_batch(setup):
    model, wl, truths = setup
    many = noiseless_fluxes(model, wl, truths, 20000.0, batch=2)  # batches of 2: the second is padded
    assert many.shape == (3, len(wl))
    for row, truth in zip(many, truths):
        np.testing.assert_allclose(row, noiseless_flux(model, wl, truth, 20000.0), rtol=0, atol=1e-12)
    assert np.ptp(many, axis=0).max() > 1e-3  # three different stars, not one star three times


def test_noise_from_a_noiseless_flux_is_the_same_mock_as_make_mock(setup):
    model, wl, truths = setup
    flux = noiseless_flux(model, wl, truths[0], 20000.0)
    a = with_noise(wl, flux, truths[0], snr=80.0, resolution=20000.0, seed=5)
    b = make_mock(model, wl, truths[0], snr=80.0, resolution=20000.0, seed=5)
    np.testing.assert_array_equal(a.flux, b.flux)
    assert a.meta["truth"] == truths[0] and np.allclose(a.sigma, 1 / 80.0)


def test_missing_parameters_and_a_bad_batch_are_refused(setup):
    model, wl, truths = setup
    with pytest.raises(ValueError, match="miss"):
        noiseless_fluxes(model, wl, [{"teff": 5000.0}], 20000.0)
    with pytest.raises(ValueError, match="batch"):
        noiseless_fluxes(model, wl, truths, 20000.0, batch=0)
