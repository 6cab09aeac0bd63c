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
    """A checkpoint written before ``wavelengths`` (and ``schedule``) existed trained at the grid's pixels on a
    schedule over max_steps: it resumes as that."""

    class Killed(Exception):
        pass

    def kill(step, state):
        if step == 13:
            raise Killed

    with pytest.raises(Killed):
        train(GRID, tmp_path / "old", _payne_cfg(max_steps=20), callback=kill)
    path = tmp_path / "old" / "checkpoint" / "state.json"
    state = json.loads(path.read_text())
    for key in ("wavelengths", "schedule", "decay_fraction", "precision", "lr_scaling", "base_width"):  # before them
        del state["config"][key]
    del state["schedule_steps"], state["decay_start"]
    path.write_text(json.dumps(state))
    with pytest.raises(StellarinfError, match="different settings \\(wavelengths\\)"):
        train(GRID, tmp_path / "old", _payne_cfg(max_steps=20, wavelengths="instrument"))
    with pytest.raises(StellarinfError, match="different settings \\(precision\\)"):  # old runs were float32
        train(GRID, tmp_path / "old", _payne_cfg(max_steps=20, precision="bfloat16"))
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


def test_a_corner_grid_fine_tunes_together_with_the_broad_one_and_alone_is_refused(tmp_path):
    """Fine-tuning on a denser grid of a corner of the box: trained together with one that spans the box (``train
    --grid BROAD --grid CORNER``), the split is over both and the model records both; alone, its smaller box would
    feed the network other inputs for the same star, so it is refused with the way out."""
    from click.testing import CliRunner
    from toy_grid import TOY_SPACE, toy_spectrum

    from stellarinf.cli import cli
    from stellarinf.io.grid import SpectralGrid, write_grid
    from stellarinf.labels import LabelSpace

    pre = train(GRID, tmp_path / "pre", _payne_cfg(max_steps=20))
    cool = LabelSpace.from_bounds({"teff": (4500.0, 5000.0), "logg": (2.0, 5.0), "feh": (-1.5, 0.5)})
    labels = cool.lower + np.random.default_rng(7).random((16, 3)) * (cool.upper - cool.lower)
    flux, cont = toy_spectrum(labels, GRID.wavelength)
    corner = SpectralGrid(cool, labels, GRID.wavelength, flux, cont, {**GRID.metadata, "seed": 7})
    write_grid(tmp_path / "broad.h5", GRID)
    write_grid(tmp_path / "corner.h5", corner)
    with pytest.raises(
        StellarinfError, match=r"label box differs.*teff 4500\.\.5000 \(model 4500\.\.6500\).*--grid BROAD"
    ):
        train(tmp_path / "corner.h5", None, _payne_cfg(max_steps=1), init=pre.emulator)
    argv = ["train", "--grid", str(tmp_path / "broad.h5"), "--grid", str(tmp_path / "corner.h5"), "--model", "payne"]
    argv += ["--hidden", "32,32", "--max-steps", "10", "--init", str(tmp_path / "pre"), "--quiet"]
    result = CliRunner().invoke(cli, [*argv, "-o", str(tmp_path / "ft")])
    assert result.exit_code == 0, result.output
    grid_meta = load_emulator(tmp_path / "ft").metadata["training_grid"]
    n = len(GRID) + len(corner)
    assert grid_meta["n_train"] + grid_meta["n_test"] < n and grid_meta["n_train"] > len(GRID)  # split over both
    assert [p["rows"] for p in grid_meta["metadata"]["concatenated"]] == [len(GRID), len(corner)]
    assert grid_meta["path"] == f"{tmp_path / 'broad.h5'} + {tmp_path / 'corner.h5'}"
    assert load_emulator(tmp_path / "ft").label_space == TOY_SPACE


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
    with pytest.raises(StellarinfError, match="unknown precision 'float16'; choose one of float32, bfloat16"):
        train(GRID, None, _payne_cfg(precision="float16"))
    with pytest.raises(StellarinfError, match="'mup' is for TransformerPayne"):
        train(GRID, None, _payne_cfg(lr_scaling="mup"))
    with pytest.raises(StellarinfError, match="unknown lr_scaling 'sqrt'"):
        train(GRID, None, TrainConfig(lr_scaling="sqrt"))
    with pytest.raises(StellarinfError, match="too few"):
        train(GRID.subset(np.arange(2)), None, _payne_cfg())


def test_budget_schedule_length_from_the_measured_step_time():
    from stellarinf.emulators.training import _BUDGET_SAFETY, budget_schedule_steps

    # 600 s budget, 100 s gone, 0.1 s per step, a 2 s validation every 200 steps
    expect = 32 + int(_BUDGET_SAFETY * 500.0 // (0.1 + 2.0 / 200))
    assert budget_schedule_steps(32, 100.0, 600.0, 0.1, 2.0, 200, 10**6) == expect
    assert budget_schedule_steps(32, 100.0, 600.0, 0.1, 2.0, 200, 1000) == 1000  # max_steps caps it
    assert budget_schedule_steps(32, 700.0, 600.0, 0.1, 2.0, 200, 10**6) == 33  # spent: one more step


def test_a_budget_schedule_decays_as_a_schedule_of_its_measured_length_and_resumes_on_it(tmp_path, monkeypatch):
    """The budget schedule is sized during the warm-up (whose learning rates do not depend on the length): a run
    whose timing chose 25 steps trains bit for bit as a 25-step schedule and ends there ('schedule_end'); a run
    killed after the sizing resumes on the recorded length without timing again."""
    from stellarinf.emulators import training

    calls = []

    def sized(step, elapsed_s, budget_s, step_s, validation_s, validate_every, max_steps):
        calls.append((step, step_s))
        assert budget_s == 600.0 and step_s > 0 and validation_s > 0 and max_steps == 10_000
        return 25  # what a machine of this speed would have afforded, fixed so that the test is deterministic

    monkeypatch.setattr(training, "_TIMED_STEPS", 3)
    monkeypatch.setattr(training, "budget_schedule_steps", sized)
    # decaying over all of it: the plain cosine, comparable below
    budget_cfg = _payne_cfg(max_steps=10_000, max_minutes=10.0, schedule="budget", decay_fraction=1.0)
    fitted = train(GRID, tmp_path / "budget", budget_cfg)
    assert calls == [(5, calls[0][1])]  # sized once, after 2 + 3 steps (inside the 5-step warm-up)
    assert fitted.stop_reason == "schedule_end" and fitted.metrics["steps"] == 25
    assert fitted.metrics["schedule_steps"] == 25
    plain = train(GRID, None, _payne_cfg(max_steps=25))
    assert serialise(fitted.emulator.network) == serialise(plain.emulator.network)

    class Killed(Exception):
        pass

    def kill(step, state):
        if step == 17:
            raise Killed

    calls.clear()
    with pytest.raises(Killed):
        train(GRID, tmp_path / "resumed", budget_cfg, callback=kill)
    assert json.loads((tmp_path / "resumed" / "checkpoint" / "state.json").read_text())["schedule_steps"] == 25
    calls.clear()
    resumed = train(GRID, tmp_path / "resumed", budget_cfg)
    assert calls == [] and resumed.stop_reason == "schedule_end"
    assert serialise(resumed.emulator.network) == serialise(fitted.emulator.network)
    with pytest.raises(StellarinfError, match="time budget"):
        train(GRID, None, _payne_cfg(schedule="budget"))
    with pytest.raises(StellarinfError, match="unknown schedule"):
        train(GRID, None, _payne_cfg(schedule="linear"))


def test_a_budget_schedule_is_resized_at_validations_until_its_decay_starts(tmp_path, monkeypatch):
    """Warm-up, stable, decay over the last 20 %: while the rate is at its peak, each validation re-sizes the schedule
    to the pace measured since the last sizing (here: 30 steps, then 40, as if the machine had sped up); from the
    decay's start on it is fixed."""
    from stellarinf.emulators import training

    calls = []

    def sized(step, elapsed_s, budget_s, step_s, validation_s, validate_every, max_steps):
        calls.append(step)
        assert step_s > 0
        return 30 if step == 5 else 40

    monkeypatch.setattr(training, "_TIMED_STEPS", 3)
    monkeypatch.setattr(training, "budget_schedule_steps", sized)
    res = train(GRID, tmp_path / "wsd", _payne_cfg(max_steps=10_000, max_minutes=10.0, schedule="budget"))
    assert calls == [5, 10, 20, 30]  # sized after 2 + 3 steps, then at the validations before step 32
    assert res.stop_reason == "schedule_end" and res.metrics["steps"] == 40
    assert res.metrics["schedule_steps"] == 40 and res.metrics["decay_start"] == 32


def test_learning_rate_schedules_known_values():
    """Warm-up to the peak, then cosine to 1 % of it: over all the steps after the warm-up, or (budget schedule)
    from ``decay_start`` on, the peak held until then."""
    from stellarinf.emulators.training import learning_rate

    cfg = _payne_cfg(learning_rate=1e-3, warmup_steps=10).resolved()
    cosine = lambda i: float(learning_rate(cfg, i, 110, 0))  # noqa: E731
    wsd = lambda i: float(learning_rate(cfg, i, 110, 90))  # noqa: E731
    for f in (cosine, wsd):
        assert f(5) == pytest.approx(5e-4) and f(10) == pytest.approx(1e-3) and f(110) == pytest.approx(1e-5)
    assert cosine(60) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)  # half-way down the cosine
    assert wsd(60) == wsd(89) == pytest.approx(1e-3)  # held
    assert wsd(100) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)  # half-way down the last 20 steps
    assert all(float(learning_rate(cfg, i, 110, 7)) == cosine(i) for i in range(0, 111, 7))  # inside the warm-up
    with pytest.raises(StellarinfError, match="decay_fraction"):
        train(GRID, None, _payne_cfg(decay_fraction=0.0))


def test_width_transfer_gives_each_matrix_its_width_scaled_rate():
    """``lr_scaling="mup"``: after the same gradients, every matrix whose input grows with the width moves by
    base_width/dim of what it moves under one rate; the label input layer and the biases move alike."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from stellarinf.emulators.kinds import get_kind
    from stellarinf.emulators.training import make_optimizer
    from stellarinf.emulators.transformer_payne import TransformerPayne, preset_config, width_lr_multipliers

    net = TransformerPayne(preset_config("tiny", 3), jax.random.key(0))  # dim 32
    params = eqx.filter(net, eqx.is_inexact_array)
    mult = width_lr_multipliers(params, 64)
    assert mult.blocks.w_in == mult.blocks.wq == mult.embed_out.weight == mult.head_out.weight == 2.0
    assert mult.embed_in.weight == mult.embed_in.bias == mult.head_hidden.bias == 1.0
    grads = jax.tree_util.tree_map(lambda p: jnp.sin(jnp.arange(p.size, dtype=p.dtype)).reshape(p.shape), params)
    kind = get_kind("transformer-payne")
    moved = {}
    for scaling in ("standard", "mup"):
        cfg = TrainConfig(preset="tiny", lr_scaling=scaling, base_width=64).resolved()
        opt = make_optimizer(cfg, params, kind, schedule=lambda count: 1e-3)
        moved[scaling], _ = opt.update(grads, opt.init(params), params)
    np.testing.assert_allclose(moved["mup"].blocks.w_out, 2.0 * moved["standard"].blocks.w_out, rtol=1e-6)
    np.testing.assert_allclose(moved["mup"].head_out.weight, 2.0 * moved["standard"].head_out.weight, rtol=1e-6)
    np.testing.assert_array_equal(moved["mup"].embed_in.weight, moved["standard"].embed_in.weight)
    np.testing.assert_array_equal(moved["mup"].head_out.bias, moved["standard"].head_out.bias)


def test_train_cli_refuses_a_width_that_is_not_whole_heads(tmp_path):
    from click.testing import CliRunner

    from stellarinf.cli import cli

    grid = tmp_path / "g.h5"
    grid.touch()
    result = CliRunner().invoke(cli, ["train", "--grid", str(grid), "--dim", "100", "-o", str(tmp_path / "m")])
    assert result.exit_code == 2 and "100 is not a multiple of 32 (the head size)" in result.output, result.output
