"""Differentiable 1D LTE spectrum synthesizer in JAX (realistic and simple fidelity).

Public API:

- :func:`synthesize` (labels, fine wavelength grid, fidelity) → (normalised flux, continuum)
- :func:`synthesize_observed` (labels, window, resolution, vsini, vmacro) → instrument-grid spectrum
- :class:`SynthesizerModel` — the synthesizer as a :class:`~stellarinf.emulators.base.SpectrumModel`
- :func:`make_synthesizer` — the pure JAX function behind them, for jit/vmap/grad
- :func:`fine_grid` — the default unbroadened grid (R = 300,000, log-uniform)

Modules: ``data`` (tables), ``atmosphere`` (ATLAS9 interpolation), ``abundances``, ``chemistry``
(Saha–Boltzmann), ``continuum``, ``voigt``, ``lines``, ``selection``, ``hydrogen``, ``transfer``,
``synthesize``, ``grey`` (simple fidelity), ``observed``, ``model``, ``compact_table`` (the shipped TiO list's format).
"""

from .errors import AtmosphereCoverageError, LineListCoverageError
from .model import SynthesizerModel
from .observed import synthesize_observed
from .synthesize import FIDELITIES, R_FINE, fine_grid, make_synthesizer, synthesize

__all__ = [
    "AtmosphereCoverageError",
    "FIDELITIES",
    "LineListCoverageError",
    "R_FINE",
    "SynthesizerModel",
    "fine_grid",
    "make_synthesizer",
    "synthesize",
    "synthesize_observed",
]
