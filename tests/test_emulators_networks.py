"""TransformerPayne / Payne networks and the Emulator wrapper: shapes, dtypes, grid independence,
interpolation of the Payne, autodiff, input validation, error table, metrics. No training here."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from toy_grid import TOY_RANGE, TOY_SPACE

from stellarinf.emulators import (
    Emulator,
    PayneConfig,
    PayneMLP,
    SpectrumModel,
    TransformerPayne,
    flux_metrics,
    preset_config,
)
from stellarinf.emulators.transformer_payne import PRESETS, count_parameters, log10_offset, matmul
from stellarinf.errors import LabelError, StellarinfError, WavelengthError

WL = np.linspace(TOY_RANGE[0], TOY_RANGE[1], 157)
LABELS = np.array([[5000.0, 3.0, -0.5], [6200.0, 4.5, 0.2], [4600.0, 2.1, -1.4]])


@pytest.fixture(scope="module")
def tp():
    cfg = preset_config("tiny", len(TOY_SPACE), log10_wavelength_ref=float(np.log10(6015.0)))
    net = TransformerPayne(cfg, jax.random.key(1))
    return Emulator(
        net,
        TOY_SPACE,
        TOY_RANGE,
        resolution=50000.0,
        has_continuum=True,
        error_wavelength=[6000.0, 6030.0],
        error_sigma=[1e-3, 3e-3],
    )


@pytest.fixture(scope="module")
def payne():
    net = PayneMLP(PayneConfig(len(TOY_SPACE), WL.size, (16, 16)), jax.random.key(2))
    return Emulator(net, TOY_SPACE, TOY_RANGE, training_wavelength=WL)


def test_satisfies_the_spectrum_model_protocol(tp, payne):
    assert isinstance(tp, SpectrumModel) and isinstance(payne, SpectrumModel)
    assert tp.kind == "transformer-payne" and payne.kind == "payne"
    assert tp.resolution == 50000.0 and payne.resolution is None


def test_tp_shapes_and_float32_default(tp):
    out = eqx.filter_jit(lambda e, x, w: e.network(e.scale_labels(x), w))(tp, LABELS[0], WL)
    assert out.shape == (WL.size, 2) and out.dtype == jnp.float32
    f = tp.flux(LABELS[0], WL)
    assert f.shape == (WL.size,) and f.dtype == jnp.float32
    batch = tp.predict(LABELS, WL)
    assert batch.shape == (3, WL.size) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[1], np.asarray(tp.flux(LABELS[1], WL)), rtol=1e-6, atol=2e-6)
    cont = tp.predict_continuum(LABELS[0], WL)
    assert cont.shape == (WL.size,) and np.all(np.asarray(cont) > 0)
    leaves = jax.tree_util.tree_leaves(eqx.filter(tp.network, eqx.is_inexact_array))
    assert all(x.dtype == jnp.float32 for x in leaves)


def test_float64_cast_gives_float64_outputs_close_to_float32(tp):
    t64 = tp.astype(jnp.float64)
    f64 = t64.flux(LABELS[0], WL)
    assert f64.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(f64), np.asarray(tp.flux(LABELS[0], WL)), atol=1e-4)


def test_tp_output_does_not_depend_on_the_wavelength_grid(tp):
    full = np.asarray(tp.flux(LABELS[1], WL))
    idx = np.array([150, 3, 77, 78, 0])  # unsorted subset, different size
    sub = np.asarray(tp.flux(LABELS[1], WL[idx]))
    np.testing.assert_allclose(sub, full[idx], rtol=1e-6, atol=1e-6)
    # a single point answers the same as in the full query
    one = np.asarray(tp.flux(LABELS[1], WL[40:41]))
    np.testing.assert_allclose(one, full[40:41], rtol=1e-6, atol=1e-6)


def test_wavelengths_given_in_float32_are_encoded_almost_as_in_float64(tp):
    """The shortest encoding periods (1e-6 in log10 λ) need log10 λ to ~1e-9: a plain float32 log10 of 3.8 is
    off by up to ~4e-7 (a phase error of ~2.5 rad at 1e-6), the offset from a float32 reference by the
    rounding of the offset itself (~2e-9 within an arm of the reference)."""
    ref = float(np.log10(6560.0))
    wl = np.linspace(4700.0, 8800.0, 20001)  # every GALAH arm and RVS from one reference
    exact = np.log10(wl) - ref
    w32 = wl.astype(np.float32)
    exact32 = np.log10(w32.astype(np.float64)) - ref  # what the float32 wavelengths are, exactly
    ours = np.asarray(log10_offset(jnp.asarray(w32), ref), dtype=np.float64)
    naive = np.asarray(jnp.log10(jnp.asarray(w32)) - np.float32(ref), dtype=np.float64)
    # measured: 2.6e-8 over the whole range (a few ulp of the float32 offset, 1.5e-8 at the far arms), 1.3e-9
    # within one arm of the reference (as a per-window model sees it); the plain float32 log10: 4e-7 in both
    red = np.abs(wl - 6560.0) < 130.0
    assert np.max(np.abs(ours - exact32)) < 4e-8 and np.max(np.abs(ours - exact32)[red]) < 3e-9
    assert np.max(np.abs(naive - exact32)[red]) > 1e-7  # what the old encoding lost
    np.testing.assert_allclose(np.asarray(log10_offset(jnp.asarray(wl), ref)), exact, rtol=0, atol=1e-14)  # float64
    # the network's answer: float32 wavelengths now give (nearly) the float64 flux, at every period
    sharp = TransformerPayne(
        preset_config("tiny", len(TOY_SPACE), log10_wavelength_ref=float(np.log10(6015.0)), min_period=1e-7),
        jax.random.key(3),
    )
    x = tp.scale_labels(LABELS[0])
    w = np.linspace(6001.0, 6029.0, 301)
    f32 = np.asarray(sharp.wavelength_token(jnp.asarray(w.astype(np.float32))))
    exact_tok = np.asarray(sharp.wavelength_token(jnp.asarray(w.astype(np.float32).astype(np.float64))))
    periods = jnp.logspace(-7.0, 1.0, sharp.config.dim, dtype=jnp.float32)
    old = np.sin(2 * np.pi * (np.log10(w.astype(np.float32)) - np.float32(np.log10(6015.0)))[:, None] / periods)
    # float32 phases of up to ~6e4 rad leave ~0.02 (float32 multiply); the old encoding was off by O(1)
    assert np.max(np.abs(f32 - exact_tok)) < 0.05 < 0.5 < np.max(np.abs(old - exact_tok))
    assert np.all(np.isfinite(np.asarray(sharp(x, w.astype(np.float32)))))


def test_a_batch_of_spectra_in_one_pass_equals_each_spectrum_alone(tp):
    """Training runs every pixel of a batch of spectra through one pass (keys/values of shape (B, L, …), wavelengths
    (B, P)); it must be the per-spectrum network."""
    net = tp.network
    labels = jnp.asarray(TOY_SPACE.scale(LABELS), jnp.float32)
    wl = jnp.asarray(np.random.default_rng(0).uniform(TOY_RANGE[0], TOY_RANGE[1], (3, 41)))
    batched = net.decode(jax.vmap(net.encode)(labels), wl)
    assert batched.shape == (3, 41, 2)
    for i in range(3):
        np.testing.assert_allclose(batched[i], net(labels[i], wl[i]), rtol=0, atol=2e-6)


def _dot_operand_dtypes(jaxpr) -> list[tuple[str, ...]]:
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(tuple(str(v.aval.dtype) for v in eqn.invars))
        for param in eqn.params.values():
            inner = getattr(param, "jaxpr", param)
            if hasattr(inner, "eqns"):
                found += _dot_operand_dtypes(inner)
    return found


def test_mixed_precision_products_round_the_operands_forward_and_backward():
    """``--precision bfloat16``: every matrix product of the forward pass *and of its gradient* multiplies bfloat16
    operands (accumulating in float32); the answers are float32's to bfloat16's rounding, not bit for bit."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 50, 16)), jnp.float32)  # leading axes: a batch of spectra × pixels
    w = jnp.asarray(rng.normal(size=(8, 16)), jnp.float32)

    def f(x, w, dtype):
        return jnp.sum(jnp.sin(matmul(x, w, dtype, jnp.float32)))

    exact = x @ w.T
    mixed = matmul(x, w, jnp.bfloat16, jnp.float32)
    assert mixed.dtype == jnp.float32 and mixed.shape == (2, 50, 8)
    err = float(jnp.max(jnp.abs(mixed - exact)) / jnp.max(jnp.abs(exact)))
    assert 1e-5 < err < 1e-2  # rounded (so the option does something), but only to bfloat16's 8 bits
    for exact_g, mixed_g in zip(jax.grad(f, (0, 1))(x, w, None), jax.grad(f, (0, 1))(x, w, jnp.bfloat16)):
        assert mixed_g.dtype == jnp.float32
        np.testing.assert_allclose(mixed_g, exact_g, rtol=0, atol=0.03 * float(jnp.max(jnp.abs(exact_g))))
    dots = _dot_operand_dtypes(jax.make_jaxpr(jax.grad(f, (0, 1)), static_argnums=2)(x, w, jnp.bfloat16).jaxpr)
    assert len(dots) == 3 and all(d == ("bfloat16", "bfloat16") for d in dots), dots
    assert all(d == ("float32", "float32") for d in _dot_operand_dtypes(jax.make_jaxpr(jax.grad(f))(x, w, None).jaxpr))


def test_tp_answers_wavelengths_between_training_pixels(tp):
    fine = np.linspace(6010.0, 6011.0, 50)
    f = np.asarray(tp.flux(LABELS[0], fine))
    assert f.shape == (50,) and np.all(np.isfinite(f))


def test_payne_is_tied_to_its_training_grid_and_interpolates_elsewhere(payne):
    s = payne.scale_labels(LABELS[0])
    on_grid = np.asarray(eqx.filter_jit(lambda n, x: n(x))(payne.network, s))
    assert on_grid.shape == (WL.size,)
    np.testing.assert_allclose(np.asarray(payne.flux(LABELS[0], WL)), on_grid, rtol=1e-6, atol=1e-7)
    other = np.array([6001.37, 6012.5, 6029.9])
    between = np.asarray(payne.flux(LABELS[0], other))
    # between pixels: within the neighbours' range of a smooth output, and close to linear interpolation
    np.testing.assert_allclose(between, np.interp(other, WL, on_grid), atol=0.05 * np.ptp(on_grid))
    with pytest.raises(StellarinfError, match="continuum"):
        payne.predict_continuum(LABELS[0], WL)


def test_flux_is_jit_vmap_and_grad_friendly(tp, payne):
    f = jax.jit(tp.flux)(LABELS[0], WL)
    v = jax.vmap(payne.flux, in_axes=(0, None))(jnp.asarray(LABELS), WL)
    np.testing.assert_allclose(np.asarray(f), np.asarray(tp.flux(LABELS[0], WL)), rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(np.asarray(v[2]), np.asarray(payne.flux(LABELS[2], WL)), rtol=1e-5, atol=2e-6)
    e64 = tp.astype(jnp.float64)
    g = jax.grad(lambda x: e64.flux(x, WL).sum())(jnp.asarray(LABELS[0]))
    assert g.shape == (3,) and np.all(np.isfinite(np.asarray(g)))
    h = 1e-6 * (TOY_SPACE.upper - TOY_SPACE.lower)
    for j in range(3):
        dx = np.zeros(3)
        dx[j] = h[j]
        fd = (e64.flux(LABELS[0] + dx, WL).sum() - e64.flux(LABELS[0] - dx, WL).sum()) / (2 * h[j])
        np.testing.assert_allclose(float(g[j]), float(fd), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize(
    "labels, wl, error, match",
    [
        ([8000.0, 3.0, 0.0], WL, LabelError, "teff=8000"),
        ([5000.0, 3.0], WL, LabelError, "2 columns"),
        ([5000.0, np.nan, 0.0], WL, LabelError, "NaN"),
        ([5000.0, 3.0, 0.0], np.linspace(5990, 6010, 10), WavelengthError, "outside the model's range"),
        ([5000.0, 3.0, 0.0], np.array([6005.0, np.nan]), WavelengthError, "finite"),
    ],
)
def test_bad_inputs_give_clear_errors(tp, payne, labels, wl, error, match):
    for emu in (tp, payne):
        with pytest.raises(error, match=match):
            emu.check(labels, wl)
        with pytest.raises(error, match=match):
            emu.predict(labels, wl)


def test_error_table_is_interpolated(tp, payne):
    np.testing.assert_allclose(np.asarray(tp.error(np.array([6000.0, 6015.0, 6030.0]))), [1e-3, 2e-3, 3e-3], rtol=1e-6)
    assert np.all(np.asarray(payne.error(WL)) == 0.0)  # no table: zero emulator error


def test_presets_and_config_errors():
    assert set(PRESETS) == {"tiny", "small", "paper"}
    paper = preset_config("paper", 11)
    assert (paper.dim, paper.n_tokens, paper.n_layers, paper.n_heads, paper.head_dim) == (256, 16, 16, 8, 32)
    key = jax.random.key(0)
    shapes = eqx.filter_eval_shape(lambda: TransformerPayne(paper, key))  # no memory, no compile
    assert count_parameters(shapes) > 10_000_000  # paper size: ~1e7 parameters
    assert preset_config("small", 3).head_dim == 32
    with pytest.raises(StellarinfError, match="divisible"):
        preset_config("tiny", 3, n_heads=3)
    with pytest.raises(StellarinfError, match="preset"):
        preset_config("huge", 3)


def test_flux_metrics_values_and_line_split():
    true = np.array([[1.0, 1.0, 0.5, 0.95]])
    pred = np.array([[1.01, 0.99, 0.47, 0.95]])
    m = flux_metrics(pred, true)
    np.testing.assert_allclose(m["mae"], (0.01 + 0.01 + 0.03) / 4)
    np.testing.assert_allclose(m["mse"], (1e-4 + 1e-4 + 9e-4) / 4)
    np.testing.assert_allclose(m["mae_line"], 0.03)  # only the 0.5 pixel is deeper than 10 %
    np.testing.assert_allclose(m["mae_continuum"], 0.02 / 3)
    assert m["n_spectra"] == 1 and m["n_line_pixels"] == 1
    big = np.random.default_rng(0).normal(size=(100, 1000)) * 1e-3
    np.testing.assert_allclose(flux_metrics(big, np.zeros_like(big))["p99"], np.percentile(np.abs(big), 99), rtol=1e-5)


def test_payne_smooth_activation_has_continuous_gradients_leaky_relu_does_not():
    """SiLU makes the Payne smooth in its labels; the published LeakyReLU network is piecewise linear, so its
    label gradient jumps between neighbouring points (the kinks that break Laplace/HMC at high S/N)."""

    def max_gradient_jump(activation):
        net = PayneMLP(PayneConfig(len(TOY_SPACE), WL.size, (64, 64), activation=activation), jax.random.key(5))
        f = lambda x: jnp.sum(net(jnp.asarray([x, 0.1, -0.2])) ** 2)  # noqa: E731
        xs = jnp.linspace(-0.5, 0.5, 4001)
        g = jax.vmap(jax.grad(f))(xs)
        curvature_scale = jnp.max(jnp.abs(jnp.diff(g)))  # largest change of the gradient over one step
        return float(curvature_scale / (jnp.max(jnp.abs(g)) + 1e-12))

    smooth, kinked = max_gradient_jump("silu"), max_gradient_jump("leaky_relu")
    assert smooth < 0.01  # a step of 2.5e-4 changes a smooth gradient by a tiny fraction
    assert kinked > 3 * smooth  # a LeakyReLU kink changes it at once


def test_payne_activation_is_validated_and_saved(tmp_path):
    with pytest.raises(StellarinfError, match="unknown activation 'tanh'"):
        PayneConfig(3, 10, (4,), activation="tanh")
    cfg = PayneConfig(3, 10, (4,), activation="silu")
    assert PayneConfig.from_json(cfg.to_json()) == cfg
    # model files written before the option existed load as the published LeakyReLU network
    old = {k: v for k, v in cfg.to_json().items() if k != "activation"}
    assert PayneConfig.from_json(old).activation == "leaky_relu"


@pytest.mark.parametrize("factor", [1, 2, 3])
def test_lanczos_upsample_equals_pointwise_lanczos_and_its_gradient(factor):
    """The convolution form (outputs evenly spaced at 1/factor pixel from a traced start) gives the
    pointwise kernel's values wherever all taps fall inside the grid, and the same derivative in the start."""
    from stellarinf.emulators.interpolation import lanczos_interpolate, lanczos_upsample

    grid = jnp.arange(150.0)
    values = jnp.asarray(np.sin(np.arange(150.0) / 2.7) + 0.2 * np.random.default_rng(0).normal(size=150))
    n_out = 200
    for start in (4.0, 7.31, 12.999, -30.6, 90.25):
        x = start + np.arange(n_out) / factor
        inside = (x >= 4) & (x <= 150 - 5)
        ref = np.asarray(lanczos_interpolate(jnp.asarray(np.clip(x, 0, 149)), grid, values))
        got = np.asarray(lanczos_upsample(values, jnp.asarray(start), factor, n_out))
        assert got.shape == (n_out,)
        np.testing.assert_allclose(got[inside], ref[inside], atol=1e-12)
        # far outside the grid the edge pixel is repeated
        assert np.allclose(got[x < -4], values[0]) and np.allclose(got[x > 153], values[-1])
        # d/d(start) of a weighted sum of interior outputs, against the pointwise kernel's
        wts = jnp.asarray(np.where(inside, np.cos(x), 0.0))
        d_up = jax.grad(lambda s: jnp.sum(wts * lanczos_upsample(values, s, factor, n_out)))(jnp.asarray(start))
        d_pt = jax.grad(lambda s: jnp.sum(wts * lanczos_interpolate(s + jnp.arange(n_out) / factor, grid, values)))(
            jnp.asarray(start)
        )
        np.testing.assert_allclose(float(d_up), float(d_pt), rtol=1e-9, atol=1e-12)


def test_log_uniform_grid_detection():
    from stellarinf.emulators.interpolation import log_uniform_grid_of

    wl = 6000.0 * np.exp(1e-5 * np.arange(500))
    ln0, step = log_uniform_grid_of(wl)
    assert ln0 == pytest.approx(np.log(6000.0), abs=1e-12) and step == pytest.approx(1e-5, rel=1e-9)
    assert log_uniform_grid_of(np.linspace(6000.0, 6100.0, 500)) is None  # uniform in λ: ln-steps differ by 1.7 %
    assert log_uniform_grid_of(WL) is None


def test_lanczos_interpolation_reproduces_a_near_nyquist_line_far_better_than_linear():
    """A Gaussian line sampled at 2.5 pixels per FWHM (the training grids' sampling): Lanczos-4 recovers it
    between pixels to < 0.5 % of the continuum, where linear interpolation is off by ~5 % (too shallow)."""
    from stellarinf.emulators.interpolation import lanczos_interpolate

    grid = np.arange(200.0)
    sigma = 2.5 / 2.3548
    line = lambda x: 1.0 - 0.5 * np.exp(-0.5 * ((x - 100.3) / sigma) ** 2)  # noqa: E731
    x = np.linspace(60.0, 140.0, 2001)
    got = np.asarray(lanczos_interpolate(jnp.asarray(x), jnp.asarray(grid), jnp.asarray(line(grid))))
    assert np.max(np.abs(got - line(x))) < 5e-3
    assert np.max(np.abs(np.interp(x, grid, line(grid)) - line(x))) > 0.04
    np.testing.assert_allclose(
        np.asarray(lanczos_interpolate(jnp.asarray(grid), jnp.asarray(grid), jnp.asarray(line(grid)))),
        line(grid),
        atol=1e-12,
    )
    # smooth in the position: the derivative is finite everywhere, also exactly at a pixel
    d = jax.vmap(jax.grad(lambda z: lanczos_interpolate(z[None], jnp.asarray(grid), jnp.asarray(line(grid)))[0]))(
        jnp.asarray([99.0, 100.0, 100.5])
    )
    assert np.all(np.isfinite(np.asarray(d)))


def test_lagrange_interpolation_is_exact_for_polynomials_and_beats_lanczos_when_oversampled():
    """The 8-point Lagrange polynomial reproduces any polynomial of degree ≤ 7 (a known answer) and, on a Gaussian line
    sampled at σ = 2.2 samples (a 2× oversampled R 28,000 grid), is far closer than Lanczos-4."""
    import jax.numpy as jnp

    from stellarinf.emulators.interpolation import lagrange_interpolate, lanczos_interpolate

    grid = np.linspace(6000.0, 6010.0, 41)
    x = np.random.default_rng(1).uniform(6001.0, 6009.0, 300)  # ≥ 4 samples inside the ends
    s = lambda w: (w - 6004.3) / 3.0  # noqa: E731
    poly = lambda w: 0.3 - 0.2 * s(w) + 0.5 * s(w) ** 3 - 0.05 * s(w) ** 7  # noqa: E731
    got = np.asarray(lagrange_interpolate(jnp.asarray(x), jnp.asarray(grid), jnp.asarray(poly(grid))))
    np.testing.assert_allclose(got, poly(x), atol=1e-10)
    line = lambda w: 1 - 0.9 * np.exp(-0.5 * ((w - 6005.03) / (2.2 * 0.25)) ** 2)  # noqa: E731
    lag = np.asarray(lagrange_interpolate(jnp.asarray(x), jnp.asarray(grid), jnp.asarray(line(grid))))
    lan = np.asarray(lanczos_interpolate(jnp.asarray(x), jnp.asarray(grid), jnp.asarray(line(grid))))
    err_lag, err_lan = np.max(np.abs(lag - line(x))), np.max(np.abs(lan - line(x)))
    assert err_lag < 3e-4 and err_lag < 0.2 * err_lan, (err_lag, err_lan)
