import numpy as np
import pytest

from stellarinf.errors import LabelError
from stellarinf.labels import (
    Label,
    LabelSpace,
    abundance_label,
    atomic_number,
    default_label_space,
    element_of,
    unit_of,
)


def test_canonical_names_and_units():
    space = default_label_space()
    assert space.names[:4] == ("teff", "logg", "feh", "vmic")
    assert "mg_fe" not in space and "ca_fe" in space
    assert space["teff"].unit == "K" and space["vmic"].unit == "km/s" and space["ca_fe"].unit == "dex"
    assert abundance_label("Mg") == "mg_fe" and element_of("li_fe") == "Li" and element_of("teff") is None
    assert atomic_number("fe") == 26 and unit_of("rv") == "km/s"


def test_validation_names_label_and_range():
    space = LabelSpace.from_bounds({"teff": (4000, 7000), "logg": (1, 5)})
    with pytest.raises(LabelError, match=r"teff=8000 K is outside the allowed range \[4000, 7000\]"):
        space.validate([8000, 4.0])
    with pytest.raises(LabelError, match="logg.*NaN"):
        space.validate([5000, np.nan])
    with pytest.raises(LabelError, match="2 \\(teff, logg\\)"):
        space.validate([5000, 4.0, 0.0])
    with pytest.raises(LabelError, match="unknown label"):
        space.array_from_mapping({"teff": 5000, "logg": 4, "zz": 1})
    with pytest.raises(LabelError, match="not a canonical label"):
        Label("temperature", 0, 1)
    with pytest.raises(LabelError, match="lower < upper"):
        Label("teff", 5, 5)
    assert space.validate({"teff": 5000, "logg": 4.0}).tolist() == [5000.0, 4.0]


def test_scaling_round_trip_and_edges():
    space = default_label_space()
    x = np.random.default_rng(1).uniform(space.lower, space.upper, size=(50, len(space)))
    s = space.scale(x)
    assert s.min() >= -0.5 and s.max() <= 0.5
    np.testing.assert_allclose(space.unscale(s), x, rtol=1e-12)
    np.testing.assert_allclose(space.scale(space.lower), -0.5)
    np.testing.assert_allclose(space.scale(space.upper), 0.5)


def test_json_round_trip():
    space = default_label_space(["Mg", "Ba"])
    assert LabelSpace.from_json(space.to_json()) == space


def test_element_sets_by_name_and_symbols_are_checked():
    import json
    from pathlib import Path

    from stellarinf.labels import DEFAULT_ABUNDANCE_ELEMENTS, parse_elements

    # "galah" is what the Cramér–Rao table of the four arms kept (benchmarks/label_set.py, molecules on)
    table = json.loads((Path(__file__).parents[1] / "benchmarks/results/label_set_molecules.json").read_text())
    assert parse_elements("galah") == tuple(table["kept"]) and len(table["kept"]) == 30
    assert parse_elements("GALAH") == parse_elements("galah")
    assert parse_elements("default") == DEFAULT_ABUNDANCE_ELEMENTS
    assert parse_elements(" mg, CA ,eu") == ("Mg", "Ca", "Eu") and parse_elements("none") == ()
    with pytest.raises(LabelError, match=r"unknown element symbol 'Xx'.*galah"):
        parse_elements("Mg,Xx")
    with pytest.raises(LabelError, match=r"\[Fe/Fe\]"):
        parse_elements("Fe")
