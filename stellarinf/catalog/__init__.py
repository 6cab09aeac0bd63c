"""Survey scale: fit a catalogue of spectra on a Dask ``distributed`` cluster, restartable and idempotent, into one
results catalogue (``stellarinf fit-catalog``, :func:`fit_catalog`).

- ``manifest``  the input: a folder, a glob, a list of paths or a manifest table, checked before any work
- ``worker``    what a worker runs: a chunk of stars through ``fit_spectrum``, one result file per star
- ``run``       ``fit_catalog``: the client (settings check, restart, the Dask cluster, progress)
- ``assemble``  the catalogue (Parquet and FITS) from the result files
- ``flags``     the catalogue's flag bits, defined once
"""

from .flags import FLAG_BIT_NUMBERS, FLAG_BITS
from .run import CatalogResult, SettingsMismatch, fit_catalog

__all__ = ["fit_catalog", "CatalogResult", "SettingsMismatch", "FLAG_BITS", "FLAG_BIT_NUMBERS"]
