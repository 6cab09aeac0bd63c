"""Line selection per tier of similar stars: the box's lines with narrower windows for hotter, more metal-poor and
lower-gravity stars, the same spectra."""

import importlib

import numpy as np
import pytest

import stellarinf  # noqa: F401  (float64)
from stellarinf.observe.broadening import broaden, velocity_step
from stellarinf.synth import fine_grid
from stellarinf.synth.selection import TEFF_TIERS, Tier, select_lines, select_molecular_lines, selection_tier
from stellarinf.synth.synthesize import make_synthesizer


def test_selection_tier_is_the_teff_tier_at_or_below_and_the_feh_and_logg_tiers_at_or_above():
    assert selection_tier() == Tier(None, None, None)
    # the coolest Teff tier is the whole box
    assert selection_tier(3900.0).teff_min is None and selection_tier(4300.0).teff_min is None
    assert selection_tier(TEFF_TIERS[1]).teff_min == TEFF_TIERS[1]
    assert [selection_tier(t).teff_min for t in (4500.0, 5600.0, 6999.0, 7000.0)] == [4375.0, 5500.0, 6250.0, 7000.0]
    assert [selection_tier(logg_max=g).logg_max for g in (1.0, 3.0, 3.01, 5.0)] == [3.0, 3.0, None, None]
    assert [selection_tier(feh_max=f).feh_max for f in (-2.5, -1.5, -1.2, -0.5, 0.0, 0.5)] == [
        -1.5,
        -1.5,
        -0.5,
        -0.5,
        None,
        None,
    ]


@pytest.mark.slow  # ~70 s on a 2-core CPU; what it guards (a tier synthesises as the box does, a grid in batches as
# one selection for the box) is tested below on the spectra themselves; run with `pytest -m slow` after changing tiers
def test_tiers_keep_the_box_lines_with_narrower_windows():
    lo, hi = 4733.0, 4741.0  # the C2 Swan (1,0) band head and neutral metal lines: both thin out with Teff
    full, full_hw = select_lines(lo, hi)
    full_m, full_m_hw = select_molecular_lines(lo, hi)
    # and at low pressure the damping wings are narrower (here the C2 band, which giants keep, is most of the pairs)
    axes = (
        ("teff_min", (None, 4375.0, 4750.0, 5500.0, 6250.0), 0.7),
        ("feh_max", (None, -0.5, -1.5), 0.7),
        ("logg_max", (None, 3.0), 0.85),
    )
    for axis, tiers, fewer in axes:
        pairs = []
        for tier in tiers:
            idx, hw = select_lines(lo, hi, **{axis: tier})
            m_idx, m_hw = select_molecular_lines(lo, hi, **{axis: tier})
            pairs.append(hw.sum() + m_hw.sum())
            # no line is dropped (lines each below the cut add up in crowded ranges); windows only narrow
            np.testing.assert_array_equal(idx, full)
            np.testing.assert_array_equal(m_idx, full_m)
            assert np.all(hw <= full_hw + 1e-9) and np.all(m_hw <= full_m_hw + 1e-9) and hw.min() >= 3.0
        assert pairs == sorted(pairs, reverse=True) and pairs[-1] < fewer * pairs[0], (axis, pairs)


# at the edges of a Teff and a log g tier (a metal-rich giant); of the coolest Teff tier and an [Fe/H] tier
@pytest.mark.parametrize(("teff", "feh", "logg"), [(5600.0, 0.3, 3.0), (4400.0, -1.5, 4.0)])
def test_a_star_in_a_tier_synthesises_as_with_the_whole_box(teff, feh, logg):
    import jax.numpy as jnp

    fine = fine_grid(4733.0, 4741.0)
    names = ("teff", "logg", "feh", "vmic", "c_fe")
    x = jnp.asarray([teff, logg, feh, 1.0, 0.3])  # at its tier's edges, carbon-rich: lines as strong as it allows
    full = make_synthesizer(fine, names, molecules="on")(x)[0]
    tiered = make_synthesizer(fine, names, molecules="on", teff_min=teff, feh_max=feh, logg_max=logg)(x)[0]
    # as a grid stores them: at R 28,000 (a tier's windows end where its own reference atmospheres reach the edge
    # tolerance, the box's where the box's do: the tails cut off differ, and in this crowded range they add up)
    diff = np.asarray(broaden(tiered - full, velocity_step(fine), resolution=28000.0))[50:-50]
    assert np.abs(diff).max() < 2e-3 and np.sqrt(np.mean(diff**2)) < 5e-4


@pytest.mark.slow  # ~50 s on a 2-core CPU; a star in a tier synthesising as with the whole box is tested above on
# the spectra themselves; run with `pytest -m slow` after changing how a grid batches its tiers
def test_a_grid_in_teff_batches_matches_one_selection_for_the_box(tmp_path, monkeypatch):
    from stellarinf.commands.grid import generate_grid
    from stellarinf.errors import GridFileError
    from stellarinf.io.grid import read_grid
    from stellarinf.synth import selection
    from stellarinf.synth.observed import padded_fine_grid
    from stellarinf.synth.selection import calibration_fingerprint
    from stellarinf.synth.settings import fine_resolution
    from stellarinf.wavelength import Window

    win = Window("custom", 4733.0, 4741.0, 28000.0)
    fine = padded_fine_grid(win.wmin, win.wmax, resolution=win.resolution, fine_resolution=fine_resolution("extended"))
    win_fine = (float(fine[0]), float(fine[-1]))
    opts = dict(window=win, n=8, seed=5, batch_size=2, elements=("C",), molecules="on", progress=False)
    batch = read_grid(generate_grid(tmp_path / "batch.h5", **opts))
    box = read_grid(generate_grid(tmp_path / "box.h5", line_selection="box", **opts))
    np.testing.assert_array_equal(batch.labels, box.labels)  # same rows, in the design's order
    assert batch.metadata["line_selection"] == "batch" and box.metadata["line_selection"] == "box"
    assert batch.metadata["line_tiers"] == selection.tier_scheme() and "line_tiers" not in box.metadata
    assert np.abs(batch.flux - box.flux).max() < 2e-3
    with pytest.raises(GridFileError, match="line_selection"):  # never mixed in one file
        generate_grid(tmp_path / "box.h5", **{**opts, "n": 10})
    # nor with another solar calibration of this window's lines (recalibrating other windows leaves it alone)
    assert batch.metadata["loggf_calibration"] == calibration_fingerprint(*win_fine)
    assert calibration_fingerprint(6600.0, 6610.0) != batch.metadata["loggf_calibration"]
    monkeypatch.setattr(selection, "tier_scheme", lambda: "Teff 5000")  # nor with other tier edges
    with pytest.raises(GridFileError, match="line-selection tiers"):
        generate_grid(tmp_path / "batch.h5", **{**opts, "n": 10})
    monkeypatch.undo()
    assert box.metadata["line_windows"] == selection.window_scheme()  # nor with other line windows (box or batch)
    monkeypatch.setattr(selection, "window_scheme", lambda: "to the edge tolerance at vmic 0.5 km/s")
    with pytest.raises(GridFileError, match="Doppler cores of high-vmic stars"):
        generate_grid(tmp_path / "box.h5", **{**opts, "line_selection": "box", "n": 10})
    monkeypatch.undo()
    monkeypatch.setattr(selection, "calibration_fingerprint", lambda *a, **k: "recalibrated")
    with pytest.raises(GridFileError, match="calibration of its window changed"):
        generate_grid(tmp_path / "batch.h5", **{**opts, "n": 10})


def test_a_smaller_edge_tolerance_widens_the_windows_of_the_same_lines():
    """The edge tolerance sets only where windows end: the same lines, never narrower, and a damping wing's window
    grows as tolerance^-1/2 (Lorentzian), a Doppler core's far less (Gaussian)."""
    lo, hi = 4733.0, 4741.0
    idx, hw = select_lines(lo, hi)
    wide_idx, wide_hw = select_lines(lo, hi, edge_tolerance=1e-4)
    np.testing.assert_array_equal(idx, wide_idx)
    growth = wide_hw / hw
    assert np.all(growth >= 1.0 - 1e-12) and growth.max() == pytest.approx(np.sqrt(10.0), rel=0.02)
    assert np.median(growth) < np.sqrt(10.0)  # not every window is a damping wing's


def test_windows_hold_the_doppler_cores_of_the_box_s_highest_vmic(monkeypatch):
    """A cool metal-rich dwarf at vmic 2.5 km/s (the box's top) synthesises as with 10x wider windows; with windows
    sized at vmic 0.5 km/s only (the rating's, as before the fix), its line cores were cut by several 0.1 %."""
    import dataclasses

    import jax.numpy as jnp

    from stellarinf.synth import selection
    from stellarinf.synth.settings import DEFAULT_SETTINGS

    synth_module = importlib.import_module("stellarinf.synth.synthesize")  # (the package re-exports its function)
    fine = fine_grid(4841.0, 4851.0)
    names = ("teff", "logg", "feh", "vmic")
    x = jnp.asarray([4484.0, 4.33, 0.2, 2.5])
    wide = dataclasses.replace(DEFAULT_SETTINGS, edge_tolerance=1e-4)

    def forget_selections():  # the in-memory selections and synthesizers, so WINDOW_VMIC is read again
        for cached in (selection.select_lines, selection.select_molecular_lines, synth_module._cached):
            cached.cache_clear()

    def max_cut():
        forget_selections()
        flux = [make_synthesizer(fine, names, molecules="on", settings=s)(x)[0] for s in (DEFAULT_SETTINGS, wide)]
        diff = np.asarray(broaden(flux[0] - flux[1], velocity_step(fine), resolution=28000.0))[50:-50]
        return np.abs(diff).max()

    now = max_cut()
    monkeypatch.setattr(selection, "WINDOW_VMIC", selection.RATING_VMIC)
    before = max_cut()
    monkeypatch.undo()
    forget_selections()
    assert now < 1.5e-3 and before > 2 * now, (now, before)


def test_the_on_disk_selection_cache_is_read_by_one_thread_at_a_time(tmp_path, monkeypatch):
    """np.load parses headers with ast.literal_eval, which CPython 3.11 cannot run in two threads at once (it raised
    SystemError in the grid command, whose tiers read their selections in threads): reads of the cache never overlap,
    and every thread gets the cached arrays back."""
    import threading
    import time

    from stellarinf.synth import selection

    path = tmp_path / "sel.npz"
    np.savez(path, index=np.arange(5), half_width=np.full(5, 3.0))
    inside, most = [0], [0]
    guard = threading.Lock()
    real_load = np.load

    def slow_load(*args, **kwargs):
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.05)  # long enough for every other thread to arrive while this one reads
        try:
            return real_load(*args, **kwargs)
        finally:
            with guard:
                inside[0] -= 1

    monkeypatch.setattr(selection.np, "load", slow_load)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(selection._cached_on_disk(path, lambda: None))) for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1
    assert len(results) == 6 and all(
        np.array_equal(idx, np.arange(5)) and hw.tolist() == [3.0] * 5 for idx, hw in results
    )
