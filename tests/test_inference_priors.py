"""Prior parsing, resolution against a model's bounds, and the bad-input errors."""

import math

import numpy as np
import pytest
from scipy import integrate

from stellarinf.errors import StellarinfError
from stellarinf.inference.priors import GAUSSIAN, UNIFORM, Prior, PriorArrays, PriorError, parse_prior, resolve_priors

BOUNDS = {"teff": (4000.0, 7000.0), "logg": (1.0, 5.0), "feh": (-2.0, 0.5), "rv": (-300.0, 300.0)}


@pytest.mark.parametrize("text", ["logg=4.4+-0.1", "logg = 4.4 +/- 0.1", "logg=4.4±0.1", "LOGG=4.4+-1e-1"])
def test_gaussian_forms(text):
    req = parse_prior(text)
    assert (req.name, req.kind, req.a, req.b) == ("logg", GAUSSIAN, 4.4, 0.1)


@pytest.mark.parametrize("text", ["teff=5000:6000", "teff=5000..6000"])
def test_uniform_forms(text):
    req = parse_prior(text)
    assert (req.name, req.kind, req.a, req.b) == ("teff", UNIFORM, 5000.0, 6000.0)


@pytest.mark.parametrize(
    "text, words",
    [
        ("logg", "cannot parse"),
        ("logg=4.4", "cannot parse"),
        ("logg=4.4+-0", "positive"),
        ("logg=4.4+--0.1", "positive"),
        ("teff=6000:5000", "lower < upper"),
        ("logg=abc+-0.1", "cannot parse"),
    ],
)
def test_bad_syntax_names_the_fix(text, words):
    with pytest.raises(PriorError, match=words) as exc:
        parse_prior(text)
    assert isinstance(exc.value, StellarinfError)
    assert "logg=4.4+-0.1" in str(exc.value) or "e.g." in str(exc.value)


def test_default_is_uniform_over_the_box_and_overrides_apply():
    pri = resolve_priors(BOUNDS, ["logg=4.4+-0.1", "teff=5000:6000"])
    assert pri["feh"] == Prior(UNIFORM, -2.0, 0.5)
    assert pri["logg"] == Prior(GAUSSIAN, 1.0, 5.0, 4.4, 0.1)  # truncated to the box
    assert pri["teff"] == Prior(UNIFORM, 5000.0, 6000.0)
    # mapping form
    assert resolve_priors(BOUNDS, {"logg": (4.4, 0.1)})["logg"].sigma == 0.1


def test_unknown_label_and_out_of_box_priors_raise_clear_errors():
    with pytest.raises(PriorError, match=r"unknown parameter 'lgg'.*teff, logg, feh, rv"):
        resolve_priors(BOUNDS, ["lgg=4.4+-0.1"])
    with pytest.raises(PriorError, match="outside the model's range"):
        resolve_priors(BOUNDS, ["logg=6.0+-0.1"])
    with pytest.raises(PriorError, match="reaches outside"):
        resolve_priors(BOUNDS, ["teff=3000:5000"])
    with pytest.raises(PriorError, match="two priors"):
        resolve_priors(BOUNDS, ["logg=4.4+-0.1", "logg=4.0+-0.2"])
    # a Gaussian just beyond the edge is still usable (truncated)
    assert resolve_priors(BOUNDS, ["logg=5.05+-0.1"])["logg"].kind == GAUSSIAN


def test_truncated_gaussian_density_is_normalised_on_the_box():
    pri = resolve_priors(BOUNDS, ["logg=4.8+-0.3"])
    pa = PriorArrays.from_priors(pri, ["logg"])
    total, _ = integrate.quad(lambda x: math.exp(float(pa.log_prob(np.array([x])))), 1.0, 5.0)
    assert total == pytest.approx(1.0, rel=1e-6)
    pa_u = PriorArrays.from_priors(pri, ["teff"])
    assert float(pa_u.log_prob(np.array([5500.0]))) == pytest.approx(-math.log(3000.0))


def test_prior_draws_stay_in_the_box_and_follow_the_gaussian():
    pri = resolve_priors(BOUNDS, ["logg=4.4+-0.1"])
    pa = PriorArrays.from_priors(pri, ["teff", "logg"])
    d = pa.sample(np.random.default_rng(1), 4000)
    assert np.all((d[:, 0] >= 4000) & (d[:, 0] <= 7000))
    assert abs(d[:, 1].mean() - 4.4) < 0.01 and abs(d[:, 1].std() - 0.1) < 0.01
