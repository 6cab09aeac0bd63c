"""Readers: one module per format and one table saying which to try, in order.

Each FITS reader module has ``detect(hdul, opts) -> bool`` and ``read(hdul, path, opts) -> RawSpectrum``; the
first whose ``detect`` says yes reads the file (``format=`` names one and skips detection). Text tables and
specutils objects have their own entry points. Adding a format = one module + one :data:`FITS_READERS` entry.
The shared rules that turn a :class:`RawSpectrum` into a ``Spectrum`` live in :mod:`stellarinf.io.spectrum`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from ...errors import SpectrumError
from . import apogee, ascii, eso, galah, image, specutils_object, table
from ._common import RawSpectrum, ReadOptions, SpectrumWarning, _open_fits
from .galah import galah_reduction

__all__ = [
    "FITS_READERS",
    "FORMATS",
    "RawSpectrum",
    "ReadOptions",
    "Reader",
    "SpectrumWarning",
    "galah_reduction",
    "is_fits_name",
    "read_fits",
    "read_object",
    "read_text",
]


@dataclasses.dataclass(frozen=True)
class Reader:
    """A FITS layout: its ``format=`` name, how to recognise it, how to read it."""

    name: str
    detect: Callable
    read: Callable


# tried in this order: layouts a header names (ESO Phase 3) first; then a table with a wavelength column, which is
# unambiguous; instrument image layouts before the generic image
FITS_READERS: tuple[Reader, ...] = (
    Reader("eso-phase3", eso.detect, eso.read),
    Reader("fits-table", table.detect, table.read),
    Reader("apogee", apogee.detect, apogee.read),
    Reader("galah", galah.detect, galah.read),
    Reader("fits-image", image.detect, image.read),
)
FORMATS = tuple(r.name for r in FITS_READERS) + ("ascii",)
_FITS_SUFFIXES = (".fits", ".fit", ".fts")


def is_fits_name(path: Path) -> bool:
    return path.name.lower().removesuffix(".gz").endswith(_FITS_SUFFIXES)


def read_fits(path: Path, format: str | None, opts: ReadOptions) -> RawSpectrum:
    """Read a FITS file with the named reader, or the first whose ``detect`` recognises it."""
    with _open_fits(path) as hdul:
        if format is not None:
            reader = next(r for r in FITS_READERS if r.name == format)
            return reader.read(hdul, path, opts)
        for reader in FITS_READERS:
            if reader.detect(hdul, opts):
                return reader.read(hdul, path, opts)
    raise SpectrumError(f"{path.name}: no table with a wavelength column and no image with flux; not a spectrum file?")


def read_text(path: Path, opts: ReadOptions) -> RawSpectrum:
    return ascii.read(path, opts)


def read_object(obj, opts: ReadOptions) -> RawSpectrum | None:
    """A specutils-like object read, or None if ``obj`` is not one."""
    return specutils_object.read(obj, opts) if specutils_object.detect(obj) else None
