"""Instrument presets and model windows: one table, ``data/instruments.ecsv``.

Every set-up stellarinf knows is a row group of that table: a *preset* (``galah``, ``harps``, ``giraffe-hr15n``,
...) with one or more *arms*, each a wavelength range with a resolving power and a pixel sampling, and the source
(instrument paper or manual) it was taken from. Rows of kind ``window`` are stellarinf's own model windows (the
ranges grids and emulators are built on: the four GALAH arms ``galah-blue``, ``galah-green``, ``galah-red``,
``galah-ir`` and ``gaia-rvs``); :data:`stellarinf.wavelength.WINDOWS` is read from them, so the forecaster's
presets and the fitter's windows are the same table, and :func:`window_set` names the model windows that cover a
preset's arms (``galah`` → the four GALAH windows).

- :func:`instruments`: every preset, as :class:`Instrument` (arms in vacuum Å; air ranges converted on reading);
- :func:`get_instrument`: one by name, or a generic ``R=<value>`` (optionally ``R=<value>:<wmin>-<wmax>``);
- :meth:`Instrument.covered`: the preset cut to what a model covers (arms outside dropped, arms across an edge
  cropped), with a clear error naming the covered ranges when nothing is left.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Sequence

from .errors import StellarinfError
from .wavelength import Window

TABLE = "instruments.ecsv"
MIN_ARM_WIDTH = 5.0  # Å: a cropped arm narrower than this carries too few pixels to keep
ALIASES = {"hermes": "galah", "gaia": "gaia-rvs-dr3", "4most": "4most-hrs", "weave": "weave-hr"}
GENERIC = re.compile(r"^r\s*=\s*([0-9.eE+]+)\s*(?::\s*([0-9.]+)\s*-\s*([0-9.]+))?$", re.IGNORECASE)


class InstrumentError(StellarinfError, ValueError):
    """An instrument preset cannot be used as asked (unknown name, nothing covered, bad resolving power)."""


@dataclasses.dataclass(frozen=True)
class Instrument:
    """One set-up: its arms (vacuum wavelength ranges with R and sampling) and where the numbers come from.

    Fields:
        name: the preset name (``galah``, ``harps``, ``R=20000``).
        arms: one :class:`~stellarinf.wavelength.Window` per arm, vacuum Å, in wavelength order; an arm's
            ``name`` is ``<preset>-<arm>`` (the preset name alone for a one-arm preset).
        source: citation (instrument paper or manual).
        kind: ``instrument``, ``window`` (a stellarinf model window) or ``generic`` (``R=<value>``).
        note: what the table says beyond the numbers (slit, mode, gaps).
        left_out: parts of the arms a forecast cannot use, each ``(part, why)`` (e.g. sharper than the model that
            covers it); empty for a preset as the table gives it.
    """

    name: str
    arms: tuple[Window, ...]
    source: str = ""
    kind: str = "instrument"
    note: str = ""
    left_out: tuple[tuple[Window, str], ...] = ()

    @property
    def ranges(self) -> tuple[tuple[float, float], ...]:
        return tuple((a.wmin, a.wmax) for a in self.arms)

    def describe(self) -> str:
        arms = "; ".join(f"{a.wmin:.0f}–{a.wmax:.0f} Å R {a.resolution:,.0f}" for a in self.arms)
        return f"{self.name}: {arms}"

    def with_resolution(self, resolution: float) -> Instrument:
        """Every arm at resolving power ``resolution`` (same sampling per resolution element)."""
        r = _positive_resolution(resolution)
        return dataclasses.replace(self, arms=tuple(dataclasses.replace(a, resolution=r) for a in self.arms))

    def covered(self, ranges: Sequence[tuple[float, float]], *, what: str = "the model") -> Instrument:
        """The arms cut to ``ranges`` (vacuum Å): arms outside every range are dropped, arms across an edge cropped.

        Raises :class:`InstrumentError` naming the covered ranges when no arm overlaps them."""
        arms = []
        for arm in self.arms:
            pieces = _overlaps(arm, ranges)
            for k, (lo, hi) in enumerate(pieces):
                name = arm.name if len(pieces) == 1 else f"{arm.name}-{k + 1}"
                arms.append(dataclasses.replace(arm, name=name, wmin=lo, wmax=hi))
        if not arms:
            covered = ", ".join(f"{lo:.0f}–{hi:.0f}" for lo, hi in ranges)
            raise InstrumentError(
                f"preset {self.name!r} ({', '.join(f'{a.wmin:.0f}–{a.wmax:.0f}' for a in self.arms)} Å) does not overlap "
                f"{what}, which covers {covered} Å (vacuum); choose a preset with an arm there (`stellarinf crb "
                "--list-presets`) or a generic R=<value>"
            )
        return dataclasses.replace(self, arms=tuple(arms))


def _overlaps(arm: Window, ranges: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The parts of ``arm`` inside ``ranges`` wide enough to keep (:data:`MIN_ARM_WIDTH`)."""
    parts = [(max(arm.wmin, lo), min(arm.wmax, hi)) for lo, hi in ranges]
    return [(lo, hi) for lo, hi in parts if hi - lo >= MIN_ARM_WIDTH]


def _positive_resolution(resolution) -> float:
    try:
        r = float(resolution)
    except (TypeError, ValueError):
        raise InstrumentError(f"resolving power must be a number, got {resolution!r}") from None
    if not (math.isfinite(r) and r > 0):
        raise InstrumentError(f"resolving power must be a positive number, got {resolution!r}")
    return r


@functools.cache
def instruments() -> dict[str, Instrument]:
    """Every preset of ``data/instruments.ecsv``, by name (read once per process)."""
    from astropy.table import Table

    from .paths import data_file
    from .wavelength import air_to_vacuum

    table = Table.read(data_file(TABLE), format="ascii.ecsv")
    grouped: dict[str, list] = {}
    for row in table:
        grouped.setdefault(str(row["preset"]), []).append(row)
    out = {}
    for name, rows in grouped.items():
        arms = []
        for row in rows:
            lo, hi = float(row["wmin"]), float(row["wmax"])
            if str(row["medium"]) == "air":
                lo, hi = (float(x) for x in air_to_vacuum([lo, hi]))
            arm_name = name if len(rows) == 1 else f"{name}-{row['arm']}"
            arms.append(
                Window(
                    arm_name, lo, hi, float(row["resolution"]), float(row["pixels_per_resolution"]), str(row["note"])
                )
            )
        first = rows[0]
        out[name] = Instrument(
            name,
            tuple(sorted(arms, key=lambda a: a.wmin)),
            str(first["source"]),
            str(first["kind"]),
            str(first["note"]),
        )
    return out


def model_windows() -> dict[str, Window]:
    """stellarinf's model windows (rows of kind ``window``): the ranges grids and emulators are built on."""
    return {name: inst.arms[0] for name, inst in instruments().items() if inst.kind == "window"}


def window_set(name: str | Instrument) -> tuple[Window, ...]:
    """The model windows that together cover an instrument's arms, e.g. ``window_set("galah")`` →
    galah-blue, galah-green, galah-red, galah-ir: the set a grid, an emulator or a fit names by the instrument.

    Each arm maps to the model window it overlaps most; raises :class:`InstrumentError` naming the arm when no
    model window overlaps it (the instrument then needs a model window of its own in ``data/instruments.ecsv``).
    """
    inst = get_instrument(name)
    if inst.kind == "window":
        return inst.arms
    windows = model_windows()
    out: list[Window] = []
    for arm in inst.arms:
        overlap = {k: min(arm.wmax, w.wmax) - max(arm.wmin, w.wmin) for k, w in windows.items()}
        best = max(overlap, key=overlap.get)
        if overlap[best] <= 0:
            raise InstrumentError(
                f"arm {arm.name} ({arm.wmin:.0f}–{arm.wmax:.0f} Å) of {inst.name!r} lies in no model window "
                f"({', '.join(f'{k} {w.wmin:.0f}–{w.wmax:.0f}' for k, w in windows.items())}); it needs a model "
                "window of its own (a row of kind 'window' in data/instruments.ecsv, with line-list coverage)"
            )
        if windows[best] not in out:
            out.append(windows[best])
    return tuple(out)


def get_instrument(name: str | Instrument | Window, *, default_range: tuple[float, float] | None = None) -> Instrument:
    """A preset by name, an :class:`Instrument` or a :class:`Window` (one arm) as is, or a generic set-up:
    ``R=20000`` (over ``default_range``, e.g. the model's range) or ``R=20000:6480-6740`` (vacuum Å)."""
    if isinstance(name, Instrument):
        return name
    if isinstance(name, Window):
        # an instrument's arm may share a model window's name (galah-blue) without being it
        return Instrument(name.name, (name,), kind="window" if model_windows().get(name.name) == name else "generic")
    text = str(name).strip()
    match = GENERIC.match(text)
    if match:
        r = _positive_resolution(match.group(1))
        if match.group(2) is not None:
            lo, hi = float(match.group(2)), float(match.group(3))
        elif default_range is not None:
            lo, hi = default_range
        else:
            raise InstrumentError(f"{text!r}: give the range too, e.g. R={r:g}:6480-6740 (vacuum Å)")
        if not hi > lo:
            raise InstrumentError(f"{text!r}: the range must run from a smaller to a larger wavelength")
        label = f"R={r:g}"
        return Instrument(label, (Window(label, lo, hi, r, 2.5, "generic set-up"),), "generic", "generic")
    table = instruments()
    key = ALIASES.get(text.lower(), text.lower())
    if key in table:
        return table[key]
    raise InstrumentError(
        f"unknown instrument preset {text!r}; choose one of {', '.join(sorted(table))}, or R=<value> "
        "(`stellarinf crb --list-presets` lists them with their arms and sources)"
    )


def presets_table(
    ranges: Sequence[tuple[float, float]] | None = None,
    max_resolution: float | Sequence[float | None] | None = None,
):
    """An astropy Table of every preset and arm (vacuum Å), with the part a model covering ``ranges`` (at R up to
    ``max_resolution``, the model's own; one R per range where each range is another model's) can forecast."""
    from astropy.table import Table

    ranges = None if ranges is None else list(ranges)
    limits = max_resolution if isinstance(max_resolution, (list, tuple)) else [max_resolution] * len(ranges or [])
    rows = []
    for inst in instruments().values():
        for arm in inst.arms:
            covered = ""
            if ranges is not None:
                pieces = [
                    (f"{lo:.0f}–{hi:.0f}", r is not None and arm.resolution > r * (1 + 1e-9))
                    for rng, r in zip(ranges, limits)
                    for lo, hi in _overlaps(arm, [rng])
                ]
                covered = ", ".join(text for text, _ in pieces) or "—"
                if pieces and all(sharp for _, sharp in pieces):
                    covered = f"R > model's ({covered})"
                elif any(sharp for _, sharp in pieces):  # several models: say which parts are too sharp
                    covered = ", ".join(text + (" (R > model's)" if sharp else "") for text, sharp in pieces)
            rows.append(
                {
                    "preset": inst.name,
                    "arm": arm.name,
                    "wmin": round(arm.wmin, 2),
                    "wmax": round(arm.wmax, 2),
                    "resolution": arm.resolution,
                    "pixels_per_resolution": arm.pixels_per_resolution,
                    "covered": covered,
                    "kind": inst.kind,
                    "source": inst.source,
                }
            )
    t = Table(rows=rows)
    if ranges is None:
        t.remove_column("covered")
    return t
