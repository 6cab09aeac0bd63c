"""The compact line-table format (``stellarinf.synth.compact_table``): exact round trips, refusals."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from astropy.table import Table

from stellarinf.synth.compact_table import read_compact_table, write_compact_table


def _table() -> Table:
    rng = np.random.default_rng(3)
    wl = np.sort(np.round(rng.uniform(4700.0, 8700.0, 500), 6))
    t = Table(
        {
            "wavelength": wl,
            "molecule": rng.choice(["TiO", "CN", "C2"], 500),
            "code": rng.integers(600, 900, 500),
            "elow": np.round(rng.uniform(0.0, 3.0, 500), 5),
            "loggf": np.round(rng.normal(-1.0, 1.0, 500), 4),
        },
        meta={"title": "test lines", "provenance": {"archive_sha256": "0" * 64, "files": [{"path": "a.gz"}]}},
    )
    t["wavelength"].unit = "Angstrom"
    t["wavelength"].description = "vacuum wavelength"
    t["elow"].unit = "eV"
    return t


def test_round_trip_is_exact(tmp_path):
    t = _table()
    write_compact_table(tmp_path / "t.h5", t, {"wavelength": 6, "elow": 5, "loggf": 4})
    u = read_compact_table(tmp_path / "t.h5")
    assert u.colnames == t.colnames and u.meta == t.meta
    for name in t.colnames:
        a, b = np.asarray(t[name]), np.asarray(u[name])
        assert a.dtype.kind == b.dtype.kind and np.array_equal(a, b), name  # the same float64 bits, not close
    assert u["wavelength"].unit == "Angstrom" and u["elow"].unit == "eV" and u["loggf"].unit is None
    assert u["wavelength"].description == "vacuum wavelength"
    with h5py.File(tmp_path / "t.h5", "r") as f:  # stored as scaled integers and category codes
        assert f["wavelength"].dtype.kind == "i" and f["wavelength"].attrs["decimals"] == 6
        assert f["molecule"].dtype == np.uint8
    # the same input writes the same bytes (files are compared by checksum in PROVENANCE.json)
    write_compact_table(tmp_path / "t2.h5", t, {"wavelength": 6, "elow": 5, "loggf": 4})
    assert (tmp_path / "t.h5").read_bytes() == (tmp_path / "t2.h5").read_bytes()


def test_refuses_to_lose_digits(tmp_path):
    t = _table()
    with pytest.raises(ValueError, match="'elow' has values with more than 3 decimals"):
        write_compact_table(tmp_path / "t.h5", t, {"wavelength": 6, "elow": 3, "loggf": 4})
    with pytest.raises(ValueError, match="'loggf' is float: say how many decimals"):
        write_compact_table(tmp_path / "t.h5", t, {"wavelength": 6, "elow": 5})
    assert not list(tmp_path.iterdir())  # nothing half-written left behind
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(ValueError, match="is not a 'stellarinf compact line table 1' file"):
        read_compact_table(tmp_path / "other.h5")
