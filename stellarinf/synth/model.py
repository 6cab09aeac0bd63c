"""The synthesizer behind the :class:`~stellarinf.emulators.base.SpectrumModel` interface."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

from ..labels import LabelSpace, default_label_space
from ..physics_options import DEFAULT_DAMPING, DEFAULT_LOGGF, DEFAULT_MOLECULES
from ..wavelength import Window
from .observed import padded_fine_grid, resolve_window
from .synthesize import make_synthesizer


class SynthesizerModel:
    """Forward model computing spectra on the fly with the 1D LTE synthesizer.

    Args:
        label_space: labels (teff, logg, feh, [vmic], [<el>_fe]) and their box (default: the
            default training box).
        window: name or :class:`Window` (its range bounds ``wavelength_range``).
        fidelity: "realistic" or "simple".
        resolution: None → ``flux`` returns the unbroadened fine spectrum interpolated at the requested
            wavelengths; a number R → spectra are broadened to R first (Gaussian LSF).
        loggf: "solar" (log gf calibrated on the observed Sun) or "laboratory".
        damping: "unsold" (Unsöld × 2) or "abo" (tabulated widths); default :data:`~stellarinf.physics_options.DEFAULT_DAMPING`.
        molecules: "off" (atoms only), "on" (molecular equilibrium and lines) or "on+tio" (and TiO); default
            :data:`~stellarinf.physics_options.DEFAULT_MOLECULES`.

    ``flux(labels, wavelength)`` is pure JAX (jit/vmap/grad-friendly); ``error`` returns zeros.
    """

    kind = "synthesizer"  # beside the network kinds: choose_sampler knows a gradient here is a synthesis

    def __init__(
        self,
        label_space: LabelSpace | None = None,
        window: str | Window = "galah-red",
        fidelity: str = "realistic",
        resolution: float | None = None,
        loggf: str = DEFAULT_LOGGF,
        damping: str = DEFAULT_DAMPING,
        molecules: str = DEFAULT_MOLECULES,
    ):
        self.label_space = label_space or default_label_space()
        self.window = resolve_window(window)
        self.fidelity = fidelity
        self.resolution = None if resolution is None else float(resolution)
        self.wavelength_range = (self.window.wmin, self.window.wmax)
        self._fine = padded_fine_grid(self.window.wmin, self.window.wmax, resolution=self.resolution)
        self.loggf = loggf
        self.damping = damping
        self.molecules = molecules
        self._fn = make_synthesizer(self._fine, self.label_space.names, fidelity, loggf, damping, molecules=molecules)
        self._fine_j = jnp.asarray(self._fine)

    @property
    def name(self) -> str:
        """``synth`` / ``synth-abo`` (the fit's model names, :data:`~stellarinf.shipped_models.SYNTHESIZER_MODELS`),
        with the window and any other non-default physics (molecules "off" / "on" follow the window's emulator in a
        fit, so only TiO, which no shipped emulator has, is named)."""
        extra = [self.window.name] + [
            v for v, d in ((self.loggf, DEFAULT_LOGGF), (self.fidelity, "realistic")) if v != d
        ]
        if self.molecules == "on+tio":
            extra.append("TiO")
        from ..shipped_models import SYNTHESIZER_MODELS

        name = next((n for n, damping in SYNTHESIZER_MODELS.items() if damping == self.damping), "synth")
        return f"{name} ({', '.join(extra)})"

    def fine_flux(self, labels: Float[Array, "n_labels"]) -> Float[Array, "n_fine"]:
        """Normalised flux on the internal fine grid (broadened if ``resolution`` is set)."""
        flux, _ = self._fn(labels)
        if self.resolution is not None:
            from ..observe.broadening import broaden, velocity_step

            flux = broaden(flux, velocity_step(self._fine), resolution=self.resolution)
        return flux

    def flux(self, labels: Float[Array, "n_labels"], wavelength: Float[Array, "n_pix"]) -> Float[Array, "n_pix"]:
        """Normalised flux (n_pix,) at vacuum wavelengths inside ``wavelength_range``."""
        return jnp.interp(wavelength, self._fine_j, self.fine_flux(labels))

    def error(self, wavelength: Float[Array, "n_pix"]) -> Float[Array, "n_pix"]:
        """The synthesizer is the reference model: zero emulator error."""
        return jnp.zeros_like(jnp.asarray(wavelength, dtype=jnp.float64))
