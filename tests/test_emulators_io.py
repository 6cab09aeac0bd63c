"""Model files (save → load bit-identical, clear errors for missing/corrupt/mismatched files), the
registry of named models, and the `train` / `evaluate` commands."""

import json

import jax
import numpy as np
import pytest
from click.testing import CliRunner
from toy_grid import TOY_RANGE, TOY_SPACE, make_toy_grid

from stellarinf.cli import cli
from stellarinf.emulators import (
    Emulator,
    PayneConfig,
    PayneMLP,
    TransformerPayne,
    load_emulator,
    preset_config,
    save_emulator,
)
from stellarinf.emulators.model_io import FORMAT_VERSION
from stellarinf.errors import ModelFileError

WL = np.linspace(TOY_RANGE[0], TOY_RANGE[1], 90)
LABELS = np.array([[5000.0, 3.0, -0.5], [6200.0, 4.5, 0.2]])


def _tp():
    cfg = preset_config("tiny", 3, log10_wavelength_ref=float(np.log10(6015.0)), log_continuum_offset=14.0)
    return Emulator(
        TransformerPayne(cfg, jax.random.key(5)),
        TOY_SPACE,
        TOY_RANGE,
        resolution=28000.0,
        has_continuum=True,
        error_wavelength=WL,
        error_sigma=np.linspace(1e-3, 2e-3, WL.size),
        metadata={"training_grid": {"path": "toy.h5", "n_train": 10}, "metrics": {"mae": 1e-3}},
    )


def _payne():
    return Emulator(
        PayneMLP(PayneConfig(3, WL.size, (8, 8)), jax.random.key(6)), TOY_SPACE, TOY_RANGE, training_wavelength=WL
    )


@pytest.fixture(scope="module")
def saved_tp(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tp"
    emu = _tp()
    save_emulator(path, emu)
    return emu, path


def test_save_then_load_gives_bit_identical_predictions(saved_tp, tmp_path):
    emu, path = saved_tp
    back = load_emulator(path)
    np.testing.assert_array_equal(back.predict(LABELS, WL), emu.predict(LABELS, WL))
    np.testing.assert_array_equal(np.asarray(back.error(WL)), np.asarray(emu.error(WL)))
    assert back.label_space == emu.label_space and back.wavelength_range == emu.wavelength_range
    assert back.resolution == 28000.0 and back.has_continuum
    doc = back.metadata
    for key in (
        "format",
        "format_version",
        "architecture",
        "label_space",
        "wavelength_range",
        "resolution",
        "training_grid",
        "metrics",
        "error_table",
        "stellarinf_version",
        "weights",
    ):
        assert key in doc, key
    assert doc["architecture"]["kind"] == "transformer-payne" and doc["architecture"]["hyperparameters"]["dim"] == 32
    assert doc["training_grid"]["path"] == "toy.h5" and doc["metrics"]["mae"] == 1e-3
    payne = _payne()
    save_emulator(tmp_path / "payne", payne)
    pb = load_emulator(tmp_path / "payne")
    np.testing.assert_array_equal(pb.predict(LABELS, WL[::3]), payne.predict(LABELS, WL[::3]))
    np.testing.assert_array_equal(np.asarray(pb.training_wavelength), WL)
    assert not any(p.suffix in (".pkl", ".pickle", ".npz") for p in (tmp_path / "payne").iterdir())


def _copy(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda d: (d / "model.json").unlink(), "no model.json"),
        (lambda d: (d / "weights.eqx").unlink(), "weights file .* is missing"),
        (lambda d: (d / "model.json").write_text("{not json"), "corrupt"),
        (lambda d: (d / "weights.eqx").write_bytes((d / "weights.eqx").read_bytes()[:-100]), "checksum differs"),
        (lambda d: _edit(d, lambda doc: doc.update(format_version=FORMAT_VERSION + 1)), "upgrade stellarinf"),
        (lambda d: _edit(d, lambda doc: doc.update(format="something-else")), "not a stellarinf emulator"),
        (
            lambda d: _edit(d, lambda doc: doc["architecture"]["hyperparameters"].update(dim=64, n_heads=2)),
            "does not fit the architecture",
        ),
        (lambda d: _edit(d, lambda doc: doc["architecture"].update(kind="cannon")), "unknown emulator kind"),
    ],
)
def test_bad_model_files_give_clear_errors(saved_tp, tmp_path, damage, match):
    d = _copy(saved_tp[1], tmp_path / "m")
    damage(d)
    with pytest.raises(ModelFileError, match=match):
        load_emulator(d)


def _edit(d, fn):
    doc = json.loads((d / "model.json").read_text())
    fn(doc)
    (d / "model.json").write_text(json.dumps(doc))


def test_missing_directory_and_default_models(tmp_path, monkeypatch, saved_tp):
    with pytest.raises(ModelFileError, match="stellarinf train"):
        load_emulator(tmp_path / "nowhere")
    monkeypatch.setenv("STELLARINF_DATA", str(tmp_path))
    with pytest.raises(ModelFileError, match="'default' emulator is not there yet"):
        load_emulator("default")
    (tmp_path / "models").mkdir()
    _copy(saved_tp[1], tmp_path / "models" / "transformer-payne-small")
    assert load_emulator("default").kind == "transformer-payne"
    with pytest.raises(ModelFileError, match="--model payne"):
        load_emulator("default-payne")


def test_train_and_evaluate_commands(tmp_path, saved_tp):
    grid_path = tmp_path / "toy.h5"
    make_toy_grid(n=30, n_pix=90, seed=7).save(grid_path)
    runner = CliRunner()
    out = tmp_path / "payne"
    res = runner.invoke(
        cli,
        [
            "train",
            "--grid",
            str(grid_path),
            "--model",
            "payne",
            "--hidden",
            "16,16",
            "--max-steps",
            "30",
            "--validate-every",
            "10",
            "--warmup-steps",
            "5",
            "--quiet",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "held-out test" in res.output and "MAE=" in res.output and "MSE=" in res.output
    assert load_emulator(out).metadata["training_grid"]["path"] == str(grid_path)
    metrics_path = tmp_path / "metrics.json"
    res = runner.invoke(
        cli, ["evaluate", "--emulator", str(saved_tp[1]), "--grid", str(grid_path), "--quiet", "-o", str(metrics_path)]
    )
    assert res.exit_code == 0, res.output
    m = json.loads(metrics_path.read_text())
    assert m["n_spectra"] == 30 and m["mae"] > 0 and m["mse"] > 0 and m["p99"] >= m["mae"]
    # a grid outside the emulator's window is refused with exit code 3 (bad input) via the CLI entry point
    far = tmp_path / "far.h5"
    make_toy_grid(n=4, n_pix=20, wavelength_range=(6500.0, 6510.0)).save(far)
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "stellarinf.cli", "evaluate", "--emulator", str(out), "--grid", str(far), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 3 and "evaluate on a grid of the emulator's window" in proc.stderr


def test_transformer_payne_with_its_training_pixels_is_evaluated_there(tmp_path):
    """A TransformerPayne that knows its (log-uniform) training pixels gets the Payne's fast path: fits evaluate it
    at those pixels and Lanczos-upsample (at whole-pixel offsets that is the network's own value), and the
    pixels survive a save/load round trip; the observation model then upsamples instead of asking the network
    for wavelengths between its training pixels."""
    import warnings

    from stellarinf.io.spectrum import Spectrum
    from stellarinf.observe.model import ObservationModel

    pixels = TOY_RANGE[0] * np.exp(np.arange(200) / (28000.0 * 2.5))
    emu = _tp()._replace(training_wavelength=pixels)
    assert emu.native_log_grid == pytest.approx((np.log(pixels[0]), 1 / 70000.0), rel=1e-9)
    lab = LABELS[0]
    up = np.asarray(emu.flux_upsampled(lab, 40.0, 2, 40))
    np.testing.assert_allclose(up[::2], np.asarray(emu.flux(lab, pixels[40:60])), atol=2e-6)
    save_emulator(tmp_path / "tp", emu)
    back = load_emulator(tmp_path / "tp")
    np.testing.assert_allclose(np.asarray(back.training_wavelength), pixels)
    assert back.native_log_grid == emu.native_log_grid
    obs = pixels[30:170]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        om = ObservationModel(
            back, Spectrum(obs, np.ones_like(obs), np.full_like(obs, 0.01), resolution=28000.0), rv_max=20.0
        )
    assert om.upsample >= 1
    with pytest.raises(Exception, match="increasing"):
        _tp()._replace(training_wavelength=pixels[::-1])
