"""The eager builder of an :class:`~stellarinf.observe.model.ObservationModel`: what it holds, made from a spectrum
and settings once, in NumPy, before any JAX program runs.

One function per part, each small and pure (its inputs are its arguments, its output a value; the warnings and
errors name the setting to change), in the order ``ObservationModel.__init__`` calls them and stores what they
return: the continuum's design and prior (:func:`continuum_terms`), the resolving power (:func:`observed_resolution`),
the parameters' bounds (:func:`parameter_bounds`), the fine grid and the resampling rows (:func:`fine_grid`), the
emulator's error (:func:`emulator_error_terms`) and the physics error (:func:`physics_error_settings`,
:func:`physics_error_per_pixel`, :func:`physics_excluded`). The pure-JAX evaluation lives in :mod:`.model`.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..errors import SpectrumError, WavelengthError
from ..io.spectrum import Spectrum, resolution_value
from ..wavelength import SPEED_OF_LIGHT_KMS
from .broadening import FWHM_PER_SIGMA, broaden, kernel_half_width, lsf_sigma_for, variable_lsf_apply, variable_lsf_rows
from .continuum import chebyshev_design

__all__ = [
    "CONTINUUM_MODES",
    "ContinuumTerms",
    "ErrorTerms",
    "FineGrid",
    "continuum_terms",
    "cubic_weights",
    "emulator_error_terms",
    "fine_grid",
    "observed_resolution",
    "parameter_bounds",
    "physics_error_per_pixel",
    "physics_error_settings",
    "physics_excluded",
]

CONTINUUM_MODES = ("sample", "marginalise", "profile")
PROFILE_PRIOR_SD = 1e6  # numerically "no prior" for the profile likelihood
C = SPEED_OF_LIGHT_KMS


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


# ------------------------------------------------------------------------------------------- resolving power
def observed_resolution(
    emulator, spectrum: Spectrum, resolution, fit_resolution: bool, resolution_bounds
) -> tuple[float | None, np.ndarray | None, float | None]:
    """``(R, R(λ) per pixel or None, the model's own R or None)`` the spectrum is observed at: ``resolution`` if
    given, else the spectrum's. A constant profile is one R; a varying one is kept (its median is the summary R).
    Raises what cannot be done (several arms in one model, fitting a profile, an instrument sharper than the
    model); warns when no LSF will be applied at all."""
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
            stacklevel=3,
        )
    return r_obs, r_profile, r_model


# ------------------------------------------------------------------------------------------- parameters
def parameter_bounds(
    label_space,
    *,
    rv_max: float,
    vsini_max: float,
    vmacro_max: float,
    fit_resolution: bool,
    resolution_bounds,
    r_obs: float | None,
    r_model: float | None,
    fit_jitter: bool,
) -> dict[str, tuple[float, float]]:
    """(lower, upper) of the labels (the model's training box), rv, v sin i, v macro and, when fitted, the resolving
    power (default 0.5–1.5 × R, never above the model's own) and ``ln_jitter``. Continuum coefficients come after
    (:func:`continuum_terms`)."""
    bounds = {n: (float(lo), float(hi)) for n, lo, hi in zip(label_space.names, label_space.lower, label_space.upper)}
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
    return bounds


# ------------------------------------------------------------------------------------------- continuum
@dataclasses.dataclass(frozen=True)
class ContinuumTerms:
    """One Chebyshev polynomial per segment with unmasked pixels: its design, the flux level it is scaled by, its
    coefficients' names, prior and (``continuum="sample"``) bounds."""

    segment_ids: tuple[int, ...]
    flux_scale: np.ndarray  # (n_pix,) the segment's flux level (1 for a normalised spectrum)
    design: np.ndarray  # (n_pix, n_coef) unscaled
    names: tuple[str, ...]  # cont_<segment>_<k>
    prior_mean: np.ndarray  # (n_coef,) 1 for each constant term, else 0
    prior_sd: np.ndarray  # (n_coef,)
    bounds: dict  # name → (lower, upper), for sampled coefficients only


def continuum_terms(spectrum: Spectrum, mode: str, degree: int, prior_width: float) -> ContinuumTerms:
    """The continuum of ``spectrum`` (degree ``degree`` per segment, −1 = none) for ``mode`` (sample, marginalise,
    profile). A segment whose pixels are all masked gets none (a warning says which)."""
    if mode not in CONTINUUM_MODES:
        raise SpectrumError(f"continuum must be one of {', '.join(CONTINUUM_MODES)}, got {mode!r}")
    if degree < -1:
        raise SpectrumError(f"continuum_degree must be >= -1 (-1 = no continuum), got {degree}")
    mask = np.asarray(spectrum.mask, bool)
    seg_all = spectrum.segment_ids
    segment_ids = tuple(s for s in seg_all if np.any(mask & (spectrum.segments == s)))
    if len(segment_ids) < len(seg_all):
        dropped = sorted(set(seg_all) - set(segment_ids))
        warnings.warn(
            f"segment(s) {dropped} have no unmasked pixels and get no continuum parameters", UserWarning, stacklevel=3
        )
    wl = np.asarray(spectrum.wavelength, dtype=np.float64)
    flux_scale = np.ones_like(wl)
    if degree >= 0:
        for s in segment_ids:
            sel = spectrum.segments == s
            p90 = float(np.percentile(spectrum.flux[sel & mask], 90))
            # normalised spectra keep scale 1 (jitter and errors then in flux units); others scale to ~1
            flux_scale[sel] = 1.0 if 0.5 <= p90 <= 2.0 else (p90 if p90 > 0 else 1.0)
    design = chebyshev_design(wl, spectrum.segments, segment_ids, degree)
    n_per = degree + 1
    names = tuple(f"cont_{s}_{k}" for s in segment_ids for k in range(max(n_per, 0)))
    prior_mean = np.zeros(len(names))
    if n_per > 0:
        prior_mean[::n_per] = 1.0
    bounds = {}
    if mode == "sample":
        bounds = {name: (0.5, 2.0) if name.endswith("_0") else (-1.0, 1.0) for name in names}
    prior_sd = np.full(len(names), prior_width if mode == "marginalise" else PROFILE_PRIOR_SD)
    return ContinuumTerms(segment_ids, flux_scale, design, names, prior_mean, prior_sd, bounds)


# ------------------------------------------------------------------------------------------- fine grid
@dataclasses.dataclass(frozen=True)
class FineGrid:
    """The fine log-uniform grid the model is evaluated and broadened on, and each observed pixel's resampling row."""

    wavelength: np.ndarray  # (n_fine,) vacuum Å, observer's frame
    dv: float  # step, km/s
    upsample: int  # fine pixels per emulator training pixel (0: the generic interpolation path)
    sigma_lsf: float | None  # the stationary LSF σ (km/s) broadened on the fine grid, if any
    sigma_res_px: np.ndarray | None  # R(λ): each pixel's remaining LSF σ in fine pixels, else None
    max_velocity: float  # the broadening kernel's half width, km/s
    interp_index: np.ndarray  # (n_pix, n_taps)
    interp_weight: np.ndarray  # (n_pix, n_taps)


def fine_grid(
    emulator,
    wavelength: np.ndarray,
    used: np.ndarray,
    *,
    bounds: dict,
    fixed: dict,
    r_obs: float | None,
    r_profile: np.ndarray | None,
    r_model: float | None,
    fit_resolution: bool,
    fine_step_kms: float | None,
) -> FineGrid:
    """The fine grid for observed pixels ``wavelength`` (``used``: the unmasked ones): step c/(5 R_model) (1 km/s
    for an unbroadened model), never coarser than half the smallest observed pixel, an integer fraction of a
    Payne's training step; wide enough for the largest broadening kernel the bounds allow."""
    wmin, wmax = (float(w) for w in emulator.wavelength_range)
    wl = wavelength
    if wl.min() < wmin - 1e-6 or wl.max() > wmax + 1e-6:
        raise WavelengthError(
            f"the spectrum ({wl.min():.2f}–{wl.max():.2f} Å) reaches outside the model's range {wmin:.2f}–{wmax:.2f} Å "
            "(vacuum); crop it first: stellarinf.io.spectrum.crop_to_model(spectrum, model, margin_kms=rv_max)"
        )
    user_step = fine_step_kms is not None
    if fine_step_kms is None:
        fine_step_kms = C / (5.0 * r_model) if r_model is not None else 1.0
        dv_obs = C * float(np.min(np.diff(np.log(used)))) if used.size > 1 else fine_step_kms
        if dv_obs > 0:
            fine_step_kms = min(fine_step_kms, 0.5 * dv_obs)
    dv = float(fine_step_kms)
    # A Payne on a log-uniform training grid: make the fine step an integer fraction of the training step, so
    # the emulator's pixels are Lanczos-upsampled by short convolutions (Emulator.flux_upsampled) instead of
    # being interpolated pixel by pixel (log-density value + gradient 5.8 → 1.7 ms on CPU). upsample = 0: generic path.
    upsample = 0
    native = getattr(emulator, "native_log_grid", None)
    if native is not None:
        native_dv = native[1] * C
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
        sigma_px = C / FWHM_PER_SIGMA * np.sqrt(np.maximum(var, 0.0))  # km/s, per pixel
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
    lo = max(wl.min() * math.exp(-margin / C), wmin)
    hi = min(wl.max() * math.exp(margin / C), wmax)
    n_fine = int(math.ceil(math.log(hi / lo) * C / dv)) + 1
    fine = lo * np.exp(dv / C * np.arange(n_fine))
    u = np.log(wl / lo) * C / dv
    idx, w = (np.asarray(a) for a in cubic_weights(jnp.asarray(u), n_fine))
    if sigma_res_px is not None:
        idx, w = variable_lsf_rows(idx, w, sigma_res_px, n_fine)
    return FineGrid(fine, dv, int(upsample), sigma_lsf, sigma_res_px, float(max_velocity), idx, w)


# ------------------------------------------------------------------------------------------- errors
@dataclasses.dataclass(frozen=True)
class ErrorTerms:
    """The emulator's error at the observed pixels: its white part, and its correlated modes on their own grid."""

    white: np.ndarray  # (n_pix,) σ of the white remainder (the whole error when there are no modes)
    n_modes: int
    mode_start: float  # first wavelength of the modes' rest-frame log-uniform grid (step dv), Å
    modes: np.ndarray  # (n_mode_grid, n_modes), smoothed by the instrument's LSF


def emulator_error_terms(
    emulator,
    wavelength: np.ndarray,
    grid: FineGrid,
    *,
    include: bool,
    error_modes: bool | int,
    rv_max: float,
    fit_resolution: bool,
) -> ErrorTerms:
    """The emulator's error for pixels ``wavelength``: none unless ``include``; its correlated modes (all with
    ``error_modes=True``, the first n for an int, none for 0/False) on a rest-frame grid wide enough for any RV in
    ±``rv_max``, smoothed once by the instrument's LSF (see ``ObservationModel.error_mode_matrix`` for why only
    that)."""
    wl = wavelength
    wmin, wmax = (float(w) for w in emulator.wavelength_range)
    dv = grid.dv
    available = int(getattr(emulator, "n_error_modes", 0)) if include else 0
    n_modes = available if error_modes is True else min(int(error_modes), available)
    if n_modes < 0:
        raise SpectrumError(f"error_modes must be True, False or a number ≥ 0, got {error_modes!r}")
    if not include:
        err = np.zeros_like(wl)
    elif n_modes:
        err = np.asarray(emulator.error_white(jnp.asarray(wl), n_modes), dtype=np.float64)
    else:
        err = np.asarray(emulator.error(jnp.asarray(wl)), dtype=np.float64)
    mode_lo = max(wl.min() / (1.0 + rv_max / C) * math.exp(-4.0 * dv / C), wmin)
    mode_hi = min(wl.max() / (1.0 - min(rv_max, 0.5 * C) / C) * math.exp(4.0 * dv / C), wmax)
    n_mode_grid = int(math.ceil(math.log(mode_hi / mode_lo) * C / dv)) + 1 if n_modes else 2
    mode_grid = mode_lo * np.exp(dv / C * np.arange(n_mode_grid))
    if n_modes:
        table_wl = np.asarray(emulator.error_wavelength, dtype=np.float64)
        modes = np.stack(
            [np.interp(mode_grid, table_wl, m) for m in np.asarray(emulator.error_modes, dtype=np.float64)[:n_modes]]
        )
        if grid.sigma_lsf is not None and not fit_resolution:
            modes = np.asarray(broaden(modes, dv, lsf_sigma=grid.sigma_lsf))
        if grid.sigma_res_px is not None:  # R(λ): each mode-grid point its own remaining σ (in rest λ ≈ observed λ)
            res_grid = np.interp(mode_grid, wl, grid.sigma_res_px)
            modes = variable_lsf_apply(modes.T, res_grid).T
    else:
        modes = np.zeros((0, n_mode_grid))
    modes = np.ascontiguousarray(modes.T)  # (grid, n_modes): a pixel's modes are one contiguous row
    return ErrorTerms(np.nan_to_num(err), int(n_modes), float(mode_lo), modes)


def physics_error_settings(physics_error) -> tuple:
    """``(floor, depth_fraction[, regions])`` as floats, checked (None: no physics error, (0, 0)); each region is
    ``(lo, hi)`` (left out of the fit) or ``(lo, hi, sd)`` (kept, with ``sd`` more error)."""
    invalid = SpectrumError(
        f"physics_error must be (floor, depth_fraction[, ((lo, hi) or (lo, hi, sd), ...)]), all finite, "
        f"sd >= 0 and lo < hi, got {physics_error!r}"
    )
    settings = (0.0, 0.0) if physics_error is None else tuple(physics_error)
    try:
        regions = tuple(tuple(float(v) for v in r) for r in settings[2]) if len(settings) > 2 else ()
    except (TypeError, ValueError):
        raise invalid from None
    settings = tuple(float(v) for v in settings[:2]) + ((regions,) if regions else ())
    if (
        len(settings) < 2
        or min(settings[:2]) < 0
        or not all(math.isfinite(v) for v in settings[:2])
        or any(len(r) not in (2, 3) or not r[0] < r[1] or (len(r) == 3 and not r[2] >= 0) for r in regions)
    ):
        raise invalid
    return settings


def physics_excluded(wavelength: np.ndarray, regions=()) -> np.ndarray:
    """Boolean per pixel: inside a ``(lo, hi)`` region of the physics error (vacuum Å, observer's frame), which the
    fit leaves out. Why out and not down-weighted: there the 1D LTE physics is wrong in the shape of the whole
    range (the Balmer wings, the chromospheric Ca II cores, Paschen P14), an error correlated across hundreds of pixels, which a
    white per-pixel σ, however large, still counts as that many independent constraints on the labels the shape
    carries (Teff from the wings; benchmarks/README.md, section 6)."""
    wavelength = np.asarray(wavelength, np.float64)
    out = np.zeros(wavelength.shape, bool)
    for r in regions:
        if len(r) == 2:
            out |= (wavelength >= r[0]) & (wavelength <= r[1])
    return out


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
    within each segment and clipped to [0, 1], and each ``(lo, hi, sd)`` of ``regions`` adds ``sd`` inside that
    vacuum Å range of ``wavelength`` (a ``(lo, hi)`` region is left out of the fit instead: :func:`physics_excluded`;
    eager numpy)."""
    flux = np.asarray(flux, np.float64)
    extra = np.zeros_like(flux)
    for lo, hi, sd in (r for r in regions if len(r) == 3):
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
