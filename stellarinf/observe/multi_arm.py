"""Spectra with several arms: one observation model per arm, the star's parameters shared.

A multi-arm :class:`~stellarinf.io.spectrum.Spectrum` (``spectrum.is_multi_arm``: ``resolution`` is a mapping
{segment id: R}) holds several instruments' views of one star, e.g. GALAH's four CCDs or the blue and red arms of
UVES. :class:`MultiArmObservationModel` holds one :class:`~stellarinf.observe.model.ObservationModel` per arm,
each built with its arm's resolving power and with whichever forward model covers the arm
(:func:`build_multi_arm`), and satisfies :class:`~stellarinf.observe.protocol.ObservationLike`, so
:class:`~stellarinf.inference.density.Problem`, MAP, Laplace, the samplers and the Fisher bounds use it
unchanged:

- shared: the labels (union of the arms' models' labels; bounds = the intersection of their boxes), ``rv``,
  ``vsini``, ``vmacro`` and ``ln_jitter``;
- per arm: the continuum (``cont_<segment>_<k>``, marginalised or sampled, which includes the arm's flux
  scale), its fine grid, LSF and emulator error; optionally an RV zero-point offset ``rv_offset_<segment>`` for
  every arm but the first (``rv_offsets=True``; the arm sees ``rv + rv_offset``);
- the arms are independent given the parameters: ``log_likelihood`` is the sum over arms, the whitened
  residuals are concatenated and the Fisher information adds over arms.

Adding an arm is adding a segment to the spectrum (:meth:`Spectrum.from_arms`) with its R; a forward model for
its wavelengths goes in the ``emulators`` list.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..errors import LabelError, SpectrumError, WavelengthError
from ..io.spectrum import Spectrum, crop_to_model
from ..wavelength import SPEED_OF_LIGHT_KMS
from .model import ObservationModel, check_params

__all__ = ["MultiArmObservationModel", "build_multi_arm", "choose_arm_models", "DEFAULT_RV_OFFSET_MAX"]

DEFAULT_RV_OFFSET_MAX = 10.0  # km/s: box of the per-arm RV zero-point offsets
_NUISANCES = ("rv", "vsini", "vmacro", "resolution", "ln_jitter")


class MultiArmObservationModel(eqx.Module):
    """Several arms of one star, each its own :class:`ObservationModel`, with shared stellar parameters.

    Args:
        arms: one observation model per arm, in the spectrum's order (the first is the RV reference).
        rv_offsets: add ``rv_offset_<segment>`` (km/s, box ±``rv_offset_max``) for every arm but the first.
        fixed: values of ``rv_offset_*`` to hold fixed (other fixed values belong to the arms' models).
    """

    arms: tuple[ObservationModel, ...]
    arm_ids: tuple[int, ...] = eqx.field(static=True)
    param_names: tuple[str, ...] = eqx.field(static=True)
    label_names: tuple[str, ...] = eqx.field(static=True)
    fixed: tuple[tuple[str, float], ...] = eqx.field(static=True)
    bounds: tuple[tuple[str, float, float], ...] = eqx.field(static=True)
    rv_offset_names: tuple[str, ...] = eqx.field(static=True)

    def __init__(
        self,
        arms: Sequence[ObservationModel],
        *,
        rv_offsets: bool = False,
        rv_offset_max: float = DEFAULT_RV_OFFSET_MAX,
        fixed: Mapping[str, float] | None = None,
    ):
        arms = tuple(arms)
        if not arms:
            raise SpectrumError("a multi-arm model needs at least one arm")
        arm_ids = []
        for i, a in enumerate(arms):
            if not isinstance(a, ObservationModel):
                raise SpectrumError(f"arm {i} is a {type(a).__name__}, not an ObservationModel")
            if len(a.segment_ids) != 1:
                raise SpectrumError(
                    f"arm {i} has segments {a.segment_ids}; each arm's observation model must hold one segment "
                    "(its arm id): build it from one of Spectrum.arms()"
                )
            arm_ids.append(int(a.segment_ids[0]))
        if len(set(arm_ids)) != len(arm_ids):
            raise SpectrumError(f"the arms' segment ids {arm_ids} repeat; give each arm its own id")
        if any(a.fit_resolution for a in arms) and len(arms) > 1:
            raise SpectrumError(
                "fitting the resolving power is not supported for several arms (each arm would need its own R "
                "parameter); give each arm's R (Spectrum resolution={arm: R}) and fit_resolution=False"
            )
        # bounds: shared names take the intersection of the arms' boxes
        bounds: dict[str, tuple[float, float]] = {}
        for a in arms:
            for name, lo, hi in a.bounds:
                if name in bounds:
                    lo, hi = max(lo, bounds[name][0]), min(hi, bounds[name][1])
                    if not lo < hi:
                        raise LabelError(
                            f"the arms' models have disjoint boxes for {name!r}; use models trained on overlapping "
                            "label ranges (or fix that parameter)"
                        )
                bounds[name] = (float(lo), float(hi))
        fixed = {k: float(v) for k, v in (fixed or {}).items()}
        offsets = tuple(f"rv_offset_{s}" for s in arm_ids[1:]) if rv_offsets else ()
        for name in offsets:
            bounds[name] = (-float(rv_offset_max), float(rv_offset_max))
        unknown = set(fixed) - set(offsets)
        if unknown:
            raise LabelError(
                f"fixed value(s) {sorted(unknown)} are not RV offsets of this multi-arm model "
                f"({', '.join(offsets) or 'none: pass rv_offsets=True'}); fix labels and nuisances in the arms"
            )
        free = [n for a in arms for n in a.param_names if not n.startswith("cont_")]
        free = list(dict.fromkeys(free))
        conts = [n for a in arms for n in a.param_names if n.startswith("cont_")]
        names = free + conts + [n for n in offsets if n not in fixed]
        labels = list(dict.fromkeys(n for a in arms for n in a.label_names))
        all_fixed = dict(fixed)
        for a in arms:
            for k, v in a.fixed:
                all_fixed.setdefault(k, v)

        self.arms = arms
        self.arm_ids = tuple(arm_ids)
        self.param_names = tuple(names)
        self.label_names = tuple(labels)
        self.fixed = tuple(sorted(all_fixed.items()))
        self.bounds = tuple((n, *bounds[n]) for n in bounds)
        self.rv_offset_names = offsets

    # --- what the arms share --------------------------------------------------------------------
    @property
    def n_arms(self) -> int:
        return len(self.arms)

    @property
    def segment_ids(self) -> tuple[int, ...]:
        return self.arm_ids

    @property
    def emulators(self) -> tuple:
        """The forward model of each arm."""
        return tuple(a.emulator for a in self.arms)

    @property
    def emulator(self):
        """The arms' forward model when they all use the same one, else None."""
        first = self.arms[0].emulator
        return first if all(a.emulator is first for a in self.arms) else None

    @property
    def resolutions(self) -> dict[int, float | None]:
        """{arm id: instrument R used}."""
        return {s: a.resolution for s, a in zip(self.arm_ids, self.arms)}

    @property
    def continuum_degree(self) -> int:
        return self.arms[0].continuum_degree

    @property
    def continuum_mode(self) -> str:
        return self.arms[0].continuum_mode

    @property
    def continuum_names(self) -> tuple[str, ...]:
        return tuple(n for a in self.arms for n in a.continuum_names)

    @property
    def physics_error_settings(self) -> tuple:
        return self.arms[0].physics_error_settings

    @property
    def arm_slices(self) -> tuple[slice, ...]:
        """Each arm's pixels in the concatenated arrays."""
        out, start = [], 0
        for a in self.arms:
            n = int(a.wavelength.shape[0])
            out.append(slice(start, start + n))
            start += n
        return tuple(out)

    # --- concatenated pixels --------------------------------------------------------------------
    def _cat(self, values) -> Array:
        return jnp.concatenate([jnp.asarray(v) for v in values])

    @property
    def wavelength(self) -> Float[Array, "n_pix"]:
        return self._cat(a.wavelength for a in self.arms)

    @property
    def flux(self) -> Float[Array, "n_pix"]:
        return self._cat(a.flux for a in self.arms)

    @property
    def sigma(self) -> Float[Array, "n_pix"]:
        return self._cat(a.sigma for a in self.arms)

    @property
    def weight(self) -> Float[Array, "n_pix"]:
        return self._cat(a.weight for a in self.arms)

    @property
    def flux_scale(self) -> Float[Array, "n_pix"]:
        return self._cat(a.flux_scale for a in self.arms)

    @property
    def arm_index(self) -> np.ndarray:
        """(n_pix,) arm id of each pixel."""
        return np.concatenate([np.full(int(a.wavelength.shape[0]), s) for s, a in zip(self.arm_ids, self.arms)])

    def with_flux(self, flux: Float[Array, "n_pix"]) -> "MultiArmObservationModel":
        flux = jnp.asarray(flux, dtype=jnp.float64)
        arms = tuple(a.with_flux(flux[s]) for a, s in zip(self.arms, self.arm_slices))
        return eqx.tree_at(lambda o: o.arms, self, arms)

    # --- parameters -----------------------------------------------------------------------------
    def default_bounds(self) -> dict[str, tuple[float, float]]:
        return {n: (lo, hi) for n, lo, hi in self.bounds if n in self.param_names}

    def value(self, params, name):
        if name in params:
            return jnp.asarray(params[name], dtype=jnp.float64)
        fixed = dict(self.fixed)
        if name in fixed:
            return fixed[name]
        if name.startswith("rv_offset_"):
            return 0.0
        return self.arms[0].value(params, name)

    def arm_params(self, params: Mapping[str, Float[Array, ""]], i: int) -> Mapping[str, Float[Array, ""]]:
        """The parameters arm ``i`` sees: the shared ones, its continuum, ``rv`` + its RV offset."""
        name = f"rv_offset_{self.arm_ids[i]}"
        if name not in self.rv_offset_names:
            return params
        out = dict(params)
        out["rv"] = self.arms[i].value(params, "rv") + self.value(params, name)
        return out

    def validate_params(self, params: Mapping[str, float]) -> None:
        check_params(params, self.param_names, self.fixed, self.default_bounds())

    def initial_params(self) -> dict[str, float]:
        """Label-box midpoints, rv 0, small broadening, jitter 1e-3, offsets 0; in ``continuum="sample"`` each
        arm's coefficients fitted by linear least squares at that point."""
        start = {}
        for name, (lo, hi) in self.default_bounds().items():
            if name.startswith("cont_"):
                continue
            mid = 0.5 * (lo + hi)
            if name == "rv" or name.startswith("rv_offset_"):
                mid = 0.0
            elif name == "vsini":
                mid = min(5.0, 0.5 * hi)
            elif name == "vmacro":
                mid = min(3.0, 0.5 * hi)
            elif name == "ln_jitter":
                mid = math.log(1e-3)
            start[name] = float(mid)
        bounds = self.default_bounds()
        for i, a in enumerate(self.arms):
            names = [n for n in a.continuum_names if n in bounds]
            if not names:
                continue
            coef = np.asarray(a.continuum_coefficients(self.arm_params(start, i), fit=True))
            for name, value in zip(a.continuum_names, coef):
                if name in bounds:
                    lo, hi = bounds[name]
                    start[name] = float(np.clip(value, lo + 1e-6 * (hi - lo), hi - 1e-6 * (hi - lo)))
        return start

    # --- forward model and likelihood -----------------------------------------------------------
    def predict(self, params: Mapping[str, Float[Array, ""]]) -> Float[Array, "n_pix"]:
        """Model flux at every arm's pixels (concatenated in the spectrum's order)."""
        return self._cat(a.predict(self.arm_params(params, i)) for i, a in enumerate(self.arms))

    model_flux = predict

    def normalised_flux(self, params: Mapping[str, Float[Array, ""]]) -> Float[Array, "n_pix"]:
        return self._cat(a.normalised_flux(self.arm_params(params, i)) for i, a in enumerate(self.arms))

    def continuum(self, params: Mapping[str, Float[Array, ""]]) -> Float[Array, "n_pix"]:
        return self._cat(a.continuum(self.arm_params(params, i)) for i, a in enumerate(self.arms))

    def variance(self, params: Mapping[str, Float[Array, ""]]) -> Float[Array, "n_pix"]:
        return self._cat(a.variance(self.arm_params(params, i)) for i, a in enumerate(self.arms))

    def total_variance(self, params: Mapping[str, Float[Array, ""]]) -> Float[Array, "n_pix"]:
        return self._cat(a.total_variance(self.arm_params(params, i)) for i, a in enumerate(self.arms))

    def linear_model(self, params: Mapping[str, Float[Array, ""]]):
        """The arms' linear models side by side: offsets concatenated, designs block-diagonal (each arm's
        continuum and error modes act on its own pixels only)."""
        parts = [a.linear_model(self.arm_params(params, i)) for i, a in enumerate(self.arms)]
        k_total = sum(int(p[1].shape[1]) for p in parts)
        blocks, col = [], 0
        for _, design, _, _ in parts:
            k = int(design.shape[1])
            blocks.append(jnp.pad(design, ((0, 0), (col, k_total - col - k))))
            col += k
        offset = self._cat(p[0] for p in parts)
        return offset, jnp.concatenate(blocks, axis=0), self._cat(p[2] for p in parts), self._cat(p[3] for p in parts)

    def likelihood_terms(self, params: Mapping[str, Float[Array, ""]]):
        """``(ρ, c)``: the arms' whitened residuals concatenated, their normalisations summed."""
        terms = [a.likelihood_terms(self.arm_params(params, i)) for i, a in enumerate(self.arms)]
        return self._cat(t[0] for t in terms), sum(t[1] for t in terms)

    def whitened_residuals(self, params: Mapping[str, Float[Array, ""]]) -> Float[Array, "n_res"]:
        return self.likelihood_terms(params)[0]

    def arm_log_likelihoods(self, params: Mapping[str, Float[Array, ""]]) -> Float[Array, "n_arms"]:
        """Each arm's log-likelihood (their sum is :meth:`log_likelihood`)."""
        return jnp.stack([a.log_likelihood(self.arm_params(params, i)) for i, a in enumerate(self.arms)])

    def log_likelihood(self, params: Mapping[str, Float[Array, ""]]) -> Float[Array, ""]:
        """Sum of the arms' log-likelihoods (independent noise in each arm)."""
        return jnp.sum(self.arm_log_likelihoods(params))


# ------------------------------------------------------------------------------------------------
# the eager builder
# ------------------------------------------------------------------------------------------------
def _covered_fraction(spectrum: Spectrum, model, margin_kms: float) -> float:
    wmin, wmax = (float(w) for w in model.wavelength_range)
    f = margin_kms / SPEED_OF_LIGHT_KMS
    used = spectrum.wavelength[spectrum.mask]
    if used.size == 0:
        return 0.0
    return float(np.mean((used >= wmin * (1 + f)) & (used <= wmax * (1 - f))))


def choose_arm_models(spectrum: Spectrum, models: Sequence, *, margin_kms: float = 0.0) -> list:
    """The forward model of each arm of ``spectrum`` (``spectrum.arms()`` order): the one covering the largest
    share of the arm's used pixels (its range shrunk by ``margin_kms``). An arm that no model covers at all is a
    :class:`~stellarinf.errors.WavelengthError` naming the arm, its range and the models' ranges."""
    models = list(models)
    chosen = []
    for arm in spectrum.arms():
        cover = [_covered_fraction(arm, m, margin_kms) for m in models]
        best = int(np.argmax(cover))
        if cover[best] <= 0.0:
            seg = int(arm.segments[0])
            lo, hi = arm.arm_range(seg)
            ranges = "; ".join(
                f"{getattr(m, 'kind', type(m).__name__)} {float(m.wavelength_range[0]):.1f}–{float(m.wavelength_range[1]):.1f} Å"
                for m in models
            )
            raise WavelengthError(
                f"no forward model covers arm {seg} ({lo:.2f}–{hi:.2f} Å vacuum"
                + (f", less {margin_kms:g} km/s at each model edge" if margin_kms else "")
                + f"); the models cover: {ranges}. Add a model for that window (emulator=[..., model]) or drop "
                "the arm"
            )
        chosen.append(models[best])
    return chosen


def crop_arms(spectrum: Spectrum, models: Sequence, *, margin_kms: float = 0.0) -> list[tuple[Spectrum, object]]:
    """``[(arm, model), ...]``: each arm of ``spectrum`` cropped to the model :func:`choose_arm_models` gives it
    (its range less ``margin_kms`` at each edge), in ``spectrum.arms()`` order. What :func:`build_multi_arm`
    observes, so choices made on the cropped arms (the pipeline's automatic continuum degree) see the same pixels."""
    chosen = choose_arm_models(spectrum, models, margin_kms=margin_kms)
    # a per-pixel R(λ) is cropped with the arm
    return [(crop_to_model(arm, model, margin_kms=margin_kms), model) for arm, model in zip(spectrum.arms(), chosen)]


def build_multi_arm(
    models,
    spectrum: Spectrum,
    *,
    rv_offsets: bool = False,
    rv_offset_max: float = DEFAULT_RV_OFFSET_MAX,
    margin_kms: float | None = None,
    fixed: Mapping[str, float] | None = None,
    resolution: float | Mapping[int, float] | None = None,
    **obs_kwargs,
) -> tuple[Spectrum, MultiArmObservationModel]:
    """``(cropped spectrum, model)``: each arm of ``spectrum`` cropped to the forward model that covers it
    (``models``: one model or a list; :func:`choose_arm_models`; crop margin ``margin_kms``, default
    ``rv_max``) and observed through its own :class:`ObservationModel` at the arm's resolving power
    (``resolution`` overrides: one R for all arms or {arm: R}; ``physics_error`` may be {arm: term}). ``fixed`` values go to the arms that have
    them (labels of their model, nuisances, their continuum) and ``rv_offset_*`` to the composite;
    ``obs_kwargs`` (continuum, rv_max, ...) go to every arm."""
    models = list(models) if isinstance(models, (list, tuple)) else [models]
    rv_max = float(obs_kwargs.get("rv_max", 300.0))
    margin = rv_max if margin_kms is None else float(margin_kms)
    fixed = {k: float(v) for k, v in (fixed or {}).items()}
    used_names: set[str] = set()
    oms, cropped = [], []
    physics = obs_kwargs.pop("physics_error", None)
    for arm, model in crop_arms(spectrum, models, margin_kms=margin):
        seg = int(arm.segments[0])
        arm_physics = physics.get(seg) if isinstance(physics, Mapping) else physics
        r = resolution.get(seg) if isinstance(resolution, Mapping) else resolution
        if r is None:
            r = arm.resolution
        if r is None and getattr(model, "resolution", None) is None and not obs_kwargs.get("fit_resolution"):
            warnings.warn(
                f"arm {seg}: no resolving power known and the model is unbroadened: no LSF will be applied; give "
                "the arm's R (Spectrum resolution={arm: R})",
                UserWarning,
                stacklevel=2,
            )
        mine = set(model.label_space.names) | set(_NUISANCES) | {n for n in fixed if n.startswith(f"cont_{seg}_")}
        arm_fixed = {k: v for k, v in fixed.items() if k in mine}
        used_names |= set(arm_fixed)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="the model is unbroadened")
            oms.append(
                ObservationModel(model, arm, resolution=r, fixed=arm_fixed, physics_error=arm_physics, **obs_kwargs)
            )
        cropped.append(dataclasses.replace(arm, resolution=r))
    own = {k: v for k, v in fixed.items() if k.startswith("rv_offset_")}
    unknown = set(fixed) - used_names - set(own)
    if unknown:
        raise LabelError(
            f"fixed parameter(s) {sorted(unknown)} belong to no arm's model; the arms have "
            + ", ".join(sorted({n for om in oms for n in om.param_names} | {n for om in oms for n, _ in om.fixed}))
        )
    composite = MultiArmObservationModel(oms, rv_offsets=rv_offsets, rv_offset_max=rv_offset_max, fixed=own)
    joined = Spectrum.from_arms(cropped)
    meta = dict(spectrum.meta)
    meta["notes"] = list(spectrum.meta.get("notes", [])) + [
        n for a in cropped for n in a.meta.get("notes", []) if n not in spectrum.meta.get("notes", [])
    ]
    return dataclasses.replace(joined, meta=meta), composite
