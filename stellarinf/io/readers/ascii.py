"""CSV / ASCII / ECSV tables (``astropy.io.ascii``) with the column rules of :mod:`.table`."""

from __future__ import annotations

import numpy as np

from ...errors import SpectrumError
from ._common import RawSpectrum, ReadOptions, _note
from .table import _from_table_columns

POSITIONAL = ("wavelength", "flux", "error")  # a headerless table's columns, in order


def read(path, opts: ReadOptions) -> RawSpectrum:
    return _read_ascii(path, opts.columns, opts.unit)


def _read_ascii(path, cols, unit):
    from astropy.io import ascii as astropy_ascii

    hint = "give a CSV/ECSV with a header line naming the columns wavelength, flux, error"
    if not path.read_bytes()[:65536].strip():
        raise SpectrumError(f"{path.name} is empty; {hint}")
    try:
        table = astropy_ascii.read(path)
    except Exception as exc:  # astropy raises many types for unreadable text; its format-guess report is ~76 lines
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        raise SpectrumError(
            f"cannot read {path.name} as a text table ({type(exc).__name__}: {first[:160]}); {hint}"
        ) from None
    if len(table) == 0:
        raise SpectrumError(f"{path.name} has a header but no rows; {hint}")
    columns = {name: (np.asarray(table[name]), table[name].unit) for name in table.colnames}
    header = {str(k): v for k, v in table.meta.items() if isinstance(v, (str, int, float, bool))}
    note = None
    if _headerless(table.colnames) and not any(cols.get(k) for k in cols):
        if not 2 <= len(table.colnames) <= 3:
            raise SpectrumError(
                f"{path.name} has no header line and {len(table.colnames)} columns; without a header 2 or 3 columns are "
                "read as wavelength, flux[, error] — add a header line naming them, or name them with --wavelength-col "
                "col1 --flux-col col2 --error-col col3"
            )
        columns = {POSITIONAL[i]: columns[name] for i, name in enumerate(table.colnames)}
        note = (
            f"{path.name} has no header line: its columns are read by position as "
            f"{', '.join(POSITIONAL[: len(table.colnames)])}"
        )
    raw = _from_table_columns(columns, cols, unit, path.name, header)
    if note:
        _note(raw.meta, note)
    return raw


def _headerless(names) -> bool:
    """astropy's names for the columns of a table without a header line: col1, col2, ..."""
    return all(name == f"col{i + 1}" for i, name in enumerate(names))
