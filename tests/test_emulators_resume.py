"""Training runs that stop and continue: a killed run resumes identically; fine-tuning starts from the
given model and respects frozen groups; wall-clock budget and early stopping; bad settings."""

import json

import numpy as np
import pytest
from toy_grid import make_toy_grid

from stellarinf.emulators import TrainConfig, load_emulator, train
from stellarinf.emulators.model_io import serialise
from stellarinf.errors import StellarinfError

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


def _tp_cfg(**kw):
    base = dict(
        model="transformer-payne",
        preset="tiny",
        max_steps=40,
        validate_every=10,
        warmup_steps=5,
        learning_rate=3e-3,
        batch_spectra=4,
        batch_pixels=32,
        val_pixels=64,
        progress=False,
        patience=None,
    )
    return TrainConfig(**{**base, **kw})


# kind → (settings, grid); the last one trains between the pixels of an oversampled grid
CONFIGS = {
    "payne": (_payne_cfg, GRID),
    "transformer-payne": (_tp_cfg, GRID),
    "transformer-payne-continuous": (_tp_cfg, make_toy_grid(n=24, n_pix=60, seed=3, oversample=2)),
}


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_killed_training_resumes_to_identical_parameters(tmp_path, kind):
    """Both networks: the random pixel batches of TransformerPayne are a function of the step, so a resumed
    run draws exactly the batches the uninterrupted one drew."""
    make_cfg, grid = CONFIGS[kind]
    full = train(grid, tmp_path / "full", make_cfg())

    class Killed(Exception):
        pass

    def kill_at_20(step, state):
        if step == 23:  # between checkpoints (every 10 steps): steps 21-23 are lost and redone
            raise Killed

    with pytest.raises(Killed):
        train(grid, tmp_path / "resumed", make_cfg(), callback=kill_at_20)
    ckpt = json.loads((tmp_path / "resumed" / "checkpoint" / "state.json").read_text())
    assert ckpt["step"] == 20 and not (tmp_path / "resumed" / "model.json").exists()
    resumed = train(grid, tmp_path / "resumed", make_cfg())
    assert serialise(resumed.emulator.network) == serialise(full.emulator.network)
    strip = lambda hist: [{k: v for k, v in h.items() if k != "elapsed_s"} for h in hist]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    assert resumed.metrics["mae"] == full.metrics["mae"]
    # a finished run is returned as is, and different settings are refused with a clear message
    again = train(grid, tmp_path / "resumed", make_cfg())
    assert again.stop_reason == "max_steps" and serialise(again.emulator.network) == serialise(full.emulator.network)
    with pytest.raises(StellarinfError, match="different settings"):
        train(grid, tmp_path / "resumed", make_cfg(learning_rate=1e-2))
    expected = "continuous" if kind.endswith("continuous") else "pixels"
    assert again.emulator.metadata["training"]["wavelengths"] == expected


def test_checkpoints_from_before_the_wavelength_modes_resume(tmp_path):
    """A checkpoint written before ``wavelengths`` existed trained at the grid's pixels: it resumes as that."""

    class Killed(Exception):
        pass

    def kill(step, state):
        if step == 13:
            raise Killed

    with pytest.raises(Killed):
        train(GRID, tmp_path / "old", _payne_cfg(max_steps=20), callback=kill)
    path = tmp_path / "old" / "checkpoint" / "state.json"
    state = json.loads(path.read_text())
    del state["config"]["wavelengths"]
    path.write_text(json.dumps(state))
    with pytest.raises(StellarinfError, match="different settings \\(wavelengths\\)"):
        train(GRID, tmp_path / "old", _payne_cfg(max_steps=20, wavelengths="instrument"))
    assert train(GRID, tmp_path / "old", _payne_cfg(max_steps=20)).metrics["steps"] == 20


def test_fine_tuning_starts_from_the_model_and_keeps_frozen_groups(tmp_path):
    pre = train(GRID, tmp_path / "pre", _payne_cfg(max_steps=60))
    other = make_toy_grid(n=24, n_pix=120, seed=4)  # same pixels, new spectra
    ft = train(
        other, tmp_path / "ft", _payne_cfg(max_steps=20, learning_rate=1e-3, freeze=("hidden",)), init=tmp_path / "pre"
    )
    scratch = train(other, None, _payne_cfg(max_steps=20))
    # it starts where the pre-trained model is (far better than a fresh network)
    assert ft.history[0]["val_mae"] < 0.5 * scratch.history[0]["val_mae"]
    a, b = pre.emulator.network.layers, ft.emulator.network.layers
    for la, lb in zip(a[:-1], b[:-1]):
        np.testing.assert_array_equal(np.asarray(la.weight), np.asarray(lb.weight))
    assert not np.array_equal(np.asarray(a[-1].weight), np.asarray(b[-1].weight))
    assert load_emulator(tmp_path / "ft").metadata["training"]["init"] == str(tmp_path / "pre")
    with pytest.raises(StellarinfError, match="same kind"):
        train(other, None, TrainConfig(model="transformer-payne", preset="tiny", max_steps=1), init=pre.emulator)


def test_wall_clock_budget_and_early_stopping(tmp_path):
    budget = train(GRID, tmp_path / "b", _payne_cfg(max_steps=10_000, max_minutes=1e-4))
    assert budget.stop_reason == "time_budget" and 1 <= budget.metrics["steps"] < 10_000
    # a larger budget continues the same run
    more_minutes = budget.metrics["elapsed_s"] / 60 + 0.1  # the budget counts all runs (compilation included)
    more = train(GRID, tmp_path / "b", _payne_cfg(max_steps=10_000, max_minutes=more_minutes))
    assert more.stop_reason == "time_budget" and more.metrics["elapsed_s"] >= budget.metrics["elapsed_s"]
    assert more.metrics["steps"] > budget.metrics["steps"]
    stuck = train(GRID, None, _payne_cfg(max_steps=1000, learning_rate=0.0, patience=2))
    assert stuck.stop_reason == "early_stopping" and stuck.metrics["steps"] == 20


def test_bad_training_settings_are_refused():
    with pytest.raises(StellarinfError, match="unknown model"):
        train(GRID, None, TrainConfig(model="cannon"))
    with pytest.raises(StellarinfError, match="cannot freeze"):
        train(GRID, None, TrainConfig(model="payne", freeze=("blocks",)))
    with pytest.raises(StellarinfError, match="too few"):
        train(GRID.subset(np.arange(2)), None, _payne_cfg())
