"""Training: tiny TransformerPayne and Payne models overfit a tiny grid (loss drops by orders of magnitude)."""

import dataclasses

import numpy as np
import pytest
from toy_grid import make_toy_grid

from stellarinf.emulators import TrainConfig, load_emulator, train

GRID = make_toy_grid(n=24, n_pix=120, seed=3)


def _payne_cfg(**kw):
    base = dict(
        model="payne",
        hidden=(32, 32),
        max_steps=40,
        validate_every=10,
        warmup_steps=5,
        learning_rate=3e-3,
        batch_spectra=8,
        progress=False,
        patience=None,
    )
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_tiny_transformer_payne_overfits_a_tiny_grid(tmp_path, precision):
    """Also with the matrix products' operands in bfloat16 (mixed precision): the float32 network it leaves is as
    good by the same measures."""
    small = GRID.subset(np.arange(8))
    cfg = TrainConfig(
        precision=precision,
        model="transformer-payne",
        preset="tiny",
        max_steps=600,
        validate_every=150,
        warmup_steps=30,
        learning_rate=3e-3,
        batch_spectra=8,
        batch_pixels=64,
        progress=False,
        patience=None,
    )
    res = train(small, tmp_path / "tp", cfg, validation=small, test=small)
    first, best = res.history[0], min(h["val_mse"] for h in res.history)
    assert first["step"] == 0
    assert best < first["val_mse"] / 100, res.history  # two orders of magnitude in MSE
    assert res.metrics["mae"] < first["val_mae"] / 5
    emu = load_emulator(tmp_path / "tp")
    assert emu.kind == "transformer-payne" and emu.has_continuum and emu.resolution == 50000.0
    # the stored emulator error is the held-out residual rms per pixel
    np.testing.assert_allclose(
        np.sqrt(np.mean(np.square(np.asarray(emu.error_sigma)))), np.sqrt(res.metrics["mse"]), rtol=1e-3
    )
    # the continuum head learnt the continuum too (toy continuum ~1e14, varies by tens of per cent)
    cont = np.asarray(emu.predict_continuum(small.labels[0], small.wavelength))
    assert np.max(np.abs(cont / small.continuum[0] - 1)) < 0.05


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_tiny_payne_overfits_a_tiny_grid(tmp_path, precision):
    cfg = _payne_cfg(max_steps=400, validate_every=100, hidden=(64, 64), precision=precision)
    res = train(GRID, None, cfg, validation=GRID, test=GRID)
    assert min(h["val_mse"] for h in res.history) < res.history[0]["val_mse"] / 100, res.history
    assert res.output is None


# ------------------------------------------------------------------ wavelengths between the pixels (issue #19 item 2)
def test_continuous_batches_are_the_spectrum_between_the_pixels():
    """Targets drawn between an oversampled grid's columns equal the analytic spectrum at the drawn wavelengths."""
    import jax
    from toy_grid import toy_spectrum

    from stellarinf.emulators.training import _Data
    from stellarinf.emulators.transformer_payne import training_batch_continuous

    grid = make_toy_grid(n=12, n_pix=300, seed=5, oversample=2)
    data = _Data.from_grid(grid, 0.0, 1.0)
    labels, wl, flux, lc = training_batch_continuous(jax.random.key(0), data, 6, 400)
    wl, flux = np.asarray(wl), np.asarray(flux)
    assert wl.shape == flux.shape == (6, 400) and lc is not None
    index = np.interp(wl, grid.wavelength, np.arange(grid.n_pixels))
    assert np.mean(np.abs(index - np.round(index)) > 0.05) > 0.8  # between the columns, not at them
    rows = [int(np.argmin(np.abs(grid.label_space.scale(grid.labels) - np.asarray(lab)).sum(1))) for lab in labels]
    truth = np.stack([toy_spectrum(grid.labels[r], w)[0][0] for r, w in zip(rows, wl)])
    assert np.max(np.abs(flux - truth)) < 2e-4, np.max(np.abs(flux - truth))
    pixel_step = np.abs(truth - np.stack([toy_spectrum(grid.labels[r], w + 0.05)[0][0] for r, w in zip(rows, wl)]))
    assert np.max(pixel_step) > 0.05  # the check has teeth: a pixel off is far worse


def test_between_pixel_metrics_split_the_columns():
    from stellarinf.emulators.metrics import MetricAccumulator, between_pixel_metrics

    acc = MetricAccumulator(9)
    true = np.full((4, 9), 0.5)
    res = np.where(np.arange(9) % 2 == 0, 1e-3, -3e-3)
    acc.update(true + res, true)
    m = between_pixel_metrics(acc, 2)
    np.testing.assert_allclose([m["mae_on_pixels"], m["mae_between_pixels"], m["between_pixel_ratio"]], [1e-3, 3e-3, 3])
    np.testing.assert_allclose(m["rms_between_pixels"], 3e-3)
    assert between_pixel_metrics(acc, 1) == {}


def test_wavelength_modes_on_an_oversampled_grid(tmp_path):
    """auto: TransformerPayne trains between the pixels, the Payne at the instrument's pixels; both report the held-out
    error at and between the pixels; a Payne cannot train between pixels; continuous on a plain grid warns."""
    import pytest

    from stellarinf.errors import StellarinfError

    fine = make_toy_grid(n=16, n_pix=60, seed=2, oversample=2)
    tp = TrainConfig(model="transformer-payne", preset="tiny", max_steps=20, validate_every=10, warmup_steps=2,
                     batch_spectra=4, batch_pixels=32, progress=False, patience=None)  # fmt: skip
    res = train(fine, tmp_path / "tp", tp)
    emu = load_emulator(tmp_path / "tp")
    assert emu.metadata["training"]["wavelengths"] == "continuous"
    np.testing.assert_array_equal(np.asarray(emu.training_wavelength), fine.wavelength[::2])
    assert {"mae_on_pixels", "mae_between_pixels", "between_pixel_ratio"} <= set(res.metrics)

    res = train(fine, None, _payne_cfg(max_steps=20))
    assert res.emulator.metadata["training"]["wavelengths"] == "instrument"
    assert res.emulator.network.config.n_pixels == 60
    np.testing.assert_array_equal(np.asarray(res.emulator.training_wavelength), fine.wavelength[::2])
    assert res.metrics["n_pixels"] == fine.n_pixels and "between_pixel_ratio" in res.metrics

    with pytest.raises(StellarinfError, match="between them"):
        train(fine, None, _payne_cfg(wavelengths="continuous"))
    with pytest.raises(StellarinfError, match="unknown wavelengths"):
        train(fine, None, _payne_cfg(wavelengths="anywhere"))
    with pytest.warns(UserWarning, match="--oversample 2"):
        train(
            make_toy_grid(n=16, n_pix=60, seed=2), None, dataclasses.replace(tp, wavelengths="continuous", max_steps=2)
        )


def test_transformer_payne_trained_between_pixels_is_as_good_there_as_at_them():
    """Issue #19 item 2 in miniature: trained at the instrument's pixels, a TransformerPayne is several times worse half
    a pixel away (the toy: ~9×); trained at wavelengths drawn between them, within 1.2× (the toy: ~1.05×)."""
    grid = make_toy_grid(n=16, n_pix=120, seed=3, oversample=2)
    ratio = {}
    for mode in ("instrument", "continuous"):
        cfg = TrainConfig(model="transformer-payne", preset="tiny", max_steps=800, validate_every=200,
                          warmup_steps=30, learning_rate=3e-3, batch_spectra=8, batch_pixels=64, progress=False,
                          patience=None, wavelengths=mode)  # fmt: skip
        ratio[mode] = train(grid, None, cfg, validation=grid, test=grid).metrics["between_pixel_ratio"]
    assert ratio["instrument"] > 3.0 and ratio["continuous"] < 1.2, ratio
