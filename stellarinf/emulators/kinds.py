"""The one table of network kinds: everything that differs between TransformerPayne and the Payne MLP.

:class:`~.emulator.Emulator` (how a flux is evaluated, whether a training grid is required, the continuum),
:mod:`.model_io` (``architecture.kind`` in ``model.json``, rebuilding the skeleton), :mod:`.training` (new
networks, batches, losses, validation, freeze groups, default settings), the ``stellarinf train`` choices and the
quick-start templates read this table; nothing else branches on the kind of network.

Adding a network kind is its own module plus one entry here. The module holds the Equinox network (``__init__(config,
key, dtype)``, a ``dtype`` property), its hyper-parameter dataclass (``to_json``/``from_json``) and the hooks a
:class:`NetworkKind` names (see ``payne.py`` and ``transformer_payne.py`` for both shapes of network: one output per
training pixel, or any wavelength).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import StellarinfError
from . import payne, transformer_payne


@dataclasses.dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per kind
class NetworkKind:
    """One kind of emulator network and what the rest of ``emulators/`` needs to know about it.

    Fields:
        name: the kind's name: ``model.json``'s ``architecture.kind``, ``TrainConfig.model``, ``--model``,
            ``Emulator.kind``.
        network_class: the Equinox module (``network_class(config, key, dtype)``).
        config_class: its hyper-parameters (``to_json``/``from_json``).
        description: one line for help texts.
        any_wavelength: True when ``flux`` answers any wavelength (TransformerPayne); False when the network has
            one output per training pixel (the Payne: the Emulator then requires the training grid and
            Lanczos-interpolates between its pixels).
        cheap_native_flux: whether a spectrum on the training pixels is one cheap pass (a matrix product), so
            the quick-start scans can afford many templates.
        flux: ``(network, labels_scaled, wavelength) -> flux (n_pix,)`` at ``wavelength`` (any-wavelength kinds) or at
            the training pixels.
        log10_continuum: ``(network, labels_scaled, wavelength) -> log10 continuum (n_pix,)``, or None when the kind
            does not predict the continuum.
        presets: named sizes (``TrainConfig.preset``, ``--preset``); empty when the kind has none.
        freeze_groups: the parameter groups fine-tuning may freeze (``TrainConfig.freeze``, ``--freeze``).
        learning_rate, batch_spectra: default training settings (``TrainConfig`` fields left at None).
        new_network: ``(train_config, grid, key) -> network``, freshly initialised for a training grid.
        training_batch: ``(key, data, batch_spectra, batch_pixels) -> batch`` (pure JAX, inside the jitted step).
        continuous_batch: like ``training_batch`` at wavelengths drawn anywhere between the grid's pixels
            (``TrainConfig.wavelengths="continuous"``), or None for kinds tied to their pixels.
        training_loss: ``(network, batch, err, continuum_weight, matmul_dtype) -> scalar`` (``err``: squared or absolute
            residual; ``matmul_dtype``: None, or the dtype of the matrix products' operands, ``TrainConfig.precision``).
        validation_flux: ``(network, labels_scaled (B, n_labels), wavelength (k,), pixels (k,)) -> flux (B, k)`` at
            the training pixels ``pixels`` (indices; ``wavelength`` = their wavelengths).
        freeze_labels: ``(params, freeze_groups) -> pytree of "train"/"freeze"`` (optax.multi_transform labels).
        width_lr_multipliers: ``(params, base_width) -> pytree of floats``, the per-parameter learning-rate multipliers
            of width transfer (``TrainConfig.lr_scaling="mup"``), or None for kinds without it.
        cpu_gradient_s: measured seconds per log-density gradient of a galah-red fit on the 2-core CPU
            (:func:`stellarinf.pipeline.choose_sampler` picks NUTS only where a posterior costs minutes).
    """

    name: str
    network_class: type
    config_class: type
    description: str
    any_wavelength: bool
    cheap_native_flux: bool
    flux: Callable
    log10_continuum: Callable | None
    presets: Mapping[str, Mapping[str, Any]]
    freeze_groups: tuple[str, ...]
    learning_rate: float
    batch_spectra: int
    new_network: Callable
    training_batch: Callable
    training_loss: Callable
    validation_flux: Callable
    freeze_labels: Callable
    continuous_batch: Callable | None = None
    width_lr_multipliers: Callable | None = None
    cpu_gradient_s: float = 0.01

    @property
    def predicts_continuum(self) -> bool:
        return self.log10_continuum is not None

    def build(self, hyperparameters: Mapping[str, Any], key, dtype):
        """A network of this kind from its ``hyperparameters`` (``model.json``'s ``architecture.hyperparameters``)."""
        return self.network_class(self.config_class.from_json(dict(hyperparameters)), key, dtype)


TRANSFORMER_PAYNE = NetworkKind(
    name=transformer_payne.KIND,
    network_class=transformer_payne.TransformerPayne,
    config_class=transformer_payne.TransformerPayneConfig,
    description="TransformerPayne: attention over wavelength tokens; any wavelength; optionally the continuum",
    any_wavelength=True,
    cheap_native_flux=False,
    flux=transformer_payne.flux,
    log10_continuum=transformer_payne.log10_continuum,
    presets=transformer_payne.PRESETS,
    freeze_groups=tuple(transformer_payne.FREEZE_GROUPS),
    learning_rate=1e-3,
    batch_spectra=32,
    new_network=transformer_payne.new_for_grid,
    training_batch=transformer_payne.training_batch,
    continuous_batch=transformer_payne.training_batch_continuous,
    training_loss=transformer_payne.training_loss,
    validation_flux=transformer_payne.validation_flux,
    freeze_labels=transformer_payne.freeze_labels,
    width_lr_multipliers=transformer_payne.width_lr_multipliers,
    cpu_gradient_s=0.16,  # 0.24 before the decoder's layers were unrolled (1.5× fewer s: benchmarks/train_step.py)
)

PAYNE = NetworkKind(
    name=payne.KIND,
    network_class=payne.PayneMLP,
    config_class=payne.PayneConfig,
    description="the Payne MLP: one output per training pixel (Lanczos-interpolated elsewhere)",
    any_wavelength=False,
    cheap_native_flux=True,
    flux=payne.flux,
    log10_continuum=None,
    presets={},
    freeze_groups=payne.FREEZE_GROUPS,
    learning_rate=1e-3,
    batch_spectra=128,
    new_network=payne.new_for_grid,
    training_batch=payne.training_batch,
    training_loss=payne.training_loss,
    validation_flux=payne.validation_flux,
    freeze_labels=payne.freeze_labels,
    cpu_gradient_s=0.0056,
)

#: name → kind; the order is the CLI's (the first is the default of ``stellarinf train``).
NETWORK_KINDS: dict[str, NetworkKind] = {kind.name: kind for kind in (TRANSFORMER_PAYNE, PAYNE)}


def get_kind(name: str) -> NetworkKind:
    """The kind called ``name``; a clear error naming the known ones otherwise."""
    try:
        return NETWORK_KINDS[name]
    except (KeyError, TypeError):
        raise StellarinfError(f"unknown emulator kind {name!r}; expected one of {', '.join(NETWORK_KINDS)}") from None


def kind_of(network) -> NetworkKind:
    """The kind of a network instance (or of a skeleton/pytree of one)."""
    for kind in NETWORK_KINDS.values():
        if isinstance(network, kind.network_class):
            return kind
    raise StellarinfError(
        f"unsupported network type {type(network).__name__}; the network kinds are {', '.join(NETWORK_KINDS)} "
        "(emulators/kinds.py)"
    )


def preset_names() -> tuple[str, ...]:
    """Every kind's preset names (the ``--preset`` choices), in table order."""
    return tuple(dict.fromkeys(p for kind in NETWORK_KINDS.values() for p in kind.presets))
