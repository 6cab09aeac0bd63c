"""The results catalogue, assembled from the per-star result files: ``OUT/catalog.parquet`` and ``OUT/catalog.fits``.

One row per star of the input, in input order, whatever order the stars were fitted in (so a restarted run and an
uninterrupted one give the same catalogue). Columns:

- ``id``, ``status`` (``ok`` / ``failed``), ``flags`` (int64 bitmask: :mod:`stellarinf.catalog.flags`),
  ``flag_words`` (the same as text), ``error`` (why a star failed);
- per parameter (the stellar labels and rv, vsini, ...): ``<label>_mean``, ``_sd``, ``_sd_total`` (where the
  emulator has label systematics), ``_p16``, ``_p50``, ``_p84``, ``_rhat``, ``_ess`` (bulk), ``_flags`` (bitmask);
- ``chi2r``, ``n_divergent``, ``pareto_k`` (laplace-is), ``vbroad`` and ``vbroad_sd`` (km/s: √(v sin i² + v macro²)
  where the spectrum does not tell the two apart, else NaN), ``seconds``, ``emulator``, ``sampler``,
  ``stellarinf_version``, ``path``, ``input_sha256``, ``run_id`` (the star's fit).

Both files carry the run's settings (Parquet: schema metadata ``stellarinf``, JSON; FITS: header ``SETTINGS``) and
the flag bits (``FLAGB00`` = bit 0 ... in the FITS header; ``flag_bits`` in the Parquet metadata). Both are written
atomically (a temporary beside the target, then renamed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .flags import FLAG_BIT_NUMBERS, FLAG_BITS, bits_to_words, header_cards, split_words, words_to_bits
from .worker import read_json, star_paths

LABEL_STATS = {  # catalogue suffix -> summary column
    "mean": "mean",
    "sd": "sd",
    "sd_total": "sd_total",
    "p16": "p16",
    "p50": "p50",
    "p84": "p84",
    "rhat": "r_hat",
    "ess": "ess_bulk",
}
TEXT_COLUMNS = ("id", "status", "flag_words", "error", "emulator", "sampler", "stellarinf_version", "path")
TEXT_COLUMNS += ("input_sha256", "run_id")


def iter_star_records(out_dir, ids: Sequence[str]):
    """``(id, record or None)`` per id in order: the star's result file (a fitted one preferred to a failed one), read
    one at a time (a 100,000-star catalogue is never in memory as records); None where there is none (a file that
    cannot be read counts as none: ours are written atomically)."""
    for sid in ids:
        record = None
        for path in star_paths(out_dir, sid):
            if path.exists():
                try:
                    record = read_json(path)
                except (OSError, ValueError):
                    continue
                break
        yield sid, record


def star_flags(record: dict) -> tuple[int, dict[str, int]]:
    """``(flags, {label: flags})`` of one star's record."""
    if record.get("status") != "ok":
        return FLAG_BITS["failed"], {}
    per_label = {str(r["name"]): words_to_bits(split_words(r.get("flags", ""))) for r in record.get("summary", [])}
    mask = words_to_bits(record.get("global_flags", []))
    for m in per_label.values():
        mask |= m
    if record.get("unreliable"):
        mask |= FLAG_BITS["unreliable"]
    return mask, per_label


HEAD = ("id", "status", "flags", "flag_words", "error")
TAIL_NUMBERS = ("chi2r", "n_divergent", "pareto_k", "vbroad", "vbroad_sd", "seconds")
TAIL_TEXTS = ("emulator", "sampler", "stellarinf_version", "path", "input_sha256", "run_id")


class CatalogueColumns:
    """The catalogue's columns, built one star record at a time; a label first seen at a later star gets its columns
    then, filled with NaN (and 0 flags) for the stars before."""

    def __init__(self):
        self.head = {c: [] for c in HEAD}
        self.labels: dict[str, list] = {}
        self.keys: dict[str, tuple[str, str]] = {}  # column -> (label, suffix)
        self.tail = {c: [] for c in (*TAIL_NUMBERS, *TAIL_TEXTS)}
        self.n = 0

    def _label_columns(self, label: str, with_total: bool) -> None:
        for suffix in LABEL_STATS:
            name = f"{label}_{suffix}"
            if name not in self.labels and (suffix != "sd_total" or with_total):
                self.labels[name] = [math.nan] * self.n
                self.keys[name] = (label, suffix)
        if f"{label}_flags" not in self.labels:
            self.labels[f"{label}_flags"] = [0] * self.n
            self.keys[f"{label}_flags"] = (label, "flags")

    def add(self, record: dict) -> None:
        mask, per_label = star_flags(record)
        rows = {r["name"]: r for r in record.get("summary", [])}
        for label, r in rows.items():
            self._label_columns(label, "sd_total" in r)
        self.head["id"].append(str(record["id"]))
        self.head["status"].append(str(record.get("status", "failed")))
        self.head["flags"].append(int(mask))
        self.head["flag_words"].append(",".join(bits_to_words(mask)))
        self.head["error"].append(str(record.get("error", "") or ""))
        for name, values in self.labels.items():
            label, suffix = self.keys[name]
            if suffix == "flags":
                values.append(int(per_label.get(label, 0)))
            else:
                values.append(_num(rows.get(label, {}).get(LABEL_STATS[suffix])))
        self.tail["chi2r"].append(_num(record.get("chi2_reduced")))
        self.tail["n_divergent"].append(int(record.get("n_divergent") or 0))
        self.tail["pareto_k"].append(_num(record.get("pareto_k")))
        vbroad = record.get("vbroad") or {}
        self.tail["vbroad"].append(_num(vbroad.get("VBROAD")))
        self.tail["vbroad_sd"].append(_num(vbroad.get("VBROADSD")))
        self.tail["seconds"].append(_num(record.get("seconds")))
        for c in TAIL_TEXTS:
            self.tail[c].append(str(record.get(c, "") or ""))
        self.n += 1

    def columns(self) -> dict[str, list]:
        return {**self.head, **self.labels, **self.tail}


def catalogue_table_columns(out_dir, ids: Sequence[str]) -> tuple[dict[str, list], int]:
    """``(columns, number of stars without a result file)``: the catalogue of the stars ``ids`` (in that order)."""
    builder, n_missing = CatalogueColumns(), 0
    for _, record in iter_star_records(out_dir, ids):
        if record is None:
            n_missing += 1
        else:
            builder.add(record)
    return builder.columns(), n_missing


def columns_to_table(columns: dict[str, list], settings: dict):
    """The catalogue as an astropy ``Table`` (settings and flag bits in ``meta``)."""
    from astropy.table import Table

    table = Table(_arrays(columns))
    table.meta["settings"] = settings
    table.meta["flag_bits"] = dict(FLAG_BIT_NUMBERS)
    return table


def _num(v) -> float:
    try:
        return float(v) if v is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def write_catalogue(out_dir, columns: dict[str, list], settings: dict) -> list[Path]:
    """Write ``catalog.parquet`` and ``catalog.fits`` atomically; returns their paths."""
    from ..io.atomic import atomic_path

    out_dir = Path(out_dir)
    parquet_path, fits_path = out_dir / "catalog.parquet", out_dir / "catalog.fits"
    with atomic_path(parquet_path, suffix=".parquet") as tmp:
        _write_parquet(tmp, columns, settings)
    with atomic_path(fits_path, suffix=".fits") as tmp:
        _write_fits(tmp, columns, settings)
    return [parquet_path, fits_path]


def _arrays(columns: dict[str, list]) -> dict[str, np.ndarray]:
    out = {}
    for name, values in columns.items():
        if name in TEXT_COLUMNS:
            out[name] = np.array(values, dtype=str) if values else np.array([], dtype="U1")
        elif name == "flags" or name.endswith("_flags") or name == "n_divergent":
            out[name] = np.array(values, dtype=np.int64)
        else:
            out[name] = np.array(values, dtype=np.float64)
    return out


def _write_parquet(path, columns, settings) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = _arrays(columns)
    table = pa.table({k: pa.array(v.tolist() if v.dtype.kind == "U" else v) for k, v in arrays.items()})
    meta = {
        b"stellarinf": json.dumps({"settings": settings, "flag_bits": FLAG_BIT_NUMBERS}, sort_keys=True).encode(),
        # astropy's Table.read of a Parquet file warns once per string column without its length
        **{
            f"table::len::{k}".encode(): str(max(1, v.dtype.itemsize // 4)).encode()
            for k, v in arrays.items()
            if v.dtype.kind == "U"
        },
    }
    table = table.replace_schema_metadata(meta)
    pq.write_table(table, str(path))


def _write_fits(path, columns, settings) -> None:
    from astropy.table import Table

    from ..inference.results import write_table_to

    table = Table(_arrays(columns))
    table.meta.update(
        {
            "EMULATOR": str(settings.get("emulator", "")),
            "SAMPLER": str(settings.get("sampler", "")),
            "VERSION": str(settings.get("stellarinf_version", "")),
            "NSTARS": len(columns.get("id", [])),
            **header_cards(),
            "SETTINGS": json.dumps(settings, sort_keys=True),
        }
    )
    write_table_to(table, path, "fits")


def read_catalogue_table(path):
    """The catalogue as an astropy Table (Parquet or FITS), its settings in ``meta["settings"]``."""
    from astropy.table import Table

    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        pt = pq.read_table(str(path))
        table = Table({n: np.asarray(pt.column(n).to_pylist()) for n in pt.column_names})
        meta = json.loads((pt.schema.metadata or {}).get(b"stellarinf", b"{}"))
        table.meta["settings"] = meta.get("settings", {})
        table.meta["flag_bits"] = meta.get("flag_bits", {})
        return table
    table = Table.read(str(path))
    table.meta["settings"] = json.loads(table.meta.get("SETTINGS", "{}"))
    return table


def flag_counts(columns: dict[str, list]) -> dict[str, int]:
    """How many stars have each bit set (bits set by no star left out), in bit order."""
    counts = {}
    flags = columns.get("flags", [])
    for name, bit in FLAG_BITS.items():
        n = sum(1 for f in flags if int(f) & bit)
        if n:
            counts[name] = n
    return counts
