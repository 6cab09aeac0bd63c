"""What the inference machinery may call on an observation model: the :class:`ObservationLike` protocol.

Two classes satisfy it: :class:`~stellarinf.observe.model.ObservationModel` (one spectrum, one instrument, one
forward model) and :class:`~stellarinf.observe.multi_arm.MultiArmObservationModel` (several arms of one star,
one ``ObservationModel`` per arm, the star's parameters shared). ``inference/`` (the :class:`Problem`, MAP,
Laplace, the samplers, the results), ``fisher.likelihood_fisher`` and the pipeline use only these members, so a
new kind of observation model needs only to provide them.

Parameters are a flat dict of scalars keyed by name (labels by canonical name, ``rv``/``vsini``/``vmacro`` in
km/s, continuum coefficients ``cont_<segment>_<k>``, ...); every method below is pure JAX except the eager
``default_bounds``, ``initial_params`` and ``validate_params``. Array attributes are per observed pixel, in
the order of the spectrum the model was built from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from jaxtyping import Array, Float

__all__ = ["ObservationLike"]


@runtime_checkable
class ObservationLike(Protocol):
    """The observation-model interface (see the module docstring)."""

    #: free parameters, in a fixed order (fixed ones are not listed)
    param_names: tuple[str, ...]
    #: the stellar labels among them (or fixed), canonical names
    label_names: tuple[str, ...]
    #: (name, value) of the parameters held fixed inside the model
    fixed: tuple[tuple[str, float], ...]

    # --- observed pixels (n_pix,) ---------------------------------------------------------------
    @property
    def wavelength(self) -> Float[Array, "n_pix"]: ...  # vacuum Å

    @property
    def flux(self) -> Float[Array, "n_pix"]: ...  # observed flux (masked pixels: finite placeholders)

    @property
    def sigma(self) -> Float[Array, "n_pix"]: ...  # 1σ noise of the data

    @property
    def weight(self) -> Float[Array, "n_pix"]: ...  # 1 = pixel used, 0 = masked

    # --- eager ----------------------------------------------------------------------------------
    def default_bounds(self) -> dict[str, tuple[float, float]]:
        """(lower, upper) of every free parameter."""

    def initial_params(self) -> dict[str, float]:
        """A starting point inside the bounds."""

    def validate_params(self, params: Mapping[str, float]) -> None:
        """Raise a :class:`~stellarinf.errors.LabelError` for missing, unknown or out-of-bounds parameters."""

    def with_flux(self, flux: Float[Array, "n_pix"]) -> "ObservationLike":
        """The same model observing ``flux`` (noiseless data for Fisher bounds)."""

    # --- pure JAX -------------------------------------------------------------------------------
    def value(self, params: Mapping[str, Float[Array, ""]], name: str) -> Float[Array, ""]:
        """Parameter ``name``: its entry in ``params``, else its fixed value, else the nuisance default."""

    def predict(self, params: Mapping[str, Float[Array, ""]]) -> Float[Array, "n_pix"]:
        """Model flux at the observed pixels (continuum included)."""

    def log_likelihood(self, params: Mapping[str, Float[Array, ""]]) -> Float[Array, ""]:
        """Gaussian log-likelihood of the observed flux."""

    def likelihood_terms(
        self, params: Mapping[str, Float[Array, ""]]
    ) -> tuple[Float[Array, "n_res"], Float[Array, ""]]:
        """``(ρ, c)`` with ``log_likelihood = −½|ρ|² + c`` (Gauss–Newton curvature comes from ∂ρ)."""

    def whitened_residuals(self, params: Mapping[str, Float[Array, ""]]) -> Float[Array, "n_res"]:
        """ρ of :meth:`likelihood_terms`."""

    def linear_model(
        self, params: Mapping[str, Float[Array, ""]]
    ) -> tuple[Float[Array, "n_pix"], Float[Array, "n_pix k"], Float[Array, "k"], Float[Array, "k"]]:
        """The data as ``offset + design @ β + noise``, β ~ N(mean, sd²) integrated out: ``(offset, design, mean,
        sd)`` (the marginal Gauss–Newton curvature of MAP/Laplace uses it)."""

    def variance(self, params: Mapping[str, Float[Array, ""]]) -> Float[Array, "n_pix"]:
        """White per-pixel variance the likelihood uses."""

    def total_variance(self, params: Mapping[str, Float[Array, ""]]) -> Float[Array, "n_pix"]:
        """Diagonal of the full pixel covariance (white part plus correlated error modes)."""
