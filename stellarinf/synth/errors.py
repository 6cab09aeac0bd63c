"""Synthesizer-specific errors (all subclass :mod:`stellarinf.errors` classes)."""

from ..errors import LabelError, WavelengthError


class AtmosphereCoverageError(LabelError):
    """The requested (Teff, log g, [M/H], [α/M]) lies outside the model-atmosphere grid."""


class LineListCoverageError(WavelengthError):
    """The requested wavelength window lies outside the line list's coverage."""
