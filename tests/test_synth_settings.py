"""The synthesizer's numerics: blocked evaluation is exact, the settings are validated, the defaults converge."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stellarinf import enable_float64
from stellarinf.synth import fine_grid
from stellarinf.synth.lines import LinePoints, block_points
from stellarinf.synth.settings import (
    DEFAULT_SETTINGS,
    EXTENDED_SETTINGS,
    REFERENCE_SETTINGS,
    STANDARD_SETTINGS,
    SynthSettings,
    fine_resolution,
    settings_preset,
)

synthesize_module = importlib.import_module("stellarinf.synth.synthesize")
enable_float64()
NAMES = ("teff", "logg", "feh", "vmic", "alpha_fe")
STARS = jnp.array([[5772.0, 4.44, 0.0, 1.0, 0.0], [4300.0, 1.8, -1.2, 1.6, 0.4]])


def test_block_points_keep_every_point_in_order():
    rng = np.random.default_rng(3)
    n = 700
    pix = np.sort(rng.integers(0, 1000, n)).astype(np.int32)
    pts = LinePoints(rng.integers(0, 50, n).astype(np.int32), pix, rng.normal(size=n), rng.random(n))
    core, wing = block_points((pts, pts), n_blocks=4, block=256)
    assert core.line.shape[0] == 4 and np.array_equal(core.line, wing.line)
    got = []
    for b in range(4):
        real = core.taper[b] > 0
        assert np.all(core.taper[b, real.sum() :] == 0)  # padding only at the end, and it adds nothing
        got += list(zip(core.line[b][real], core.pixel[b][real] + 256 * b, core.dv[b][real]))
    keep = pts.taper > 0
    assert got == list(zip(pts.line[keep], pts.pixel[keep], pts.dv[keep]))


WL = fine_grid(6707.0, 6711.0)  # Li I 6707.8 Å (air) and Fe I lines; 1,300 fine pixels


def _flux(fn):
    return np.asarray(jax.jit(jax.vmap(lambda s: fn(s)[0]))(STARS))


@pytest.fixture(scope="module")
def default_flux():
    return _flux(synthesize_module.make_synthesizer(WL, NAMES))


def test_blocked_synthesis_does_not_depend_on_the_block_size(monkeypatch, default_flux):
    """Block boundaries (and the padded last block) change nothing but rounding."""
    monkeypatch.setattr(synthesize_module, "BLOCK", 96)  # 14 blocks instead of 3
    fn, lines = synthesize_module.line_synthesizer(WL, NAMES)
    small = _flux(lambda s: fn(s, jnp.asarray(lines.log_gf)))
    assert np.all(np.min(default_flux, axis=1) < 0.9)  # lines are there
    np.testing.assert_allclose(small, default_flux, rtol=1e-12, atol=0)


def test_settings_are_validated():
    with pytest.raises(ValueError, match="voigt_terms"):
        SynthSettings(voigt_terms=20)
    with pytest.raises(ValueError, match="depth_index"):
        SynthSettings(depth_index=(30, 20, 40, 50, 51, 52, 53, 54, 55, 56))
    with pytest.raises(ValueError, match="edge_tolerance"):
        SynthSettings(edge_tolerance=0.0)
    # the reference resolves the line windows further too (10x lower opacity at their edges)
    assert REFERENCE_SETTINGS.edge_tolerance == pytest.approx(0.1 * DEFAULT_SETTINGS.edge_tolerance)
    assert len(REFERENCE_SETTINGS.depth_index) == 72 and STANDARD_SETTINGS == SynthSettings()
    # the default reaches log tau = -6.75 (ATLAS9 index 1) and keeps the standard depths below -5
    assert DEFAULT_SETTINGS == EXTENDED_SETTINGS and EXTENDED_SETTINGS.depth_index[0] == 1
    assert set(STANDARD_SETTINGS.depth_index) < set(EXTENDED_SETTINGS.depth_index)
    # an old file's "default" is the standard preset; an unknown name lists the presets
    assert settings_preset("default") == STANDARD_SETTINGS and fine_resolution("default") == fine_resolution("extended")
    with pytest.raises(ValueError, match="extended, standard, reference"):
        settings_preset("fast")


def test_default_settings_close_to_the_reference(default_flux):
    """Unbroadened, on the same fine grid: the default angles, depths and Voigt terms are within 1 % of the
    slow reference everywhere (at R 28,000 the benchmark finds < 0.5 %: benchmarks/synth_speed.py)."""
    ref = _flux(synthesize_module.make_synthesizer(WL, NAMES, settings=REFERENCE_SETTINGS))
    diff = np.abs(default_flux - ref)
    assert np.max(diff) < 0.01 and np.max(diff) > 0  # different numerics, the same spectrum


def test_hydrogen_core_window_changes_nothing():
    """Hydrogen lines evaluate the Voigt core formula only within CORE_KMS of the centre; elsewhere the wing
    formula alone gives the same profile, up to 20,000 K and vmic 5 km/s."""
    from stellarinf.synth import hydrogen
    from stellarinf.synth.constants import AMU, C_KMS, K_B
    from stellarinf.synth.voigt import voigt_profile

    h = hydrogen.hydrogen_line(2, 3)
    wl = h.wavelength + np.linspace(-30.0, 30.0, 6001)
    core = np.flatnonzero(np.abs(wl - h.wavelength) < h.wavelength * hydrogen.CORE_KMS / C_KMS)
    T = jnp.array([3000.0, 8000.0, 20000.0])[:, None]
    xi = jnp.sqrt(2.0 * K_B * T / (1.008 * AMU) * 1e-10 + 5.0**2)
    width = h.wavelength * xi / C_KMS
    hwhm = jnp.array([1e-4, 1e-2, 0.3])[:, None]
    dl = jnp.asarray(wl - h.wavelength)[None, :]
    got = np.asarray(hydrogen._voigt(dl, width, hwhm, core))
    want = np.asarray(voigt_profile(dl, width / np.sqrt(2.0), hwhm))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=0)  # rounding: the width passes through σ = w/√2
    assert 0 < core.size < wl.size // 10
