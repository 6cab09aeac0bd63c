"""Label spaces: which labels a grid or emulator uses, their units, bounds and network scaling.

Canonical names are used everywhere (files, CLI, posterior variables):
``teff`` (K), ``logg`` (dex, cgs), ``feh`` (dex), ``vmic`` (km/s), ``alpha_fe`` for [α/Fe] (dex: the
atmosphere's [α/M] and the α elements that have no label of their own), ``<el>_fe`` for [X/Fe] (dex),
and the nuisances ``rv``, ``vsini``, ``vmacro`` (km/s).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence

import numpy as np

from .errors import LabelError

STELLAR_UNITS = {"teff": "K", "logg": "dex", "feh": "dex", "vmic": "km/s", "alpha_fe": "dex"}
NUISANCE_UNITS = {"rv": "km/s", "vsini": "km/s", "vmacro": "km/s"}

# Elements by atomic number, for the [X/Fe] labels.
ELEMENT_SYMBOLS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr "
    "Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm "
    "Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U"
).split()
_ABUNDANCE_RE = re.compile(r"^([a-z]{1,2})_fe$")


def atomic_number(symbol: str) -> int:
    """Atomic number of an element symbol (case-insensitive), e.g. ``'Mg' -> 12``."""
    lookup = {s.lower(): z for z, s in enumerate(ELEMENT_SYMBOLS, start=1)}
    try:
        return lookup[symbol.strip().lower()]
    except KeyError:
        raise LabelError(f"unknown element symbol {symbol!r}; use a symbol such as 'Mg' or 'Ca'") from None


def abundance_label(symbol: str) -> str:
    """Canonical [X/Fe] label for an element symbol: ``'Mg' -> 'mg_fe'``."""
    z = atomic_number(symbol)
    if z == 26:
        raise LabelError("[Fe/Fe] is not a label; iron is set by 'feh'")
    return f"{ELEMENT_SYMBOLS[z - 1].lower()}_fe"


def element_of(label: str) -> str | None:
    """Element symbol of an abundance label (``'mg_fe' -> 'Mg'``), None for other labels."""
    match = _ABUNDANCE_RE.match(label)
    if not match:
        return None
    sym = match.group(1)
    return ELEMENT_SYMBOLS[atomic_number(sym) - 1]


def unit_of(name: str) -> str:
    """Unit of a canonical label name; raises for a name that is not canonical."""
    if name in STELLAR_UNITS:
        return STELLAR_UNITS[name]
    if name in NUISANCE_UNITS:
        return NUISANCE_UNITS[name]
    if element_of(name) is not None:
        return "dex"
    raise LabelError(
        f"{name!r} is not a canonical label name; use teff, logg, feh, vmic, <element>_fe "
        "(e.g. mg_fe), rv, vsini or vmacro"
    )


@dataclasses.dataclass(frozen=True)
class Label:
    """One label with its unit and the closed interval [lower, upper] it may take."""

    name: str
    lower: float
    upper: float
    unit: str = ""

    def __post_init__(self):
        unit = self.unit or unit_of(self.name)
        object.__setattr__(self, "unit", unit)
        if not (math.isfinite(self.lower) and math.isfinite(self.upper) and self.lower < self.upper):
            raise LabelError(
                f"label {self.name!r}: bounds must be finite with lower < upper, got [{self.lower}, {self.upper}]"
            )


@dataclasses.dataclass(frozen=True)
class LabelSpace:
    """An ordered set of labels with bounds; the order is the column order of label arrays.

    Networks see labels scaled to [-0.5, 0.5] over the box (the Payne convention):
    ``scaled = (x - lower) / (upper - lower) - 0.5``.
    """

    labels: tuple[Label, ...]

    def __post_init__(self):
        names = [lab.name for lab in self.labels]
        if len(set(names)) != len(names):
            raise LabelError(f"duplicate label names in {names}")
        if not names:
            raise LabelError("a label space needs at least one label")

    # --- construction -------------------------------------------------------------------
    @classmethod
    def from_bounds(cls, bounds: Mapping[str, tuple[float, float]]) -> "LabelSpace":
        """Build from ``{"teff": (4000, 7000), ...}`` (order preserved)."""
        return cls(tuple(Label(name, float(lo), float(hi)) for name, (lo, hi) in bounds.items()))

    @classmethod
    def from_json(cls, doc: Sequence[Mapping]) -> "LabelSpace":
        """Inverse of :meth:`to_json`."""
        return cls(tuple(Label(d["name"], float(d["lower"]), float(d["upper"]), d.get("unit", "")) for d in doc))

    def to_json(self) -> list[dict]:
        """A JSON-serialisable list of ``{name, unit, lower, upper}``."""
        return [dataclasses.asdict(lab) for lab in self.labels]

    # --- accessors ----------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(lab.name for lab in self.labels)

    @property
    def lower(self) -> np.ndarray:
        return np.array([lab.lower for lab in self.labels], dtype=np.float64)

    @property
    def upper(self) -> np.ndarray:
        return np.array([lab.upper for lab in self.labels], dtype=np.float64)

    @property
    def units(self) -> tuple[str, ...]:
        return tuple(lab.unit for lab in self.labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def __getitem__(self, name: str) -> Label:
        for lab in self.labels:
            if lab.name == name:
                return lab
        raise LabelError(f"unknown label {name!r}; this label space has {', '.join(self.names)}")

    def index(self, name: str) -> int:
        self[name]  # raises a clear error for unknown names
        return self.names.index(name)

    def subset(self, names: Sequence[str]) -> "LabelSpace":
        return LabelSpace(tuple(self[n] for n in names))

    # --- scaling (pure, jit-friendly: works on numpy or jax arrays) ---------------------
    def scale(self, x):
        """Physical labels (..., n_labels) -> network scale [-0.5, 0.5]."""
        return (x - self.lower) / (self.upper - self.lower) - 0.5

    def unscale(self, s):
        """Network scale (..., n_labels) -> physical labels."""
        return (s + 0.5) * (self.upper - self.lower) + self.lower

    @property
    def midpoint(self) -> np.ndarray:
        return 0.5 * (self.lower + self.upper)

    # --- validation (eager; call at API edges, not inside jit) --------------------------
    def validate(self, values, *, what: str = "labels", tolerance: float = 1e-9) -> np.ndarray:
        """Check an array (..., n_labels) or a mapping name -> value; return a float64 array.

        Raises :class:`LabelError` naming the offending label and its allowed range.
        """
        if isinstance(values, Mapping):
            values = self.array_from_mapping(values)
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim == 0 or arr.shape[-1] != len(self):
            raise LabelError(
                f"{what} have {arr.shape[-1] if arr.ndim else 0} columns but the label space has "
                f"{len(self)} ({', '.join(self.names)}); pass one value per label in that order"
            )
        flat = arr.reshape(-1, len(self))
        for j, lab in enumerate(self.labels):
            col = flat[:, j]
            if not np.all(np.isfinite(col)):
                raise LabelError(f"{what}: label {lab.name!r} has NaN or infinite values; give finite numbers")
            span = tolerance * (lab.upper - lab.lower)
            bad = (col < lab.lower - span) | (col > lab.upper + span)
            if np.any(bad):
                v = col[bad][0]
                raise LabelError(
                    f"{what}: {lab.name}={v:g} {lab.unit} is outside the allowed range "
                    f"[{lab.lower:g}, {lab.upper:g}] {lab.unit}; choose a value inside it "
                    "(or use a model/grid that covers it)"
                )
        return arr

    def array_from_mapping(
        self, mapping: Mapping[str, float], defaults: Mapping[str, float] | None = None
    ) -> np.ndarray:
        """Order a ``{name: value}`` mapping as an array; unknown names raise, missing ones use defaults."""
        unknown = set(mapping) - set(self.names)
        if unknown:
            raise LabelError(f"unknown label(s) {sorted(unknown)}; this label space has {', '.join(self.names)}")
        defaults = dict(defaults or {})
        out = []
        for name in self.names:
            if name in mapping:
                out.append(float(mapping[name]))
            elif name in defaults:
                out.append(float(defaults[name]))
            else:
                raise LabelError(f"missing value for label {name!r}; give all of {', '.join(self.names)}")
        return np.array(out, dtype=np.float64)

    def as_mapping(self, arr) -> dict[str, float]:
        a = np.asarray(arr, dtype=np.float64)
        return {n: float(v) for n, v in zip(self.names, a)}


# Default training box (issue #3): stellar labels plus [X/Fe] for elements with lines in the red window.
DEFAULT_ABUNDANCE_ELEMENTS = ("Li", "Al", "Si", "Ca", "Ti", "Ni", "Ba")
# Named element sets. "galah": every element whose marginal Cramér–Rao bound over the four GALAH arms (R 28,000,
# S/N 100, all free at once, molecules on) is below 0.15 dex for a solar twin, a metal-poor turn-off star or a cool
# giant: 30 of 31 candidates, Eu dropped (benchmarks/label_set.py, results/label_set_molecules.ecsv).
ELEMENT_SETS = {
    "default": DEFAULT_ABUNDANCE_ELEMENTS,
    "galah": tuple("Li C N O Na Mg Al Si K Ca Sc Ti V Cr Mn Co Ni Cu Zn Rb Sr Y Zr Mo Ru Ba La Ce Nd Sm".split()),
}


def parse_elements(text: str) -> tuple[str, ...]:
    """Elements from a set name of :data:`ELEMENT_SETS` or comma-separated symbols (``"galah"``, ``"Mg,Ca"``),
    checked, in canonical spelling; an empty text or "none" gives no element."""
    text = (text or "").strip()
    if text.lower() in ELEMENT_SETS:
        return ELEMENT_SETS[text.lower()]
    if text.lower() in ("", "none"):
        return ()
    symbols = tuple(t.strip() for t in text.split(",") if t.strip())
    for sym in symbols:
        try:
            abundance_label(sym)
        except LabelError as exc:
            raise LabelError(f"{exc}; or name an element set: {', '.join(ELEMENT_SETS)}") from None
    return tuple(ELEMENT_SYMBOLS[atomic_number(sym) - 1] for sym in symbols)


DEFAULT_STELLAR_BOUNDS = {"teff": (4000.0, 7000.0), "logg": (1.0, 5.0), "feh": (-2.0, 0.5), "vmic": (0.5, 2.5)}
DEFAULT_ABUNDANCE_BOUNDS = (-0.5, 0.5)
# [α/Fe]: the ATLAS9 grid's 0 and +0.4 planes, extrapolated 0.2 dex beyond each (synth/atmosphere.py).
DEFAULT_ALPHA_BOUNDS = (-0.2, 0.6)


def default_label_space(elements: Sequence[str] = DEFAULT_ABUNDANCE_ELEMENTS, alpha: bool = False) -> LabelSpace:
    """The default label box: Teff 4000–7000 K, log g 1–5, [Fe/H] −2..+0.5, vmic 0.5–2.5, [X/Fe] ±0.5, and with
    ``alpha`` [α/Fe] −0.2..+0.6 (after vmic)."""
    bounds = dict(DEFAULT_STELLAR_BOUNDS)
    if alpha:
        bounds["alpha_fe"] = DEFAULT_ALPHA_BOUNDS
    for el in elements:
        bounds[abundance_label(el)] = DEFAULT_ABUNDANCE_BOUNDS
    return LabelSpace.from_bounds(bounds)
