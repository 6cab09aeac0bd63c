"""Exceptions with messages that name the problem and the fix."""


class StellarinfError(Exception):
    """Base class for all errors raised deliberately by stellarinf."""


class LabelError(StellarinfError, ValueError):
    """A label name or value is not acceptable (unknown, missing, NaN, out of range)."""


class GridFileError(StellarinfError, OSError):
    """A grid file is missing, truncated, corrupt or inconsistent."""


class ShapeError(StellarinfError, ValueError):
    """An array does not have the shape that was expected."""


class WavelengthError(StellarinfError, ValueError):
    """A wavelength grid is invalid or outside the range a model covers."""


class ModelFileError(StellarinfError, OSError):
    """An emulator model file is missing, corrupt or of an unsupported format version."""


class SpectrumError(StellarinfError, ValueError):
    """An observed spectrum cannot be used as given."""
