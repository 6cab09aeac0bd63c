"""A line table stored compactly and exactly: HDF5, one dataset per column, decimals as scaled integers.

The TiO list (659,154 lines) is 40 MB as ECSV and 4.5 MB this way, which is what lets it ship. Each float column is
stored as integers ``round(value × 10^d)`` with its ``decimals`` d as an attribute and read back as
``integers / 10^d``: a correctly rounded division, so every value is the same float64 the ECSV text gave (the
writer refuses a column its decimals would change). String columns are stored as codes into their distinct values.
Shuffle + gzip make the sorted integers small. The table's metadata (title, source, provenance) travels as JSON in
the file's ``meta`` attribute.

Standalone (numpy, h5py, astropy only) so that ``data/build_tables.py``, which runs without the package, loads it by
path to write the shipped file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np
from astropy.table import Table

FORMAT = "stellarinf compact line table 1"
# the decimals each float column of the TiO list holds (the source's rounding; derived 48TiO lines get more), so the
# compact file gives back the very float64 values; data/build_tables.py and the tests that write TiO tables use it
TIO_DECIMALS = {"wavelength": 6, "mass": 0, "elow": 5, "loggf": 4}


def write_compact_table(path: str | os.PathLike, table: Table, decimals: Mapping[str, int]) -> None:
    """Write ``table`` to ``path`` (atomically). ``decimals[name]``: the decimal places float column ``name`` holds
    (every value must be a multiple of 10^-d, or the write is refused); integer and string columns need none."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["columns"] = json.dumps(list(table.colnames))
            f.attrs["meta"] = json.dumps(dict(table.meta), default=str)
            for name in table.colnames:
                _write_column(f, name, table[name], decimals.get(name))
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_compact_table(path: str | os.PathLike) -> Table:
    """The table :func:`write_compact_table` wrote, column for column and value for value."""
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT!r} file")
        names = json.loads(f.attrs["columns"])
        columns = {name: _read_column(f[name]) for name in names}
        meta = json.loads(f.attrs["meta"])
    return Table(columns, meta=meta)


def _write_column(f: h5py.File, name: str, column, decimals: int | None) -> None:
    values = np.asarray(column)
    opts = dict(compression="gzip", compression_opts=9, shuffle=True)
    if values.dtype.kind in "US":  # strings: codes into the distinct values
        categories, codes = np.unique(values.astype(str), return_inverse=True)
        ds = f.create_dataset(name, data=codes.astype(np.min_scalar_type(max(len(categories) - 1, 0))), **opts)
        ds.attrs["categories"] = json.dumps(categories.tolist())
    elif values.dtype.kind == "f":
        if decimals is None:
            raise ValueError(f"column {name!r} is float: say how many decimals it holds")
        scaled = np.round(values * 10.0**decimals)
        if not np.array_equal(scaled / 10.0**decimals, values):
            bad = values[scaled / 10.0**decimals != values][:3]
            raise ValueError(f"column {name!r} has values with more than {decimals} decimals, e.g. {bad.tolist()}")
        ds = f.create_dataset(name, data=scaled.astype(np.int64 if np.abs(scaled).max() >= 2**31 else np.int32), **opts)
        ds.attrs["decimals"] = decimals
    else:
        ds = f.create_dataset(name, data=values, **opts)
    unit = getattr(column, "unit", None)
    if unit is not None:
        ds.attrs["unit"] = str(unit)
    description = getattr(column, "description", None)
    if description:
        ds.attrs["description"] = description


def _read_column(ds: h5py.Dataset):
    from astropy.table import Column

    data = ds[()]
    if "categories" in ds.attrs:
        data = np.asarray(json.loads(ds.attrs["categories"]))[data]
    elif "decimals" in ds.attrs:
        data = data / 10.0 ** int(ds.attrs["decimals"])  # correctly rounded: the float64 the decimal text gives
    return Column(data, unit=ds.attrs.get("unit"), description=ds.attrs.get("description"))
