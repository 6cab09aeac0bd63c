"""data/isotopologue.py: a missing isotopologue's lines (48TiO) from its neighbours', checked on a synthetic diatomic
molecule whose lines are known for every isotopologue."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
CM_TO_EV = 1.239841984e-4  # 1 cm⁻¹ in eV


@pytest.fixture(scope="module")
def iso():
    spec = importlib.util.spec_from_file_location("isotopologue", DATA / "isotopologue.py")
    module = sys.modules["isotopologue"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def band_lines(iso, mass: int, rng_gf: np.random.Generator):
    """A TiO-like γ system of mass number ``mass``: bands v', v'' ≤ 3, P/Q/R branches, J ≤ 100, from Dunham-style
    constants that scale with ρ = √(μ₄₈/μ) (ω ∝ ρ, ωx and B ∝ ρ²); log gf per transition the same for every
    isotopologue, rounded like the source (0.001 Å, 0.001 eV, 0.001 dex). Returns (exact Lines, rounded Lines)."""
    rho = iso.reduced_mass_coordinate(mass) / iso.reduced_mass_coordinate(48)
    te, w_u, wx_u, b_u, w_l, wx_l, b_l = 14_100.0, 840.0, 4.5, 0.49, 1009.0, 4.5, 0.535

    def g_vib(v, w, wx):
        return rho * w * (v + 0.5) - rho**2 * wx * (v + 0.5) ** 2

    sig, elow = [], []
    for vu in range(4):
        for vl in range(4):
            for dj in (-1, 0, 1):  # P, Q, R: J' = J'' + dj
                j = np.arange(1, 101)
                upper = te + g_vib(vu, w_u, wx_u) + rho**2 * b_u * (j + dj) * (j + dj + 1)
                lower = g_vib(vl, w_l, wx_l) + rho**2 * b_l * j * (j + 1)
                sig.append(upper - lower)
                elow.append((lower - g_vib(0, w_l, wx_l)) * CM_TO_EV)
    sig, elow = np.concatenate(sig), np.concatenate(elow)
    loggf = np.round(rng_gf.uniform(-3.0, 0.5, sig.size), 3)
    exact = iso.Lines(1e8 / sig, elow, loggf)
    return exact, iso.Lines(np.round(1e8 / sig, 3), np.round(elow, 3), loggf)


def test_a_missing_isotopologue_is_derived_from_its_neighbours_to_the_rounding_of_the_source(iso):
    """48 from 46, 47, 49, 50 with 10 % of each source's lines dropped (a strength cut): every transition present in
    47 and 49 and in 46 or 50 comes back (≥ 98 % of them), each within 2 mÅ and 0.002 eV of the truth (the source
    rounds to 1 mÅ), none invented; lines seen in all four sources go through a quadratic in μ^(-1/2), which these
    constants make exact."""
    sources, truth, kept = {}, None, {}
    for mass in (46, 47, 48, 49, 50):
        exact, rounded = band_lines(iso, mass, np.random.default_rng(7))  # same gf sequence for every mass
        if mass == 48:
            truth = exact
            continue
        keep = kept[mass] = np.random.default_rng(mass).random(len(rounded)) > 0.1
        sources[mass] = iso.Lines(rounded.wavelength[keep], rounded.elow[keep], rounded.loggf[keep])
    derived = iso.derive_isotopologue(sources, 48)
    # every derived line against the true line of the same transition (same gf, nearest wavelength)
    key_true = np.rint(truth.loggf * 1000) * 1e6 + 1e8 / truth.wavelength
    order = np.argsort(key_true)
    key_d = np.rint(derived.lines.loggf * 1000) * 1e6 + 1e8 / derived.lines.wavelength
    pos = np.clip(np.searchsorted(key_true[order], key_d), 1, len(order) - 1)
    near = np.where(
        np.abs(key_true[order][pos - 1] - key_d) < np.abs(key_true[order][pos] - key_d), order[pos - 1], order[pos]
    )
    dl = np.abs(derived.lines.wavelength - truth.wavelength[near])
    de = np.abs(derived.lines.elow - truth.elow[near])
    assert dl.max() < 2e-3 and de.max() < 2e-3
    assert np.unique(near).size == near.size  # one derived line per true line
    derivable = kept[47] & kept[49] & (kept[46] | kept[50])
    assert np.isin(np.flatnonzero(derivable), near).mean() > 0.98 and len(near) <= derivable.sum()
    assert set(np.unique(derived.n_points)) <= {3, 4} and (derived.n_points == 4).mean() > 0.6
    four = derived.n_points == 4
    assert np.sqrt(np.mean(dl[four] ** 2)) < 0.6e-3  # rounding noise only: the quadratic is exact here
    assert all(0.85 < s <= 1.0 for s in derived.strength_share.values())


def test_the_check_against_a_known_isotopologue_reports_what_it_reproduces(iso):
    """compare_with_source on a source against itself, and against a copy with every line moved 10 mÅ."""
    _, lines = band_lines(iso, 47, np.random.default_rng(3))
    same = iso.compare_with_source(lines, lines)
    assert same["source_lines_reproduced"] == 1.0 and same["derived_without_source_line"] == 0.0
    assert same["dlambda_mA_p99"] == 0.0
    moved = iso.compare_with_source(iso.Lines(lines.wavelength + 0.01, lines.elow, lines.loggf), lines)
    assert moved["source_lines_reproduced"] < 0.05 and moved["derived_without_source_line"] > 0.95


def test_without_an_outer_isotopologue_to_confirm_pairs_it_refuses(iso):
    _, lines = band_lines(iso, 47, np.random.default_rng(3))
    with pytest.raises(ValueError, match="besides the two"):
        iso.derive_isotopologue({47: lines, 49: lines}, 48)
