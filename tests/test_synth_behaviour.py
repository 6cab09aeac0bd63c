"""Physical behaviour of realistic synthetic spectra (abundances, Hα, gravity) — one batched call."""

import numpy as np
import pytest

from stellarinf.synth import fine_grid, synthesize

NAMES = ("teff", "logg", "feh", "vmic", "ca_fe", "li_fe")
BASE = (5500.0, 4.0, 0.0, 1.0, 0.0, 0.0)
# Vacuum wavelengths of well-known lines (air + ~1.8 Å).
LI = 6709.66  # Li I 6707.8 (air)
CA = 6719.54  # Ca I 6717.7 (air)
FE1 = 6679.96  # Fe I 6678.0 (air)
FE2 = 6517.82  # Fe II 6516.1 (air)
HALPHA = 6564.61


@pytest.fixture(scope="module")
def spectra():
    wl = fine_grid(6505.0, 6725.0)
    rows = {
        "base": BASE,
        "ca+": (5500.0, 4.0, 0.0, 1.0, 0.4, 0.0),
        "li+": (5500.0, 4.0, 0.0, 1.0, 0.0, 0.4),
        "t5000": (5000.0, 4.4, 0.0, 1.0, 0.0, 0.0),
        "t6000": (6000.0, 4.4, 0.0, 1.0, 0.0, 0.0),
        "t7000": (7000.0, 4.4, 0.0, 1.0, 0.0, 0.0),
        "g2": (5500.0, 2.0, 0.0, 1.0, 0.0, 0.0),
    }
    flux, cont = synthesize(np.array(list(rows.values())), wl, label_names=NAMES)
    return wl, dict(zip(rows, flux)), dict(zip(rows, cont))


def depth(wl, flux, centre, half=0.08):
    m = np.abs(wl - centre) < half
    return 1.0 - flux[m].min()


def test_spectra_are_normalised_and_finite(spectra):
    wl, flux, cont = spectra
    for f in flux.values():
        assert np.all(np.isfinite(f)) and f.max() <= 1.0 + 1e-6 and f.min() > 0
    assert np.all(np.diff(cont["base"]) < 0)  # red continuum of a 5500 K star falls with λ


def test_line_depths_grow_with_their_own_element_only(spectra):
    wl, flux, _ = spectra
    for label, own, others in (("ca+", CA, (LI, FE1, FE2)), ("li+", LI, (CA, FE1, FE2))):
        assert depth(wl, flux[label], own) > depth(wl, flux["base"], own) + 0.02
        for c in others:
            assert depth(wl, flux[label], c) == pytest.approx(depth(wl, flux["base"], c), abs=2e-4)


def test_halpha_wings_widen_with_teff(spectra):
    wl, flux, _ = spectra

    def wing(f, offset):  # pseudo-continuum (local max, avoids metal lines) at Hα + offset Å
        m = np.abs(wl - (HALPHA + offset)) < 0.25
        return 1.0 - f[m].max()

    for off in (-4.0, 3.0, 6.0):
        d5, d6, d7 = (wing(flux[k], off) for k in ("t5000", "t6000", "t7000"))
        assert d5 < d6 < d7, off
    assert wing(flux["t7000"], 6.0) > 0.05


def test_ionised_line_strength_reacts_to_gravity(spectra):
    wl, flux, _ = spectra
    # Fe II strengthens at low gravity (lower electron pressure ⇒ more Fe II relative to H⁻).
    assert depth(wl, flux["g2"], FE2) > depth(wl, flux["base"], FE2) + 0.05


def test_hbeta_in_the_galah_blue_arm_is_deep_and_its_wings_widen_with_teff():
    hbeta = 4862.68  # vacuum
    wl = fine_grid(4850.0, 4876.0)
    flux, _ = synthesize(
        np.array(
            [(5000.0, 4.4, 0.0, 1.0, 0.0, 0.0), (5772.0, 4.44, 0.0, 1.0, 0.0, 0.0), (6500.0, 4.4, 0.0, 1.0, 0.0, 0.0)]
        ),
        wl,
        label_names=NAMES,
    )

    def wing(f, offset):  # pseudo-continuum (local max between metal lines) at Hβ + offset Å
        m = np.abs(wl - (hbeta + offset)) < 0.25
        return 1.0 - f[m].max()

    for off in (-3.0, 2.5, 5.0):
        d5, d_sun, d65 = (wing(f, off) for f in flux)
        assert d5 < d_sun < d65, off
    core = np.abs(wl - hbeta) < 0.1
    assert 1.0 - flux[1][core].min() > 0.5  # the Sun's Hβ core (observed ~0.85 deep; LTE gives less)
