"""Line selection per Teff tier: fewer lines and narrower windows for hotter stars, the same spectra."""

import numpy as np
import pytest

import stellarinf  # noqa: F401  (float64)
from stellarinf.observe.broadening import broaden, velocity_step
from stellarinf.synth import fine_grid
from stellarinf.synth.selection import REFERENCE_TEFF, Tier, select_lines, select_molecular_lines, selection_tier
from stellarinf.synth.synthesize import make_synthesizer


def test_selection_tier_is_the_reference_at_or_below_and_the_feh_tier_at_or_above():
    assert selection_tier() == Tier(None, None)
    # the coolest Teff tier is the whole box
    assert selection_tier(3900.0).teff_min is None and selection_tier(4500.0).teff_min is None
    assert selection_tier(REFERENCE_TEFF[1]).teff_min == REFERENCE_TEFF[1]
    assert [selection_tier(t).teff_min for t in (5600.0, 6999.0, 7000.0)] == [5500.0, 6250.0, 7000.0]
    assert [selection_tier(feh_max=f).feh_max for f in (-2.5, -1.5, -1.2, -0.5, 0.0, 0.5)] == [
        -1.5,
        -1.5,
        -0.5,
        -0.5,
        None,
        None,
    ]


def test_hotter_tiers_keep_a_subset_with_narrower_windows():
    lo, hi = 4733.0, 4741.0  # the C2 Swan (1,0) band head and neutral metal lines: both thin out with Teff
    full, full_hw = select_lines(lo, hi)
    for axis, tiers in (("teff_min", (None, 4750.0, 5500.0, 6250.0)), ("feh_max", (None, -0.5, -1.5))):
        pairs = []
        for tier in tiers:
            idx, hw = select_lines(lo, hi, **{axis: tier})
            m_idx, m_hw = select_molecular_lines(lo, hi, **{axis: tier})
            pairs.append(hw.sum() + m_hw.sum())
            assert np.isin(idx, full).all()
            assert np.all(hw <= full_hw[np.searchsorted(full, idx)] + 1e-9)
        assert pairs == sorted(pairs, reverse=True) and pairs[-1] < 0.7 * pairs[0], (axis, pairs)


@pytest.mark.parametrize(("teff", "feh"), [(5600.0, 0.3), (4100.0, -1.5)])  # a Teff tier; an [Fe/H] tier
def test_a_star_in_a_tier_synthesises_as_with_the_whole_box(teff, feh):
    import jax.numpy as jnp

    fine = fine_grid(4733.0, 4741.0)
    names = ("teff", "logg", "feh", "vmic", "c_fe")
    x = jnp.asarray([teff, 4.0, feh, 1.0, 0.3])  # at its tier's edges, carbon-rich: lines as strong as it allows
    full = make_synthesizer(fine, names, molecules="on")(x)[0]
    tiered = make_synthesizer(fine, names, molecules="on", teff_min=teff, feh_max=feh)(x)[0]
    # as a grid stores them: at R 28,000 (the lines a tier drops are each below the strength cut, but in this crowded
    # range they add up to a few 1e-4 at the fine grid's resolution)
    diff = np.asarray(broaden(tiered - full, velocity_step(fine), resolution=28000.0))[50:-50]
    assert np.abs(diff).max() < 2e-3 and np.sqrt(np.mean(diff**2)) < 5e-4


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
    assert np.abs(batch.flux - box.flux).max() < 2e-3
    with pytest.raises(GridFileError, match="line_selection"):  # never mixed in one file
        generate_grid(tmp_path / "box.h5", **{**opts, "n": 10})
    # nor with another solar calibration of this window's lines (recalibrating other windows leaves it alone)
    assert batch.metadata["loggf_calibration"] == calibration_fingerprint(*win_fine)
    assert calibration_fingerprint(6600.0, 6610.0) != batch.metadata["loggf_calibration"]
    monkeypatch.setattr(selection, "calibration_fingerprint", lambda *a, **k: "recalibrated")
    with pytest.raises(GridFileError, match="calibration of its window changed"):
        generate_grid(tmp_path / "batch.h5", **{**opts, "n": 10})
