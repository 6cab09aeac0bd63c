"""A tiny analytic :class:`~stellarinf.emulators.base.SpectrumModel`: a test double and a demo of the protocol.

``AnalyticLineModel`` is *not* physics. Its normalised flux is ``exp(-Σ_i τ_i φ_i(λ))`` for a few dozen
Gaussian lines φ_i whose peak optical depths τ_i depend smoothly on the labels and whose widths depend on
``vmic`` (and ``teff``). It is deterministic (lines drawn from a fixed seed), cheap (n_lines × n_pix), and
differentiable, so tests and demos of fitting, Fisher bounds and the observation model can run in seconds
without a trained emulator:

- ``log10 τ_i = s_i + [Fe/H] + [X/Fe]_{el(i)} + θ_i (5040/T_eff − 5040/5500) + γ_i (log g − 4)``
  where el(i) is the line's element (iron, or one of the label space's ``<el>_fe`` labels);
- Doppler width ``σ_v² = (1.2 km/s)² T_eff/5000 K + vmic² (+ (c/R/2.3548)² if ``resolution`` is given)``,
  i.e. spectra "already at resolution R" for a finite ``resolution``.

Labels the space lacks take fixed defaults (T_eff 5500 K, log g 4, [Fe/H] 0, vmic 1 km/s).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..errors import LabelError, WavelengthError
from ..labels import LabelSpace, element_of
from ..wavelength import SPEED_OF_LIGHT_KMS

_DEFAULTS = {"teff": 5500.0, "logg": 4.0, "feh": 0.0, "vmic": 1.0}
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


class AnalyticLineModel(eqx.Module):
    """Deterministic analytic line spectrum satisfying ``SpectrumModel`` (a test double; see module doc).

    Args:
        label_space: labels among ``teff, logg, feh, vmic, <el>_fe`` (others raise :class:`LabelError`).
        wavelength_range: (wmin, wmax) vacuum Å.
        resolution: resolving power already in the spectra, or None (unbroadened).
        n_lines: number of random lines (ignored if ``lines`` is given).
        seed: seed of the line list.
        lines: optional explicit ``[(wavelength Å, log10 τ at solar labels, element symbol or "Fe"), ...]``.
        error_level: constant 1σ emulator error returned by :meth:`error` (default 0).
    """

    label_space: LabelSpace = eqx.field(static=True)
    wavelength_range: tuple[float, float] = eqx.field(static=True)
    resolution: float | None = eqx.field(static=True)
    error_level: float = eqx.field(static=True)
    centres: Float[Array, "n_lines"]
    log_strength: Float[Array, "n_lines"]
    theta_coef: Float[Array, "n_lines"]
    gravity_coef: Float[Array, "n_lines"]
    abundance_matrix: Float[Array, "n_lines n_labels"]
    _teff_index: int | None = eqx.field(static=True)
    _logg_index: int | None = eqx.field(static=True)
    _vmic_index: int | None = eqx.field(static=True)

    def __init__(
        self,
        label_space: LabelSpace,
        wavelength_range: tuple[float, float],
        resolution: float | None = None,
        *,
        n_lines: int = 40,
        seed: int = 0,
        lines: Sequence[tuple[float, float, str]] | None = None,
        error_level: float = 0.0,
    ):
        wmin, wmax = (float(w) for w in wavelength_range)
        if not (0 < wmin < wmax):
            raise WavelengthError(f"wavelength_range must satisfy 0 < wmin < wmax, got {wavelength_range}")
        if resolution is not None and not resolution > 0:
            raise WavelengthError(f"resolution must be positive or None, got {resolution}")
        names = label_space.names
        abundance = {}
        for j, name in enumerate(names):
            if name in _DEFAULTS:
                continue
            el = element_of(name)
            if el is None:
                raise LabelError(
                    f"AnalyticLineModel does not know label {name!r}; use teff, logg, feh, vmic or <el>_fe"
                )
            abundance[el] = j
        rng = np.random.default_rng(seed)
        if lines is None:
            elements = ["Fe"] + sorted(abundance)
            span = wmax - wmin
            centres = np.sort(rng.uniform(wmin + 0.03 * span, wmax - 0.03 * span, n_lines))
            strength = rng.uniform(-1.3, 0.3, n_lines)
            # half the lines are iron, the rest cycle through the abundance labels present
            line_elements = [
                elements[0] if (i % 2 == 0 or len(elements) == 1) else elements[1 + (i // 2) % (len(elements) - 1)]
                for i in range(n_lines)
            ]
        else:
            centres = np.array([float(c) for c, _, _ in lines])
            strength = np.array([float(s) for _, s, _ in lines])
            line_elements = [str(e).capitalize() for _, _, e in lines]
            n_lines = len(lines)
        n_lab = len(names)
        matrix = np.zeros((n_lines, n_lab))
        for i, el in enumerate(line_elements):
            if "feh" in names:
                matrix[i, names.index("feh")] = 1.0
            if el != "Fe":
                if el not in abundance:
                    raise LabelError(f"line element {el!r} has no '{el.lower()}_fe' label in the label space")
                matrix[i, abundance[el]] += 1.0
        self.label_space = label_space
        self.wavelength_range = (wmin, wmax)
        self.resolution = None if resolution is None else float(resolution)
        self.error_level = float(error_level)
        self.centres = jnp.asarray(centres, dtype=jnp.float64)
        self.log_strength = jnp.asarray(strength, dtype=jnp.float64)
        self.theta_coef = jnp.asarray(rng.uniform(-1.5, 0.5, n_lines), dtype=jnp.float64)
        self.gravity_coef = jnp.asarray(rng.uniform(-0.15, 0.15, n_lines), dtype=jnp.float64)
        self.abundance_matrix = jnp.asarray(matrix, dtype=jnp.float64)
        self._teff_index = names.index("teff") if "teff" in names else None
        self._logg_index = names.index("logg") if "logg" in names else None
        self._vmic_index = names.index("vmic") if "vmic" in names else None

    def _label(self, labels, index, name):
        return _DEFAULTS[name] if index is None else labels[index]

    def flux(self, labels: Float[Array, "n_labels"], wavelength: Float[Array, "n_pix"]) -> Float[Array, "n_pix"]:
        """Normalised flux (n_pix,) at vacuum wavelengths (Å) for physical labels (n_labels,)."""
        labels = jnp.asarray(labels, dtype=jnp.float64)
        wavelength = jnp.asarray(wavelength, dtype=jnp.float64)
        teff = self._label(labels, self._teff_index, "teff")
        logg = self._label(labels, self._logg_index, "logg")
        vmic = self._label(labels, self._vmic_index, "vmic")
        log_tau = (
            self.log_strength
            + self.abundance_matrix @ labels
            + self.theta_coef * (5040.0 / teff - 5040.0 / 5500.0)
            + self.gravity_coef * (logg - 4.0)
        )
        sigma_v2 = 1.44 * teff / 5000.0 + vmic**2
        if self.resolution is not None:
            sigma_v2 = sigma_v2 + (SPEED_OF_LIGHT_KMS / (self.resolution * _FWHM_PER_SIGMA)) ** 2
        sigma_lambda = self.centres * jnp.sqrt(sigma_v2) / SPEED_OF_LIGHT_KMS  # (n_lines,)
        profile = jnp.exp(-0.5 * ((wavelength[:, None] - self.centres[None, :]) / sigma_lambda[None, :]) ** 2)
        return jnp.exp(-profile @ (10.0**log_tau))

    def error(self, wavelength: Float[Array, "n_pix"]) -> Float[Array, "n_pix"]:
        """Constant emulator error ``error_level`` (zeros by default), shape (n_pix,)."""
        return jnp.full(jnp.shape(wavelength), self.error_level, dtype=jnp.float64)
