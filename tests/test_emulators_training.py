"""Training: tiny TransformerPayne and Payne models overfit a tiny grid (loss drops by orders of magnitude)."""

import numpy as np
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


def test_tiny_transformer_payne_overfits_a_tiny_grid(tmp_path):
    small = GRID.subset(np.arange(8))
    cfg = TrainConfig(
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


def test_tiny_payne_overfits_a_tiny_grid(tmp_path):
    cfg = _payne_cfg(max_steps=400, validate_every=100, hidden=(64, 64))
    res = train(GRID, None, cfg, validation=GRID, test=GRID)
    assert min(h["val_mse"] for h in res.history) < res.history[0]["val_mse"] / 100, res.history
    assert res.output is None
