"""Molecular equilibrium and molecular lines (stellarinf.synth.molecules, data/*molecules.ecsv) against known answers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from astropy.table import Table

from stellarinf import enable_float64
from stellarinf.synth import fine_grid, synthesize
from stellarinf.synth.abundances import log_abundances
from stellarinf.synth.atmosphere import interpolate_atmosphere
from stellarinf.synth.chemistry import populations
from stellarinf.synth.compact_table import TIO_DECIMALS, write_compact_table
from stellarinf.synth.constants import K_B, K_B_EV
from stellarinf.synth.data import TIO_TABLE
from stellarinf.synth.molecules import ELEMENTS, MOLECULES

enable_float64()
DATA = Path(__file__).resolve().parent.parent / "data"
STARS = [(5772.0, 4.44, 0.0), (4000.0, 5.0, 0.5), (4000.0, 1.0, -1.0), (7000.0, 4.0, -2.5)]


def _pops(teff, logg, feh, molecules=True):
    atm = interpolate_atmosphere(teff, logg, feh, 0.0)
    pops = populations(atm.temperature, atm.gas_pressure, atm.electron_density, log_abundances(feh), molecules)
    return atm, pops


@pytest.mark.parametrize("star", STARS)
def test_every_nucleus_is_counted_once(star):
    """Free atoms (all stages) + atoms bound in molecules = the element's nuclei, in every layer, to 1e-9."""
    _, off = _pops(*star, molecules=False)
    _, on = _pops(*star)
    tab_atoms = {m: i for i, m in enumerate(MOLECULES)}
    from stellarinf.synth.molecules import molecule_table

    stoich = molecule_table().stoichiometry
    for k, z in enumerate(ELEMENTS):
        total = np.asarray(off.species[z].sum(axis=0))
        free = np.asarray(on.species[z].sum(axis=0))
        bound = (stoich[:, k][:, None] * np.asarray(on.molecules)).sum(axis=0)
        np.testing.assert_allclose(free + bound, total, rtol=1e-9)
    assert set(tab_atoms) == set(MOLECULES)


def test_carbon_goes_into_co_where_it_is_cool_and_dense():
    """Textbook behaviour: in the Sun at log τ ≈ 0 nearly all carbon is atomic, in a 4000 K dwarf's upper layers
    nearly all of it is in CO; in a hot metal-poor star molecules are negligible."""
    atm, on = _pops(5772.0, 4.44, 0.0)
    _, off = _pops(5772.0, 4.44, 0.0, molecules=False)
    k = int(np.argmin(np.abs(np.asarray(atm.log_tau_ross))))
    assert 0.99 < float(on.species[6, 0, k] / off.species[6, 0, k]) < 1.0
    atm, on = _pops(4000.0, 5.0, 0.5)
    _, off = _pops(4000.0, 5.0, 0.5, molecules=False)
    k = int(np.argmin(np.abs(np.asarray(atm.log_tau_ross) + 3.0)))
    co = on.molecules[MOLECULES.index("CO"), k]
    assert float(co / off.species[6].sum(axis=0)[k]) > 0.95
    _, on = _pops(7000.0, 4.0, -2.5)
    _, off = _pops(7000.0, 4.0, -2.5, molecules=False)
    np.testing.assert_allclose(np.asarray(on.species[6]), np.asarray(off.species[6]), rtol=1e-4)


def test_co_partition_function_is_the_rigid_rotor_harmonic_oscillator_one():
    """CO (X¹Σ⁺, no low-lying electronic states): U ≈ kT/(hcB) / (1 − e^{−hcω/kT}) with B = 1.9313 and
    ω = 2169.8 cm⁻¹ (NIST); the partition function implied by MOOG's K_p fit must agree within 5 % at 4000–7000 K."""
    atm, on = _pops(5772.0, 4.44, 0.0)
    t = np.asarray(atm.temperature)
    sel = (t > 4000.0) & (t < 7000.0)
    hc_k = 1.438777  # cm K
    rrho = t / (hc_k * 1.9313) / (1.0 - np.exp(-hc_k * 2169.8 / t))
    u = np.exp(np.asarray(on.log_u_molecules[MOLECULES.index("CO")]))
    np.testing.assert_allclose(u[sel], rrho[sel], rtol=0.05)


def test_molecular_level_populations_match_moogs_formula():
    """n_AB / U_AB, what a molecular line sees, equals MOOG's Nearly.f expression from the atoms:
    n_A n_B kT 10^{D0 θ − 13.670} θ^{2.5} / (μ^{1.5} U_A U_B) (μ in u, k in cgs), to the D0 of our K_p table."""
    from stellarinf.synth.constants import ATOMIC_MASS
    from stellarinf.synth.molecules import molecule_table

    atm, on = _pops(4500.0, 2.0, 0.0)
    t = np.asarray(atm.temperature)
    theta = 5040.0 / t
    tab = molecule_table()
    for name, (za, zb) in {"CN": (6, 7), "C2": (6, 6), "CH": (6, 1), "MgH": (12, 1)}.items():
        m = MOLECULES.index(name)
        mu = ATOMIC_MASS[za - 1] * ATOMIC_MASS[zb - 1] / (ATOMIC_MASS[za - 1] + ATOMIC_MASS[zb - 1])
        na, nb = np.asarray(on.species[za, 0]), np.asarray(on.species[zb, 0])
        ua, ub = np.exp(np.asarray(on.log_u[za, 0])), np.exp(np.asarray(on.log_u[zb, 0]))
        moog = na * nb * K_B * t * 10.0 ** (tab.d0[m] * theta - 13.670) * theta**2.5 / (mu**1.5 * ua * ub)
        ours = np.asarray(on.molecules[m]) / np.exp(np.asarray(on.log_u_molecules[m]))
        np.testing.assert_allclose(ours, moog, rtol=2e-3, err_msg=name)


def test_gradients_through_the_equilibrium_are_finite_and_right():
    """d ln n(CO) / d [C/Fe] by autodiff (through the implicit Newton step) equals a central difference."""
    atm = interpolate_atmosphere(4200.0, 1.5, -0.5, 0.0)

    def log_co(c_fe):
        xfe = jnp.zeros(93).at[6].set(c_fe)
        pops = populations(
            atm.temperature, atm.gas_pressure, atm.electron_density, log_abundances(-0.5, xfe), molecules=True
        )
        return jnp.log(pops.molecules[MOLECULES.index("CO")]).sum()

    g = float(jax.grad(log_co)(0.1))
    fd = (float(log_co(0.1 + 1e-4)) - float(log_co(0.1 - 1e-4))) / 2e-4
    assert np.isfinite(g) and g == pytest.approx(fd, rel=1e-5)


@pytest.fixture(scope="module")
def swan():
    """The Sun and a cool giant around the C2 Swan (1,0) band head (4737 Å air), molecules off and on."""
    wl = fine_grid(4715.0, 4745.0)
    names = ("teff", "logg", "feh", "vmic", "c_fe")
    labels = np.array([[5772.0, 4.44, 0.0, 1.0, 0.0], [5772.0, 4.44, 0.0, 1.0, 0.3], [4200.0, 1.5, -0.5, 1.5, 0.0]])
    off, _ = synthesize(labels, wl, label_names=names)
    on, _ = synthesize(labels, wl, label_names=names, molecules="on")
    return wl, off, on


def test_c2_swan_band_appears_and_scales_as_carbon_squared(swan):
    """C2 lines deepen the Sun's spectrum below the band head, and their (weak-line) depth grows as n(C)² less
    what CO takes: +0.3 dex of carbon multiplies it by 3–4 (10^0.6 = 3.98)."""
    wl, off, on = swan
    band = (wl > 4716.0) & (wl < 4737.5)
    depth = off - on
    assert float(depth[0][band].mean()) > 2e-3  # the Sun: C2 absorption on average > 0.2 % of the continuum
    assert float(np.abs(depth[0][wl > 4739.0]).max()) < float(depth[0][band].max())  # head: weaker redwards
    ratio = float(depth[1][band].sum() / depth[0][band].sum())
    assert 3.0 < ratio < 4.2
    assert np.all(np.isfinite(on))


def test_quasi_bound_ch_lines_are_dropped():
    """The builder's CH rule: A–X v' ≤ 3 and B–X v' = 0 are kept; the shipped list has none of the others."""
    spec = importlib.util.spec_from_file_location("build_tables", DATA / "build_tables.py")
    bt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bt)
    assert bt.quasi_bound_ch("AX53R355") and bt.quasi_bound_ch("BX11Q295")
    assert not bt.quasi_bound_ch("AX01Q115") and not bt.quasi_bound_ch("BX02R215") and not bt.quasi_bound_ch("")
    assert (
        bt.molecule_atoms(606) == (6, 6) and bt.molecule_atoms(10108) == (1, 1, 8) and bt.molecule_atoms(112) == (1, 12)
    )
    t = Table.read(DATA / "linelist_molecules.ecsv")
    assert set(t["molecule"]) == {"CH", "MgH", "C2", "CN"}
    assert np.all(np.diff(t["wavelength"]) >= 0)
    # isotopologue weights: 12C13C lines carry 2 f12 f13 of the source gf
    c13 = (t["molecule"] == "C2") & (t["isotopes"] == "12-13")
    np.testing.assert_allclose(t["loggf"][c13] - t["loggf_source"][c13], np.log10(2 * 0.9893 * 0.0107), atol=1e-4)
    mol = Table.read(DATA / "molecules.ecsv")
    co = mol[mol["molecule"] == "CO"][0]
    assert co["code"] == 608 and co["D0"] == pytest.approx(11.092)


def test_units_of_the_dissociation_constants():
    """K_p(CO) at 5040 K from the table (θ = 1: log10 K_p = c1 − D0) in number-density units: Kp / kT."""
    from stellarinf.synth.molecules import log_dissociation_constants, molecule_table

    tab = molecule_table()
    m = MOLECULES.index("CO")
    ln_k = float(log_dissociation_constants(jnp.asarray([5040.0]))[m, 0])
    expect = np.log(10.0) * (tab.coefficients[m, 0] - tab.d0[m]) - np.log(K_B * 5040.0)
    assert ln_k == pytest.approx(expect, rel=1e-12)
    assert K_B_EV > 0


def test_synthesizer_jacobian_with_molecules_is_finite_at_the_box_corners():
    """Every label derivative of the spectrum, molecules on, finite at cool/metal-rich and hot/metal-poor corners."""
    from stellarinf.synth import make_synthesizer

    names = ("teff", "logg", "feh", "vmic", "alpha_fe", "c_fe", "n_fe")
    fn = make_synthesizer(fine_grid(4730.0, 4736.0), names, molecules="on")
    jac = jax.jit(jax.vmap(jax.jacfwd(lambda x: fn(x)[0])))
    corners = jnp.asarray([[4000.0, 1.0, 0.5, 0.5, 0.4, 0.5, 0.5], [7000.0, 4.5, -2.5, 2.5, 0.0, -0.5, -0.5]])
    j = np.asarray(jac(corners))
    assert np.all(np.isfinite(j)) and np.abs(j[0, :, 5]).max() > 0.0  # [C/Fe] moves the cool giant's C2 lines


def test_block_groups_split_only_a_dense_band_and_cover_every_block_once():
    """A band head five times denser than the rest gets its own lax.map; an even spectrum keeps one group."""
    from stellarinf.synth.lines import LinePoints, block_groups

    def points(per_block):
        pix = np.concatenate([b * 512 + np.arange(n) % 512 for b, n in enumerate(per_block)]).astype(np.int32)
        z = np.zeros(pix.size)
        return LinePoints(np.zeros(pix.size, np.int32), pix, z, z)

    even = [1000] * 20
    dense = [5000] * 3 + [1000] * 17
    for counts, n_groups in ((even, 1), (dense, 2)):
        pts = (points(counts), points([c // 2 for c in counts]))
        groups = block_groups(pts, 20, 512)
        assert len(groups) == n_groups
        assert sorted(np.concatenate(groups).tolist()) == list(range(20))
    assert sorted(block_groups((points(dense), points(dense)), 20, 512)[0].tolist()) in ([0, 1, 2], list(range(3, 20)))


def test_only_the_synthesizer_takes_a_molecules_choice():
    """An emulator's physics is fixed by its training: asking a forecast through one for molecules is an error that
    says so; an unknown choice is refused by the synthesizer with the choices named."""
    from stellarinf.forecast import ForecastError, forecast
    from stellarinf.synth import make_synthesizer

    with pytest.raises(ForecastError, match="needs model='synth'"):
        forecast("default-payne", {"teff": 5772.0, "logg": 4.44, "feh": 0.0}, molecules="on")
    with pytest.raises(ValueError, match="'off'.*'on'"):
        make_synthesizer(fine_grid(4730.0, 4731.0), molecules="yes")


def test_an_emulator_is_compared_with_the_synthesizer_physics_it_learned():
    """training_physics reads the choices its training grid recorded; a grid older than a choice gets the legacy one."""
    from types import SimpleNamespace

    from stellarinf.physics_options import training_physics

    learned = SimpleNamespace(metadata={"training_grid": {"metadata": {"molecules": "on", "damping": "abo"}}})
    assert training_physics(learned) == {"loggf": "solar", "damping": "abo", "molecules": "on"}
    old = SimpleNamespace(metadata={"training_grid": {"metadata": {"loggf": "laboratory"}}})
    assert training_physics(old) == {"loggf": "laboratory", "damping": "unsold", "molecules": "off"}
    assert training_physics(SimpleNamespace(metadata=None))["molecules"] == "off"


# ---------------------------------------------------------------- TiO (molecules="on+tio")


@pytest.mark.parametrize("star", [(4000.0, 5.0, 0.5), (5772.0, 4.44, 0.0)])
def test_titanium_in_tio_is_counted_once_and_moves_nothing_else(star):
    """With Ti and TiO in the equilibrium every Ti nucleus is free or in TiO (1e-9), and the other elements and
    molecules are those of the set without it to 0.1 % (TiO takes < 1e-4 of the oxygen)."""
    from stellarinf.synth.molecules import TIO_ELEMENTS, molecule_table

    atm = interpolate_atmosphere(*star, 0.0)
    args = (atm.temperature, atm.gas_pressure, atm.electron_density, log_abundances(star[2]))
    off, on, tio = populations(*args, "off"), populations(*args, "on"), populations(*args, "on+tio")
    stoich = molecule_table("on+tio").stoichiometry
    for k, z in enumerate(TIO_ELEMENTS):
        bound = (stoich[:, k][:, None] * np.asarray(tio.molecules)).sum(axis=0)
        np.testing.assert_allclose(
            np.asarray(tio.species[z].sum(axis=0)) + bound, off.species[z].sum(axis=0), rtol=1e-9
        )
    np.testing.assert_allclose(np.asarray(tio.molecules[:-1]), np.asarray(on.molecules), rtol=1e-3)
    np.testing.assert_allclose(np.asarray(tio.species[8]), np.asarray(on.species[8]), rtol=1e-4)


def test_titanium_goes_into_tio_in_cool_dwarfs_and_not_in_the_sun():
    """Textbook: TiO bands mark the coolest K and the M dwarfs. In a 4000 K dwarf's upper layers a few % of Ti is in
    TiO, 30× more than at 4500 K; in the Sun under 1e-5; and n(TiO)/U(TiO) is MOOG's Nearly.f expression."""
    from stellarinf.synth.constants import ATOMIC_MASS
    from stellarinf.synth.molecules import molecule_table

    def in_tio(teff, logg, feh):
        atm = interpolate_atmosphere(teff, logg, feh, 0.0)
        pops = populations(atm.temperature, atm.gas_pressure, atm.electron_density, log_abundances(feh), "on+tio")
        k = int(np.argmin(np.abs(np.asarray(atm.log_tau_ross) + 3.0)))
        tio = np.asarray(pops.molecules[-1])
        return float(tio[k] / (pops.species[22, :, k].sum() + tio[k])), atm, pops

    cool, atm, pops = in_tio(4000.0, 5.0, 0.0)
    warmer, _, _ = in_tio(4500.0, 4.5, 0.0)
    sun, _, _ = in_tio(5772.0, 4.44, 0.0)
    assert 0.02 < cool < 0.5 and cool > 30 * warmer and sun < 1e-5
    t = np.asarray(atm.temperature)
    theta = 5040.0 / t
    m = molecule_table("on+tio").names.index("TiO")
    mu = ATOMIC_MASS[21] * ATOMIC_MASS[7] / (ATOMIC_MASS[21] + ATOMIC_MASS[7])
    na, nb = np.asarray(pops.species[22, 0]), np.asarray(pops.species[8, 0])
    ua, ub = np.exp(np.asarray(pops.log_u[22, 0])), np.exp(np.asarray(pops.log_u[8, 0]))
    moog = (
        na * nb * K_B * t * 10.0 ** (molecule_table("on+tio").d0[m] * theta - 13.670) * theta**2.5 / (mu**1.5 * ua * ub)
    )
    np.testing.assert_allclose(
        np.asarray(pops.molecules[m]) / np.exp(np.asarray(pops.log_u_molecules[m])), moog, rtol=2e-3
    )


def _tio_data_dir(tmp_path: Path, lines: list[tuple[float, float, float]] | None) -> Path:
    """A data folder of the shipped files plus, if ``lines`` (vacuum Å, E_low eV, log gf), a TiO table of them."""
    out = tmp_path / "data"
    out.mkdir()
    for f in DATA.iterdir():
        if f.name != TIO_TABLE:
            (out / f.name).symlink_to(f)
    if lines is not None:
        wl, elow, loggf = (np.array(c) for c in zip(*lines))
        n = wl.size
        table = Table(
            {
                "wavelength": wl,
                "molecule": ["TiO"] * n,
                "isotopes": ["16-48"] * n,
                "mass": np.full(n, 64.0),
                "elow": elow,
                "loggf": loggf,
            }
        )
        write_compact_table(out / TIO_TABLE, table, TIO_DECIMALS)
    return out


@pytest.mark.slow  # ~55 s on a 2-core CPU compiling TiO synthesis, which no shipped model uses (TiO is not in their grids); the
# titanium equilibrium it rests on is tested above; run with `pytest -m slow` after changing molecular lines
def test_tio_lines_darken_a_cool_dwarf_and_leave_the_sun(tmp_path, monkeypatch):
    """Three TiO lines (log gf 0, E_low 0.3 eV, the strength of the strong lines of the γ system): > 5 % deep in a
    4000 K dwarf, < 1e-4 in the Sun; the label derivatives finite; without the table a clear error."""
    from stellarinf.errors import StellarinfError
    from stellarinf.synth import data as synth_data
    from stellarinf.synth import make_synthesizer, selection

    for f in (synth_data.molecular_linelist, selection.select_molecular_lines):
        f.cache_clear()
    monkeypatch.setenv("STELLARINF_CACHE", str(tmp_path / "cache"))
    (tmp_path / "none").mkdir()
    monkeypatch.setenv("STELLARINF_DATA", str(_tio_data_dir(tmp_path / "none", None)))
    with pytest.raises(StellarinfError, match="build_tables.py --only tio"):
        make_synthesizer(fine_grid(6600.0, 6601.0), molecules="on+tio")
    (tmp_path / "three").mkdir()
    monkeypatch.setenv(
        "STELLARINF_DATA",
        str(_tio_data_dir(tmp_path / "three", [(6600.2, 0.3, 0.0), (6600.5, 0.3, 0.0), (6600.8, 0.3, 0.0)])),
    )
    try:
        wl = fine_grid(6599.8, 6601.2)
        labels = np.array([[4000.0, 4.6, 0.0, 0.9], [5772.0, 4.44, 0.0, 1.0]])
        on, _ = synthesize(labels, wl, molecules="on")
        tio, _ = synthesize(labels, wl, molecules="on+tio")
        depth = on - tio
        assert float(depth[0].max()) > 0.05 and float(np.abs(depth[1]).max()) < 1e-4
        fn = make_synthesizer(wl, molecules="on+tio")
        from stellarinf.synth import SynthesizerModel

        assert SynthesizerModel(window="galah-red", molecules="on+tio").name == "synth (galah-red, TiO)"
        jac = np.asarray(
            jax.jit(jax.jacfwd(lambda x: fn(x)[0]))(jnp.asarray([4000.0, 4.6, 0.0, 0.9]))
        )  # jit: eager jvp 2x slower
        assert np.all(np.isfinite(jac)) and np.abs(jac[:, 0]).max() > 0.0
        # a tier of hot stars drops TiO lines that stay below the strength cut in its atmospheres: every one at 7000 K
        box = selection.select_molecular_lines(6599.8, 6601.2, table=synth_data.TIO_TABLE)[0]
        hot = selection.select_molecular_lines(6599.8, 6601.2, teff_min=7000.0, table=synth_data.TIO_TABLE)[0]
        assert box.size == 3 and hot.size == 0
    finally:
        for f in (synth_data.molecular_linelist, selection.select_molecular_lines):
            f.cache_clear()


def test_a_cool_star_fitted_without_tio_is_flagged_in_words():
    """tio_warning: a 4200 K dwarf through physics without TiO gets ``no_tio`` (naming the model's molecules), the
    same star through ``on+tio`` physics, the Sun, or a model that records no physics do not; the catalogue has a bit
    for it and the summary's advice words."""
    from types import SimpleNamespace

    from stellarinf.catalog.flags import FLAG_BITS
    from stellarinf.emulators.registry import shipped_with_tio
    from stellarinf.inference.results import FLAG_ADVICE
    from stellarinf.physics_options import tio_composition_dex, tio_matters
    from stellarinf.pipeline import tio_warning

    def summary(teff, logg, **xfe):
        return Table({"name": ["teff", "logg", "feh", *xfe], "p50": [teff, logg, 0.0, *xfe.values()]})

    def emulator(molecules):
        return SimpleNamespace(metadata={"training_grid": {"metadata": {"molecules": molecules}}})

    msg = tio_warning(summary(4200.0, 4.6), [emulator("on")])
    assert msg.startswith("no_tio:") and "molecules: on" in msg and "4200 K" in msg
    # it names the shipped models that learned TiO, as their model.json files record it
    learned = shipped_with_tio()
    assert {"broad-payne-red", "broad-payne-rvs"} <= set(learned) and "default-payne" not in learned
    assert f"only {', '.join(learned)} ha" in msg
    assert "molecules: off" in tio_warning(
        summary(4200.0, 4.6), [SimpleNamespace(metadata={"training_grid": {"metadata": {}}})]
    )
    assert tio_warning(summary(4200.0, 4.6), [emulator("on+tio")]) is None
    # the fitted composition reaches the rule: C > O leaves no oxygen for TiO; O-rich moves the limit up
    assert tio_warning(summary(4200.0, 4.6, c_fe=0.5, o_fe=-0.4), [emulator("on")]) is None
    assert tio_warning(summary(4900.0, 4.6), [emulator("on")]) is None
    assert tio_warning(summary(4900.0, 4.6, o_fe=0.5, ti_fe=0.3), [emulator("on")]).startswith("no_tio:")
    assert tio_warning(summary(5772.0, 4.44), [emulator("off")]) is None
    assert tio_warning(summary(4200.0, 4.6), [SimpleNamespace(metadata=None)]) is None  # no physics recorded
    assert tio_matters(4000.0, 1.5) and tio_matters(4500.0, 4.6) and not tio_matters(4850.0, 4.6)
    assert not tio_matters(4600.0, 2.5) and not tio_matters(5772.0, 4.44)
    # composition, rows of the broad red box synthesised with and without TiO (benchmarks/README.md section 6): a
    # metal- and O-rich subgiant changed by 0.56 % rms is flagged (its limit ~350 K above solar composition's); a
    # giant with C > O (CO takes the oxygen) changed by 2e-5 is not; a 4000 K dwarf at [Fe/H] = -1 (1.1 %) is
    rich = {"feh": 0.37, "alpha_fe": 0.3, "c_fe": 0.28, "o_fe": 0.5, "ti_fe": -0.14}
    carbon = {"feh": 0.24, "alpha_fe": 0.57, "c_fe": 0.46, "o_fe": -0.43, "ti_fe": 0.08}
    assert tio_matters(4570.0, 3.39, rich) and tio_matters(4900.0, 3.39, rich) and not tio_matters(4900.0, 3.39)
    assert tio_matters(4144.0, 2.28) and not tio_matters(4144.0, 2.28, carbon)
    assert tio_matters(4000.0, 4.6, {"feh": -1.0}) and not tio_matters(4400.0, 4.6, {"feh": -1.0})
    # solar-scaled: n(Ti) and the free O both scale with Z, so TiO with Z²; Ti and O follow [alpha/Fe] where the model
    # has no label of their own (α-enhanced metal-poor dwarfs keep more TiO)
    assert tio_composition_dex({"feh": -1.0}) == pytest.approx(-2.0, abs=1e-12) and tio_composition_dex() == 0.0
    alpha, own = {"feh": -1.0, "alpha_fe": 0.4}, {"feh": -1.0, "ti_fe": 0.4, "o_fe": 0.4}
    assert (
        tio_matters(4300.0, 4.6, alpha)
        and tio_matters(4300.0, 4.6, own)
        and not tio_matters(4300.0, 4.6, {"feh": -1.0})
    )
    assert "no_tio" in FLAG_BITS and "no_tio" in FLAG_ADVICE


@pytest.mark.slow  # ~25 s: two fits to check the flag reaches the summary; the flag's rule is tested just above
def test_fit_spectrum_flags_a_cool_star_without_tio_in_its_summary(monkeypatch):
    """End to end: a 4300 K dwarf fitted through a model whose physics is ``molecules="on"`` carries ``no_tio`` in
    the summary's global flags and the diagnostics' warnings; a 5800 K star through the same model does not."""
    import warnings

    from analytic_fits import CATALOG_SETTINGS

    import stellarinf
    from stellarinf import physics_options
    from stellarinf.validation.mocks import make_mock
    from stellarinf.validation.setups import analytic_setup

    model, wl = analytic_setup()
    monkeypatch.setattr(physics_options, "model_molecules", lambda m: "on")
    flags = {}
    for teff in (4300.0, 5800.0):
        truth = {"teff": teff, "logg": 4.5, "feh": 0.0, "rv": 3.0, "vsini": 5.0, "vmacro": 0.0}
        spec = make_mock(model, wl, truth, snr=150, resolution=20000, seed=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = stellarinf.fit_spectrum(spec, emulator=model, resolution=20000, **CATALOG_SETTINGS)
        flags[teff] = (str(fit.summary.meta.get("FLAGS", "")), fit.diagnostics["warnings"])
    assert "no_tio" in flags[4300.0][0].split(",") and any(w.startswith("no_tio") for w in flags[4300.0][1])
    assert "no_tio" not in flags[5800.0][0] and not any(w.startswith("no_tio") for w in flags[5800.0][1])
