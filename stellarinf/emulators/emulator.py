"""The emulator wrapper: a trained network plus what it was trained on, behind ``SpectrumModel``.

``Emulator.flux(labels, wavelength)`` is pure JAX (``jit``/``vmap``/``grad``-friendly). Called eagerly (concrete
values) it first validates: labels inside the training box (outside it the network returns garbage, e.g.
negative flux at teff 50,000), wavelengths inside its range; an astropy ``Quantity`` is converted to Å.
Inside ``jit``/``vmap``/``grad`` the values are abstract and nothing can be checked: fits call
:meth:`Emulator.flux_unchecked` (or ``flux`` under a trace), with the inputs validated once at the edge
(:meth:`Emulator.check`; :meth:`Emulator.predict` validates and batches). Parameters are float32 by default; ``emulator.astype(jnp.float64)`` gives a
float64 copy (e.g. for Fisher matrices).

Which network is inside (what differs between kinds is read from the table in :mod:`.kinds`):

- TransformerPayne answers any wavelength inside ``wavelength_range`` directly (accurately between its training
  pixels when it was trained there: ``stellarinf train --wavelengths continuous``) and also predicts the
  continuum (:meth:`Emulator.predict_continuum`) when its training grid had one;
- the Payne MLP predicts the pixels of its training grid only; other wavelengths are interpolated
  between training pixels with a Lanczos-4 kernel (:mod:`.interpolation`; linear interpolation would
  smooth lines sampled at ~2.5 pixels per FWHM noticeably).
"""

from __future__ import annotations

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..errors import ShapeError, StellarinfError
from ..labels import LabelSpace
from .base import check_inputs
from .error_scale import ErrorScale
from .interpolation import lanczos_interpolate, lanczos_upsample, log_uniform_grid_of
from .kinds import NetworkKind, kind_of


class Emulator(eqx.Module):
    """A trained emulator satisfying :class:`~stellarinf.emulators.base.SpectrumModel`.

    Fields:
        network: a network of a kind in :data:`.kinds.NETWORK_KINDS` (TransformerPayne, PayneMLP): the only
            trainable part.
        error_wavelength: (n_bins,) vacuum Å centres of the emulator-error table.
        error_sigma: (n_bins,) rms held-out residual of normalised flux in each bin (the total error).
        error_modes: (n_modes, n_bins) correlated part of that error (scaled principal components of the
            held-out residuals, :mod:`~stellarinf.emulators.error_model`); (0, n_bins) when not fitted.
        training_wavelength: (n_pix,) training grid: the pixels a Payne predicts; optional for a TransformerPayne
            (the pixels it is accurate at; None if not recorded).
        native_log_grid: ``(ln λ₀, Δ ln λ)`` of the training grid when it is known and uniform in ln λ
            (enables :meth:`flux_upsampled`, which fits use), else None.
        label_space: label names and the training box (labels are validated against it).
        wavelength_range: (wmin, wmax) vacuum Å the emulator answers inside.
        resolution: resolving power already in the training spectra, or None if unknown/unbroadened.
        has_continuum: whether the network was trained to predict the continuum.
        metadata_json: the model document (``model.json``) as a string; see :attr:`metadata`.
    """

    network: eqx.Module  # a network of one of the kinds in .kinds (TransformerPayne, PayneMLP)
    error_wavelength: Float[Array, "n_bins"]
    error_sigma: Float[Array, "n_bins"]
    error_modes: Float[Array, "n_modes n_bins"]
    training_wavelength: Float[Array, "n_pix"] | None
    label_space: LabelSpace = eqx.field(static=True)
    wavelength_range: tuple[float, float] = eqx.field(static=True)
    resolution: float | None = eqx.field(static=True)
    has_continuum: bool = eqx.field(static=True)
    metadata_json: str = eqx.field(static=True)
    native_log_grid: tuple[float, float] | None = eqx.field(static=True)

    def __init__(
        self,
        network,
        label_space: LabelSpace,
        wavelength_range,
        *,
        resolution=None,
        error_wavelength=None,
        error_sigma=None,
        error_modes=None,
        training_wavelength=None,
        has_continuum: bool = False,
        metadata: dict | None = None,
    ):
        kind = kind_of(network)  # an unsupported network type is an error here
        self.network = network
        self.label_space = label_space
        self.wavelength_range = (float(wavelength_range[0]), float(wavelength_range[1]))
        self.resolution = None if resolution is None else float(resolution)
        self.has_continuum = bool(has_continuum) and kind.predicts_continuum
        self.metadata_json = json.dumps(metadata or {}, sort_keys=True, default=str)
        if error_wavelength is None:  # unknown emulator error: zeros over the range
            error_wavelength, error_sigma = np.array(self.wavelength_range), np.zeros(2)
        ew = np.asarray(error_wavelength, dtype=np.float64)
        es = np.asarray(error_sigma, dtype=np.float64)
        if ew.ndim != 1 or ew.shape != es.shape or ew.size < 1 or np.any(np.diff(ew) <= 0):
            raise ShapeError(
                "error table: wavelength and sigma must be 1-D arrays of equal length, wavelength increasing"
            )
        em = np.zeros((0, ew.size)) if error_modes is None else np.asarray(error_modes, dtype=np.float64)
        if em.ndim != 2 or em.shape[1] != ew.size or not np.all(np.isfinite(em)):
            raise ShapeError(
                f"error modes must be a finite (n_modes, {ew.size}) array on the error-table wavelengths, got shape {em.shape}"
            )
        self.error_wavelength = jnp.asarray(ew)
        self.error_sigma = jnp.asarray(es)
        self.error_modes = jnp.asarray(em)
        tw = None if training_wavelength is None else np.asarray(training_wavelength, dtype=np.float64)
        if not kind.any_wavelength:  # one output per training pixel (the Payne): the grid is part of the model
            if tw is None:
                raise StellarinfError(
                    f"a {kind.name} emulator needs its training wavelength grid (training_wavelength=)"
                )
            if tw.shape != (network.config.n_pixels,):
                raise ShapeError(
                    f"training_wavelength has shape {tw.shape} but the {kind.name} network outputs "
                    f"{network.config.n_pixels} pixels"
                )
        elif tw is not None and (tw.ndim != 1 or tw.size < 8 or np.any(np.diff(tw) <= 0)):
            # Optional for any-wavelength networks. A TransformerPayne trained at its grid's pixels only is accurate
            # there alone (the shipped one: 3× the MAE half a pixel off); one trained between them (`stellarinf train
            # --wavelengths continuous` on a grid made with --oversample 2) within ~1.2× everywhere
            # (benchmarks/subpixel.py). Either way fits evaluate it at these pixels and Lanczos-upsample
            # (flux_upsampled), as for the Payne.
            raise ShapeError("training_wavelength must be an increasing 1-D array of at least 8 wavelengths")
        self.training_wavelength = None if tw is None else jnp.asarray(tw)
        self.native_log_grid = None if tw is None else log_uniform_grid_of(tw)

    # Identity hash/equality: `jax.jit(emulator.flux)` needs a hashable callable and arrays are not
    # hashable. (`eqx.filter_jit` is preferable for big networks: parameters become arguments, not constants.)
    def __hash__(self):
        return id(self)

    def __eq__(self, other):
        return self is other

    # ----------------------------------------------------------------------------- properties
    @property
    def network_kind(self) -> NetworkKind:
        """The network's entry in the table of kinds (:mod:`.kinds`)."""
        return kind_of(self.network)

    @property
    def kind(self) -> str:
        """The network kind's name (``"transformer-payne"``, ``"payne"``)."""
        return self.network_kind.name

    @property
    def dtype(self):
        return self.network.dtype

    @property
    def metadata(self) -> dict:
        """The model document (architecture, label space, training grid, metrics, version, ...)."""
        return json.loads(self.metadata_json)

    def _replace(self, **changes) -> "Emulator":
        """A new Emulator with some constructor arguments changed (static fields cannot go through tree_at)."""
        kw = dict(
            resolution=self.resolution,
            error_wavelength=self.error_wavelength,
            error_sigma=self.error_sigma,
            error_modes=self.error_modes,
            training_wavelength=self.training_wavelength,
            has_continuum=self.has_continuum,
            metadata=self.metadata,
        )
        kw.update(changes)
        return Emulator(self.network, self.label_space, self.wavelength_range, **kw)

    def with_metadata(self, metadata: dict) -> "Emulator":
        return self._replace(metadata=metadata)

    def astype(self, dtype) -> "Emulator":
        """Copy with the network parameters cast to ``dtype`` (e.g. ``jnp.float64``)."""
        net = jax.tree_util.tree_map(lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x, self.network)
        return eqx.tree_at(lambda e: e.network, self, net)

    # ----------------------------------------------------------------------------- pure API
    def scale_labels(self, labels: Float[Array, "n_labels"]) -> Float[Array, "n_labels"]:
        """Physical labels → network scale [−0.5, 0.5] over the training box, in the network dtype."""
        lo = jnp.asarray(self.label_space.lower)
        hi = jnp.asarray(self.label_space.upper)
        return ((jnp.asarray(labels) - lo) / (hi - lo) - 0.5).astype(self.dtype)

    # Each method is compiled once (eqx.filter_jit) so that eager calls are fast too; inside an outer
    # jit/vmap/grad the inner jit is simply inlined.
    def flux(self, labels: Float[Array, "n_labels"], wavelength: Float[Array, "n_pix"]) -> Float[Array, "n_pix"]:
        """Normalised flux at ``wavelength`` (vacuum Å, or a ``Quantity``) for physical ``labels``.

        Eager calls are validated (training box, wavelength range; :class:`~stellarinf.errors.LabelError` /
        :class:`~stellarinf.errors.WavelengthError`); traced calls (inside ``jit``/``vmap``/``grad``) cannot be
        and are not. :meth:`flux_unchecked` is the same function without the check, for callers that validated.
        """
        wavelength = _angstrom(wavelength)
        if not _traced(labels, wavelength):
            self.check(labels, wavelength)
        return _flux(self, jnp.asarray(labels), jnp.asarray(wavelength))

    def flux_unchecked(
        self, labels: Float[Array, "n_labels"], wavelength: Float[Array, "n_pix"]
    ) -> Float[Array, "n_pix"]:
        """:meth:`flux` without validation: the fast path for inputs already checked (inside fits). Outside the
        training box the result is meaningless, not an error."""
        return _flux(self, jnp.asarray(labels), jnp.asarray(wavelength))

    def flux_upsampled(
        self, labels: Float[Array, "n_labels"], start: Float[Array, ""], factor: int, n_out: int
    ) -> Float[Array, "n_out"]:
        """Normalised flux at the fractional training-pixel indices ``start + k/factor`` (k < ``n_out``):
        the fast path of :meth:`flux` for a log-uniform grid ``λ_k = exp(ln λ₀ + (start + k/factor) Δ)``
        (``native_log_grid``; a Doppler shift only moves ``start``). Same kernel as :meth:`flux`
        (:func:`~.interpolation.lanczos_upsample`). Emulators with a known log-uniform training grid only."""
        if self.native_log_grid is None:
            raise StellarinfError(
                "flux_upsampled needs an emulator whose training grid is known and uniform in ln λ; use flux()"
            )
        out = lanczos_upsample(self._native_flux(labels), start, factor, n_out)
        return out.astype(self.dtype)

    def _native_flux(self, labels: Float[Array, "n_labels"]) -> Float[Array, "n_train_pix"]:
        """Normalised flux at the training pixels (``training_wavelength``)."""
        return self.network_kind.flux(self.network, self.scale_labels(labels), self.training_wavelength)

    def predict_continuum(
        self, labels: Float[Array, "n_labels"], wavelength: Float[Array, "n_pix"]
    ) -> Float[Array, "n_pix"]:
        """Absolute continuum (grid units) at ``wavelength``: TransformerPayne trained with a continuum only."""
        if not self.has_continuum:
            raise StellarinfError(
                f"this {self.kind} emulator does not predict the continuum (only TransformerPayne trained on a grid "
                "with a continuum does); use flux() for the normalised spectrum"
            )
        return _continuum(self, jnp.asarray(labels), jnp.asarray(_angstrom(wavelength)))

    def error(self, wavelength: Float[Array, "n_pix"]) -> Float[Array, "n_pix"]:
        """1σ emulator error per pixel (total), interpolated from the held-out residual table."""
        return _error(self, jnp.asarray(_angstrom(wavelength)))

    @property
    def n_error_modes(self) -> int:
        """Number of correlated error modes (0: the error is white)."""
        return int(self.error_modes.shape[0])

    def error_white(self, wavelength: Float[Array, "n_pix"], n_modes: int | None = None) -> Float[Array, "n_pix"]:
        """The part of :meth:`error` that the first ``n_modes`` (default all) correlated modes leave:
        √(σ² − Σ_k mode_k²) per pixel (= σ when there are no modes)."""
        modes = self.error_modes[: self.n_error_modes if n_modes is None else n_modes]
        white = jnp.sqrt(jnp.maximum(self.error_sigma**2 - jnp.sum(modes**2, axis=0), 0.0))
        return jnp.interp(jnp.asarray(wavelength), self.error_wavelength, white)

    @property
    def error_scale(self) -> ErrorScale | None:
        """How the held-out error grows and shrinks across the box (:mod:`~stellarinf.emulators.error_scale`, measured
        by ``stellarinf error-model``), or None where it was not measured. Fits evaluate it once, at a first MAP's
        labels, and hold it fixed (:mod:`stellarinf.observe.error_scale`)."""
        doc = (self.metadata.get("error_model") or {}).get("scale")
        return ErrorScale.from_json(doc) if doc else None

    def with_error_model(self, wavelength, sigma, modes=None) -> "Emulator":
        """Copy with a new error table (and correlated modes on the same wavelengths)."""
        return self._replace(error_wavelength=wavelength, error_sigma=sigma, error_modes=modes)

    # ----------------------------------------------------------------------------- eager helpers
    def check(self, labels, wavelength) -> tuple[np.ndarray, np.ndarray]:
        """Validate labels (count, finiteness, training box) and wavelengths (range); raise clear errors."""
        return check_inputs(self, labels, _angstrom(wavelength))

    def predict(self, labels, wavelength, *, batch_size: int = 16) -> np.ndarray:
        """Validated, batched prediction: labels (n_labels,) or (B, n_labels) → flux (n_pix,) or (B, n_pix)."""
        lab, wl = self.check(labels, wavelength)
        single = lab.ndim == 1
        lab = lab.reshape(-1, len(self.label_space))
        n = len(lab)
        batch_size = min(batch_size, n)
        # Pad the last batch to full size so every call reuses one compiled function.
        padded = np.concatenate([lab, np.repeat(lab[-1:], (-n) % batch_size, axis=0)])
        out = [
            np.asarray(_flux_batch(self, jnp.asarray(padded[i : i + batch_size]), jnp.asarray(wl)))
            for i in range(0, len(padded), batch_size)
        ]
        res = np.concatenate(out, axis=0)[:n]
        return res[0] if single else res


def _traced(*values) -> bool:
    """Whether any value is abstract (inside jit/vmap/grad), where no eager check is possible."""
    return any(isinstance(v, jax.core.Tracer) for v in values)


def _angstrom(wavelength):
    """A ``Quantity`` → float64 Å (any length, frequency or energy unit); anything else unchanged. ``jnp.asarray``
    would silently drop the unit (nm read as Å)."""
    if hasattr(wavelength, "unit") and hasattr(wavelength, "to_value"):
        from ..wavelength import as_angstrom

        return as_angstrom(wavelength)
    return wavelength


def _flux_impl(emu: Emulator, labels, wavelength):
    s = emu.scale_labels(labels)
    kind = emu.network_kind
    if kind.any_wavelength:
        return kind.flux(emu.network, s, wavelength)
    # tied to the training pixels (the Payne): Lanczos interpolation elsewhere (see .interpolation for why not linear)
    native = kind.flux(emu.network, s, emu.training_wavelength)
    return lanczos_interpolate(wavelength, emu.training_wavelength, native).astype(emu.dtype)


@eqx.filter_jit
def _flux(emu, labels, wavelength):
    return _flux_impl(emu, labels, wavelength)


@eqx.filter_jit
def _continuum(emu, labels, wavelength):
    return 10.0 ** emu.network_kind.log10_continuum(emu.network, emu.scale_labels(labels), wavelength)


@eqx.filter_jit
def _error(emu, wavelength):
    return jnp.interp(wavelength, emu.error_wavelength, emu.error_sigma).astype(emu.dtype)


@eqx.filter_jit
def _flux_batch(emulator: Emulator, labels, wavelength):
    return jax.vmap(emulator.flux_unchecked, in_axes=(0, None))(labels, wavelength)


def flux_batch(
    emulator: Emulator, labels: Float[Array, "B n_labels"], wavelength: Float[Array, "n_pix"]
) -> Float[Array, "B n_pix"]:
    """Jitted, vmapped :meth:`Emulator.flux` over a batch of label vectors (no validation)."""
    return _flux_batch(emulator, labels, wavelength)
