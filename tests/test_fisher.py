"""Fisher-matrix Cramér–Rao bounds (stellarinf.fisher): analytic cases, numerics, warnings."""

import json
import math
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import stellarinf  # noqa: F401  (enables float64)
from stellarinf.fisher import (
    DegenerateFisherWarning,
    FisherError,
    IllConditionedFisherWarning,
    finite_difference_jacobian,
    fisher_from_jacobian,
    fisher_matrix,
    jacobian,
    noise_sigma,
)

C_KMS = 299_792.458


def linear_model(A, names):
    A = jnp.asarray(A)

    def f(p):
        return A @ jnp.stack([p[n] for n in names]) + 1.0

    return f


# ---------------------------------------------------------------- linear toy: exact analytic CRB
def test_linear_model_crb_equals_sigma2_inverse_AtA():
    rng = np.random.default_rng(1)
    names = ["teff", "logg", "feh", "rv"]
    A = rng.normal(size=(200, 4)) * np.array([1e-4, 0.1, 0.3, 0.02])
    sigma = 0.01
    res = fisher_matrix(linear_model(A, names), dict(teff=5000.0, logg=4.0, feh=0.0, rv=3.0), sigma, names)
    cov = sigma**2 * np.linalg.inv(A.T @ A)
    expect_marg = np.sqrt(np.diag(cov))
    expect_cond = sigma / np.sqrt(np.diag(A.T @ A))
    np.testing.assert_allclose([res.marginal()[n] for n in names], expect_marg, rtol=1e-10)
    np.testing.assert_allclose([res.conditional()[n] for n in names], expect_cond, rtol=1e-12)
    np.testing.assert_allclose(res.covariance, cov, rtol=1e-9)
    corr = cov / np.outer(expect_marg, expect_marg)
    np.testing.assert_allclose(res.correlation(), corr, atol=1e-10)
    np.testing.assert_allclose(res.jacobian, A, rtol=1e-12)
    assert res.jacobian.dtype == np.float64 and res.fisher.dtype == np.float64
    assert 1.0 <= res.condition_number < 1e3


def test_linear_model_heteroscedastic_noise_and_mask():
    rng = np.random.default_rng(2)
    names = ["a", "b"]
    A = rng.normal(size=(60, 2))
    sigma = rng.uniform(0.5, 2.0, size=60)
    mask = rng.uniform(size=60) > 0.3
    res = fisher_matrix(linear_model(A, names), dict(a=0.0, b=0.0), sigma, names, mask=mask)
    Am, sm = A[mask], sigma[mask]
    F = (Am / sm[:, None] ** 2).T @ Am
    np.testing.assert_allclose(res.fisher, F, rtol=1e-12)
    np.testing.assert_allclose([res.marginal()[n] for n in names], np.sqrt(np.diag(np.linalg.inv(F))), rtol=1e-10)


def test_single_parameter_marginal_equals_conditional():
    A = np.linspace(-1, 1, 11)[:, None]
    res = fisher_matrix(linear_model(A, ["x"]), {"x": 0.3}, 0.2, ["x"])
    expect = 0.2 / math.sqrt(np.sum(A**2))
    assert res.marginal()["x"] == pytest.approx(expect, rel=1e-12)
    assert res.conditional()["x"] == pytest.approx(expect, rel=1e-12)


# ---------------------------------------------------------------- nonlinear toy spectrum
LINES = np.array([6500.0, 6520.0, 6545.0, 6563.0, 6580.0, 6600.0, 6620.0])
STRENGTH = np.array([0.3, 0.5, 0.2, 0.6, 0.4, 0.35, 0.25])
TSENS = np.array([1.5, -0.8, 2.0, -1.2, 0.5, 1.0, -0.3])
GSENS = np.array([0.2, 0.5, -0.4, 0.1, 0.6, -0.2, 0.3])
WL = np.exp(np.linspace(np.log(6490.0), np.log(6630.0), 1500))


def toy_spectrum(p):
    """Gaussian absorption lines; depth from teff/logg/feh, Doppler shift, broadening, linear continuum."""
    wl = jnp.asarray(WL)
    t = (p["teff"] - 5500.0) / 1000.0
    depth = STRENGTH * jnp.exp(TSENS * t + GSENS * (p["logg"] - 4.0)) * 10 ** (0.8 * p["feh"])
    depth = depth / (1 + depth)
    centre = LINES * (1 + p["rv"] / C_KMS)
    width = LINES * jnp.sqrt((0.25 / 2.355 / 6563.0) ** 2 + (p["vsini"] / C_KMS) ** 2)
    prof = jnp.exp(-0.5 * ((wl[:, None] - centre) / width) ** 2)
    norm = 1.0 - jnp.sum(depth * prof, axis=1)
    x = (wl - 6560.0) / 70.0
    return norm * (p["c0"] + p["c1"] * x)


FID = dict(teff=5600.0, logg=4.3, feh=-0.2, rv=12.0, vsini=4.0, c0=1.0, c1=0.02)
STEPS = dict(teff=1.0, logg=1e-3, feh=1e-3, rv=1e-3, vsini=1e-3, c0=1e-5, c1=1e-5)


def test_jacfwd_matches_finite_differences_on_nonlinear_toy():
    free = list(FID)
    Jad = jacobian(toy_spectrum, FID, free)
    Jfd = finite_difference_jacobian(toy_spectrum, FID, free, STEPS)
    scale = np.abs(Jad).max(axis=0)
    np.testing.assert_allclose(Jad / scale, Jfd / scale, atol=1e-6)
    sigma = noise_sigma(np.asarray(toy_spectrum(FID)), 100)
    Fad = fisher_from_jacobian(Jad, sigma, free).fisher
    Ffd = fisher_from_jacobian(Jfd, sigma, free).fisher
    np.testing.assert_allclose(Fad, Ffd, rtol=1e-3, atol=1e-6 * np.sqrt(np.outer(np.diag(Fad), np.diag(Fad))).max())


@pytest.mark.parametrize("mode", ["constant", "photon"])
def test_bounds_scale_exactly_as_one_over_snr(mode):
    free = ["teff", "logg", "feh", "rv", "vsini", "c0", "c1"]
    flux = np.asarray(toy_spectrum(FID))
    results = {snr: fisher_matrix(toy_spectrum, FID, noise_sigma(flux, snr, mode), free) for snr in (20, 100, 400)}
    for n in free:
        scaled = [results[s].marginal()[n] * s for s in results]
        assert np.ptp(scaled) <= 1e-10 * scaled[0]
        scaled_c = [results[s].conditional()[n] * s for s in results]
        assert np.ptp(scaled_c) <= 1e-10 * scaled_c[0]
    # correlations and condition number do not depend on S/N
    np.testing.assert_allclose(results[20].correlation(), results[400].correlation(), atol=1e-10)


def test_photon_noise_normalised_to_continuum():
    flux = np.array([1.0, 0.25, 0.0, 1.21])
    s = noise_sigma(flux, 50, "photon")
    np.testing.assert_allclose(s[[0, 1, 3]], np.sqrt([1.0, 0.25, 1.21]) / 50)
    assert s[2] > 0 and np.isfinite(s[2])
    np.testing.assert_allclose(noise_sigma(flux, 50, "constant"), 1 / 50)
    np.testing.assert_allclose(noise_sigma(flux, 50, "constant", emulator_error=np.full(4, 0.015)), 0.025)
    with pytest.raises(FisherError, match="S/N"):
        noise_sigma(flux, 0.0)
    with pytest.raises(FisherError, match="noise mode"):
        noise_sigma(flux, 10, "poisson")


def test_adding_nuisances_never_tightens_marginal_bounds():
    sigma = 0.01
    full = fisher_matrix(toy_spectrum, FID, sigma, list(FID))
    base = ["teff", "logg", "feh"]
    chain = [base, base + ["rv"], base + ["rv", "vsini"], base + ["rv", "vsini", "c0", "c1"]]
    prev = None
    for free in chain:
        m = full.subset(free).marginal()
        if prev is not None:
            for n in prev:
                assert m[n] >= prev[n] * (1 - 1e-12), (n, free)
        prev = m
    # marginalising the continuum really matters for at least one label (the test can fail)
    assert max(full.marginal()[n] / full.subset(base).marginal()[n] for n in base) > 1.01
    # random Jacobians: the property holds generally
    rng = np.random.default_rng(5)
    for _ in range(50):
        J = rng.normal(size=(30, 5)) @ rng.normal(size=(5, 5))
        r = fisher_from_jacobian(J, 1.0, list("abcde"))
        for k in range(1, 5):
            small = r.subset(list("abcde")[:k]).marginal()
            big = r.subset(list("abcde")[: k + 1]).marginal()
            assert all(big[n] >= small[n] * (1 - 1e-9) for n in small)


def test_fix_equals_recomputation_without_the_parameter():
    a = fisher_matrix(toy_spectrum, FID, 0.01, ["teff", "logg", "feh", "rv"]).fix(["rv"])
    b = fisher_matrix(toy_spectrum, FID, 0.01, ["teff", "logg", "feh"])
    for n in ["teff", "logg", "feh"]:
        assert a.marginal()[n] == pytest.approx(b.marginal()[n], rel=1e-10)


def test_gaussian_prior_adds_its_precision():
    names = ["a", "b"]
    A = np.array([[1.0, 0.9], [0.9, 1.0], [0.5, 0.4]])
    res = fisher_matrix(linear_model(A, names), dict(a=0.0, b=0.0), 0.1, names, priors={"b": 0.05})
    F = A.T @ A / 0.01 + np.diag([0.0, 1 / 0.05**2])
    np.testing.assert_allclose(res.fisher, F, rtol=1e-12)
    np.testing.assert_allclose(res.marginal()["a"], math.sqrt(np.linalg.inv(F)[0, 0]), rtol=1e-10)
    no_prior = res.with_priors(None)
    assert res.marginal()["a"] < no_prior.marginal()["a"]
    with pytest.raises(FisherError, match="not free"):
        fisher_matrix(linear_model(A, names), dict(a=0.0, b=0.0, c=1.0), 0.1, names, priors={"c": 1.0})
    with pytest.raises(FisherError, match="positive"):
        res.with_priors({"a": 0.0}).fisher


def test_degenerate_direction_warns_names_labels_and_never_nan():
    # teff and logg enter only through teff/1000 + 2*logg: one exact degeneracy.
    def f(p):
        x = jnp.linspace(0, 1, 40)
        s = p["teff"] / 1000.0 + 2 * p["logg"]
        return 1 - 0.3 * jnp.exp(-((x - 0.5) ** 2) / 0.01) * s + p["feh"] * x

    with pytest.warns(DegenerateFisherWarning, match=r"teff.*logg|logg.*teff") as rec:
        res = fisher_matrix(f, dict(teff=5000.0, logg=4.0, feh=0.0), 0.01, ["teff", "logg", "feh"])
    assert "feh" not in str(rec[0].message).split("constrain")[1].split("(")[0]
    m = res.marginal()
    assert m["teff"] == math.inf and m["logg"] == math.inf
    assert math.isfinite(m["feh"]) and m["feh"] > 0
    c = res.conditional()
    assert all(math.isfinite(v) and v > 0 for v in c.values())
    R = res.correlation()
    assert np.all(np.isfinite(R))
    assert R[0, 1] == pytest.approx(-1.0, abs=1e-6)  # the degenerate pair is anti-correlated
    assert R[0, 2] == 0.0
    assert res.condition_number == math.inf
    assert res.degenerate_directions and set(res.degenerate_directions[0]) == {"teff", "logg"}
    doc = res.to_json()
    json.dumps(doc, allow_nan=False)  # strict JSON: no NaN/Infinity anywhere
    assert doc["labels"]["teff"]["marginal"] is None and doc["labels"]["teff"]["constrained"] is False
    assert np.all(np.isfinite(np.asarray(res.to_table()["conditional"])))
    # a prior on one of them lifts the degeneracy without warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lifted = res.with_priors({"logg": 0.1})
        assert math.isfinite(lifted.marginal()["teff"])
    expect = math.sqrt(np.linalg.inv(res.fisher + np.diag([0.0, 1 / 0.1**2, 0.0]))[0, 0])
    assert lifted.marginal()["teff"] == pytest.approx(expect, rel=1e-8)
    # teff = 1000 (s - 2 logg): at least the prior's share 1000·2·0.1 = 200 K, plus the data's error on s
    assert 200.0 < lifted.marginal()["teff"] < 205.0


def test_parameter_without_information_is_unconstrained_not_nan():
    def f(p):
        return jnp.linspace(0, 1, 10) * p["a"] + 0.0 * p["b"]

    with pytest.warns(DegenerateFisherWarning, match="b"):
        res = fisher_matrix(f, dict(a=1.0, b=1.0), 0.1, ["a", "b"])
    assert res.marginal()["b"] == math.inf and res.conditional()["b"] == math.inf
    assert math.isfinite(res.marginal()["a"])
    assert np.all(np.isfinite(res.correlation()))


def test_ill_conditioned_warns_but_gives_finite_bounds():
    x = np.linspace(0, 1, 100)
    A = np.c_[x, x + 3e-4 * x**2]
    with pytest.warns(IllConditionedFisherWarning):
        res = fisher_matrix(linear_model(A, ["a", "b"]), dict(a=0.0, b=0.0), 0.01, ["a", "b"])
    assert res.condition_number > 1e8 and math.isfinite(res.condition_number)
    np.testing.assert_allclose(
        [res.marginal()["a"], res.marginal()["b"]], np.sqrt(np.diag(1e-4 * np.linalg.inv(A.T @ A))), rtol=1e-4
    )


def test_per_pixel_information_sums_to_fisher_and_marginal_information():
    free = ["teff", "logg", "feh", "rv", "vsini", "c0", "c1"]
    res = fisher_matrix(toy_spectrum, FID, 0.01, free)
    diag = res.per_pixel_information("diagonal")
    assert diag.shape == (WL.size, len(free)) and np.all(diag >= 0)
    np.testing.assert_allclose(diag.sum(0), np.diag(res.fisher), rtol=1e-12)
    marg = res.per_pixel_information("marginal")
    expect = np.array([1 / res.marginal()[n] ** 2 for n in free])
    np.testing.assert_allclose(marg.sum(0), expect, rtol=1e-6)
    assert np.all(marg.sum(0) <= diag.sum(0) * (1 + 1e-12))
    # rv information sits in line wings (where the derivative is large), not in the continuum far from lines
    far = np.abs(WL[:, None] - LINES[None, :]).min(axis=1) > 5.0
    i_rv = free.index("rv")
    assert diag[far, i_rv].sum() < 1e-6 * diag[:, i_rv].sum()


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(FisherError, match="no fiducial value"):
        fisher_matrix(toy_spectrum, FID, 0.01, ["teff", "alpha"])
    with pytest.raises(FisherError, match="at least one"):
        fisher_matrix(toy_spectrum, FID, 0.01, [])
    with pytest.raises(FisherError, match="pixel"):
        fisher_matrix(toy_spectrum, FID, np.zeros(WL.size), ["teff"])
    with pytest.raises(FisherError, match="not finite"):
        fisher_matrix(lambda p: jnp.sqrt(p["x"]) * jnp.ones(3), {"x": 0.0}, 0.1, ["x"])


def test_table_and_json_outputs():
    res = fisher_matrix(toy_spectrum, FID, 0.01, ["teff", "logg", "feh", "rv"], meta={"snr": 100.0})
    t = res.to_table()
    assert list(t["label"]) == ["teff", "logg", "feh", "rv"]
    assert list(t["unit"]) == ["K", "dex", "dex", "km/s"]
    assert np.all(t["marginal"] >= t["conditional"] * (1 - 1e-12))
    doc = json.loads(json.dumps(res.to_json(), allow_nan=False))
    assert doc["snr"] == 100.0 and doc["labels"]["teff"]["value"] == 5600.0
    assert doc["labels"]["logg"]["marginal"] == pytest.approx(res.marginal()["logg"])
    assert len(doc["correlation"]) == 4


def test_correlation_plot_of_chosen_labels_is_the_block_of_the_full_matrix(tmp_path):
    """`crb --plots` shows labels, not continuum coefficients: the plotted matrix is the labels' block of the full
    one (every parameter still marginalised), in the order asked."""
    from stellarinf.fisher_plots import plot_correlation

    rng = np.random.default_rng(3)
    names = ["teff", "cont_0_0", "logg", "cont_0_1", "feh"]
    res = fisher_from_jacobian(rng.normal(size=(200, 5)) + 0.5 * rng.normal(size=(200, 1)), 0.01, names)
    fig = plot_correlation(res, ["feh", "teff", "logg"], path=tmp_path / "c.png")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["feh", "teff", "logg"]
    full = res.correlation()
    shown = ax.images[0].get_array()
    np.testing.assert_allclose(shown, full[np.ix_([4, 0, 2], [4, 0, 2])])
    sub = np.linalg.inv(res.fisher[np.ix_([4, 0, 2], [4, 0, 2])])  # the coefficients dropped (held fixed) instead
    dropped = sub / np.sqrt(np.outer(np.diag(sub), np.diag(sub)))
    assert np.abs(shown - dropped).max() > 0.01  # so the block above is the marginalised one, not this
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_information_per_pixel_draws_no_line_across_the_gap_between_arms(tmp_path):
    """Two arms 1,000 Å apart: each drawn line breaks once, where the second arm starts; one arm: no break."""
    from stellarinf.fisher_plots import plot_information_per_pixel

    rng = np.random.default_rng(4)
    wl = np.concatenate([np.linspace(4800.0, 4900.0, 100), np.linspace(5900.0, 6000.0, 100)])
    res = fisher_from_jacobian(rng.normal(size=(200, 2)), 0.01, ["teff", "logg"], wavelength=wl)
    fig = plot_information_per_pixel(res, flux=np.ones(200), path=tmp_path / "i.png")
    for ax in fig.axes:
        x = ax.lines[0].get_xdata()
        assert x.size == 201 and np.isnan(x[100]) and np.isfinite(np.delete(x, 100)).all()
    one = plot_information_per_pixel(
        fisher_from_jacobian(rng.normal(size=(100, 1)), 0.01, ["teff"], wavelength=wl[:100])
    )
    assert np.isfinite(one.axes[0].lines[0].get_xdata()).all()
