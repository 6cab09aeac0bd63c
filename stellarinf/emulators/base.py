"""The one interface every forward model of normalised spectra satisfies.

Fitting, Cramér–Rao and benchmark code use only this interface, so TransformerPayne, the Payne MLP
and the synthesizer itself are interchangeable.

Contract (``SpectrumModel``):

- ``label_space``: :class:`~stellarinf.labels.LabelSpace` whose bounds are the *training box*;
- ``wavelength_range``: (wmin, wmax) vacuum Å the model answers inside;
- ``resolution``: resolving power already in the model's spectra (e.g. 28,000 for a model trained on
  instrument-resolution grids), or ``None`` if the spectra are unbroadened (the synthesizer);
- ``flux(labels, wavelength)``: pure JAX function, physical labels (n_labels,) + vacuum Å (n_pix,)
  → normalised flux (n_pix,); ``jit``/``vmap``/``grad``-friendly; no validation inside;
- ``error(wavelength)``: per-pixel 1σ emulator error (n_pix,) (zeros if unknown), added in
  quadrature to the observational noise by the likelihood.

Validate at the edges (eagerly, outside ``jit``) with :func:`check_inputs`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from jaxtyping import Array, Float

from ..errors import WavelengthError
from ..labels import LabelSpace


@runtime_checkable
class SpectrumModel(Protocol):
    label_space: LabelSpace
    wavelength_range: tuple[float, float]
    resolution: float | None

    def flux(self, labels: Float[Array, "n_labels"], wavelength: Float[Array, "n_pix"]) -> Float[Array, "n_pix"]: ...

    def error(self, wavelength: Float[Array, "n_pix"]) -> Float[Array, "n_pix"]: ...


def check_wavelength(model: SpectrumModel, wavelength) -> np.ndarray:
    """Raise :class:`WavelengthError` if any wavelength lies outside the model's range."""
    wl = np.asarray(wavelength, dtype=np.float64)
    wmin, wmax = model.wavelength_range
    if wl.ndim != 1 or wl.size == 0 or not np.all(np.isfinite(wl)):
        raise WavelengthError("wavelength must be a non-empty 1-D array of finite values (vacuum Å)")
    if wl.min() < wmin - 1e-6 or wl.max() > wmax + 1e-6:
        raise WavelengthError(
            f"wavelengths {wl.min():.2f}–{wl.max():.2f} Å reach outside the model's range {wmin:.2f}–{wmax:.2f} Å "
            "(vacuum); crop the spectrum to that range or use a model trained on this window"
        )
    return wl


def check_inputs(model: SpectrumModel, labels, wavelength) -> tuple[np.ndarray, np.ndarray]:
    """Eager validation of labels (against the training box) and wavelengths (against the range)."""
    return model.label_space.validate(labels, what="emulator labels"), check_wavelength(model, wavelength)
