"""What to fit: a folder or glob of spectrum files, a list of paths, or a manifest table, read and checked before any
work starts.

A **manifest** is a table (FITS, CSV or Parquet) with one row per star:

- ``path`` (required): the spectrum file; a relative path is resolved against the manifest's folder. A star observed
  in several arms (GALAH's four CCD files, a blue and a red UVES arm) lists its files separated by ``;``
  (``b1.fits;b2.fits``): they are fitted together as one multi-arm spectrum (:func:`stellarinf.pipeline.read_arms`).
- ``id`` (optional): the star's id (it names ``OUT/stars/<id>.json``); default: the file name without extensions
  (for several files, the start their names share, e.g. GALAH's ``1701010040010011`` ... ``4`` → ``170101004001001``).
- ``resolution`` (optional): the instrument's resolving power for this star (empty: the file's, or the run's).
- ``prior_<label>`` (optional, any label of the model or rv/vsini/vmacro): this star's prior on the label, in the
  syntax of ``stellarinf fit --prior``: ``4.4+-0.1`` (Gaussian) or ``5000:6000`` (uniform), with or without the
  ``label=`` in front; empty: the run's prior. A star's prior replaces the run's prior on the same label.
- ``n_pix`` (optional): the number of pixels, to group stars of one size into chunks (else the file size is used).

A folder of spectrum files is one star per file; a folder of folders (no spectrum files at its top) is one star per
sub-folder, its spectrum files the star's arms and the sub-folder's name its id.

Other columns are ignored (said once). Only the manifest's columns are read into memory (a 100,000-row manifest is
a few MB); the spectra are read by the workers, one chunk of stars at a time.

Checked before any work (a :class:`~stellarinf.errors.StellarinfError` naming the problem and the fix): a table
without a ``path`` column, duplicate ids, an id that cannot name a file, a ``prior_<label>`` column for a label the
model does not have, a prior that does not parse, a resolution that is not a positive number, no spectra at all, or
every file missing. A single missing file is that star's failure (recorded with its reason), not the run's.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import StellarinfError

SPECTRUM_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".csv", ".txt", ".dat", ".ecsv")
MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq", ".fits", ".fit", ".fts")
NUISANCE_PRIOR_NAMES = ("rv", "vsini", "vmacro")
KNOWN_COLUMNS = ("path", "id", "resolution", "n_pix")
ARM_SEPARATOR = ";"  # between the files of one star's arms in a path
IGNORED_SAID = ("rv_guess",)  # asked for by surveys; the fit finds the RV from data-driven MAP starts


class ManifestError(StellarinfError, ValueError):
    """The input list or manifest cannot be used as given (the message names the problem and the fix)."""


@dataclasses.dataclass(frozen=True)
class StarRequest:
    """One star to fit: its id, the spectrum file (absolute; several joined by :data:`ARM_SEPARATOR` for a star with
    several arms), its own resolution and priors (texts ``label=...``), and a size key to group stars of one pixel
    count (``n_pix`` or the files' size; 0 unknown)."""

    id: str
    path: str
    resolution: float | None = None
    priors: tuple[str, ...] = ()
    size: int = 0

    @property
    def files(self) -> tuple[str, ...]:
        """The star's spectrum files: one, or one per arm."""
        return tuple(self.path.split(ARM_SEPARATOR))

    @property
    def missing_files(self) -> list[str]:
        return [f for f in self.files if not os.path.isfile(f)]

    def request(self) -> dict:
        """What shaped this star's fit besides the run's settings (kept in its result file)."""
        return {"path": self.path, "resolution": self.resolution, "priors": list(self.priors)}


@dataclasses.dataclass
class Catalogue:
    """The stars of a run, in input order, and what reading the input noticed (``notes``: one line each)."""

    stars: list[StarRequest]
    source: str
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def missing(self) -> list[StarRequest]:
        return [s for s in self.stars if s.missing_files]


def star_id_from_path(path) -> str:
    """The id of a file without one: its name without extensions (``star.fits.gz`` → ``star``)."""
    return Path(path).name.split(".")[0] or Path(path).name


def star_id_from_arms(paths: Sequence) -> str:
    """The id of a star's arm files without one: the start their names share, without trailing ``_-.``
    (``star_blue.fits``, ``star_red.fits`` → ``star``; GALAH ``...0011.fits`` ... ``...0014.fits`` → ``...001``);
    empty when they share none."""
    return os.path.commonprefix([star_id_from_path(p) for p in paths]).rstrip("_-.")


def read_catalogue(source, *, label_names: Iterable[str] | None = None) -> Catalogue:
    """The stars to fit from ``source``: a folder (every spectrum file in it), a glob pattern (``spectra/*.fits``),
    a manifest table (``.csv``, ``.parquet``, ``.fits`` with a ``path`` column) or a sequence of paths.

    ``label_names``: the parameters a prior may name (the model's labels and rv/vsini/vmacro); None skips that check.
    Raises :class:`ManifestError` for input that cannot be used (see the module docstring)."""
    allowed = None if label_names is None else {str(n).lower() for n in label_names}
    if isinstance(source, (list, tuple)):
        paths = [str(p) for p in source]
        if not paths:
            raise ManifestError("no spectra to fit: the list of paths is empty")
        rows = [{"path": p} for p in paths]
        return _catalogue(rows, Path.cwd(), "a list of paths", allowed, from_names=True)
    text = str(source)
    path = Path(text)
    if path.is_dir():
        files = _spectrum_files(path)
        if files:
            return _catalogue([{"path": str(p)} for p in files], path, f"folder {text}", allowed, from_names=True)
        # a folder of folders: one star per sub-folder, its files the star's arms
        rows = [
            {"path": ARM_SEPARATOR.join(str(f) for f in arms), "id": sub.name}
            for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
            if (arms := _spectrum_files(sub))
        ]
        if not rows:
            raise ManifestError(
                f"the folder {text} holds no spectrum files ({', '.join(SPECTRUM_SUFFIXES)}) nor folders of them; give "
                "the folder that holds them (one star per file, or one sub-folder per star with its arms), a glob "
                "such as 'spectra/*.fits', or a manifest table with a path column"
            )
        return _catalogue(rows, path, f"folder {text} (one star per sub-folder)", allowed, from_names=True)
    if any(c in text for c in "*?["):
        files = sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p))
        if not files:
            raise ManifestError(f"the pattern {text!r} matches no files; check the folder and the pattern")
        return _catalogue([{"path": p} for p in files], Path.cwd(), f"pattern {text}", allowed, from_names=True)
    if not path.exists():
        raise ManifestError(
            f"{text} does not exist; give a folder of spectra, a glob such as 'spectra/*.fits' (quoted), or a "
            "manifest table (.csv, .parquet, .fits) with a path column"
        )
    if not path.name.lower().endswith(MANIFEST_SUFFIXES):
        raise ManifestError(
            f"{text} is not a manifest table (.csv, .parquet, .fits) nor a folder; to fit one spectrum use "
            "`stellarinf fit`, or list the spectra in a manifest with a path column"
        )
    rows = read_manifest_rows(path)
    return _catalogue(rows, path.resolve().parent, f"manifest {text}", allowed, from_names=False)


def _spectrum_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and _is_spectrum_name(p.name))


def _is_spectrum_name(name: str) -> bool:
    return name.lower().endswith(SPECTRUM_SUFFIXES) and not name.startswith(".")


def read_manifest_rows(path: Path) -> list[dict]:
    """The manifest's rows as dicts of text (empty text for missing values), column names lower case."""
    name = path.name.lower()
    if name.endswith(".csv"):
        columns = _read_csv(path)
    elif name.endswith((".parquet", ".pq")):
        columns = _read_parquet(path)
    else:
        columns = _read_fits(path)
    if "path" not in columns:
        raise ManifestError(
            f"the manifest {path} has no 'path' column (it has: {', '.join(columns) or 'none'}); add a column named "
            "path with each spectrum's file (relative paths are read from the manifest's folder)"
        )
    n = len(columns["path"])
    return [{k: v[i] for k, v in columns.items()} for i in range(n)]


def _text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if isinstance(v, float) and math.isnan(v):
        return ""
    s = str(v).strip()
    return "" if s in ("--", "nan", "NaN", "None") else s


def _read_csv(path: Path) -> dict[str, list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            raise ManifestError(f"the manifest {path} is empty; write a header line with a path column") from None
        columns: dict[str, list[str]] = {h: [] for h in header}
        for i, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise ManifestError(
                    f"the manifest {path}, line {i}: {len(row)} fields for {len(header)} columns; quote fields "
                    "that contain commas"
                )
            for h, v in zip(header, row):
                columns[h].append(_text(v))
    return columns


def _read_parquet(path: Path) -> dict[str, list[str]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow's own error types
        raise ManifestError(f"cannot read the manifest {path} as Parquet ({exc})") from None
    names = list(pf.schema_arrow.names)
    lower = {n.lower(): n for n in names}
    columns: dict[str, list[str]] = {n: [] for n in lower}
    for batch in pf.iter_batches(batch_size=65536):  # in batches: never the whole file as Python objects at once
        for low, orig in lower.items():
            columns[low].extend(_text(v) for v in batch.column(orig).to_pylist())
    return columns


def _read_fits(path: Path) -> dict[str, list[str]]:
    from astropy.table import Table

    try:
        table = Table.read(str(path), memmap=True)
    except Exception as exc:  # astropy raises many types for a file that is not a FITS table
        raise ManifestError(f"cannot read the manifest {path} as a FITS table ({exc})") from None
    columns: dict[str, list[str]] = {}
    for name in table.colnames:
        col = table[name]
        mask = getattr(col, "mask", None)
        values = col.tolist() if col.ndim == 1 else [None] * len(col)
        columns[name.lower()] = ["" if (mask is not None and bool(mask[i])) else _text(v) for i, v in enumerate(values)]
    return columns


def _catalogue(rows: Sequence[dict], base: Path, source: str, allowed, *, from_names: bool) -> Catalogue:
    if not rows:
        raise ManifestError(f"no spectra to fit: {source} has no rows")
    notes = []
    columns = list(rows[0])
    prior_cols = [c for c in columns if c.startswith("prior_")]
    if allowed is not None:
        unknown = [c for c in prior_cols if c[len("prior_") :] not in allowed]
        if unknown:
            raise ManifestError(
                f"{source}: {', '.join(unknown)} name(s) no parameter of this fit; prior columns are prior_<label> "
                f"with a label of the model or rv, vsini, vmacro (this model has: {', '.join(sorted(allowed))}); "
                "rename or drop the column"
            )
    ignored = [c for c in columns if c not in KNOWN_COLUMNS and c not in prior_cols]
    for c in ignored:
        if c in IGNORED_SAID:
            notes.append(f"{source}: the column {c} is not used (the fit finds the RV itself from several MAP starts)")
    if [c for c in ignored if c not in IGNORED_SAID]:
        notes.append(
            f"{source}: column(s) not used: {', '.join(c for c in ignored if c not in IGNORED_SAID)} (read: path, "
            "id, resolution, n_pix, prior_<label>)"
        )
    from ..inference.priors import parse_prior

    stars, seen = [], {}
    for i, row in enumerate(rows):
        where = f"{source}, row {i + 1}"
        raw_path = _text(row.get("path"))
        if not raw_path:
            raise ManifestError(f"{where}: the path is empty; give every row a spectrum file")
        files = [Path(os.path.expanduser(f.strip())) for f in raw_path.split(ARM_SEPARATOR)]
        if any(not str(f) or str(f) == "." for f in files):
            raise ManifestError(
                f"{where}: the path {raw_path!r} has an empty file name; separate a star's arm files by "
                f"'{ARM_SEPARATOR}' with a file on each side"
            )
        files = [f if f.is_absolute() else base / f for f in files]
        p = ARM_SEPARATOR.join(str(f) for f in files)
        sid = _text(row.get("id")) or (star_id_from_path(files[0]) if len(files) == 1 else star_id_from_arms(files))
        if not sid and len(files) > 1:
            raise ManifestError(
                f"{where}: the arm files {raw_path!r} share no name to make the star's id from; give the manifest an "
                "id column"
            )
        _check_id(sid, where, from_names=from_names and not _text(row.get("id")))
        if sid in seen:
            how = (
                "two files have the same name; list them in a manifest with an id column to tell them apart"
                if from_names and "id" not in row
                else "make the id column unique"
            )
            raise ManifestError(f"{where}: the id {sid!r} is also the id of row {seen[sid] + 1}; {how}")
        seen[sid] = i
        resolution = None
        r_text = _text(row.get("resolution"))
        if r_text:
            try:
                resolution = float(r_text)
            except ValueError:
                resolution = math.nan
            if not (math.isfinite(resolution) and resolution > 0):
                raise ManifestError(
                    f"{where} (id {sid}): resolution {r_text!r} is not a positive number; give R = λ/Δλ "
                    "(e.g. 28000) or leave it empty for the file's"
                )
        priors = []
        for c in prior_cols:
            value = _text(row.get(c))
            if not value:
                continue
            label = c[len("prior_") :]
            text = value if "=" in value else f"{label}={value}"
            try:
                req = parse_prior(text)
            except StellarinfError as exc:
                raise ManifestError(f"{where} (id {sid}), column {c}: {exc}") from None
            if req.name != label:
                raise ManifestError(
                    f"{where} (id {sid}), column {c}: the prior {value!r} names {req.name!r}, not {label!r}; "
                    f"write only the value, e.g. 4.4+-0.1"
                )
            priors.append(text)
        size = 0
        n_text = _text(row.get("n_pix"))
        if n_text:
            try:
                size = int(float(n_text))
            except ValueError:
                raise ManifestError(f"{where} (id {sid}): n_pix {n_text!r} is not a number") from None
        stars.append(StarRequest(sid, p, resolution, tuple(priors), size))
    catalogue = Catalogue(stars, source, notes)
    missing = catalogue.missing
    if len(missing) == len(stars):
        example = missing[0].path
        raise ManifestError(
            f"none of the {len(stars)} spectrum files of {source} exists (e.g. {example}); check the paths "
            "(relative paths are read from the manifest's folder)"
        )
    return catalogue


def _check_id(sid: str, where: str, *, from_names: bool) -> None:
    bad = not sid or sid.startswith(".") or any(c in sid for c in "/\\\0") or len(sid) > 200
    if bad:
        fix = "give the file another name" if from_names else "use letters, digits and - _ . + in the id column"
        raise ManifestError(f"{where}: the id {sid!r} cannot name a result file (OUT/stars/<id>.json); {fix}")


def size_key(star: StarRequest) -> int:
    """The star's pixel count where the manifest gives it, else its files' size (files of one survey and one
    layout have one size per pixel count); 0 for a missing file."""
    if star.size:
        return star.size
    try:
        return sum(os.stat(f).st_size for f in star.files)
    except OSError:
        return 0


def chunks_by_size(stars: Sequence[StarRequest], chunk_size: int) -> list[list[StarRequest]]:
    """Stars in chunks of at most ``chunk_size``, sorted by size (pixel count) so that stars of one size share chunks
    and one compiled program serves a chunk; the input order is kept within a size."""
    keyed = sorted(((size_key(s), i, s) for i, s in enumerate(stars)), key=lambda t: (t[0], t[1]))
    ordered = [s for _, _, s in keyed]
    step = max(1, int(chunk_size))
    return [ordered[i : i + step] for i in range(0, len(ordered), step)]
