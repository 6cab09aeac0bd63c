"""A test double shared by the error-model and forecast tests: the analytic line model with an error table and
correlated error modes, duck-typing an Emulator's error API."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from stellarinf.emulators.emulator import Emulator
from stellarinf.validation.analytic import AnalyticLineModel


class ModesModel(eqx.Module):
    """The analytic line model with a given error table and correlated modes (duck-types Emulator's error API)."""

    base: AnalyticLineModel
    error_wavelength: jax.Array
    error_sigma: jax.Array
    error_modes: jax.Array

    @property
    def label_space(self):
        return self.base.label_space

    @property
    def wavelength_range(self):
        return self.base.wavelength_range

    @property
    def resolution(self):
        return self.base.resolution

    @property
    def n_error_modes(self):
        return int(self.error_modes.shape[0])

    def flux(self, labels, wavelength):
        return self.base.flux(labels, wavelength)

    def error(self, wavelength):
        return jnp.interp(wavelength, self.error_wavelength, self.error_sigma)

    error_white = Emulator.error_white
