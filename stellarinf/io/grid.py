"""Spectral grid files (HDF5): labels, vacuum wavelengths, normalised flux, optional continuum.

Layout of a grid file::

    /labels       (N, n_labels) float64   attrs: label_names, label_units, label_lower, label_upper
    /wavelength   (n_pix,)      float64   attrs: unit="Angstrom", medium="vacuum"
    /flux         (N, n_pix)    float32   chunked by rows: a grid never needs to sit in memory
    /continuum    (N, n_pix)    float32   optional
    attrs: format="stellarinf-grid", format_version, metadata (JSON: generator, fidelity, version, seed, date, ...)

Writes are atomic (temporary file + rename). Generation is resumable: :class:`GridWriter` keeps each
finished batch as its own small file in ``<path>.parts/`` and merges them into the final file at the end,
so a kill at any moment loses at most the batch in flight and never corrupts finished work.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import shutil
from pathlib import Path

import h5py
import numpy as np

from ..errors import GridFileError, ShapeError
from ..labels import LabelSpace
from ..synth.settings import LEGACY_NAMES
from .atomic import atomic_path

FORMAT = "stellarinf-grid"
FORMAT_VERSION = 1
_ROW_CHUNK = 64


# Metadata that says how the spectra were made: a resumed or extended grid must match its file in each.
PHYSICS_KEYS = (
    "fidelity",
    "window",
    "resolution",
    "fine_resolution",
    "loggf",
    "loggf_calibration",
    "damping",
    "molecules",
    "line_selection",
    "line_tiers",
    "line_windows",
    "synth_settings",
    "hydrogen",
    "atmospheres",
    "oversample",
)
# files written before a key existed: one sample per pixel, the Rydberg formula's Hα, the 45-depth preset (then called
# "default"), atoms only
PHYSICS_DEFAULTS = {
    "oversample": 1,
    "synth_settings": "standard",
    "hydrogen": "Rydberg Hα",
    "molecules": "off",
    "line_selection": "box",
    "line_tiers": "Teff 4750/5500/6250/7000; [Fe/H] -1.5/-0.5",  # batch grids of the twenty-fourth session
    "line_windows": "to the edge tolerance at vmic 0.5 km/s",  # grids up to the twenty-fifth session
}
# values older files recorded under a name since changed (the preset renames live with the presets)
PHYSICS_RENAMED = {"synth_settings": LEGACY_NAMES}
# keys no option of this version can set back: what to do instead of rerunning with the file's value
PHYSICS_FIXES = {
    "loggf_calibration": "the solar log gf calibration of its window changed since (data/loggf_solar.ecsv, "
    "data/lines_solar_empirical.ecsv); restore the tables it was made with to resume or extend it",
    "line_tiers": "finish it with the stellarinf version that started it (its line-selection tiers)",
    "line_windows": "finish it with the stellarinf version that started it (its line windows: the Doppler cores of "
    "high-vmic stars were cut before the twenty-sixth session)",
}


def recorded_physics(metadata: dict, key: str):
    """What a grid's ``metadata`` say about physics ``key`` (:data:`PHYSICS_KEYS`): its value, the default of files
    written before the key existed, and a value recorded under a name since changed given under today's name."""
    value = metadata.get(key, PHYSICS_DEFAULTS.get(key))
    return PHYSICS_RENAMED.get(key, {}).get(value, value)


@dataclasses.dataclass
class SpectralGrid:
    """An in-memory grid of spectra.

    Attributes:
        label_space: names, units and box of the label columns.
        labels: (N, n_labels) physical label values.
        wavelength: (n_pix,) vacuum Å, strictly increasing.
        flux: (N, n_pix) continuum-normalised flux.
        continuum: (N, n_pix) absolute continuum, or None.
        metadata: provenance (generator, fidelity, version, seed, date, window, resolution, ...).
    """

    label_space: LabelSpace
    labels: np.ndarray
    wavelength: np.ndarray
    flux: np.ndarray
    continuum: np.ndarray | None = None
    metadata: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.float64)
        self.wavelength = np.asarray(self.wavelength, dtype=np.float64)
        self.flux = np.asarray(self.flux, dtype=np.float32)
        if self.continuum is not None:
            self.continuum = np.asarray(self.continuum, dtype=np.float32)
        validate_arrays(self.label_space, self.labels, self.wavelength, self.flux, self.continuum)

    def __len__(self) -> int:
        return self.labels.shape[0]

    @property
    def n_pixels(self) -> int:
        return self.wavelength.shape[0]

    def subset(self, index) -> "SpectralGrid":
        """Rows ``index`` (array of ints, slice or boolean mask) as a new grid."""
        return SpectralGrid(
            self.label_space,
            self.labels[index],
            self.wavelength,
            self.flux[index],
            None if self.continuum is None else self.continuum[index],
            dict(self.metadata),
        )

    @property
    def oversample(self) -> int:
        """Samples per instrument pixel (``stellarinf grid --oversample``): the instrument's pixels are every
        ``oversample``-th column, starting with the first."""
        return int(self.metadata.get("oversample", 1))

    def instrument_pixels(self) -> "SpectralGrid":
        """The grid at the instrument's pixels only (every ``oversample``-th column); itself when not oversampled."""
        k = self.oversample
        if k == 1:
            return self
        return SpectralGrid(
            self.label_space,
            self.labels,
            self.wavelength[::k],
            self.flux[:, ::k],
            None if self.continuum is None else self.continuum[:, ::k],
            {**self.metadata, "oversample": 1},
        )

    def split(self, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> dict[str, "SpectralGrid"]:
        """Train/validation/test split, reproducible by seed."""
        return {k: self.subset(v) for k, v in split_indices(len(self), fractions, seed).items()}

    def save(self, path: str | os.PathLike) -> None:
        write_grid(path, self)


def concatenate_grids(grids, sources=None) -> SpectralGrid:
    """The rows of several grids as one (e.g. a broad design and a denser one of a corner of its box, to train on
    both): the same labels in the same order, the same wavelengths, and the same physics (:data:`PHYSICS_KEYS`: a
    spectrum of one must be a spectrum the other could hold). The label box is the union of theirs (a corner grid's
    box lies inside the broad one's, so the union is the broad box); the metadata are the first grid's with
    ``concatenated`` listing each part (source, rows, seed, box). ``sources``: a name for each grid (its path)."""
    grids = list(grids)
    if not grids:
        raise GridFileError("no grids to concatenate")
    names = [str(s) for s in sources] if sources is not None else [f"grid {i}" for i in range(len(grids))]
    first = grids[0]
    for name, g in zip(names[1:], grids[1:]):
        if g.label_space.names != first.label_space.names:
            raise GridFileError(
                f"{name} has labels {g.label_space.names}, {names[0]} {first.label_space.names}: grids trained on "
                "together need the same labels in the same order (make it with the same --elements/--alpha)"
            )
        if g.wavelength.shape != first.wavelength.shape or not np.array_equal(g.wavelength, first.wavelength):
            raise GridFileError(
                f"{name} and {names[0]} have different wavelength grids: make both for the same --window and "
                "--oversample"
            )
        if (g.continuum is None) != (first.continuum is None):
            raise GridFileError(f"{name} and {names[0]}: one stores the continuum and the other does not")
        for key in PHYSICS_KEYS:
            a, b = recorded_physics(first.metadata, key), recorded_physics(g.metadata, key)
            if a != b:
                raise GridFileError(
                    f"{name} was made with {key}={b!r}, {names[0]} with {a!r}: spectra of different physics cannot "
                    "train one emulator; make them with the same options"
                )
    lower = np.min([g.label_space.lower for g in grids], axis=0)
    upper = np.max([g.label_space.upper for g in grids], axis=0)
    space = LabelSpace(
        tuple(
            dataclasses.replace(lab, lower=float(lo), upper=float(hi))
            for lab, lo, hi in zip(first.label_space.labels, lower, upper)
        )
    )
    parts = [
        {
            "source": name,
            "rows": len(g),
            "seed": g.metadata.get("seed"),
            "design": g.metadata.get("design"),
            "box": {lab.name: [lab.lower, lab.upper] for lab in g.label_space.labels},
        }
        for name, g in zip(names, grids)
    ]
    return SpectralGrid(
        space,
        np.concatenate([g.labels for g in grids]),
        first.wavelength,
        np.concatenate([g.flux for g in grids]),
        None if first.continuum is None else np.concatenate([g.continuum for g in grids]),
        {**first.metadata, "path": " + ".join(names), "concatenated": parts},
    )


def split_indices(n: int, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> dict[str, np.ndarray]:
    """Shuffle ``range(n)`` with ``seed`` and cut into train/validation/test by ``fractions``."""
    fractions = np.asarray(fractions, dtype=float)
    if fractions.shape != (3,) or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions.tolist()}")
    perm = np.random.default_rng(seed).permutation(n)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    return {
        "train": np.sort(perm[:n_train]),
        "validation": np.sort(perm[n_train : n_train + n_val]),
        "test": np.sort(perm[n_train + n_val :]),
    }


def validate_arrays(space: LabelSpace, labels, wavelength, flux, continuum=None) -> None:
    """Raise :class:`ShapeError` / :class:`GridFileError` for inconsistent or non-finite grid arrays."""
    if labels.ndim != 2 or labels.shape[1] != len(space):
        raise ShapeError(f"labels must have shape (N, {len(space)}) for labels {space.names}, got {labels.shape}")
    if wavelength.ndim != 1 or wavelength.size < 2:
        raise ShapeError(f"wavelength must be a 1-D array of at least 2 pixels, got shape {wavelength.shape}")
    if not np.all(np.diff(wavelength) > 0):
        raise ShapeError("wavelength must be strictly increasing (vacuum Å); sort it and drop duplicates")
    expected = (labels.shape[0], wavelength.shape[0])
    if flux.shape != expected:
        raise ShapeError(f"flux must have shape (N, n_pix) = {expected}, got {flux.shape}")
    if continuum is not None and continuum.shape != expected:
        raise ShapeError(f"continuum must have shape (N, n_pix) = {expected}, got {continuum.shape}")
    for name, arr in (("labels", labels), ("wavelength", wavelength), ("flux", flux), ("continuum", continuum)):
        if arr is not None and arr.size and not np.all(np.isfinite(arr)):
            bad = int(np.sum(~np.isfinite(arr)))
            raise ShapeError(f"{name} contains {bad} NaN/inf values; the grid generator produced bad spectra")


# ----------------------------------------------------------------------------------------- writing
def _label_attrs(space: LabelSpace) -> dict:
    return {
        "label_names": np.array(space.names, dtype=h5py.string_dtype()),
        "label_units": np.array(space.units, dtype=h5py.string_dtype()),
        "label_lower": space.lower,
        "label_upper": space.upper,
    }


def _create_datasets(fh: h5py.File, space, wavelength, n_rows: int, with_continuum: bool, metadata: dict):
    fh.attrs["format"] = FORMAT
    fh.attrs["format_version"] = FORMAT_VERSION
    fh.attrs["metadata"] = json.dumps(metadata, default=str)
    lab = fh.create_dataset(
        "labels",
        shape=(n_rows, len(space)),
        maxshape=(None, len(space)),
        dtype="f8",
        chunks=(max(1, min(_ROW_CHUNK * 16, n_rows or 1)), len(space)),
    )
    for k, v in _label_attrs(space).items():
        lab.attrs[k] = v
    wl = fh.create_dataset("wavelength", data=np.asarray(wavelength, dtype=np.float64))
    wl.attrs["unit"] = "Angstrom"
    wl.attrs["medium"] = "vacuum"
    n_pix = wl.shape[0]
    chunks = (max(1, min(_ROW_CHUNK, n_rows or 1)), n_pix)
    fh.create_dataset("flux", shape=(n_rows, n_pix), maxshape=(None, n_pix), dtype="f4", chunks=chunks)
    if with_continuum:
        fh.create_dataset("continuum", shape=(n_rows, n_pix), maxshape=(None, n_pix), dtype="f4", chunks=chunks)


def write_grid(path: str | os.PathLike, grid: SpectralGrid) -> None:
    """Write ``grid`` to ``path`` atomically (the previous file, if any, survives a crash)."""
    with atomic_path(path, ".h5") as tmp:
        with h5py.File(tmp, "w") as fh:
            _create_datasets(
                fh, grid.label_space, grid.wavelength, len(grid), grid.continuum is not None, grid.metadata
            )
            fh["labels"][...] = grid.labels
            fh["flux"][...] = grid.flux
            if grid.continuum is not None:
                fh["continuum"][...] = grid.continuum


# ----------------------------------------------------------------------------------------- reading
class GridFile:
    """A grid file opened for reading; data are read lazily by rows.

    Use as a context manager, or call :meth:`close`. ``read()`` loads everything (or given rows)
    into a :class:`SpectralGrid`.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise GridFileError(f"grid file {self.path} does not exist; make one with `stellarinf grid`")
        try:
            self._fh = h5py.File(self.path, "r")
        except OSError as exc:
            raise GridFileError(
                f"cannot open grid file {self.path} ({exc}); the file is truncated or not HDF5 — regenerate it"
            ) from None
        try:
            self._check()
        except Exception:
            self._fh.close()
            raise

    def _check(self):
        fh = self._fh
        if fh.attrs.get("format") != FORMAT:
            raise GridFileError(f"{self.path} is not a stellarinf grid file (missing format attribute)")
        version = int(fh.attrs.get("format_version", -1))
        if version > FORMAT_VERSION:
            raise GridFileError(
                f"{self.path} has grid format version {version}; this stellarinf reads up to {FORMAT_VERSION} — upgrade stellarinf"
            )
        for name in ("labels", "wavelength", "flux"):
            if name not in fh:
                raise GridFileError(
                    f"grid file {self.path} lacks the '{name}' dataset; the file is incomplete — regenerate it"
                )
        n, n_pix = fh["flux"].shape
        if fh["labels"].shape[0] != n or fh["wavelength"].shape != (n_pix,):
            raise GridFileError(
                f"grid file {self.path} is inconsistent: labels {fh['labels'].shape}, wavelength {fh['wavelength'].shape}, flux {fh['flux'].shape}"
            )
        if "continuum" in fh and fh["continuum"].shape != (n, n_pix):
            raise GridFileError(
                f"grid file {self.path}: continuum shape {fh['continuum'].shape} != flux shape {(n, n_pix)}"
            )
        attrs = fh["labels"].attrs
        try:
            names = [s.decode() if isinstance(s, bytes) else str(s) for s in attrs["label_names"]]
            self.label_space = LabelSpace.from_bounds(
                {n_: (lo, hi) for n_, lo, hi in zip(names, attrs["label_lower"], attrs["label_upper"])}
            )
        except KeyError as exc:
            raise GridFileError(f"grid file {self.path}: labels dataset lacks attribute {exc}") from None
        self.metadata = json.loads(fh.attrs.get("metadata", "{}"))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._fh.close()

    def __len__(self) -> int:
        return self._fh["flux"].shape[0]

    @property
    def has_continuum(self) -> bool:
        return "continuum" in self._fh

    @property
    def wavelength(self) -> np.ndarray:
        return self._fh["wavelength"][...]

    @property
    def labels(self) -> np.ndarray:
        return self._fh["labels"][...]

    def read_rows(self, index) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(labels, flux, continuum) for sorted row indices or a slice."""
        if not isinstance(index, slice):
            index = np.asarray(index)
            order = np.argsort(index)
            if not np.all(np.diff(index[order]) > 0):
                raise ValueError("row indices must be unique")
            sorted_idx = index[order]
            inverse = np.argsort(order)
            get = lambda ds: ds[sorted_idx][inverse]  # noqa: E731  (h5py needs increasing indices)
        else:
            get = lambda ds: ds[index]  # noqa: E731
        try:
            labels = get(self._fh["labels"])
            flux = get(self._fh["flux"])
            cont = get(self._fh["continuum"]) if self.has_continuum else None
        except OSError as exc:
            raise GridFileError(f"grid file {self.path} is corrupt ({exc}); regenerate it") from None
        return labels, flux, cont

    def iter_batches(self, batch_size: int = 256):
        """Yield (labels, flux, continuum) in row order without loading the whole file."""
        for start in range(0, len(self), batch_size):
            yield self.read_rows(slice(start, min(start + batch_size, len(self))))

    def read(self, index=None) -> SpectralGrid:
        labels, flux, cont = self.read_rows(slice(None) if index is None else index)
        return SpectralGrid(self.label_space, labels, self.wavelength, flux, cont, dict(self.metadata))


def read_grid(path: str | os.PathLike, index=None) -> SpectralGrid:
    """Load a grid file (all rows, or ``index``) into memory."""
    with GridFile(path) as gf:
        return gf.read(index)


# -------------------------------------------------------------------------- resumable generation
_ROWS_RE = re.compile(r"^rows_(\d+)\.h5$")
_PART_RE = re.compile(r"^part_(\d{9})_(\d{9})\.h5$")


class GridWriter:
    """Resumable writer for a grid whose label points are planned up front.

    ``planned_labels`` fixes the rows. Each finished batch is saved atomically as
    ``<path>.parts/part_<start>_<stop>.h5``; :meth:`pending` lists the batches still to do (so a
    restarted job skips finished work), and :meth:`finalize` merges everything into ``path``
    atomically. If ``path`` already holds a grid whose labels are the first rows of the plan
    (e.g. a Sobol design extended from 1,000 to 2,000 points with the same seed), those rows are
    kept and only the new rows are generated: grids are appendable.
    """

    def __init__(
        self,
        path,
        label_space: LabelSpace,
        wavelength,
        planned_labels,
        metadata: dict,
        with_continuum: bool = True,
        batch_size: int = 32,
    ):
        self.path = Path(path)
        self.parts_dir = self.path.with_name(self.path.name + ".parts")
        self.label_space = label_space
        self.wavelength = np.asarray(wavelength, dtype=np.float64)
        self.planned = label_space.validate(np.asarray(planned_labels, dtype=np.float64), what="planned grid labels")
        if self.planned.ndim != 2:
            raise ShapeError(f"planned labels must be (N, {len(label_space)}), got {self.planned.shape}")
        self.metadata = {**metadata, "n_planned": int(len(self.planned))}
        self.metadata.setdefault("date", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
        self.with_continuum = with_continuum
        self.batch_size = int(batch_size)
        self.n_existing = self._existing_prefix()
        self._check_plan_file()

    # -- state on disk
    def _check_physics(self, old: dict, where: str) -> None:
        """Resuming or extending must not mix spectra made with other physics or numerics."""
        for key in PHYSICS_KEYS:
            if key not in self.metadata:
                continue
            was = recorded_physics(old, key)
            if was is not None and was != self.metadata[key]:
                fix = PHYSICS_FIXES.get(key, f"rerun with {key}={was!r} to resume or extend it")
                raise GridFileError(
                    f"{where} was made with {key}={was!r}, not {self.metadata[key]!r}: its spectra and these would not "
                    f"match; {fix}, or choose another output path"
                )

    def _existing_prefix(self) -> int:
        if not self.path.exists():
            return 0
        with GridFile(self.path) as gf:
            old = gf.labels
            if gf.label_space.names != self.label_space.names:
                raise GridFileError(
                    f"{self.path} exists with labels {gf.label_space.names}, not {self.label_space.names}; choose another output path"
                )
            if gf.wavelength.shape != self.wavelength.shape or not np.allclose(
                gf.wavelength, self.wavelength, rtol=0, atol=1e-9
            ):
                raise GridFileError(f"{self.path} exists with a different wavelength grid; choose another output path")
            if gf.has_continuum != self.with_continuum:
                raise GridFileError(
                    f"{self.path} exists {'with' if gf.has_continuum else 'without'} continuum; choose another output path"
                )
            self._check_physics(gf.metadata, str(self.path))
        if len(old) > len(self.planned) or not np.allclose(old, self.planned[: len(old)], rtol=1e-12, atol=1e-12):
            raise GridFileError(
                f"{self.path} exists but its labels are not the first rows of this plan (different seed, design or box?); "
                "use the same settings to extend it, or choose another output path"
            )
        return len(old)

    def _check_plan_file(self):
        plan_path = self.parts_dir / "plan.h5"
        if plan_path.exists():
            try:
                with h5py.File(plan_path, "r") as fh:
                    same = fh["labels"].shape == self.planned.shape and np.array_equal(fh["labels"][...], self.planned)
                    old = json.loads(fh.attrs.get("metadata", "{}"))
            except (OSError, KeyError):
                same, old = False, {}
            self._check_physics(old, f"the unfinished generation in {self.parts_dir}")
            if not same:
                raise GridFileError(
                    f"unfinished generation in {self.parts_dir} was started with different settings; "
                    "rerun with the original settings to resume, or delete that folder to start over"
                )
        else:
            self.parts_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(plan_path, ".h5") as tmp, h5py.File(tmp, "w") as fh:
                fh.create_dataset("labels", data=self.planned)
                fh.attrs["metadata"] = json.dumps({k: self.metadata[k] for k in PHYSICS_KEYS if k in self.metadata})

    def finished_parts(self) -> list[tuple[int, int]]:
        if not self.parts_dir.exists():
            return []
        parts = []
        for name in os.listdir(self.parts_dir):
            m = _PART_RE.match(name)
            if m:
                parts.append((int(m.group(1)), int(m.group(2))))
        return sorted(parts)

    def finished_row_parts(self) -> list[Path]:
        """Files of the batches saved by :meth:`write_rows` (any set of rows each)."""
        if not self.parts_dir.exists():
            return []
        return sorted(self.parts_dir / n for n in os.listdir(self.parts_dir) if _ROWS_RE.match(n))

    def done(self) -> np.ndarray:
        """(n_planned,) bool: rows already in the file or in a finished part."""
        done = np.zeros(len(self.planned), dtype=bool)
        done[: self.n_existing] = True
        for start, stop in self.finished_parts():
            done[start:stop] = True
        for path in self.finished_row_parts():
            with h5py.File(path, "r") as fh:
                done[fh["rows"][...]] = True
        return done

    def pending_rows(self, order=None) -> list[np.ndarray]:
        """Rows still to generate as batches of ``batch_size`` taken in ``order`` (a permutation of the rows, e.g.
        sorted by Teff so a batch holds similar stars; default: file order), each batch sorted."""
        order = np.arange(len(self.planned)) if order is None else np.asarray(order)
        todo = order[~self.done()[order]]
        return [np.sort(todo[i : i + self.batch_size]) for i in range(0, todo.size, self.batch_size)]

    def pending(self) -> list[tuple[int, int]]:
        """(start, stop) row ranges still to generate, in batches of ``batch_size``."""
        done = self.done()
        ranges = []
        i = 0
        while i < len(done):
            if done[i]:
                i += 1
                continue
            j = i
            while j < len(done) and not done[j] and j - i < self.batch_size:
                j += 1
            ranges.append((i, j))
            i = j
        return ranges

    def write_batch(self, start: int, flux, continuum=None) -> None:
        """Save rows ``start:start+len(flux)`` atomically."""
        stop = start + np.shape(flux)[0]
        self._write_part(f"part_{start:09d}_{stop:09d}.h5", slice(start, stop), None, flux, continuum, "write_batch")

    def write_rows(self, rows, flux, continuum=None) -> None:
        """Save the (increasing) rows ``rows`` atomically, one file per batch."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.ndim != 1 or rows.size == 0 or np.any(np.diff(rows) <= 0):
            raise ShapeError("write_rows needs a non-empty, strictly increasing 1-D array of row indices")
        # batches are disjoint, so a batch's first row names it uniquely
        self._write_part(f"rows_{rows[0]:09d}.h5", rows, rows, flux, continuum, "write_rows")

    def _write_part(self, name: str, index, rows, flux, continuum, caller: str) -> None:
        """Check a batch against its planned labels ``self.planned[index]`` and save it (and ``rows``, when given)
        atomically as ``parts_dir / name``."""
        flux = np.asarray(flux, dtype=np.float32)
        if continuum is None and self.with_continuum:
            raise ShapeError(f"this grid stores a continuum; pass continuum= to {caller}")
        cont = None if continuum is None else np.asarray(continuum, dtype=np.float32)
        validate_arrays(self.label_space, self.planned[index], self.wavelength, flux, cont)
        with atomic_path(self.parts_dir / name, ".h5") as tmp, h5py.File(tmp, "w") as fh:
            if rows is not None:
                fh.create_dataset("rows", data=rows)
            fh.create_dataset("flux", data=flux)
            if cont is not None:
                fh.create_dataset("continuum", data=cont)

    def finalize(self) -> Path:
        """Merge existing rows and finished parts into ``path`` atomically; remove the parts folder."""
        if self.pending():
            raise GridFileError(f"{len(self.pending())} batches are still missing; finish generation before finalising")
        n = len(self.planned)
        with atomic_path(self.path, ".h5") as tmp:
            with h5py.File(tmp, "w") as out:
                _create_datasets(out, self.label_space, self.wavelength, n, self.with_continuum, self.metadata)
                out["labels"][...] = self.planned
                if self.n_existing:
                    with GridFile(self.path) as old:
                        for start in range(0, self.n_existing, 1024):
                            stop = min(start + 1024, self.n_existing)
                            _, f, c = old.read_rows(slice(start, stop))
                            out["flux"][start:stop] = f
                            if c is not None:
                                out["continuum"][start:stop] = c
                for start, stop in self.finished_parts():
                    if stop <= self.n_existing:
                        continue
                    with h5py.File(self.parts_dir / f"part_{start:09d}_{stop:09d}.h5", "r") as part:
                        out["flux"][start:stop] = part["flux"][...]
                        if self.with_continuum:
                            out["continuum"][start:stop] = part["continuum"][...]
                for path in self.finished_row_parts():
                    with h5py.File(path, "r") as part:
                        rows = part["rows"][...]
                        keep = rows >= self.n_existing
                        out["flux"][rows[keep]] = part["flux"][...][keep]
                        if self.with_continuum:
                            out["continuum"][rows[keep]] = part["continuum"][...][keep]
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        self.n_existing = n
        return self.path
