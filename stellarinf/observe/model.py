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

import math
import warnings
from collections.abc import Mapping

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..errors import LabelError, SpectrumError, WavelengthError
from ..io.spectrum import Spectrum, resolution_value
from ..wavelength import SPEED_OF_LIGHT_KMS
from .broadening import (
    FWHM_PER_SIGMA,
    broaden,
    kernel_half_width,
    lsf_sigma_for,
    variable_lsf_apply,
    variable_lsf_rows,
)
from .continuum import chebyshev_design, gaussian_terms, linear_continuum_fit, linear_marginal_terms

__all__ = ["ObservationModel", "CONTINUUM_MODES"]

CONTINUUM_MODES = ("sample", "marginalise", "profile")
_NUISANCE_DEFAULTS = {"rv": 0.0, "vsini": 0.0, "vmacro": 0.0}
_PROFILE_PRIOR_SD = 1e6  # numerically "no prior" for the profile likelihood


def cubic_weights(u: Float[Array, "m"], n: int) -> tuple[Array, Float[Array, "m 4"]]:
    """4-point Lagrange interpolation at fractional positions u on nodes 0..n-1: (index (m,4), weight (m,4)).
    Pure JAX (also traced, for templates shifted by a trial RV); indices clipped to the nodes."""
    i = jnp.floor(u)
    t = u - i
    w = jnp.stack(
        [
            -t * (t - 1) * (t - 2) / 6,
            (t + 1) * (t - 1) * (t - 2) / 2,
            -(t + 1) * t * (t - 2) / 2,
            (t + 1) * t * (t - 1) / 6,
        ],
        axis=1,
    )
    idx = i.astype(jnp.int64)[:, None] + jnp.arange(-1, 3)[None, :]
    return jnp.clip(idx, 0, n - 1), w


def physics_error_per_pixel(
    flux: np.ndarray,
    mask: np.ndarray,
    segments: np.ndarray,
    floor: float,
    depth_fraction: float,
    regions=(),
    wavelength: np.ndarray | None = None,
) -> np.ndarray:
    """σ_phys per pixel (fraction of the continuum): √(floor² + (depth_fraction · depth)² + region²), where depth is
    1 − flux/level (level: the segment's 95th percentile of the unmasked flux) smoothed over 3 pixels
    within each segment and clipped to [0, 1], and ``regions`` ((lo, hi, sd), ...) adds ``sd`` inside vacuum
    Å ranges of ``wavelength`` that the physics is known to get wrong (eager numpy)."""
    flux = np.asarray(flux, np.float64)
    extra = np.zeros_like(flux)
    for lo, hi, sd in regions:
        extra = np.where((wavelength >= lo) & (wavelength <= hi), np.hypot(extra, sd), extra)
    if floor == 0.0 and depth_fraction == 0.0:
        return extra
    depth = np.zeros_like(flux)
    for seg in np.unique(segments):
        sel = segments == seg
        good = sel & mask
        level = float(np.percentile(flux[good], 95)) if good.any() else 1.0
        x = 1.0 - np.where(mask[sel], flux[sel], level) / (level if level > 0 else 1.0)
        if x.size >= 3:
            x = np.convolve(np.pad(x, 1, mode="edge"), np.ones(3) / 3.0, mode="valid")
        depth[sel] = np.clip(x, 0.0, 1.0)
    return np.sqrt(floor**2 + (depth_fraction * depth) ** 2 + extra**2)


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
            fit; ``regions`` ((lo, hi, sd), ...) adds ``sd`` in vacuum Å ranges the physics gets wrong (the
            Hα wings of a 1D LTE model). None (default) = no such term: right for mocks made by the same physics; real spectra need
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
        if continuum not in CONTINUUM_MODES:
            raise SpectrumError(f"continuum must be one of {', '.join(CONTINUUM_MODES)}, got {continuum!r}")
        if continuum_degree < -1:
            raise SpectrumError(f"continuum_degree must be >= -1 (-1 = no continuum), got {continuum_degree}")
        c = SPEED_OF_LIGHT_KMS
        label_names = tuple(emulator.label_space.names)
        fixed = {k: float(v) for k, v in (fixed or {}).items()}
        r_model = None if emulator.resolution is None else float(emulator.resolution)
        if resolution is None and spectrum.is_multi_arm:
            if len(spectrum.segment_ids) > 1:
                raise SpectrumError(
                    f"the spectrum has {len(spectrum.segment_ids)} arms with their own resolving power "
                    f"({spectrum.resolution}); one ObservationModel serves one instrument: use "
                    "stellarinf.observe.multi_arm.MultiArmObservationModel (or fit_spectrum), or one arm of "
                    "spectrum.arms()"
                )
            resolution = spectrum.resolution_of(spectrum.segment_ids[0])
        r_obs = resolution if resolution is not None else spectrum.resolution
        r_obs = resolution_value(r_obs, spectrum.n_pix, "spectrum")  # None, one R, or one R per pixel
        if isinstance(r_obs, np.ndarray) and np.all(r_obs == r_obs[0]):
            r_obs = float(r_obs[0])  # a constant profile is one R: the stationary (FFT) path
        r_profile = r_obs if isinstance(r_obs, np.ndarray) else None
        if r_profile is not None:
            if fit_resolution:
                raise SpectrumError(
                    f"fit_resolution fits one constant R, but the resolving power varies across the spectrum (R(λ) "
                    f"{r_profile.min():,.0f}–{r_profile.max():,.0f}); hold the profile fixed (fit_resolution=False) "
                    "or fit a constant R from a starting value (resolution=<R>, CLI --resolution R)"
                )
            lsf_sigma_for(float(r_profile.max()), r_model)  # eager: raises if the model would need sharpening
            r_obs = float(np.median(r_profile))  # the summary R (.resolution); the profile sets the LSF
        if fit_resolution and r_obs is None and resolution_bounds is None:
            raise SpectrumError(
                "fit_resolution=True needs a starting resolving power: pass resolution= or resolution_bounds="
            )
        if r_obs is not None and not fit_resolution:
            lsf_sigma_for(r_obs, r_model)  # eager: raises if the model would need sharpening
        if r_obs is None and r_model is None and not fit_resolution:
            warnings.warn(
                "the model is unbroadened and no instrument resolution is known: no LSF will be applied; pass "
                "resolution=<R> (or set spectrum.resolution)",
                UserWarning,
                stacklevel=2,
            )

        # --- parameters and bounds --------------------------------------------------------------
        lower, upper = emulator.label_space.lower, emulator.label_space.upper
        bounds = {n: (float(lo), float(hi)) for n, lo, hi in zip(label_names, lower, upper)}
        bounds["rv"] = (-float(rv_max), float(rv_max))
        bounds["vsini"] = (0.0, float(vsini_max))
        bounds["vmacro"] = (0.0, float(vmacro_max))
        if fit_resolution:
            if resolution_bounds is None:
                hi = 1.5 * r_obs if r_model is None else min(1.5 * r_obs, r_model)
                resolution_bounds = (0.5 * r_obs, hi)
            bounds["resolution"] = tuple(float(b) for b in resolution_bounds)
            if r_model is not None and bounds["resolution"][1] > r_model:
                raise SpectrumError(
                    f"resolution upper bound {bounds['resolution'][1]:g} exceeds the model's R={r_model:g}; the model "
                    "cannot be sharpened: lower the bound"
                )
        if fit_jitter:
            bounds["ln_jitter"] = (math.log(1e-6), 0.0)

        # --- segments, continuum basis ----------------------------------------------------------
        mask = np.asarray(spectrum.mask, bool)
        seg_all = spectrum.segment_ids
        segment_ids = tuple(s for s in seg_all if np.any(mask & (spectrum.segments == s)))
        if len(segment_ids) < len(seg_all):
            dropped = sorted(set(seg_all) - set(segment_ids))
            warnings.warn(
                f"segment(s) {dropped} have no unmasked pixels and get no continuum parameters",
                UserWarning,
                stacklevel=2,
            )
        wl = np.asarray(spectrum.wavelength, dtype=np.float64)
        flux_scale = np.ones_like(wl)
        if continuum_degree >= 0:
            for s in segment_ids:
                sel = spectrum.segments == s
                p90 = float(np.percentile(spectrum.flux[sel & mask], 90))
                # normalised spectra keep scale 1 (jitter and errors then in flux units); others scale to ~1
                flux_scale[sel] = 1.0 if 0.5 <= p90 <= 2.0 else (p90 if p90 > 0 else 1.0)
        design = chebyshev_design(wl, spectrum.segments, segment_ids, continuum_degree)
        n_per = continuum_degree + 1
        cont_names = [f"cont_{s}_{k}" for s in segment_ids for k in range(max(n_per, 0))]
        prior_mean = np.zeros(len(cont_names))
        if n_per > 0:
            prior_mean[::n_per] = 1.0
        if continuum == "sample":
            for name in cont_names:
                bounds[name] = (0.5, 2.0) if name.endswith("_0") else (-1.0, 1.0)
        prior_sd = np.full(len(cont_names), continuum_prior_width if continuum == "marginalise" else _PROFILE_PRIOR_SD)

        unknown = set(fixed) - set(bounds) - {"resolution", "ln_jitter"}
        if unknown:
            raise LabelError(
                f"fixed parameter(s) {sorted(unknown)} are not parameters of this model; choose from {', '.join(bounds)}"
            )
        names = [n for n in bounds if n not in fixed]

        # --- fine grid --------------------------------------------------------------------------
        wmin, wmax = (float(w) for w in emulator.wavelength_range)
        used = wl[mask]
        if wl.min() < wmin - 1e-6 or wl.max() > wmax + 1e-6:
            raise WavelengthError(
                f"the spectrum ({wl.min():.2f}–{wl.max():.2f} Å) reaches outside the model's range {wmin:.2f}–{wmax:.2f} Å "
                "(vacuum); crop it first: stellarinf.io.spectrum.crop_to_model(spectrum, model, margin_kms=rv_max)"
            )
        user_step = fine_step_kms is not None
        if fine_step_kms is None:
            fine_step_kms = c / (5.0 * r_model) if r_model is not None else 1.0
            dv_obs = c * float(np.min(np.diff(np.log(used)))) if used.size > 1 else fine_step_kms
            if dv_obs > 0:
                fine_step_kms = min(fine_step_kms, 0.5 * dv_obs)
        dv = float(fine_step_kms)
        # A Payne on a log-uniform training grid: make the fine step an integer fraction of the training step, so
        # the emulator's pixels are Lanczos-upsampled by short convolutions (Emulator.flux_upsampled) instead of
        # being interpolated pixel by pixel (log-density value + gradient 5.8 → 1.7 ms on CPU). upsample = 0: generic path.
        upsample = 0
        native = getattr(emulator, "native_log_grid", None)
        if native is not None:
            native_dv = native[1] * c
            if user_step:
                ratio = native_dv / dv
                upsample = round(ratio) if abs(ratio - round(ratio)) < 1e-6 * ratio else 0
            else:
                upsample = max(1, math.ceil(native_dv / dv * (1.0 - 1e-9)))
                dv = native_dv / upsample
        sigma_res_px = None  # per observed pixel: the LSF σ beyond the stationary one, in fine pixels
        if r_obs is None and not fit_resolution:
            sigma_lsf = None
        elif r_profile is not None:
            var = 1.0 / r_profile**2 - (0.0 if r_model is None else 1.0 / r_model**2)
            sigma_px = c / FWHM_PER_SIGMA * np.sqrt(np.maximum(var, 0.0))  # km/s, per pixel
            sigma_lsf = float(sigma_px.min())
            sigma_res_px = np.sqrt(np.maximum(sigma_px**2 - sigma_lsf**2, 0.0)) / dv
        else:
            r_low = bounds["resolution"][0] if fit_resolution else r_obs
            sigma_lsf = float(lsf_sigma_for(r_low, None if r_model is None or r_low > r_model else r_model))
        vs_hi = fixed.get("vsini", bounds["vsini"][1])
        vm_hi = fixed.get("vmacro", bounds["vmacro"][1])
        max_velocity = kernel_half_width(lsf_sigma=sigma_lsf, vsini=vs_hi, vmacro=vm_hi) + 2.0 * dv
        margin = max_velocity + 4.0 * dv
        if sigma_res_px is not None:
            margin += (math.ceil(6.0 * float(sigma_res_px.max())) + 1) * dv  # the banded rows' reach
        lo = max(wl.min() * math.exp(-margin / c), wmin)
        hi = min(wl.max() * math.exp(margin / c), wmax)
        n_fine = int(math.ceil(math.log(hi / lo) * c / dv)) + 1
        fine = lo * np.exp(dv / c * np.arange(n_fine))
        u = np.log(wl / lo) * c / dv
        idx, w = (np.asarray(a) for a in cubic_weights(jnp.asarray(u), n_fine))
        if sigma_res_px is not None:
            idx, w = variable_lsf_rows(idx, w, sigma_res_px, n_fine)

        available = int(getattr(emulator, "n_error_modes", 0)) if include_emulator_error else 0
        n_modes = available if error_modes is True else min(int(error_modes), available)
        if n_modes < 0:
            raise SpectrumError(f"error_modes must be True, False or a number ≥ 0, got {error_modes!r}")
        if not include_emulator_error:
            err = np.zeros_like(wl)
        elif n_modes:
            err = np.asarray(emulator.error_white(jnp.asarray(wl), n_modes), dtype=np.float64)
        else:
            err = np.asarray(emulator.error(jnp.asarray(wl)), dtype=np.float64)
        # error modes on their own rest-frame log-uniform grid (step dv) wide enough for any RV in the bounds,
        # smoothed once by the instrument's LSF (see error_mode_matrix for why only that)
        mode_lo = max(wl.min() / (1.0 + rv_max / c) * math.exp(-4.0 * dv / c), wmin)
        mode_hi = min(wl.max() / (1.0 - min(rv_max, 0.5 * c) / c) * math.exp(4.0 * dv / c), wmax)
        n_mode_grid = int(math.ceil(math.log(mode_hi / mode_lo) * c / dv)) + 1 if n_modes else 2
        mode_grid = mode_lo * np.exp(dv / c * np.arange(n_mode_grid))
        if n_modes:
            table_wl = np.asarray(emulator.error_wavelength, dtype=np.float64)
            modes = np.stack(
                [
                    np.interp(mode_grid, table_wl, m)
                    for m in np.asarray(emulator.error_modes, dtype=np.float64)[:n_modes]
                ]
            )
            if sigma_lsf is not None and not fit_resolution:
                modes = np.asarray(broaden(modes, dv, lsf_sigma=sigma_lsf))
            if sigma_res_px is not None:  # R(λ): each mode-grid point its own remaining σ (in rest λ ≈ observed λ)
                res_grid = np.interp(mode_grid, wl, sigma_res_px)
                modes = variable_lsf_apply(modes.T, res_grid).T
        else:
            modes = np.zeros((0, n_mode_grid))
        modes = np.ascontiguousarray(modes.T)  # (grid, n_modes): a pixel's modes are one contiguous row

        self.emulator = emulator
        self.label_names = label_names
        self.param_names = tuple(names)
        self.fixed = tuple(sorted(fixed.items()))
        self.bounds = tuple((n, *bounds[n]) for n in bounds)
        self.continuum_mode = continuum
        self.continuum_degree = int(continuum_degree)
        self.segment_ids = segment_ids
        self.resolution = r_obs
        self.resolution_range = None if r_profile is None else (float(r_profile.min()), float(r_profile.max()))
        self.lsf_sigma_min = None if r_profile is None else sigma_lsf
        self.model_resolution = r_model
        self.fit_resolution = bool(fit_resolution)
        self.fit_jitter = bool(fit_jitter)
        self.limb_darkening = float(limb_darkening)
        self.dv_fine = dv
        self.upsample = int(upsample)
        self.max_velocity = float(max_velocity)
        self.model_range = (wmin, wmax)
        self.fine_wavelength = jnp.asarray(fine)
        self.wavelength = jnp.asarray(wl)
        # masked pixels: finite placeholders, weight 0 (their values never matter)
        self.flux = jnp.asarray(np.where(mask, spectrum.flux, 0.0))
        self.sigma = jnp.asarray(np.where(mask, spectrum.sigma, 1.0))
        self.weight = jnp.asarray(mask.astype(np.float64))
        self.flux_scale = jnp.asarray(flux_scale)
        self.emulator_error = jnp.asarray(np.nan_to_num(err))
        settings = (0.0, 0.0) if physics_error is None else tuple(physics_error)
        regions = tuple(tuple(float(v) for v in r) for r in settings[2]) if len(settings) > 2 else ()
        settings = tuple(float(v) for v in settings[:2]) + ((regions,) if regions else ())
        if (
            len(settings) < 2
            or min(settings[:2]) < 0
            or not all(math.isfinite(v) for v in settings[:2])
            or any(len(r) != 3 or r[2] < 0 for r in regions)
        ):
            raise SpectrumError(
                f"physics_error must be (floor, depth_fraction[, ((lo, hi, sd), ...)]), all finite and >= 0, "
                f"got {physics_error!r}"
            )
        self.physics_error_settings = settings
        self.physics_error = jnp.asarray(
            physics_error_per_pixel(
                spectrum.flux, mask, np.asarray(spectrum.segments), *settings[:2], regions, spectrum.wavelength
            )
        )
        self.n_error_modes = int(n_modes)
        self.error_mode_start = float(mode_lo)
        self.error_modes = jnp.asarray(modes)
        self.basis = jnp.asarray(design * flux_scale[:, None])
        self.prior_mean = jnp.asarray(prior_mean)
        self.prior_sd = jnp.asarray(prior_sd)
        self.interp_index = jnp.asarray(idx)
        self.interp_weight = jnp.asarray(w)

    # --- parameters -----------------------------------------------------------------------------
    @property
    def continuum_names(self) -> tuple[str, ...]:
        """Names of the continuum coefficients (parameters only in ``continuum="sample"`` mode)."""
        n_per = self.continuum_degree + 1
        return tuple(f"cont_{s}_{k}" for s in self.segment_ids for k in range(max(n_per, 0)))

    def default_bounds(self) -> dict[str, tuple[float, float]]:
        """(lower, upper) for every free parameter; labels get the model's training box."""
        return {n: (lo, hi) for n, lo, hi in self.bounds if n in self.param_names}

    def _value(self, params, name):
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
        return jnp.stack([jnp.asarray(self._value(params, n), dtype=jnp.float64) for n in self.label_names])

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
            return lsf_sigma_for(self._value(params, "resolution"), self.model_resolution)
        if self.resolution_range is not None:  # R(λ): the stationary part; the rest is in the resampling rows
            return self.lsf_sigma_min
        if self.resolution is None:
            return None
        return lsf_sigma_for(self.resolution, self.model_resolution)

    def rest_frame_flux(self, params: Mapping[str, Float[Array, ""]]) -> Float[Array, "n_fine"]:
        """The emulator's normalised flux seen at :attr:`fine_wavelength` (observer's frame) for a star at
        radial velocity ``rv``: the model evaluated at the rest wavelengths λ/(1 + rv/c), unbroadened."""
        rv = self._value(params, "rv")
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
            vsini=self._value(params, "vsini"),
            vmacro=self._value(params, "vmacro"),
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
        rv = self._value(params, "rv")
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
            extra = extra + jnp.exp(2.0 * self._value(params, "ln_jitter"))
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
            return jnp.stack([self._value(params, n) for n in names])
        m = self.normalised_flux(params)
        sd = self.prior_sd if self.continuum_mode == "marginalise" else jnp.full_like(self.prior_sd, _PROFILE_PRIOR_SD)
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
