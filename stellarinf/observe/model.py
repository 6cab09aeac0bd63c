"""The observation model: labels + nuisances → model flux at the observed pixels, and its likelihood.

Forward model for parameters θ (a dict of scalars keyed by name, see :attr:`ObservationModel.param_names`):

1. **Doppler**: the rest-frame model is evaluated at ``λ_fine / (1 + rv/c)`` on a fine grid uniform in ln λ
   in the observer's frame (exact for an emulator that takes any wavelength, like TransformerPayne; a
   fixed-grid emulator such as the Payne MLP interpolates). Rest wavelengths are clipped to the model's
   ``wavelength_range`` (the model is held at its edge value beyond it).
2. **Broadening** on the fine grid (:func:`~stellarinf.observe.broadening.broaden`): rotation ``vsini``,
   macroturbulence ``vmacro`` and the extra Gaussian LSF that takes the model's resolution to the
   instrument's (``resolution`` fixed, or fitted as a parameter).
3. **Resampling** to the observed pixels by 4-point (cubic) Lagrange interpolation in ln λ (weights
   precomputed; error ≲ 1e-3 of a line depth at ≥ 4 fine pixels per FWHM).

   An instrument whose R varies with wavelength (``resolution`` an array of one R per pixel, R(λ)) gets the
   narrowest LSF (its largest R) in step 2 and each pixel's remainder √(σ(λ)² − σ_min²) folded into its
   resampling row (:func:`~stellarinf.observe.broadening.variable_lsf_rows`: a banded matrix built once here,
   applied as a gather and weighted sum); a constant array is one R. R(λ) is held fixed: ``fit_resolution``
   fits one constant R and refuses a profile.
4. **Continuum**: Chebyshev polynomial per segment (degree ``continuum_degree``; −1 = none), scaled by a
   fixed per-segment flux level so that ``cont_<seg>_0 ≈ 1``. Coefficients are parameters
   (``continuum="sample"``), or integrated out exactly under a Gaussian prior N([1, 0, …], w²) per
   coefficient (``"marginalise"``; :mod:`~stellarinf.observe.continuum`), or set to their best fit
   (``"profile"``).

Likelihood: Gaussian pixels with variance ``σ² + (scale · e_emu)² + (scale · jitter)²`` where ``e_emu`` is
the emulator's ``error()`` at the observed wavelengths, ``jitter = exp(ln_jitter)`` when ``fit_jitter``,
and ``scale`` the segment's flux level (1 for a normalised spectrum). When the emulator carries correlated
error modes (:mod:`~stellarinf.emulators.error_model`) and ``error_modes`` is on, ``e_emu`` is only the
white remainder and the modes ride along with the spectrum (same Doppler shift and instrumental LSF;
see :meth:`ObservationModel.error_mode_matrix`): the data are ``continuum × (model + Σ_k a_k mode_k) + noise`` with a_k ~ N(0, 1) integrated
out exactly, jointly with the continuum (its "marginalise"/"profile" modes use the continuum's prior mean,
i.e. the flux level, as the modes' scale; "profile" then marginalises the continuum under a very wide
prior). Masked pixels get weight 0 (no boolean indexing, so everything is jit-able).

``ObservationModel`` is an Equinox module: use ``eqx.filter_jit(om.log_likelihood)`` (or close over it in
a function passed to ``jax.jit``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..errors import LabelError, SpectrumError
from ..io.spectrum import Spectrum
from ..wavelength import SPEED_OF_LIGHT_KMS
from .broadening import broaden, lsf_sigma_for
from .build import (
    CONTINUUM_MODES,
    PROFILE_PRIOR_SD,
    continuum_terms,
    emulator_error_terms,
    fine_grid,
    observed_resolution,
    parameter_bounds,
    physics_error_per_pixel,
    physics_error_settings,
    physics_excluded,
)
from .continuum import gaussian_terms, linear_continuum_fit, linear_marginal_terms

__all__ = ["ObservationModel", "CONTINUUM_MODES"]

_NUISANCE_DEFAULTS = {"rv": 0.0, "vsini": 0.0, "vmacro": 0.0}


def check_params(params: Mapping[str, float], param_names, fixed, bounds: Mapping[str, tuple[float, float]]) -> None:
    """Eager check of a parameter dict against a model's free ``param_names``, its ``fixed`` (name, value) pairs and
    ``bounds``: no unknown names, every free one present, finite and inside its bounds (what every observation
    model's ``validate_params`` does)."""
    unknown = set(params) - set(param_names) - {n for n, _ in fixed}
    if unknown:
        raise LabelError(f"unknown parameter(s) {sorted(unknown)}; this model has {', '.join(param_names)}")
    for name, (lo, hi) in bounds.items():
        if name not in params:
            raise LabelError(f"parameter {name!r} is missing; give every one of {', '.join(param_names)}")
        v = float(params[name])
        if not (math.isfinite(v) and lo <= v <= hi):
            raise LabelError(f"parameter {name}={v:g} is outside its bounds [{lo:g}, {hi:g}]; choose a value inside")


class ObservationModel(eqx.Module):
    """Observation model of one spectrum given a ``SpectrumModel`` (built eagerly, evaluated in pure JAX).

    Args:
        emulator: any :class:`~stellarinf.emulators.base.SpectrumModel`.
        spectrum: the observed :class:`~stellarinf.io.spectrum.Spectrum` (inside the model's range; see
            :func:`~stellarinf.io.spectrum.crop_to_model`).
        resolution: instrument resolving power R = λ/FWHM (default ``spectrum.resolution``): one number, or an
            array of one R per pixel of ``spectrum`` (R(λ): a Gaussian LSF whose width varies with wavelength;
            better set on the spectrum, so that cropping keeps it aligned); None = no extra LSF.
        fit_resolution: make ``resolution`` a parameter (bounds ``resolution_bounds``): one constant R. A per-pixel
            R(λ) cannot be fitted (refused; give one R to fit a constant one instead).
        continuum: ``"sample"``, ``"marginalise"`` or ``"profile"``; ``continuum_degree`` per segment.
        continuum_prior_width: prior σ of each (scaled) coefficient for ``"marginalise"``.
        fit_jitter: add the parameter ``ln_jitter`` (extra white noise, as a fraction of the flux level).
        rv_max, vsini_max, vmacro_max: parameter bounds (km/s); they also set the broadening kernel size.
        fixed: values for parameters not to fit, e.g. ``{"vmacro": 0.0, "vmic": 1.0}`` (dropped from
            :attr:`param_names`).
        fine_step_kms: fine-grid step; default c/(5 R_model), or 1 km/s for an unbroadened model, and never
            coarser than half the smallest observed pixel.
        include_emulator_error: add the model's ``error()`` to the variance (default). Turn it off only when
            the data were made by this very model (mock tests of the sampler or of Cramér–Rao bounds).
        error_modes: use the emulator's correlated error modes (if it has any; True = all, an int = the
            first n, False/0 = none, i.e. the whole error is treated as white).
        physics_error: ``(floor, depth_fraction[, regions])``: the synthesizer-vs-reality error per pixel, as a fraction
            of the continuum, σ_phys = √(floor² + (depth_fraction · depth)²) with ``depth`` the observed line
            depth (1 − flux/level, :func:`physics_error_per_pixel`): physics errors sit
            in the lines, and a depth read off the data is already in the star's frame and fixed during the
            fit; ``regions``: vacuum Å ranges the physics gets wrong (the Hα wings of a 1D LTE model), each
            ``(lo, hi)`` (left out: :func:`~stellarinf.observe.build.physics_excluded`) or ``(lo, hi, sd)`` (kept,
            ``sd`` added). None (default) = no such term: right for mocks made by the same physics; real spectra need
            it (:func:`stellarinf.observe.physics_error.physics_error_for` gives the measured values).
    """

    emulator: object
    label_names: tuple[str, ...] = eqx.field(static=True)
    param_names: tuple[str, ...] = eqx.field(static=True)
    fixed: tuple[tuple[str, float], ...] = eqx.field(static=True)
    bounds: tuple[tuple[str, float, float], ...] = eqx.field(static=True)
    continuum_mode: str = eqx.field(static=True)
    continuum_degree: int = eqx.field(static=True)
    segment_ids: tuple[int, ...] = eqx.field(static=True)
    resolution: float | None = eqx.field(static=True)
    resolution_range: tuple[float, float] | None = eqx.field(static=True)
    lsf_sigma_min: float | None = eqx.field(static=True)
    model_resolution: float | None = eqx.field(static=True)
    fit_resolution: bool = eqx.field(static=True)
    fit_jitter: bool = eqx.field(static=True)
    limb_darkening: float = eqx.field(static=True)
    dv_fine: float = eqx.field(static=True)
    upsample: int = eqx.field(static=True)
    max_velocity: float = eqx.field(static=True)
    model_range: tuple[float, float] = eqx.field(static=True)

    fine_wavelength: Float[Array, "n_fine"]
    wavelength: Float[Array, "n_pix"]
    flux: Float[Array, "n_pix"]
    sigma: Float[Array, "n_pix"]
    weight: Float[Array, "n_pix"]
    flux_scale: Float[Array, "n_pix"]
    emulator_error: Float[Array, "n_pix"]
    physics_error: Float[Array, "n_pix"]
    physics_error_settings: tuple = eqx.field(static=True)
    n_error_modes: int = eqx.field(static=True)
    error_mode_start: float = eqx.field(static=True)
    error_modes: Float[Array, "n_mode_grid n_modes"]
    basis: Float[Array, "n_pix n_coef"]
    prior_mean: Float[Array, "n_coef"]
    prior_sd: Float[Array, "n_coef"]
    interp_index: Array
    interp_weight: Float[Array, "n_pix n_taps"]

    def __init__(
        self,
        emulator,
        spectrum: Spectrum,
        *,
        resolution: float | None = None,
        fit_resolution: bool = False,
        resolution_bounds: tuple[float, float] | None = None,
        continuum: str = "sample",
        continuum_degree: int = 2,
        continuum_prior_width: float = 1.0,
        fit_jitter: bool = False,
        rv_max: float = 300.0,
        vsini_max: float = 60.0,
        vmacro_max: float = 15.0,
        limb_darkening: float = 0.6,
        fixed: Mapping[str, float] | None = None,
        fine_step_kms: float | None = None,
        include_emulator_error: bool = True,
        error_modes: bool | int = True,
        physics_error: tuple | None = None,
    ):
        # the eager builder (.build): each part from the spectrum and settings, checked, in NumPy
        physics = physics_error_settings(physics_error)
        excluded = physics_excluded(spectrum.wavelength, physics[2] if len(physics) > 2 else ())
        if excluded.any():
            keep = np.asarray(spectrum.mask, bool) & ~excluded
            if not keep.any():
                raise SpectrumError(
                    "every pixel lies in a range the physics error leaves out (its (lo, hi) regions, e.g. a Balmer "
                    "line's wings); give physics_error='off' or regions with an sd to fit this range"
                )
            spectrum = dataclasses.replace(spectrum, mask=keep)
        cont = continuum_terms(spectrum, continuum, continuum_degree, continuum_prior_width)
        r_obs, r_profile, r_model = observed_resolution(
            emulator, spectrum, resolution, fit_resolution, resolution_bounds
        )
        fixed = {k: float(v) for k, v in (fixed or {}).items()}
        bounds = parameter_bounds(
            emulator.label_space,
            rv_max=rv_max,
            vsini_max=vsini_max,
            vmacro_max=vmacro_max,
            fit_resolution=fit_resolution,
            resolution_bounds=resolution_bounds,
            r_obs=r_obs,
            r_model=r_model,
            fit_jitter=fit_jitter,
        )
        bounds.update(cont.bounds)
        unknown = set(fixed) - set(bounds) - {"resolution", "ln_jitter"}
        if unknown:
            raise LabelError(
                f"fixed parameter(s) {sorted(unknown)} are not parameters of this model; choose from {', '.join(bounds)}"
            )
        mask = np.asarray(spectrum.mask, bool)
        wl = np.asarray(spectrum.wavelength, dtype=np.float64)
        grid = fine_grid(
            emulator,
            wl,
            wl[mask],
            bounds=bounds,
            fixed=fixed,
            r_obs=r_obs,
            r_profile=r_profile,
            r_model=r_model,
            fit_resolution=fit_resolution,
            fine_step_kms=fine_step_kms,
        )
        errors = emulator_error_terms(
            emulator,
            wl,
            grid,
            include=include_emulator_error,
            error_modes=error_modes,
            rv_max=rv_max,
            fit_resolution=fit_resolution,
        )

        self.emulator = emulator
        self.label_names = tuple(emulator.label_space.names)
        self.param_names = tuple(n for n in bounds if n not in fixed)
        self.fixed = tuple(sorted(fixed.items()))
        self.bounds = tuple((n, *bounds[n]) for n in bounds)
        self.continuum_mode = continuum
        self.continuum_degree = int(continuum_degree)
        self.segment_ids = cont.segment_ids
        self.resolution = r_obs
        self.resolution_range = None if r_profile is None else (float(r_profile.min()), float(r_profile.max()))
        self.lsf_sigma_min = None if r_profile is None else grid.sigma_lsf
        self.model_resolution = r_model
        self.fit_resolution = bool(fit_resolution)
        self.fit_jitter = bool(fit_jitter)
        self.limb_darkening = float(limb_darkening)
        self.dv_fine = grid.dv
        self.upsample = grid.upsample
        self.max_velocity = grid.max_velocity
        self.model_range = tuple(float(w) for w in emulator.wavelength_range)
        self.fine_wavelength = jnp.asarray(grid.wavelength)
        self.wavelength = jnp.asarray(wl)
        # masked pixels: finite placeholders, weight 0 (their values never matter)
        self.flux = jnp.asarray(np.where(mask, spectrum.flux, 0.0))
        self.sigma = jnp.asarray(np.where(mask, spectrum.sigma, 1.0))
        self.weight = jnp.asarray(mask.astype(np.float64))
        self.flux_scale = jnp.asarray(cont.flux_scale)
        self.emulator_error = jnp.asarray(errors.white)
        self.physics_error_settings = physics
        self.physics_error = jnp.asarray(
            physics_error_per_pixel(
                spectrum.flux,
                mask,
                np.asarray(spectrum.segments),
                *physics[:2],
                physics[2] if len(physics) > 2 else (),
                spectrum.wavelength,
            )
        )
        self.n_error_modes = errors.n_modes
        self.error_mode_start = errors.mode_start
        self.error_modes = jnp.asarray(errors.modes)
        self.basis = jnp.asarray(cont.design * cont.flux_scale[:, None])
        self.prior_mean = jnp.asarray(cont.prior_mean)
        self.prior_sd = jnp.asarray(cont.prior_sd)
        self.interp_index = jnp.asarray(grid.interp_index)
        self.interp_weight = jnp.asarray(grid.interp_weight)

    # --- parameters -----------------------------------------------------------------------------
    @property
    def continuum_names(self) -> tuple[str, ...]:
        """Names of the continuum coefficients (parameters only in ``continuum="sample"`` mode)."""
        n_per = self.continuum_degree + 1
        return tuple(f"cont_{s}_{k}" for s in self.segment_ids for k in range(max(n_per, 0)))

    def default_bounds(self) -> dict[str, tuple[float, float]]:
        """(lower, upper) for every free parameter; labels get the model's training box."""
        return {n: (lo, hi) for n, lo, hi in self.bounds if n in self.param_names}

    def value(self, params, name):
        """Parameter ``name``: its entry in ``params``, else its fixed value, else the nuisance default."""
        if name in params:
            return jnp.asarray(params[name], dtype=jnp.float64)
        fixed = dict(self.fixed)
        if name in fixed:
            return fixed[name]
        if name in _NUISANCE_DEFAULTS:
            return _NUISANCE_DEFAULTS[name]
        raise LabelError(f"parameter {name!r} is missing; give every one of {', '.join(self.param_names)} (or fix it)")

    def labels(self, params: Mapping[str, Float[Array, ""]]) -> Float[Array, "n_labels"]:
        """The emulator's label vector (label-space order) from a parameter dict."""
        return jnp.stack([jnp.asarray(self.value(params, n), dtype=jnp.float64) for n in self.label_names])

    def validate_params(self, params: Mapping[str, float]) -> None:
        """Eager check: all free parameters present, no unknown names, values finite and inside the bounds."""
        check_params(params, self.param_names, self.fixed, self.default_bounds())

    def initial_params(self) -> dict[str, float]:
        """A starting point inside the bounds: label-box midpoint, rv 0, small broadening, the instrument R,
        jitter 1e-3, and continuum coefficients fitted by linear least squares at that point."""
        start = {}
        for name, (lo, hi) in self.default_bounds().items():
            mid = 0.5 * (lo + hi)
            if name == "rv":
                mid = 0.0
            elif name == "vsini":
                mid = min(5.0, 0.5 * hi)
            elif name == "vmacro":
                mid = min(3.0, 0.5 * hi)
            elif name == "resolution":
                mid = min(max(self.resolution if self.resolution is not None else mid, lo), hi * 0.999)
            elif name == "ln_jitter":
                mid = math.log(1e-3)
            start[name] = float(mid)
        if self.continuum_mode == "sample" and self.continuum_names:
            coef = np.asarray(self.continuum_coefficients(start, fit=True))
            for name, value in zip(self.continuum_names, coef):
                lo, hi = dict((n, (a, b)) for n, a, b in self.bounds)[name]
                start[name] = float(np.clip(value, lo + 1e-6 * (hi - lo), hi - 1e-6 * (hi - lo)))
        return start

    # --- forward model --------------------------------------------------------------------------
    @property
    def resolution_record(self):
        """The resolving power used, for the record: None, one R, or for R(λ)
        ``{"per_pixel": True, "min": ..., "median": ..., "max": ...}``."""
        if self.resolution_range is None:
            return self.resolution
        lo, hi = self.resolution_range
        return {"per_pixel": True, "min": lo, "median": self.resolution, "max": hi}

    def _lsf_sigma(self, params):
        if self.fit_resolution:
            return lsf_sigma_for(self.value(params, "resolution"), self.model_resolution)
        if self.resolution_range is not None:  # R(λ): the stationary part; the rest is in the resampling rows
            return self.lsf_sigma_min
        if self.resolution is None:
            return None
        return lsf_sigma_for(self.resolution, self.model_resolution)

    def rest_frame_flux(self, params: Mapping[str, Float[Array, ""]]) -> Float[Array, "n_fine"]:
        """The emulator's normalised flux seen at :attr:`fine_wavelength` (observer's frame) for a star at
        radial velocity ``rv``: the model evaluated at the rest wavelengths λ/(1 + rv/c), unbroadened."""
        rv = self.value(params, "rv")
        if self.upsample:
            ln_start, ln_step = self.emulator.native_log_grid
            start = (jnp.log(self.fine_wavelength[0]) - jnp.log1p(rv / SPEED_OF_LIGHT_KMS) - ln_start) / ln_step
            return self.emulator.flux_upsampled(
                self.labels(params), start, self.upsample, self.fine_wavelength.shape[0]
            )
        rest = self.fine_wavelength / (1.0 + rv / SPEED_OF_LIGHT_KMS)
        rest = jnp.clip(rest, self.model_range[0], self.model_range[1])
        return self.emulator.flux(self.labels(params), rest)

    def predict_fine(self, params: Mapping[str, Float[Array, ""]], *, broadened: bool = True) -> Float[Array, "n_fine"]:
        """Normalised model on :attr:`fine_wavelength` (observer's frame), Doppler-shifted, optionally broadened."""
        flux = jnp.asarray(self.rest_frame_flux(params), dtype=jnp.float64)
        return self.broaden(flux, params) if broadened else flux

    def broaden(self, flux: Float[Array, "... n"], params: Mapping[str, Float[Array, ""]]) -> Float[Array, "... n"]:
        """Rotation, macroturbulence and the instrumental LSF of ``params`` applied to spectra sampled at the
        fine step (any grid uniform in ln λ with step :attr:`dv_fine`; leading axes broadened alike). With R(λ)
        only its narrowest LSF is applied here; each pixel's remainder is in :attr:`interp_weight`."""
        return broaden(
            flux,
            self.dv_fine,
            lsf_sigma=self._lsf_sigma(params),
            vsini=self.value(params, "vsini"),
            vmacro=self.value(params, "vmacro"),
            limb_darkening=self.limb_darkening,
            max_velocity=self.max_velocity,
        )

    def normalised_flux(self, params: Mapping[str, Float[Array, ""]]) -> Float[Array, "n_pix"]:
        """The broadened normalised model at the observed pixels (before the continuum)."""
        fine = self.predict_fine(params)
        return jnp.sum(fine[self.interp_index] * self.interp_weight, axis=1)

    def error_mode_matrix(self, params: Mapping[str, Float[Array, ""]]) -> Float[Array, "n_pix n_modes"]:
        """The emulator's correlated error modes as the data see them (normalised units; (n_pix, 0) when
        there are none): Doppler-shifted to the observed pixels, smoothed by the instrument's LSF.

        Rotation and macroturbulence are *not* applied to the modes: that would cost one convolution per
        mode per evaluation (25× the likelihood's price), and leaving them out only overstates the
        correlated error of fast rotators slightly (more conservative posteriors)."""
        if self.n_error_modes == 0:
            return jnp.zeros((self.wavelength.shape[0], 0))
        rv = self.value(params, "rv")
        u = (jnp.log(self.wavelength / self.error_mode_start) - jnp.log1p(rv / SPEED_OF_LIGHT_KMS)) * (
            SPEED_OF_LIGHT_KMS / self.dv_fine
        )
        n = self.error_modes.shape[0]
        i = jnp.clip(jnp.floor(u), 0, n - 2).astype(jnp.int32)
        t = jnp.clip(u - i, 0.0, 1.0)
        return self.error_modes[i] * (1.0 - t)[:, None] + self.error_modes[i + 1] * t[:, None]

    def variance(self, params: Mapping[str, Float[Array, ""]]) -> Float[Array, "n_pix"]:
        """Per-pixel (white) variance σ² + scale²·(e_emu² + e_phys² + jitter²); see :meth:`total_variance`."""
        extra = self.emulator_error**2 + self.physics_error**2
        if self.fit_jitter:
            extra = extra + jnp.exp(2.0 * self.value(params, "ln_jitter"))
        return self.sigma**2 + self.flux_scale**2 * extra

    def total_variance(self, params: Mapping[str, Float[Array, ""]]) -> Float[Array, "n_pix"]:
        """Diagonal of the full pixel covariance: :meth:`variance` plus the correlated error modes' share."""
        modes = self.error_mode_matrix(params)
        return self.variance(params) + self.flux_scale**2 * jnp.sum(modes**2, axis=1)

    def _mode_design(self, params, m):
        """(continuum design, mode design, joint prior mean, joint prior sd) for the marginalised likelihood."""
        modes = self.error_mode_matrix(params) * self.flux_scale[:, None]
        k = self.n_error_modes
        design = jnp.concatenate([m[:, None] * self.basis, modes], axis=1)
        mean = jnp.concatenate([self.prior_mean, jnp.zeros(k)])
        sd = jnp.concatenate([self.prior_sd, jnp.ones(k)])
        return design, mean, sd

    def continuum_coefficients(
        self, params: Mapping[str, Float[Array, ""]], *, fit: bool | None = None
    ) -> Float[Array, "n_coef"]:
        """Continuum coefficients: the parameters (``"sample"``), or the conditional posterior mean
        (``"marginalise"``) / best fit (``"profile"``) given the other parameters. ``fit=True`` forces the
        linear fit (used for starting values)."""
        names = self.continuum_names
        if not names:
            return jnp.zeros(0)
        fit = self.continuum_mode != "sample" if fit is None else fit
        if not fit:
            return jnp.stack([self.value(params, n) for n in names])
        m = self.normalised_flux(params)
        sd = self.prior_sd if self.continuum_mode == "marginalise" else jnp.full_like(self.prior_sd, PROFILE_PRIOR_SD)
        if self.n_error_modes:  # fit jointly with the error-mode amplitudes; keep the continuum part
            design, mean, sd_all = self._mode_design(params, m)
            sd_all = sd_all.at[: len(names)].set(sd)
            return linear_continuum_fit(self.flux, design, self.variance(params), self.weight, mean, sd_all)[
                : len(names)
            ]
        return linear_continuum_fit(
            self.flux, m[:, None] * self.basis, self.variance(params), self.weight, self.prior_mean, sd
        )

    def continuum(self, params: Mapping[str, Float[Array, ""]]) -> Float[Array, "n_pix"]:
        """Continuum at the observed pixels (1 everywhere when ``continuum_degree = -1``)."""
        if not self.continuum_names:
            return jnp.ones_like(self.wavelength)
        return self.basis @ self.continuum_coefficients(params)

    def predict(self, params: Mapping[str, Float[Array, ""]]) -> Float[Array, "n_pix"]:
        """Model flux at the observed pixels: normalised model × continuum."""
        return self.normalised_flux(params) * self.continuum(params)

    model_flux = predict

    def linear_model(
        self, params: Mapping[str, Float[Array, ""]]
    ) -> tuple[Float[Array, "n_pix"], Float[Array, "n_pix k"], Float[Array, "k"], Float[Array, "k"]]:
        """The data model as ``offset + design @ β + noise`` with β ~ N(mean, sd²) integrated out:
        ``(offset, design, mean, sd)``. β holds the marginalised continuum coefficients (``"marginalise"``,
        ``"profile"``) and the error-mode amplitudes; ``k = 0`` when nothing is marginalised."""
        m = self.normalised_flux(params)
        if self.continuum_mode == "sample" or not self.continuum_names:
            cont = self.continuum(params) if self.continuum_names else jnp.ones_like(m)
            k = self.n_error_modes
            return m * cont, self.error_mode_matrix(params) * cont[:, None], jnp.zeros(k), jnp.ones(k)
        if self.n_error_modes:
            design, mean, sd = self._mode_design(params, m)
            return jnp.zeros_like(m), design, mean, sd
        return jnp.zeros_like(m), m[:, None] * self.basis, self.prior_mean, self.prior_sd

    def likelihood_terms(
        self, params: Mapping[str, Float[Array, ""]]
    ) -> tuple[Float[Array, "n_res"], Float[Array, ""]]:
        """``(ρ, c)`` with ``log_likelihood = −½|ρ|² + c``: whitened residuals (masked pixels zero; one extra
        entry per marginalised coefficient) and the normalisation (log determinants), which varies slowly.
        Gauss–Newton curvature (MAP, Laplace) comes from the Jacobian of ρ."""
        offset, design, mean, sd = self.linear_model(params)
        var = self.variance(params)
        if design.shape[1] == 0:
            return gaussian_terms(self.flux, offset, var, self.weight)
        # "profile" without error modes: the continuum's prior is only a numerical device, leave its
        # determinant out (with modes the continuum is marginalised with them under its very wide prior)
        profile = self.continuum_mode == "profile" and self.n_error_modes == 0
        return linear_marginal_terms(self.flux - offset, design, var, self.weight, mean, sd, profile=profile)

    def with_flux(self, flux: Float[Array, "n_pix"]) -> "ObservationModel":
        """A copy observing ``flux`` instead (same pixels, σ, mask): e.g. noiseless data for Fisher bounds."""
        return eqx.tree_at(lambda o: o.flux, self, jnp.asarray(flux, dtype=jnp.float64))

    def whitened_residuals(self, params: Mapping[str, Float[Array, ""]]) -> Float[Array, "n_res"]:
        """ρ of :meth:`likelihood_terms`."""
        return self.likelihood_terms(params)[0]

    def log_likelihood(self, params: Mapping[str, Float[Array, ""]]) -> Float[Array, ""]:
        """Gaussian log-likelihood of the observed flux (masked pixels excluded; continuum per the mode)."""
        rho, norm = self.likelihood_terms(params)
        return -0.5 * jnp.sum(rho**2) + norm
