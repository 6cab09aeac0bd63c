"""Van der Waals and radiative damping: Unsöld × 2 against the tabulated (ABO) widths of the Gaia-ESO list."""

import numpy as np
import pytest
from astropy.table import Table
from scipy.special import gamma as gamma_fn

import stellarinf  # noqa: F401  (float64)
from stellarinf.paths import data_file
from stellarinf.synth.constants import AMU, K_B
from stellarinf.synth.data import check_damping, damping_constants, linelist
from stellarinf.synth.lines import UNSOLD_ENHANCEMENT, line_data

BOHR_CM = 5.29177210903e-9


def _row(species, wavelength):
    ll = linelist()
    (i,) = np.flatnonzero((ll.species == species) & (np.abs(ll.wavelength - wavelength) < 2e-3))
    return np.array([i])


def _gamma6(lines, T):
    return 10.0**lines.log_vdw * (T / 1e4) ** lines.vdw_exponent


def _vbar(T, mass_amu):
    return np.sqrt(8.0 * K_B * T / np.pi * (1.0 / (1.008 * AMU) + 1.0 / (mass_amu * AMU)))


@pytest.mark.parametrize("T", [4500.0, 5800.0, 7000.0])
def test_abo_width_of_fe_i_6495_is_the_anstee_omara_formula(T):
    # Fe I 6494.98 Å (air): Barklem et al. (2000) σ = 321 a0², α = 0.247, as the Gaia-ESO list gives it.
    idx = _row("Fe I", 6496.7747)
    abo = line_data(idx, "laboratory", "abo")
    v = _vbar(T, abo.mass[0])
    sigma, alpha = 321.0 * BOHR_CM**2, 0.247
    expected = 2.0 * (4.0 / np.pi) ** (alpha / 2) * gamma_fn((4 - alpha) / 2) * v * sigma * (v / 1e6) ** (-alpha)
    np.testing.assert_allclose(_gamma6(abo, T), expected, rtol=1e-10)
    # ABO is narrower than Unsöld × 2 for this line (by about a quarter near the solar photosphere)
    unsold = line_data(idx, "laboratory", "unsold")
    assert 0.6 < _gamma6(abo, T)[0] / _gamma6(unsold, T)[0] < 0.85
    assert abo.gamma_rad[0] == pytest.approx(1.02e8)  # tabulated radiative width, not the classical one
    assert unsold.gamma_rad[0] == pytest.approx(2.223e15 / abo.wavelength[0] ** 2)


def test_unsold_choice_is_the_classical_formula_for_every_line():
    idx = np.arange(0, linelist().wavelength.size, 37)
    lines = line_data(idx, "laboratory", "unsold")
    T = np.array([4000.0, 6000.0])[:, None]
    expected = UNSOLD_ENHANCEMENT * 17.0 * _vbar(T, lines.mass) ** 0.6 * 10.0 ** (0.4 * lines.log_c6)
    np.testing.assert_allclose(_gamma6(lines, T), expected, rtol=1e-10)


def test_tabulated_gamma6_and_unsold_factor_kinds_follow_the_table():
    t = Table.read(data_file("damping.ecsv"))
    g6 = t[t["vdw_kind"] == "gamma6"][0]
    lines = line_data(np.array([g6["row"]]), "laboratory", "abo")
    assert _gamma6(lines, 1e4)[0] == pytest.approx(10.0 ** g6["log_gamma6"])  # given at 10,000 K
    assert _gamma6(lines, 5e3)[0] == pytest.approx(10.0 ** g6["log_gamma6"] * 0.5**0.3)
    us = t[(t["vdw_kind"] == "unsold") & (t["unsold_factor"] != UNSOLD_ENHANCEMENT)][0]
    a = line_data(np.array([us["row"]]), "laboratory", "abo")
    b = line_data(np.array([us["row"]]), "laboratory", "unsold")
    assert _gamma6(a, 5e3)[0] / _gamma6(b, 5e3)[0] == pytest.approx(us["unsold_factor"] / UNSOLD_ENHANCEMENT)


def test_unmatched_lines_keep_unsold_and_table_rows_match_the_line_list():
    dc = damping_constants("abo")
    ll = linelist()
    t = Table.read(data_file("damping.ecsv"))
    np.testing.assert_allclose(ll.wavelength[t["row"]], t["wavelength"], atol=1e-3)
    assert set(ll.species[t["row"]]) == set(np.asarray(t["species"], str))
    unmatched = np.setdiff1d(np.arange(ll.wavelength.size), t["row"])[:25]
    a = line_data(unmatched, "laboratory", "abo")
    b = line_data(unmatched, "laboratory", "unsold")
    np.testing.assert_allclose(a.log_vdw, b.log_vdw)
    assert (dc.kind[unmatched] == 0).all()


def test_damping_choice_is_validated_with_the_choices_named():
    with pytest.raises(ValueError, match="'unsold'.*'abo'"):
        check_damping("barklem")
